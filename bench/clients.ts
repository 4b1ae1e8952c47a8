import { createParser } from 'eventsource-parser';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import OpenAI from 'openai';
import { Agent, OpenAIChat, type RunEvent } from '../src/index.js';
import { createInspector } from '../src/inspect/index.js';
import type { Kind, Workload, Workloads } from './config.js';
import { monotonicNs } from './processes.js';
import { runBody, type RunBodyEncoding } from './run-body.js';

/** How a run ended, as its consumer saw it. */
export interface Outcome {
  status: 'completed' | 'cancelled' | 'failed';
  /** Characters of content read: the parent checks that all of it arrived. */
  length: number;
  /** Content events read (runstate may carry the deltas of one socket read in one event). */
  events: number;
  error?: string;
}

/**
 * One way of streaming a completion. Every client reads each piece of content and appends it to a
 * string, as a consumer printing tokens would; `onContent` is told of each piece. Cancel happens
 * from inside `onContent` (`cancel()`), as a user's code would do it.
 */
export interface Client {
  run(workload: Workload, tag: string, onContent?: (cancel: () => void) => void): Promise<Outcome>;
  /**
   * Called before a batch of `runs` runs starts all at once: opens what the batch's runs would
   * otherwise open as they start (HTTP: one connection per run).
   */
  connect?(runs: number): Promise<void>;
  close(): Promise<void>;
}

/** What every client is given. */
export interface ClientOptions {
  upstreamURL: string;
  /** The runstate server (HTTP clients only); its agents are named after the workloads. */
  serverURL?: string;
  /** Where cancels go, when not to `serverURL`: another instance sharing its storage (`http-pg`). */
  cancelServerURL?: string;
  workloads: Workloads;
  /** How the HTTP clients post a run (see `BenchConfig.httpBody`). */
  httpBody: RunBodyEncoding;
}

const body = (model: string, tag: string) => ({
  model,
  messages: [{ role: 'user' as const, content: tag }],
  stream: true as const,
  stream_options: { include_usage: true },
});

/** The reference: the openai SDK called by hand, with the very request runstate's adapter sends. */
function rawClient({ upstreamURL, workloads }: ClientOptions): Client {
  const client = new OpenAI({ apiKey: 'bench', baseURL: upstreamURL, maxRetries: 0 });
  return {
    async run(workload, tag, onContent) {
      const controller = new AbortController();
      const cancel = () => controller.abort();
      let content = '';
      let events = 0;
      let finished = false;
      try {
        const stream = await client.chat.completions.create(body(workloads[workload], tag), {
          signal: controller.signal,
        });
        for await (const chunk of stream) {
          const choice = chunk.choices[0];
          if (choice?.finish_reason) finished = true;
          const delta = choice?.delta.content;
          if (delta) {
            content += delta;
            events++;
            onContent?.(cancel);
          }
        }
      } catch (error) {
        if (!controller.signal.aborted)
          return { status: 'failed', length: content.length, events, error: String(error) };
      }
      const status = controller.signal.aborted ? 'cancelled' : finished ? 'completed' : 'failed';
      return { status, length: content.length, events };
    },
    close: () => Promise.resolve(),
  };
}

