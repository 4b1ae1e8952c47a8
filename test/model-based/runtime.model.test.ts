/**
 * Model-based tests, layer 2: the orchestrator and the Agent, with the controllable fake model.
 * Every lifecycle path of the run machine is played through the public API (a concurrency slot
 * held by another run makes `pending` real; `wait` steps advance fake timers), and at every step
 * the run's status, content, events, model requests and model signals must be what the path says.
 */
import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Agent } from '../../src/agent.js';
import {
  createOrchestrator,
  type Orchestrator,
  type RunEvent,
  type RunOutput,
} from '../../src/runtime/index.js';
import {
  checkRunEvents,
  createFakeModel,
  getLifecyclePaths,
  type LifecyclePath,
  type LifecycleStep,
} from '../../src/testing/index.js';
import type { CancelReason } from '../../machines/run-types.js';
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

const paths = getLifecyclePaths({ errors: MACHINE_ERRORS, random: RANDOM, tools: false });

type Layer = 'orchestrator' | 'agent';

interface Subject {
  runId: string;
  /** The run's events as its consumer reads them. */
  events: AsyncIterator<RunEvent>;
  result: Promise<RunOutput>;
  /** Cancels as the layer's user would; `undefined` when that way of cancelling gives no answer. */
  cancel(reason: CancelReason): Promise<boolean | undefined>;
  /** Cancel again after the end: must be refused. */
  cancelAgain(): boolean;
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
  let blocker: Promise<RunOutput>;
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
    });
    subject = {
      runId: run.runId,
      events: run.events()[Symbol.asyncIterator](),
      result: run.result,
      cancel: (reason) =>
        Promise.resolve(reason === 'shutdown' ? shutDown() : orchestrator.cancelRun(run.runId, reason)),
      cancelAgain: () => orchestrator.cancelRun(run.runId, 'api'),
    };
  } else {
    blocker = new Agent({ name: 'Blocker', model: blockerModel, orchestrator }).run('hold');
    const agent = new Agent({ name: 'Writer', model, orchestrator, limits: path.limits });
    const stream = agent.run('hello', { stream: true });
    const events = stream[Symbol.asyncIterator]();
    subject = {
      runId: stream.runId,
      events,
      result: stream.result,
      async cancel(reason) {
        switch (reason) {
          case 'code':
            return agent.cancelRun(stream.runId);
          case 'api': // what the HTTP cancel route does
            return orchestrator.cancelRun(stream.runId, 'api');
          case 'client_disconnect': // the reader leaves the `for await` loop
            await events.return!(undefined);
            return undefined;
          case 'shutdown':
            return shutDown();
        }
      },
      cancelAgain: () => agent.cancelRun(stream.runId),
    };
  }
  return { model, blockerModel, blocker, subject, shutdown: () => shutdown };
}

async function replayOnRuntime(path: LifecyclePath, layer: Layer) {
  const tracker = actorTracker();
  const orchestrator = createOrchestrator({
    maxConcurrentRuns: 1,
    idGenerator: counterIds(),
    random: RANDOM,
    inspect: tracker.inspect,
  });
  const { model, blockerModel, blocker, subject, shutdown } = startSubject(layer, orchestrator, path);
  const { runId, events } = subject;
  const blockerCall = await blockerModel.nextCall();
  const read: RunEvent[] = [await pull(events)];
  expect(read[0]).toMatchObject({ event: 'RunStarted', seq: 1, model: 'fake-model' });
  expect((await orchestrator.getRun(runId))?.status).toBe('pending');
  let disconnected = false;

  const check = async (step: LifecycleStep, at: string, requests: number) => {
    const record = (await orchestrator.getRun(runId))!;
    expect(record.status, at).toBe(step.status);
    expect(record.content, at).toBe(step.content);
    expect(model.calls.length, `${at}: model requests`).toBe(requests);
  };

  let requests = 0;
  for (const [index, step] of path.steps.entries()) {
    const at = `step ${index + 1} (${step.action.type})`;
    const call = model.calls.at(-1);
    const { action } = step;
    if (action.type === 'start') {
      blockerCall.end();
    } else if (action.type === 'cancel') {
      const answer = await subject.cancel(action.reason);
      if (answer !== undefined) expect(answer, `${at}: cancelRun answer`).toBe(true);
      // The transition and the abort happen in the call itself, before anything else runs.
      expect((await orchestrator.getRun(runId))?.status, at).toBe('cancelled');
      if (step.abortsModel) expect(call!.signal.aborted, `${at}: model signal aborted`).toBe(true);
      disconnected = action.reason === 'client_disconnect' && layer === 'agent';
    } else if (action.type === 'wait') {
      const before = { ...(await orchestrator.getRun(runId))! };
      await vi.advanceTimersByTimeAsync(action.ms - 1);
      await settle();
      expect(await orchestrator.getRun(runId), `${at}: a timer fired early`).toEqual(before);
      expect(model.calls.length, `${at}: a retry started early`).toBe(requests);
      await vi.advanceTimersByTimeAsync(1);
    } else {
      // The model acts on a request the run still wants.
      expect(call!.signal.aborted, `${at}: signal aborted before the model ended`).toBe(false);
      expect(playOnFakeModel(call!, action)).toBe(true);
    }
    await settle();
    if (step.requestsModel) requests++;
    await check(step, at, requests);
    const latest = model.calls.at(-1);
    if (step.abortsModel) expect(latest!.signal.aborted, `${at}: model signal aborted`).toBe(true);
    if (step.status === 'streaming' && step.requestsModel) expect(latest!.signal.aborted, at).toBe(false);
    if (step.status === 'streaming' && action.type === 'chunk')
      expect(latest!.signal.aborted, at).toBe(false);
    if (!disconnected) {
      for (const delta of step.emitted) {
        const event = await pull(events);
        expect(event, at).toMatchObject({ event: 'RunContent', content: delta });
        read.push(event);
      }
      if (step.status !== 'streaming' && step.status !== 'pending') {
        const terminal = await pull(events);
        expect(terminal.event, at).toBe(TERMINAL_EVENT[path.status]);
        read.push(terminal);
      }
    }
  }

  // The consumer's stream ends after the terminal event.
  if (!disconnected) expect(await events.next()).toMatchObject({ done: true });
  await shutdown();
  const output = await subject.result;
  expect(output).toMatchObject({
    status: path.status,
    content: path.output.content,
    error: path.output.error,
    cancel_reason: path.output.cancelReason,
    metrics: path.output.metrics,
  });
  const all = await collect(await orchestrator.events(runId));
  checkRunEvents(all, path.status);
  expect(all.map((event) => event.event)).toEqual(expectedEventNames(path));
  expect(all.slice(0, read.length)).toEqual(read);
  const terminal = all.at(-1)!;
  if (terminal.event === 'RunCancelled') expect(terminal.reason).toBe(path.output.cancelReason);
  if (terminal.event === 'RunError') {
    expect(terminal).toMatchObject({ code: path.output.error!.code, content: path.output.error!.message });
  }
  if (terminal.event === 'RunCompleted') expect(terminal.metrics).toEqual(path.output.metrics);

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
}

describe.each(['orchestrator', 'agent'] as const)('%s: every lifecycle path with the fake model', (layer) => {
  it.each(paths.map((path) => [path.name, path] as const))('%s', async (_name, path) => {
    await replayOnRuntime(path, layer);
  });
});
