/**
 * Model-based tests, layer 2: the orchestrator and the Agent, with the controllable fake model and
 * real tools held by the test. Every lifecycle path of the run machine (tool calls and pauses
 * included; the model's turn after a tool round ends the run at once) is played through the public
 * API (a concurrency slot held by another run makes `pending` real; `wait` and `toolTimeout` steps
 * advance fake timers), and at every step the run's status, content, events, model requests, model
 * and tool signals must be what the path says.
 *
 * The same paths run over the durable stores too (a PGlite data dir and a PostgreSQL database of this
 * file): a fixed-seed sample of them, on the orchestrator, where what a client reads back once the
 * run is stored (record, events replayed, session) must equal what it saw live.
 *
 * The paths come from the machine itself: each step's status and model requests, and the run's end,
 * are also checked against an oracle written from the documented rules
 * (test/support/lifecycle-oracle.ts).
 */
import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { Agent } from '../../src/agent.js';
import {
  createOrchestrator,
  type Orchestrator,
  type RunEvent,
  type RunOutput,
  type RunStore,
} from '../../src/runtime/index.js';
import { createSqlRunStore } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import type { SqlDatabase } from '../../src/runtime/sql/sql-database.js';
import {
  checkRunEvents,
  createFakeModel,
  getLifecyclePaths,
  type LifecyclePath,
  type LifecycleStep,
} from '../../src/testing/index.js';
import type { CancelReason, ToolConfirmation } from '../../machines/run-types.js';
import type { RunMachineEvent } from '../../machines/run.machine.js';
import {
  actorTracker,
  counterIds,
  expectedEventNames,
  FAKE_TIMERS,
  MACHINE_ERRORS,
  playOnFakeModel,
  pull,
  RANDOM,
  settle,
  TERMINAL_EVENT,
} from '../support/runs.js';
import { collect } from '../support/collect.js';
import { createTempDir, createTestDatabase } from '../support/databases.js';
import {
  endsRound,
  heldLifecycleTools,
  playOnHeldTool,
  toolFacts,
  toolWireEvents,
} from '../support/lifecycle-tools.js';
import { lifecycleOracle } from '../support/lifecycle-oracle.js';

const paths = getLifecyclePaths({ errors: MACHINE_ERRORS, random: RANDOM, turnAfterTools: 'final' });

type Layer = 'orchestrator' | 'agent';

interface Subject {
  runId: string;
  sessionId: string;
  /** The run's events as its consumer reads them; a continue gives a new stream. */
  events: AsyncIterator<RunEvent>;
  result: Promise<RunOutput>;
  /** Cancels as the layer's user would; `undefined` when that way of cancelling gives no answer. */
  cancel(reason: CancelReason): Promise<boolean | undefined>;
  /** Cancel again after the end: must be refused. */
  cancelAgain(): boolean;
  /** Answers the paused calls; the events from `RunContinued` on. */
  continue(tools: ToolConfirmation[]): Promise<AsyncIterator<RunEvent>>;
}

/** Where the runs of a test are stored. */
interface Backend {
  name: string;
  /** A store for one path (sharing the file's database), and how to let go of it. */
  open(): Promise<{ store: RunStore | undefined; close(): Promise<void> }>;
}

