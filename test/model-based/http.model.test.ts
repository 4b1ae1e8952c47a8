/**
 * Model-based tests, layer 3: the HTTP server, with an `OpenAIChat` agent whose upstream is the local
 * fake OpenAI server, over real sockets, and real tools held by the test. Every lifecycle path that a
 * client and an upstream can play (errors with and without retry-after, cancels by the API, by the
 * client going away and by a shutdown, tool calls streamed by the upstream that return, throw, time
 * out or are cancelled mid-call, pauses continued over `POST .../continue` or not) is replayed; the
 * model's turn after a tool round ends the run at once. At every step the run's machine state (read
 * through the inspection API), the SSE frames, the HTTP answers, the upstream socket and the tool's
 * signal must be what the path says. Only the run's timers are faked; the sockets are real.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { matchesState, type InspectionEvent, type StateValue } from 'xstate';
import type { RunErrorData } from '../../machines/run-types.js';
import { Agent, createOrchestrator, OpenAIChat, type RunEvent } from '../../src/index.js';
import { createApp, startServer, type RunningServer } from '../../src/server/index.js';
import {
  checkRunEvents,
  createFakeOpenAIServer,
  getLifecyclePaths,
  type FakeOpenAIServer,
  type FakeRequest,
  type FakeResponse,
  type LifecyclePath,
} from '../../src/testing/index.js';
import { heldLifecycleTools, playOnHeldTool, toolFacts, toolWireEvents } from '../support/lifecycle-tools.js';

const ERRORS: RunErrorData[] = [
  { code: 'MODEL_REQUEST_FAILED', message: 'upstream busy', status: 503, retryable: true, retryAfterMs: 20 },
  // No retry-after: the machine's own capped, jittered backoff (jitter fixed by RANDOM).
  { code: 'MODEL_REQUEST_FAILED', message: 'bad gateway', status: 502, retryable: true },
  { code: 'MODEL_REQUEST_FAILED', message: 'bad request', status: 400, retryable: false },
];
const RANDOM = () => 0.5;
const paths = getLifecyclePaths({
  errors: ERRORS,
  random: RANDOM,
  cancelReasons: ['api', 'client_disconnect', 'shutdown'],
  turnAfterTools: 'final',
}).filter(
  // A paused run has no stream open: no client can go away from it.
  (path) =>
    !path.steps.some(
      (step, i) =>
        step.action.type === 'cancel' &&
        step.action.reason === 'client_disconnect' &&
        path.steps[i - 1]?.status === 'paused',
    ),
);

/** The run's machine state, as the inspection API reports it: a step is over when its state is reached. */
function stateWatcher() {
  const values = new Map<string, StateValue>();
  let waiters: Array<() => void> = [];
  return {
    inspect: (event: InspectionEvent) => {
      if (event.type !== '@xstate.snapshot') return;
      const snapshot = event.snapshot as { value?: StateValue; context?: { runId?: unknown } };
      const runId = snapshot.context?.runId;
      if (typeof runId !== 'string' || snapshot.value === undefined) return;
      values.set(runId, snapshot.value);
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake();
    },
    value: (runId: string) => values.get(runId),
    async reached(runId: string, value: StateValue): Promise<void> {
      for (;;) {
        const current = values.get(runId);
        if (current !== undefined && JSON.stringify(current) === JSON.stringify(value)) return;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

/** SSE frames of a response, parsed as they arrive; `: ping` comments are skipped. */
function frames(response: Response) {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  const next = async (): Promise<{ id: string; event: string; data: RunEvent } | undefined> => {
    for (;;) {
      const end = buffer.indexOf('\n\n');
      if (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const fields = new Map(
          block
            .split('\n')
            .filter((line) => !line.startsWith(':'))
            .map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trimStart()]),
        );
        if (!fields.has('data')) continue;
        const data = JSON.parse(fields.get('data')!) as RunEvent;
        return { id: fields.get('id')!, event: fields.get('event')!, data };
      }
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
      if (done) return undefined;
      buffer += value;
    }
  };
  return { next };
}

/** What the upstream answers to each model request of a path, decided when the request arrives. */
function upstreamAnswers(path: LifecyclePath): FakeResponse[] {
  const answers: FakeResponse[] = [];
  path.steps.forEach((step, index) => {
    if (!step.requestsModel) return;
    const action = path.steps[index + 1]?.action;
    // An error before any output is an HTTP error status; everything else is a held stream the test drives.
    if (action?.type === 'error') {
      const { status = 500, message, retryAfterMs } = action.error;
      answers.push({
        fault: 'status',
        status,
        message,
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      });
    } else {
      answers.push({ fault: 'stall', chunks: 0 });
    }
  });
  return answers;
}

let upstream: FakeOpenAIServer;
let server: RunningServer | undefined;
beforeEach(async () => {
  // Date too: the run's idle timer measures the silence from the last chunk's time.
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  upstream = await createFakeOpenAIServer();
});
afterEach(async () => {
  vi.useRealTimers();
  await server?.close();
  server = undefined;
  await upstream.close();
});

async function replayOverHttp(path: LifecyclePath) {
  const watcher = stateWatcher();
  const orchestrator = createOrchestrator({ maxConcurrentRuns: 1, inspect: watcher.inspect, random: RANDOM });
  const model = new OpenAIChat({ id: 'gpt-5-mini', baseURL: upstream.url, apiKey: 'test-key' });
  // Tools that ignore their signal: whatever they answer after a cancel or a timeout is dropped.
  const held = heldLifecycleTools(path, false);
  const agent = new Agent({ name: 'Writer', model, orchestrator, limits: path.limits, tools: held.tools });
  const blocker = new Agent({ name: 'Blocker', model, orchestrator });
  server = await startServer(createApp({ agents: [agent, blocker], logger: { error: () => undefined } }), {
    port: 0,
    host: '127.0.0.1',
    graceMs: 100,
  });
  const base = `${server.url}/agents/writer`;
  const post = (url: string, body: unknown, signal?: AbortSignal) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal,
    });

  // A run of another agent holds the only slot, so the run under test is `pending` for real.
  upstream.enqueue({ fault: 'stall', chunks: 0 }, ...upstreamAnswers(path));
  const blockerStream = frames(await post(`${server.url}/agents/blocker/runs`, { message: 'hold' }));
  await blockerStream.next();
  const blockerRequest = await upstream.nextRequest();

  // The client of the open stream: the run's, then each continue's.
  let client = new AbortController();
  const response = await post(`${base}/runs`, { message: 'Write a story' }, client.signal);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  let stream = frames(response);
  const seen: RunEvent[] = [];
  const read = async () => {
    const frame = await stream.next();
    expect(frame).toBeDefined();
    expect(frame!.event).toBe(frame!.data.event);
    expect(frame!.id).toBe(String(frame!.data.seq));
    seen.push(frame!.data);
    return frame!.data;
  };
  const { run_id: runId } = await read();
  expect(seen[0]).toMatchObject({ event: 'RunStarted', seq: 1 });
  const record = await fetch(`${base}/runs/${runId}`);
  expect(await record.json()).toMatchObject({ run_id: runId, status: 'pending' });

  let request: FakeRequest | undefined;
  let disconnected = false;
  /** The stream ended at a pause: what follows goes to the next continue's stream, or to nobody. */
  let streamEnded = false;
  let toolsStarted = 0;
  for (const [index, step] of path.steps.entries()) {
    const at = `step ${index + 1} (${step.action.type})`;
    const { action } = step;
    const upcoming = path.steps[index + 1]?.action;
    // When the upstream answers a request with an error status, this step and the error are one.
    const answeredAtOnce = step.requestsModel && upcoming?.type === 'error';
    switch (action.type) {
      case 'start':
        blockerRequest.finish();
        break;
      case 'chunk':
        request!.send(action.delta);
        break;
      case 'end':
        request!.finish(action.finishReason);
        break;
      case 'error':
        // Before any output the upstream already answered with the error's status; after output,
        // the stream breaks (the socket drops), which is how an HTTP stream fails midway.
        if (request!.response.fault !== 'status') request!.reset();
        break;
      case 'cancel':
        if (action.reason === 'api') {
          const answer = await post(`${base}/runs/${runId}/cancel`, {});
          expect(answer.status, at).toBe(200);
          expect(await answer.json()).toEqual({ run_id: runId, status: 'cancelled' });
        } else if (action.reason === 'shutdown') {
          // The orchestrator behind the server shuts down (the server's own SIGTERM path is
          // tested in test/server/shutdown.test.ts): the open stream ends with RunCancelled.
          await orchestrator.shutdown();
        } else {
          client.abort();
          disconnected = true;
        }
        break;
      case 'wait': {
        const before = watcher.value(runId);
        await vi.advanceTimersByTimeAsync(action.ms - 1);
        expect(watcher.value(runId), `${at}: a timer fired early`).toEqual(before);
        await vi.advanceTimersByTimeAsync(1);
        break;
      }
      case 'crash':
        throw new Error('crash paths are not generated here');
      case 'callTools':
        request!.sendToolCalls(
          action.calls.map((call, index) => ({
            index,
            id: call.id,
            type: 'function',
            function: { name: call.name, arguments: call.arguments },
          })),
        );
        request!.finish('tool_calls');
        break;
      case 'toolStarted':
        // The runtime starts a queued call by itself.
        expect((await held.started(++toolsStarted)).toolCallId, at).toBe(action.toolCallId);
        break;
      case 'toolDone':
      case 'toolThrew':
        playOnHeldTool(held.calls, action);
        break;
      case 'toolTimeout': {
        const before = watcher.value(runId);
        await vi.advanceTimersByTimeAsync(action.ms - 1);
        expect(watcher.value(runId), `${at}: the tool timed out early`).toEqual(before);
        expect(held.calls.at(-1)!.signal.aborted, at).toBe(false);
        await vi.advanceTimersByTimeAsync(1);
        break;
      }
      case 'continue': {
        const body = { tools: JSON.stringify(action.tools), stream: true };
        client = new AbortController();
        const answer = await post(`${base}/runs/${runId}/continue`, body, client.signal);
        expect(answer.status, at).toBe(200);
        expect(answer.headers.get('content-type')).toMatch(/^text\/event-stream/);
        stream = frames(answer);
        streamEnded = false;
        // Continuing twice: the run is no longer paused.
        const again = await post(`${base}/runs/${runId}/continue`, body);
        expect(again.status, `${at}: second continue`).toBe(409);
        expect(await again.json()).toMatchObject({ code: 'RUN_NOT_PAUSED' });
        break;
      }
    }
    if (step.requestsModel) request = await upstream.nextRequest();
    if (!answeredAtOnce) await watcher.reached(runId, step.value);
    if (step.abortsModel) {
      await request!.closed;
      expect(request!.clientAborted, `${at}: upstream request aborted`).toBe(true);
    }
    if (step.abortsTools) {
      const call = held.calls.at(-1)!;
      expect(call.signal.aborted, `${at}: tool signal aborted`).toBe(true);
      // It ignores its signal and answers late: dropped.
      call.resolve('a late result');
    }
    if (disconnected || streamEnded) continue;
    for (const delta of step.emitted)
      expect(await read(), at).toMatchObject({ event: 'RunContent', content: delta });
    for (const expected of toolWireEvents(step)) {
      const event = await read();
      expect(event.event, at).toBe(expected.event);
      const tools = 'tool' in event ? [event.tool] : 'tools' in event ? event.tools : [];
      expect(tools.map(toolFacts), at).toEqual(expected.tools.map(toolFacts));
    }
    if (matchesState('paused', step.value)) {
      expect(await stream.next(), `${at}: the stream ends at the pause`).toBeUndefined();
      streamEnded = true;
    }
    if (
      matchesState('completed', step.value) ||
      matchesState('cancelled', step.value) ||
      matchesState('failed', step.value)
    ) {
      expect(await read(), at).toMatchObject({
        event: { completed: 'RunCompleted', cancelled: 'RunCancelled', failed: 'RunError' }[path.status],
        ...(path.output.cancelReason === null ? {} : { reason: path.output.cancelReason }),
      });
      expect(await stream.next(), `${at}: the stream ends after the terminal event`).toBeUndefined();
    }
  }

  const output = await orchestrator.result(runId);
  expect(output.status).toBe(path.status);
  expect(output.content).toBe(path.output.content);
  expect(output.cancel_reason).toBe(path.output.cancelReason);
  if (path.status === 'failed') {
    const last = path.steps.at(-1)!.action;
    // A stream that breaks after output fails as MODEL_STREAM_INCOMPLETE; the other errors keep their code and status.
    const broke = last.type === 'error' && request!.response.fault !== 'status';
    expect(output.error?.code).toBe(broke ? 'MODEL_STREAM_INCOMPLETE' : path.output.error!.code);
    if (!broke && path.output.error?.status !== undefined)
      expect(output.error?.status).toBe(path.output.error.status);
  }
  if (path.status === 'completed') expect(request!.clientAborted).toBe(false);
  const events: RunEvent[] = [];
  for await (const event of await orchestrator.events(runId)) events.push(event);
  checkRunEvents(events, path.status);
  if (!disconnected) expect(events.slice(0, seen.length)).toEqual(seen);
  if (!disconnected && !streamEnded) expect(events).toEqual(seen);
  expect(output.tools.map(toolFacts)).toEqual(path.output.tools.map(toolFacts));
  expect(held.calls).toHaveLength(toolsStarted);
  expect(upstream.requests).toHaveLength(path.modelRequests + 1);

  // The cancel contract after the end: 200 when cancelled, 409 with the status otherwise.
  const again = await post(`${base}/runs/${runId}/cancel`, {});
  expect(again.status).toBe(path.status === 'cancelled' ? 200 : 409);
  expect(await again.json()).toMatchObject(
    path.status === 'cancelled' ? { run_id: runId, status: 'cancelled' } : { code: 'RUN_ALREADY_FINISHED' },
  );
  if (!blockerRequest.clientAborted && path.steps[0]!.action.type !== 'start') blockerRequest.finish();
}

describe('HTTP server: every lifecycle path a client and an upstream can play', () => {
  it.each(paths.map((path) => [path.name, path] as const))('%s', async (_name, path) => {
    await replayOverHttp(path);
  });
});
