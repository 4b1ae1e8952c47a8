/**
 * Model-based tests, layer 3: the HTTP server, with an `OpenAIChat` agent whose upstream is the local
 * fake OpenAI server, over real sockets, and real tools held by the test. Every lifecycle path that a
 * client and an upstream can play (errors with and without retry-after, cancels by the API, by the
 * client going away and by a shutdown, tool calls streamed by the upstream that return, throw, time
 * out or are cancelled mid-call, pauses continued over `POST .../continue` or not) is replayed; the
 * model's turn after a tool round ends the run at once. At every step the run's machine state (read
 * through the inspection API), the SSE frames, the HTTP answers, the upstream socket and the tool's
 * signal must be what the path says. Only the run's timers are faked; the sockets are real.
 *
 * Every path runs in memory. On the durable backends (a PGlite data dir, and a PostgreSQL database
 * of this file with Redis and two instances) a covering subset runs: every transition of the paths
 * at least once. With two instances the run starts on the first; its cancels, follows,
 * record reads and continues go to the other (an instance that continues a paused run owns it from
 * then on: the roles swap). On every backend a follower (`GET .../events` with `Last-Event-ID`, then
 * `?after=` from each pause) must read the same frames and `seq` as the stream that started the run.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { matchesState, type InspectionEvent, type StateValue } from 'xstate';
import type { RunErrorData } from '../../machines/run-types.js';
import { Agent, createOrchestrator, OpenAIChat, type Orchestrator, type RunEvent } from '../../src/index.js';
import { createRedisCancelBus, createRedisEventBus } from '../../src/runtime/redis/create-redis-buses.js';
import { createSqlRunStore } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import type { SqlDatabase } from '../../src/runtime/sql/sql-database.js';
import type { CancelBus, EventBus, RunStore } from '../../src/runtime/storage.js';
import { createApp, startServer, type RunningServer } from '../../src/server/index.js';
import {
  checkRunEvents,
  createFakeOpenAIServer,
  getLifecyclePaths,
  type FakeOpenAIServer,
  type FakeRequest,
  type FakeResponse,
  type LifecycleAction,
  type LifecyclePath,
} from '../../src/testing/index.js';
import { createTempDir, createTestDatabase } from '../support/databases.js';
import { heldLifecycleTools, playOnHeldTool, toolFacts, toolWireEvents } from '../support/lifecycle-tools.js';
import { REDIS_URL, redisPrefix } from '../support/redis-server.js';

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

/** Every frame of a stream, to its end. */
async function allFrames(response: Response) {
  expect(response.status).toBe(200);
  const stream = frames(response);
  const all: Array<{ id: string; data: RunEvent }> = [];
  for (let frame = await stream.next(); frame; frame = await stream.next()) {
    expect(frame.event).toBe(frame.data.event);
    all.push({ id: frame.id, data: frame.data });
  }
  return all;
}

/** What one instance of a path is given: a store and buses (`undefined`: the orchestrator's, in memory). */
interface InstanceStorage {
  store?: RunStore | undefined;
  cancelBus?: CancelBus | undefined;
  eventBus?: EventBus | undefined;
}

/** Where the runs of a path are kept, and by how many instances. */
interface Backend {
  name: string;
  /** The storage of each instance serving one path (one, or two sharing a database and Redis). */
  instances(): InstanceStorage[];
}

/** An instance serving a path: its orchestrator behind its own server. */
interface Instance {
  orchestrator: Orchestrator;
  url: string;
  /** The writer agent's routes. */
  base: string;
}

let upstream: FakeOpenAIServer;
/** What a path opened, closed after it in reverse order (servers shut their orchestrators down). */
let opened: Array<() => Promise<void>> = [];
beforeEach(async () => {
  // Date too: the run's idle timer measures the silence from the last chunk's time.
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  upstream = await createFakeOpenAIServer();
});
afterEach(async () => {
  vi.useRealTimers();
  for (const close of opened.reverse()) await close();
  opened = [];
  await upstream.close();
});

