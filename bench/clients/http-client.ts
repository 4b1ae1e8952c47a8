import { agentIdOf } from '../bench-config.js';
import { monotonicNs } from '../worker-process.js';
import type { BenchClient, BenchClientOptions, RunOutcome } from './bench-client.js';

/** The fields of a run event this client reads. */
interface WireEvent {
  event: string;
  run_id?: string;
  content?: string;
  status?: string;
}

const TERMINAL = new Set(['RunCompleted', 'RunCancelled', 'RunError']);

/**
 * Reads the JSON of every SSE frame of a response body as it arrives. Minimal on purpose (one
 * `data:` line per frame, which is what the runstate server sends): the client must cost little,
 * the server is what is measured.
 */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<WireEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const bytes of body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.indexOf('data: ');
      if (data < 0) continue; // a comment (heartbeat)
      const lineEnd = frame.indexOf('\n', data);
      yield JSON.parse(frame.slice(data + 6, lineEnd < 0 ? undefined : lineEnd)) as WireEvent;
    }
  }
}

/**
 * runstate over HTTP: `POST /agents/:agent_id/runs` with `stream=true`, the SSE stream read with
 * `fetch`; cancel through `POST /agents/:agent_id/runs/:run_id/cancel`. The server runs in its own
 * process (`bench/runstate-server-main.ts`), with one agent per workload.
 */
export function createHttpClient({ serverURL }: BenchClientOptions): BenchClient {
  if (!serverURL) throw new Error('the HTTP client needs serverURL');
  const base = serverURL.replace(/\/$/, '');

  async function start(agentId: string, tag: string): Promise<ReadableStream<Uint8Array>> {
    const response = await fetch(`${base}/agents/${agentId}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: tag, stream: true }),
    });
    if (!response.ok || !response.body) {
      throw new Error(`POST /agents/${agentId}/runs: ${response.status} ${await response.text()}`);
    }
    return response.body;
  }

  return {
    async run(workload, tag, onFirstChunk) {
      let content = '';
      let chunks = 0;
      let terminal: WireEvent | undefined;
      for await (const event of sseEvents(await start(agentIdOf(workload), tag))) {
        if (event.event === 'RunContent') {
          content += event.content ?? '';
          if (++chunks === 1) onFirstChunk?.();
        } else if (TERMINAL.has(event.event)) {
          terminal = event;
        }
      }
      if (!terminal) {
        const error = `the event stream ended without a terminal event, after ${chunks} chunks`;
        return { status: 'failed', chunks, length: content.length, error };
      }
      const status = terminal.status as RunOutcome['status'];
      const error = status === 'failed' ? `${terminal.event}: ${terminal.content}` : undefined;
      return { status, chunks, length: content.length, error };
    },
    async cancelAfterFirstChunk(workload, tag) {
      const agentId = agentIdOf(workload);
      let runId: string | undefined;
      let cancelAt: bigint | undefined;
      let cancelling: Promise<Response> | undefined;
      let status: RunOutcome['status'] = 'failed';
      for await (const event of sseEvents(await start(agentId, tag))) {
        runId ??= event.run_id;
        if (event.event === 'RunContent' && cancelAt === undefined) {
          cancelAt = monotonicNs();
          cancelling = fetch(`${base}/agents/${agentId}/runs/${runId}/cancel`, { method: 'POST' });
        } else if (TERMINAL.has(event.event)) {
          status = event.status as RunOutcome['status'];
        }
      }
      const terminalAt = monotonicNs();
      if (cancelAt === undefined || !cancelling) throw new Error(`run ${tag} ended before its first chunk`);
      const answer = await cancelling;
      if (answer.status !== 200)
        throw new Error(`cancel route answered ${answer.status}: ${await answer.text()}`);
      return { status, cancelAt, terminalAt };
    },
    close: () => Promise.resolve(),
  };
}