beforeEach(() => {
  vi.useFakeTimers({ ...FAKE_TIMERS, toFake: [...FAKE_TIMERS.toFake] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** Starts the run under test on a layer, behind a run that holds the only concurrency slot. */
function startSubject(layer: Layer, orchestrator: Orchestrator, path: LifecyclePath) {
  const model = createFakeModel();
  const blockerModel = createFakeModel({ id: 'blocker-model' });
  // The orchestrator's tool honours its signal; the Agent's ignores it (and answers late).
  const held = heldLifecycleTools(path, layer === 'orchestrator');
  let blocker: Promise<unknown>; // only awaited: it ends
  let subject: Subject;
  let shutdown: Promise<void> | undefined;
  // Shutting down cancels synchronously, then resolves when every run is final.
  const shutDown = () => {
    shutdown = orchestrator.shutdown();
    return undefined;
  };
  if (layer === 'orchestrator') {
    blocker = orchestrator.startRun({
      agentId: 'blocker',
      agentName: 'Blocker',
      model: blockerModel,
      input: 'hold',
    }).result;
    const run = orchestrator.startRun({
      agentId: 'writer',
      agentName: 'Writer',
      model,
      input: 'hello',
      limits: path.limits,
      tools: held.tools,
    });
    subject = {
      runId: run.runId,
      sessionId: run.sessionId,
      events: run.events()[Symbol.asyncIterator](),
      result: run.result,
      cancel: (reason) =>
        Promise.resolve(reason === 'shutdown' ? shutDown() : orchestrator.cancelRun(run.runId, reason)),
      cancelAgain: () => orchestrator.cancelRun(run.runId, 'api'),
      continue: async (tools) => {
        const request = {
          agentId: 'writer',
          agentName: 'Writer',
          model,
          limits: path.limits,
          tools: held.tools,
        };
        return (await orchestrator.continueRun(run.runId, tools, request)).events()[Symbol.asyncIterator]();
      },
    };
  } else {
    blocker = new Agent({ name: 'Blocker', model: blockerModel, orchestrator }).run('hold');
    const agent = new Agent({ name: 'Writer', model, orchestrator, limits: path.limits, tools: held.tools });
    const stream = agent.run('hello', { stream: true });
    subject = {
      runId: stream.runId,
      sessionId: stream.sessionId,
      events: stream[Symbol.asyncIterator](),
      result: stream.result,
      async cancel(reason) {
        switch (reason) {
          case 'code':
            return agent.cancelRun(stream.runId);
          case 'api': // what the HTTP cancel route does
            return orchestrator.cancelRun(stream.runId, 'api');
          case 'client_disconnect': // the reader leaves the `for await` loop
            await subject.events.return!(undefined);
            return undefined;
          case 'shutdown':
            return shutDown();
        }
      },
      cancelAgain: () => agent.cancelRun(stream.runId),
      continue: async (tools) =>
        (await agent.continueRun(stream.runId, { tools, stream: true }))[Symbol.asyncIterator](),
    };
  }
  return { model, blockerModel, blocker, subject, held, shutdown: () => shutdown, shutDownNow: shutDown };
}

async function replayOnRuntime(path: LifecyclePath, layer: Layer, backend: Backend, ids: () => string) {
  const oracle = lifecycleOracle(path.steps, path.limits);
  const tracker = actorTracker();
  const opened = await backend.open();
  const { store } = opened;
  const orchestrator = createOrchestrator({
    maxConcurrentRuns: 1,
    idGenerator: ids,
    random: RANDOM,
    inspect: tracker.inspect,
    store,
  });
  const { model, blockerModel, blocker, subject, held, shutdown, shutDownNow } = startSubject(
    layer,
    orchestrator,
    path,
  );
  const { runId } = subject;
  const blockerCall = await blockerModel.nextCall();
  const read: RunEvent[] = [await pull(subject.events)];
  expect(read[0]).toMatchObject({ event: 'RunStarted', seq: 1, model: 'fake-model' });
  expect((await orchestrator.getRun(runId))?.status).toBe('pending');
  let disconnected = false;
  /** The consumer's stream ended at a pause: what follows is read by the next continue's stream, or by nobody. */
  let streamEnded = false;

  const check = async (step: LifecycleStep, at: string, requests: number, index: number) => {
    const record = (await orchestrator.getRun(runId))!;
    expect(record.status, `${at}: the oracle's status`).toBe(oracle.steps[index]!.status);
    expect(model.calls.length, `${at}: the oracle's model requests`).toBe(oracle.steps[index]!.attempts);
    expect(record.status, at).toBe(step.status);
    expect(record.content, at).toBe(step.content);
    expect(model.calls.length, `${at}: model requests`).toBe(requests);
  };
  /** The run's tool call that runs now (or ran last), and whether its signal must be aborted. */
  const toolCall = () => held.calls.at(-1);

  let requests = 0;
  let toolsStarted = 0;
  let roundsEnded = 0;
  for (const [index, step] of path.steps.entries()) {
    const at = `step ${index + 1} (${step.action.type})`;
    const call = model.calls.at(-1);
    const { action } = step;
    if (action.type === 'start') {
      blockerCall.end();
    } else if (action.type === 'cancel' && path.steps[index - 1]?.status === 'paused') {
      // A paused run waits in the store, owned by nobody: a cancel takes it back from there.
      if (action.reason === 'shutdown') {
        shutDownNow();
        await shutdown();
      } else {
        const output = await orchestrator.requestCancel(runId, action.reason);
        expect(output.status, at).toBe('cancelled');
      }
      expect((await orchestrator.getRun(runId))?.status, at).toBe('cancelled');
    } else if (action.type === 'cancel') {
      const answer = await subject.cancel(action.reason);
      if (answer !== undefined) expect(answer, `${at}: cancelRun answer`).toBe(true);
      // The transition and the aborts happen in the call itself, before anything else runs.
      expect((await orchestrator.getRun(runId))?.status, at).toBe('cancelled');
      if (step.abortsModel) expect(call!.signal.aborted, `${at}: model signal aborted`).toBe(true);
      if (step.abortsTools) expect(toolCall()!.signal.aborted, `${at}: tool signal aborted`).toBe(true);
      disconnected = action.reason === 'client_disconnect' && layer === 'agent';
    } else if (action.type === 'wait' || action.type === 'toolTimeout') {
      const before = { ...(await orchestrator.getRun(runId))! };
      await vi.advanceTimersByTimeAsync(action.ms - 1);
      await settle();
      expect(await orchestrator.getRun(runId), `${at}: a timer fired early`).toEqual(before);
      expect(model.calls.length, `${at}: a retry started early`).toBe(requests);
      if (action.type === 'toolTimeout') expect(toolCall()!.signal.aborted, at).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      // A pause that runs out takes the run back from the store to fail it (a real read on a durable one).
      if (path.steps[index - 1]?.status === 'paused') await subject.result;
    } else if (action.type === 'callTools') {
      expect(call!.signal.aborted, `${at}: signal aborted before the model ended`).toBe(false);
      const { usage } = step.event as Extract<RunMachineEvent, { type: 'DONE' }>;
      call!.callTools(
        action.calls.map(({ id, name, arguments: args }) => ({ id, name, arguments: args })),
        { usage },
      );
    } else if (action.type === 'toolStarted') {
      // The runtime starts a queued call by itself: nothing to do but see it start.
    } else if (action.type === 'continue') {
      subject.events = await subject.continue(action.tools);
      streamEnded = false;
      // Continuing twice: the run is no longer paused.
      await expect(subject.continue(action.tools), `${at}: second continue`).rejects.toMatchObject({
        code: 'RUN_NOT_PAUSED',
      });
    } else if (!playOnHeldTool(held.calls, action)) {
      // The model acts on a request the run still wants.
      expect(call!.signal.aborted, `${at}: signal aborted before the model ended`).toBe(false);
      expect(playOnFakeModel(call!, action)).toBe(true);
    }
    await settle();
    if (step.requestsModel) {
      requests++;
      // A durable store records the run before its first request: that takes more than a turn.
      await model.nextCall();
    }
    if (action.type === 'toolStarted') {
      toolsStarted++;
      expect(held.calls.length, `${at}: tool calls started`).toBe(toolsStarted);
      expect(toolCall()!.toolCallId).toBe(action.toolCallId);
      expect(toolCall()!.signal.aborted, at).toBe(false);
    }
    await check(step, at, requests, index);
    const latest = model.calls.at(-1);
    if (step.abortsModel) expect(latest!.signal.aborted, `${at}: model signal aborted`).toBe(true);
    if (step.abortsTools) expect(toolCall()!.signal.aborted, `${at}: tool signal aborted`).toBe(true);
    if (step.status === 'streaming' && step.requestsModel) expect(latest!.signal.aborted, at).toBe(false);
    if (step.status === 'streaming' && action.type === 'chunk')
      expect(latest!.signal.aborted, at).toBe(false);
    // The request after a round carries the assistant's calls and one result per call, of this
    // round and those before it.
    if (endsRound(step)) {
      const transcript = roundsUpTo(path.output.transcript, ++roundsEnded);
      expect(latest!.messages, at).toEqual([{ role: 'user', content: 'hello' }, ...transcript]);
    }
    if (!disconnected && !streamEnded) {
      for (const delta of step.emitted) {
        const event = await pull(subject.events);
        expect(event, at).toMatchObject({ event: 'RunContent', content: delta });
        read.push(event);
      }
      for (const expected of toolWireEvents(step)) {
        // A RunPaused is shown once the store has the paused run (a real write on a durable store).
        const event =
          expected.event === 'RunPaused'
            ? ((await subject.events.next()).value as RunEvent)
            : await pull(subject.events);
        expect(event.event, at).toBe(expected.event);
        const tools = 'tool' in event ? [event.tool] : 'tools' in event ? event.tools : [];
        expect(tools.map(toolFacts), at).toEqual(expected.tools.map(toolFacts));
        read.push(event);
      }
      // A stream ends at a pause (a continue streams on) and after the terminal event.
      if (step.status === 'paused') {
        expect(await subject.events.next(), at).toMatchObject({ done: true });
        streamEnded = true;
      }
      if (step.status !== 'streaming' && step.status !== 'pending' && step.status !== 'paused') {
        const terminal = await pull(subject.events);
        expect(terminal.event, at).toBe(TERMINAL_EVENT[path.status]);
        read.push(terminal);
      }
    }
    // A tool that ignores its signal answers late: dropped, it changes nothing.
    if (step.abortsTools && layer === 'agent') {
      const before = await orchestrator.getRun(runId);
      toolCall()!.resolve('a late result');
      await settle();
      expect(await orchestrator.getRun(runId), `${at}: a late tool result`).toEqual(before);
    }
  }

  // The consumer's stream ends after the terminal event.
  if (!disconnected && !streamEnded) expect(await subject.events.next()).toMatchObject({ done: true });
  await shutdown();
  const output = await subject.result;
  expect(output).toMatchObject({
    status: path.status,
    content: path.output.content,
    error: path.output.error,
    cancel_reason: path.output.cancelReason,
    metrics: path.output.metrics,
  });
  expect(output.tools.map(toolFacts)).toEqual(path.output.tools.map(toolFacts));
  const { end } = oracle;
  expect(output, 'the oracle').toMatchObject({
    status: end.status,
    content: end.content,
    cancel_reason: end.cancelReason,
    finish_reason: end.finishReason,
    metrics: { ...end.usage, duration: end.duration },
  });
  if (end.error === null) expect(output.error, 'the oracle').toBeNull();
  else expect(output.error, 'the oracle').toMatchObject(end.error);
  expect(
    output.tools.map(({ tool_call_id, status, result }) => ({ tool_call_id, status, result })),
    'the oracle',
  ).toEqual(end.tools);
  // No tool ran but those the path started, and no request after the end.
  expect(held.calls).toHaveLength(toolsStarted);
  const all = await collect(await orchestrator.events(runId));
  checkRunEvents(all, path.status);
  expect(all.map((event) => event.event)).toEqual(expectedEventNames(path));
  expect(all.slice(0, read.length)).toEqual(read);
  const terminal = all.at(-1)!;
  if (terminal.event === 'RunCancelled') expect(terminal.reason).toBe(path.output.cancelReason);
  if (terminal.event === 'RunError') {
    expect(terminal).toMatchObject({ code: path.output.error!.code, content: path.output.error!.message });
  }
  if (terminal.event === 'RunCompleted') {
    expect(terminal.metrics).toEqual(path.output.metrics);
    expect(terminal.tools).toEqual(output.tools);
  }
  // What a client reads back once the run is stored is what it saw live.
  expect(await orchestrator.getRun(runId)).toEqual(output);
  expect((await orchestrator.sessionRuns(subject.sessionId)).map((run) => run.run_id)).toEqual([runId]);
  expect(await orchestrator.getSession(subject.sessionId)).toMatchObject({ session_id: subject.sessionId });

  // Repeated cancel: refused, nothing changes.
  expect(subject.cancelAgain()).toBe(false);
  expect((await orchestrator.getRun(runId))?.status).toBe(path.status);
  expect(model.calls).toHaveLength(path.modelRequests);

  // Nothing leaks: every model stream was closed and let go of its signal, every actor stopped.
  if (!blockerCall.signal.aborted && !blockerCall.settled) blockerCall.end();
  await blocker;
  await settle();
  for (const call of [...model.calls, blockerCall]) {
    expect(call.settled).toBe(true);
    expect(getEventListeners(call.signal, 'abort')).toHaveLength(0);
  }
  expect(orchestrator.activeCount).toBe(0);
  expect(tracker.running()).toEqual([]);
  await opened.close();
}

/** A paused run has no stream a reader could leave: the Agent layer cancels it otherwise. */
const playableOnAgent = (path: LifecyclePath) =>
  !path.steps.some(
    (step, i) =>
      step.action.type === 'cancel' &&
      step.action.reason === 'client_disconnect' &&
      path.steps[i - 1]?.status === 'paused',
  );

const memory: Backend = {
  name: 'memory',
  open: () => Promise.resolve({ store: undefined, close: () => Promise.resolve() }),
};

describe.each(['orchestrator', 'agent'] as const)('%s: every lifecycle path with the fake model', (layer) => {
  const ids = counterIds();
  const playable = layer === 'agent' ? paths.filter(playableOnAgent) : paths;
  it.each(playable.map((path) => [path.name, path] as const))('%s', async (_name, path) => {
    await replayOnRuntime(path, layer, memory, ids);
  });
});

/** The messages of a run's first `rounds` tool rounds: each an assistant's calls and their results. */
function roundsUpTo<T extends { role: string }>(transcript: readonly T[], rounds: number): T[] {
  let seen = 0;
  const next = transcript.findIndex((message) => message.role === 'assistant' && ++seen > rounds);
  return next === -1 ? [...transcript] : transcript.slice(0, next);
}

describe.each(['orchestrator', 'agent'] as const)('%s: the lifecycle paths of two tool rounds', (layer) => {
  const ids = counterIds();
  // The second round's call runs under its own id, as the run reports it (the runtime renames an
  // id the conversation used already).
  const twoRounds = getLifecyclePaths({
    errors: MACHINE_ERRORS,
    random: RANDOM,
    turnAfterTools: 'final',
    cancelReasons: ['code'],
    limits: { maxToolRounds: 2 },
  }).filter((path) => path.steps.filter((step) => step.action.type === 'callTools').length > 1);
  const playable = layer === 'agent' ? twoRounds.filter(playableOnAgent) : twoRounds;
  it('are some', () => expect(playable.length).toBeGreaterThan(3));
  it.each(playable.map((path) => [path.name, path] as const))('%s', async (_name, path) => {
    await replayOnRuntime(path, layer, memory, ids);
  });
});

/**
 * The durable stores: one path per way of ending (the state before the last step, the last action,
 * the tool steps on the way), and more drawn with a fixed seed, so that this stays a few seconds.
 */
function durableSample(all: LifecyclePath[]): LifecyclePath[] {
  const byEnding = new Map<string, LifecyclePath>();
  const toolSteps = new Set(['toolDone', 'toolThrew', 'toolTimeout', 'continue']);
  for (const path of all) {
    const before = JSON.stringify(path.steps.at(-2)?.value ?? 'pending');
    const tools = path.steps
      .filter((step) => toolSteps.has(step.action.type))
      .map((step) => step.action.type);
    const key = `${before} ${path.steps.at(-1)!.action.type} ${tools.join(',')}`;
    if (!byEnding.has(key)) byEnding.set(key, path);
  }
  const [drawn] = fc.sample(fc.shuffledSubarray(all, { minLength: 8, maxLength: 8 }), {
    numRuns: 1,
    seed: 13_14,
  });
  return [...new Set([...byEnding.values(), ...drawn!])];
}

/** A database shared by the paths of one backend: closing a path's store leaves it open. */
function shared(db: SqlDatabase): SqlDatabase {
  return {
    query: (text, params) => db.query(text, params),
    transaction: (fn) => db.transaction(fn),
    close: () => Promise.resolve(),
  };
}

function sqlBackend(name: string, openDb: () => Promise<{ db: SqlDatabase; remove(): Promise<void> }>) {
  let opened: { db: SqlDatabase; remove(): Promise<void> } | undefined;
  const backend: Backend = {
    name,
    open() {
      const store = createSqlRunStore({ db: shared(opened!.db) });
      return Promise.resolve({ store, close: () => store.close() });
    },
  };
  return {
    backend,
    setup: async () => {
      opened = await openDb();
    },
    teardown: async () => {
      await opened?.db.close();
      await opened?.remove();
    },
  };
}

const durable = [
  sqlBackend('PGlite', async () => {
    const dir = await createTempDir('runstate-model-');
    return { db: await openSqlDatabase({ dataDir: dir.path }), remove: () => dir.remove() };
  }),
  sqlBackend('PostgreSQL', async () => {
    const database = await createTestDatabase();
    return { db: await openSqlDatabase({ databaseUrl: database.url }), remove: () => database.drop() };
  }),
];

describe.each(durable)('orchestrator over $backend.name: a sample of the lifecycle paths', (sql) => {
  beforeAll(sql.setup, 60_000);
  afterAll(sql.teardown);
  // Run ids are unique in the file's database.
  const ids = counterIds(`${sql.backend.name}-run`);
  it.each(durableSample(paths).map((path) => [path.name, path] as const))('%s', async (_name, path) => {
    await replayOnRuntime(path, 'orchestrator', sql.backend, ids);
  });
});