async function replayOverHttp(path: LifecyclePath, backend: Backend) {
  const watcher = stateWatcher();
  const model = new OpenAIChat({ id: 'gpt-5-mini', baseURL: upstream.url, apiKey: 'test-key' });
  // Tools that ignore their signal: whatever they answer after a cancel or a timeout is dropped.
  // Every instance has the same agents (a continue restores a run on the instance it reaches).
  const held = heldLifecycleTools(path, false);
  const instances: Instance[] = [];
  for (const storage of backend.instances()) {
    const orchestrator = createOrchestrator({
      maxConcurrentRuns: 1,
      inspect: watcher.inspect,
      random: RANDOM,
      ...storage,
    });
    const agent = new Agent({ name: 'Writer', model, orchestrator, limits: path.limits, tools: held.tools });
    const blocker = new Agent({ name: 'Blocker', model, orchestrator });
    const server: RunningServer = await startServer(
      createApp({ agents: [agent, blocker], logger: { error: () => undefined } }),
      { port: 0, host: '127.0.0.1', graceMs: 100 },
    );
    opened.push(async () => {
      await server.close();
      await storage.store?.close();
    });
    instances.push({ orchestrator, url: server.url, base: `${server.url}/agents/writer` });
  }
  // The instance that runs the run, and the one its clients reach otherwise (the same with one).
  let owner = instances[0]!;
  let other = instances.at(-1)!;
  const post = (url: string, body: unknown, signal?: AbortSignal) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal,
    });

  // A run of another agent holds the owner's only slot, so the run under test is `pending` for real.
  upstream.enqueue({ fault: 'stall', chunks: 0 }, ...upstreamAnswers(path));
  const blockerStream = frames(await post(`${owner.url}/agents/blocker/runs`, { message: 'hold' }));
  await blockerStream.next();
  const blockerRequest = await upstream.nextRequest();

  // The client of the open stream: the run's, then each continue's.
  let client = new AbortController();
  const response = await post(`${owner.base}/runs`, { message: 'Write a story' }, client.signal);
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
  const record = await fetch(`${other.base}/runs/${runId}`);
  expect(await record.json()).toMatchObject({ run_id: runId, status: 'pending' });
  // Followers on the other instance: from here on (as a browser resumes), then from each pause. The
  // first one is following (its headers came) before the run goes on: one that came after the run
  // paused and went on would rightly read through that pause (it replays a pause the run has left).
  const firstFollower = await fetch(`${other.base}/runs/${runId}/events`, {
    headers: { 'last-event-id': '1' },
  });
  const followers = [allFrames(firstFollower)];

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
          const answer = await post(`${other.base}/runs/${runId}/cancel`, {});
          expect(answer.status, at).toBe(200);
          expect(await answer.json()).toEqual({ run_id: runId, status: 'cancelled' });
        } else if (action.reason === 'shutdown') {
          // The orchestrator behind the server shuts down (the server's own SIGTERM path is
          // tested in test/server/shutdown.test.ts): the open stream ends with RunCancelled.
          await owner.orchestrator.shutdown();
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
        // The paused run waits in the store: the instance that continues it runs it from now on.
        [owner, other] = [other, owner];
        const body = { tools: JSON.stringify(action.tools), stream: true };
        client = new AbortController();
        const answer = await post(`${owner.base}/runs/${runId}/continue`, body, client.signal);
        expect(answer.status, at).toBe(200);
        expect(answer.headers.get('content-type')).toMatch(/^text\/event-stream/);
        stream = frames(answer);
        streamEnded = false;
        // Continuing twice (on the other instance): the run is no longer paused.
        const again = await post(`${other.base}/runs/${runId}/continue`, body);
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
      // The followers' streams end here too; one from the pause follows what comes next.
      const paused = seen.at(-1)!;
      expect(paused.event, at).toBe('RunPaused');
      followers.push(fetch(`${other.base}/runs/${runId}/events?after=${paused.seq}`).then(allFrames));
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

  // Read where the run is not (or no longer) live: from the store on a durable backend.
  const output = await other.orchestrator.result(runId);
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
  for await (const event of await other.orchestrator.events(runId)) events.push(event);
  checkRunEvents(events, path.status);
  if (!disconnected) expect(events.slice(0, seen.length)).toEqual(seen);
  if (!disconnected && !streamEnded) expect(events).toEqual(seen);
  // The followers read every frame after the first, each once, as the owner's stream has them.
  const followed = (await Promise.all(followers)).flat();
  expect(followed.map((frame) => frame.id)).toEqual(events.slice(1).map((event) => String(event.seq)));
  expect(followed.map((frame) => frame.data)).toEqual(events.slice(1));
  expect(output.tools.map(toolFacts)).toEqual(path.output.tools.map(toolFacts));
  expect(held.calls).toHaveLength(toolsStarted);
  expect(upstream.requests).toHaveLength(path.modelRequests + 1);

  for (const instance of instances) {
    // Every instance reads the same record.
    const stored = await fetch(`${instance.base}/runs/${runId}`);
    expect(await stored.json()).toEqual(JSON.parse(JSON.stringify(output)));
    // The cancel contract after the end: 200 when cancelled, 409 with the status otherwise.
    const again = await post(`${instance.base}/runs/${runId}/cancel`, {});
    expect(again.status).toBe(path.status === 'cancelled' ? 200 : 409);
    expect(await again.json()).toMatchObject(
      path.status === 'cancelled'
        ? { run_id: runId, status: 'cancelled' }
        : { code: 'RUN_ALREADY_FINISHED', status: path.status },
    );
  }
  if (!blockerRequest.clientAborted && path.steps[0]!.action.type !== 'start') blockerRequest.finish();
}