/** fetch, eventsource-parser and one `JSON.parse` per event: what a hand-written client costs. */
function leanClient({ upstreamURL, workloads }: ClientOptions): Client {
  return {
    async run(workload, tag, onContent) {
      const controller = new AbortController();
      const cancel = () => controller.abort();
      let content = '';
      let events = 0;
      let finished = false;
      const parser = createParser({
        onEvent({ data }) {
          if (data === '[DONE]') return;
          const chunk = JSON.parse(data) as OpenAI.Chat.ChatCompletionChunk;
          const choice = chunk.choices[0];
          if (choice?.finish_reason) finished = true;
          const delta = choice?.delta.content;
          if (delta) {
            content += delta;
            events++;
            onContent?.(cancel);
          }
        },
      });
      try {
        const response = await fetch(`${upstreamURL}/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer bench' },
          body: JSON.stringify(body(workloads[workload], tag)),
          signal: controller.signal,
        });
        if (!response.ok || !response.body) throw new Error(`status ${response.status}`);
        const decoder = new TextDecoder();
        for await (const bytes of response.body as AsyncIterable<Uint8Array>)
          parser.feed(decoder.decode(bytes, { stream: true }));
      } catch (error) {
        if (!controller.signal.aborted)
          return { status: 'failed', length: content.length, events, error: String(error) };
      }
      const status = controller.signal.aborted ? 'cancelled' : finished ? 'completed' : 'failed';
      return { status, length: content.length, events };
    },
    close: () => Promise.resolve(),
  };
}

/** runstate as its README shows it: an Agent (with its own orchestrator) on `OpenAIChat({ id, baseURL })`. */
function libraryClient(options: ClientOptions): Client {
  return agentClient(options);
}

/**
 * The library with the built-in inspector on, as `runstate serve` has it, and a page open on it:
 * the run list followed, and the first run's details, each message serialised as its feed sends it.
 */
function inspectedClient(options: ClientOptions): Client {
  const inspector = createInspector();
  let bytes = 0;
  const page = (message: unknown) => void (bytes += JSON.stringify(message).length);
  const unsubscribe = inspector.subscribe(page);
  let followed: (() => void) | undefined;
  return agentClient(
    options,
    (agent) => {
      inspector.attach(agent.orchestrator);
      agent.orchestrator.subscribe((notice) => {
        if (!followed && notice.type === 'created')
          followed = inspector.subscribe(page, { runId: notice.run.run_id });
      });
    },
    () => {
      unsubscribe();
      followed?.();
      inspector.close();
      if (bytes === 0) throw new Error('the inspector page received nothing');
    },
  );
}

function agentClient(
  { upstreamURL, workloads }: ClientOptions,
  onAgent?: (agent: Agent) => void,
  onClose?: () => void,
): Client {
  const agents = new Map<Workload, Agent>();
  const agentFor = (workload: Workload): Agent => {
    let agent = agents.get(workload);
    if (!agent) {
      const model = new OpenAIChat({ id: workloads[workload], baseURL: upstreamURL, apiKey: 'bench' });
      agents.set(workload, (agent = new Agent({ name: 'bench', model })));
      onAgent?.(agent);
    }
    return agent;
  };
  return {
    async run(workload, tag, onContent) {
      const agent = agentFor(workload);
      const stream = agent.run(tag, { stream: true });
      const cancel = () => void agent.cancelRun(stream.runId);
      let content = '';
      let events = 0;
      let last: RunEvent | undefined;
      for await (const event of stream) {
        last = event;
        if (event.event === 'RunContent') {
          content += event.content;
          events++;
          onContent?.(cancel);
        }
      }
      return outcomeOf(last?.event, last && 'status' in last ? last.status : undefined, content, events);
    },
    close: async () => {
      await Promise.all([...agents.values()].map((agent) => agent.orchestrator.shutdown()));
      onClose?.();
    },
  };
}

function outcomeOf(event: string | undefined, status: unknown, content: string, events: number): Outcome {
  if (event === 'RunCompleted' || event === 'RunCancelled') {
    return { status: status as Outcome['status'], length: content.length, events };
  }
  return { status: 'failed', length: content.length, events, error: `the run ended with ${event}` };
}

/** Connections the HTTP client opens at a time before a batch (see its `connect`). */
const CONNECT_WAVE = 1_000;

/**
 * runstate over HTTP: `POST /agents/:workload/runs` and the SSE stream read with node:http; cancel
 * is the cancel route. A minimal SSE reader (one `data:` line per frame, which the server sends):
 * the server is what is measured here.
 */
function httpClient({ serverURL, cancelServerURL = serverURL, httpBody }: ClientOptions): Client {
  if (!serverURL) throw new Error('the HTTP client needs serverURL');
  const server = new URL(serverURL);
  // Runs without a connection of their own (`--http-connect-in-batch`) share a pool.
  const agent = new HttpAgent({ keepAlive: true, maxSockets: Infinity });
  /** Connections opened by `connect()`, each taken by one run. */
  const opened: Socket[] = [];
  return {
    async run(workload, tag, onContent) {
      const { body: payload, contentType } = runBody(httpBody, tag);
      const socket = opened.pop();
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        const request = httpRequest(
          new URL(`/agents/${workload}/runs`, server),
          {
            method: 'POST',
            headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) },
            ...(socket ? { createConnection: () => socket } : { agent }),
          },
          resolve,
        );
        request.once('error', reject);
        request.end(payload);
      });
      if (response.statusCode !== 200) throw new Error(`POST runs: ${response.statusCode}`);
      let cancelling: Promise<Response> | undefined;
      let runId = '';
      const cancel = () =>
        void (cancelling ??= fetch(`${cancelServerURL}/agents/${workload}/runs/${runId}/cancel`, {
          method: 'POST',
        }));
      let content = '';
      let events = 0;
      let last: { event: string; run_id: string; content?: string; status?: string } | undefined;
      let buffer = '';
      response.setEncoding('utf8');
      for await (const text of response as AsyncIterable<string>) {
        buffer += text;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame.indexOf('data: ');
          if (data < 0) continue; // a heartbeat
          last = JSON.parse(frame.slice(data + 6, frame.indexOf('\n', data) >>> 0)) as NonNullable<
            typeof last
          >;
          runId = last.run_id;
          if (last.event === 'RunContent') {
            content += last.content;
            events++;
            onContent?.(cancel);
          }
        }
      }
      if (cancelling && (await cancelling).status !== 200)
        throw new Error('the cancel route did not answer 200');
      return outcomeOf(last?.event, last?.status, content, events);
    },
    // One connection per run, open before the runs start: each of 1,000 clients has its connection,
    // as 1,000 users of the server would, and the runs all start at once. No request goes over it
    // before its run: the server's work per run is the run's (its accept included, within the
    // measurement), nothing more. Connecting in the batch instead measures Node 20's admission of new
    // connections: its libuv (1.45+) accepts one per event-loop turn, so a server busy streaming
    // takes them in at the pace of its turns and only ~125 of 1,000 runs stream at once.
    // In waves of at most 1,000: 10,000 SYNs at once overflow the kernel's queue of half-open
    // connections (`tcp_max_syn_backlog`, 2,048 here), and the dropped ones come back 1, 3, 7 s later.
    async connect(runs) {
      const port = Number(server.port);
      const open = () =>
        new Promise<Socket>((resolve, reject) => {
          const socket = connect(port, server.hostname, () => {
            // Its run's request reports what happens to it from then on.
            socket.off('error', reject).on('error', () => undefined);
            resolve(socket);
          });
          socket.once('error', reject);
        });
      for (let left = runs; left > 0; left -= CONNECT_WAVE) {
        opened.push(...(await Promise.all(Array.from({ length: Math.min(left, CONNECT_WAVE) }, open))));
      }
    },
    close: () => {
      for (const socket of opened.splice(0)) socket.destroy();
      agent.destroy();
      return Promise.resolve();
    },
  };
}

export const CLIENTS: Record<Kind, (options: ClientOptions) => Client> = {
  raw: rawClient,
  lean: leanClient,
  library: libraryClient,
  inspected: inspectedClient,
  http: httpClient,
  'http-pg': httpClient,
};

/** Runs a stream and cancels it at its first content; times taken on the shared monotonic clock. */
export async function cancelAtFirstContent(client: Client, workload: Workload, tag: string) {
  let cancelAt: bigint | undefined;
  const outcome = await client.run(workload, tag, (cancel) => {
    if (cancelAt !== undefined) return;
    cancelAt = monotonicNs();
    cancel();
  });
  if (cancelAt === undefined) throw new Error(`${tag} ended before its first content`);
  return { status: outcome.status, cancelAt, terminalAt: monotonicNs() };
}