const memory: Backend = { name: 'memory', instances: () => [{}] };

describe('HTTP server in memory: every lifecycle path a client and an upstream can play', () => {
  it.each(paths.map((path) => [path.name, path] as const))('%s', async (_name, path) => {
    await replayOverHttp(path, memory);
  });
});

/** What a step does, as far as the machine tells steps apart: its action and the variant that matters. */
function actionLabel(action: LifecycleAction): string {
  switch (action.type) {
    case 'cancel':
      return `cancel ${action.reason}`;
    case 'error':
      return `error ${action.error.status} ${action.error.retryAfterMs ?? ''}`;
    case 'wait':
      return `wait ${action.timer}`;
    case 'callTools':
      return `callTools ${action.calls.map((call) => call.name).join(',')}`;
    case 'continue':
      return `continue ${action.tools.map((tool) => tool.confirmed).join(',')}`;
    default:
      return action.type;
  }
}

/**
 * A covering subset of the paths: every transition they take (a state, what a step does in it, the
 * state it leads to) at least once, chosen greedily (the path with most transitions not yet covered
 * first). The durable backends store and signal what the memory run of every path checks; they need
 * every transition once, not every combination of them.
 */
function coveringPaths(all: readonly LifecyclePath[]): LifecyclePath[] {
  const transitions = all.map((path) => {
    let before = JSON.stringify('pending');
    const keys = new Set<string>();
    for (const step of path.steps) {
      const after = JSON.stringify(step.value);
      keys.add(`${before} ${actionLabel(step.action)} → ${after}`);
      before = after;
    }
    return keys;
  });
  const uncovered = new Set(transitions.flatMap((keys) => [...keys]));
  const chosen: LifecyclePath[] = [];
  while (uncovered.size > 0) {
    let best = 0;
    let bestCount = 0;
    transitions.forEach((keys, index) => {
      let count = 0;
      for (const key of keys) if (uncovered.has(key)) count++;
      if (count > bestCount) [best, bestCount] = [index, count];
    });
    for (const key of transitions[best]!) uncovered.delete(key);
    chosen.push(all[best]!);
  }
  return chosen;
}

/**
 * A shutdown while the run is paused leaves a durable store's parked run to the instances that
 * outlive this one (in memory it is cancelled, as the path says): that path is for memory only.
 */
const durablePaths = coveringPaths(
  paths.filter(
    (path) =>
      !path.steps.some(
        (step, i) =>
          step.action.type === 'cancel' &&
          step.action.reason === 'shutdown' &&
          path.steps[i - 1]?.status === 'paused',
      ),
  ),
);

/** A database shared by the paths of a backend: closing a path's store leaves it open. */
function shared(db: SqlDatabase): SqlDatabase {
  return {
    query: (text, params) => db.query(text, params),
    transaction: (fn) => db.transaction(fn),
    close: () => Promise.resolve(),
  };
}

interface DurableBackend {
  backend: Backend;
  setup(): Promise<void>;
  teardown(): Promise<void>;
}

/** One instance over a SQL database of this file. */
function sqlBackend(
  name: string,
  openDb: () => Promise<{ db: SqlDatabase; remove(): Promise<void> }>,
): DurableBackend {
  let database: { db: SqlDatabase; remove(): Promise<void> } | undefined;
  return {
    backend: { name, instances: () => [{ store: createSqlRunStore({ db: shared(database!.db) }) }] },
    setup: async () => {
      database = await openDb();
    },
    teardown: async () => {
      await database?.db.close();
      await database?.remove();
    },
  };
}

/** Two instances over one PostgreSQL database of this file and one Redis (a prefix of this file). */
function twoInstances(): DurableBackend {
  let database: { db: SqlDatabase; remove(): Promise<void> } | undefined;
  const buses: Array<{ cancelBus: CancelBus; eventBus: EventBus }> = [];
  return {
    backend: {
      name: 'PostgreSQL + Redis, two instances',
      instances: () =>
        buses.map((bus) => ({ store: createSqlRunStore({ db: shared(database!.db) }), ...bus })),
    },
    async setup() {
      const created = await createTestDatabase();
      database = { db: await openSqlDatabase({ databaseUrl: created.url }), remove: () => created.drop() };
      const prefix = redisPrefix();
      for (let i = 0; i < 2; i++) {
        const cancelBus = await createRedisCancelBus({ url: REDIS_URL, prefix });
        // Subscribed for the whole file: an orchestrator of a path then listens from its creation on
        // (its own subscription only adds a listener), not once Redis confirmed it.
        await cancelBus.subscribe(() => undefined);
        buses.push({ cancelBus, eventBus: await createRedisEventBus({ url: REDIS_URL, prefix }) });
      }
    },
    async teardown() {
      for (const bus of buses.splice(0)) await Promise.all([bus.cancelBus.close(), bus.eventBus.close()]);
      await database?.db.close();
      await database?.remove();
    },
  };
}

/**
 * PGlite, and PostgreSQL with two instances: one instance alone on PostgreSQL runs the same SQL as
 * PGlite, and its owner's side is what the first of two instances does (the orchestrator layer runs
 * it alone, in runtime.model.test.ts).
 */
const durable: DurableBackend[] = [
  sqlBackend('PGlite', async () => {
    const dir = await createTempDir('runstate-http-model-');
    return { db: await openSqlDatabase({ dataDir: dir.path }), remove: () => dir.remove() };
  }),
  twoInstances(),
];

describe.each(durable)('HTTP server over $backend.name: paths covering every transition', (durable) => {
  beforeAll(() => durable.setup(), 60_000);
  afterAll(() => durable.teardown(), 30_000);
  it.each(durablePaths.map((path) => [path.name, path] as const))('%s', async (_name, path) => {
    await replayOverHttp(path, durable.backend);
  });
});
