/**
 * Property-based test of the orchestrator: random schedules of model chunks, ends, errors and
 * incomplete streams, stalls (time passing, so idle and run timeouts and retries fire), cancels
 * from several callers in the same tick, readers that disconnect, and shutdown, over several
 * concurrent runs on one orchestrator with the fake model. Commands may or may not let the
 * previous ones land first, so cancels race chunks and ends.
 */
import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CancelReason } from '../../machines/run-types.js';
import { Agent } from '../../src/agent.js';
import { RunstateError } from '../../src/errors.js';
import {
  createMemoryRunStore,
  createOrchestrator,
  type Orchestrator,
  type RunEvent,
  type RunStatus,
} from '../../src/runtime/index.js';
import {
  checkRunEvents,
  createFakeModel,
  type FakeModel,
  type FakeModelCall,
} from '../../src/testing/index.js';
import { actorTracker, FAKE_TIMERS, settle } from '../support/runs.js';

/** Who cancels: `answers` says whether a `true` is possible from that caller. */
const CALLERS = {
  'orchestrator (api)': { reason: 'api', answers: true },
  'orchestrator (default reason)': { reason: 'code', answers: true },
  'its agent': { reason: 'code', answers: true },
  'another agent': { reason: 'code', answers: false },
} as const satisfies Record<string, { reason: CancelReason; answers: boolean }>;
type Caller = keyof typeof CALLERS;

type Command =
  | { kind: 'emit'; run: number; delta: string; settle: boolean }
  | { kind: 'end'; run: number; settle: boolean }
  | { kind: 'fail'; run: number; retryable: boolean; settle: boolean }
  | { kind: 'close'; run: number; settle: boolean }
  | { kind: 'stall'; ms: number }
  | { kind: 'cancel'; run: number; callers: Caller[]; settle: boolean }
  | { kind: 'read'; run: number }
  | { kind: 'disconnect'; run: number }
  | { kind: 'shutdown' };

const run = fc.nat(9);
const stallArb = fc.oneof(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 30, max: 200 }));
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('emit' as const),
      run,
      delta: fc.constantFrom('a', 'bc', ''),
      settle: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('end' as const), run, settle: fc.boolean() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('fail' as const),
      run,
      retryable: fc.constantFrom(true, true, false),
      settle: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('close' as const), run, settle: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('stall' as const), ms: stallArb }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('cancel' as const),
      run,
      callers: fc.array(fc.constantFrom(...(Object.keys(CALLERS) as Caller[])), {
        minLength: 1,
        maxLength: 3,
      }),
      settle: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('read' as const), run }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('disconnect' as const), run }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'shutdown' as const }) },
);

const scenarioArb = fc.record({
  runs: fc.integer({ min: 1, max: 12 }),
  maxConcurrentRuns: fc.constantFrom(1, 2, Infinity),
  idleTimeoutMs: fc.constantFrom(60, 150),
  timeoutMs: fc.constantFrom(300, 1_000),
  maxAttempts: fc.constantFrom(1, 2, 3, 3),
  commands: fc.array(commandArb, { maxLength: 80, size: 'max' }),
});
type Scenario = typeof scenarioArb extends fc.Arbitrary<infer S> ? S : never;

interface CallRecord {
  call: FakeModelCall;
  /** How the model ended the stream itself, if it did before the run let go of it. */
  endedBy?: 'end' | 'fail' | 'close';
  emitted: string[];
}

interface RunUnderTest {
  runId: string;
  agent: Agent;
  model: FakeModel;
  calls: CallRecord[];
  /** Every event, as a second reader that follows the log sees it. */
  observed: RunEvent[];
  observing: Promise<void>;
  /** The agent's stream, read on command only: `return()` never waits behind a pending read. */
  reader: AsyncIterator<RunEvent>;
  read: RunEvent[];
  disconnected: boolean;
  /** Who cancelled it (a `true` answer, a disconnect, shutdown) and the content at that moment. */
  cancelledBy: { reason: CancelReason; content: string }[];
  answeredTrue: number;
}

const FINAL = new Set<RunStatus | undefined>(['completed', 'cancelled', 'failed']);

beforeEach(() => {
  vi.useFakeTimers({ ...FAKE_TIMERS, toFake: [...FAKE_TIMERS.toFake] });
});
afterEach(() => {
  vi.useRealTimers();
});

async function play(scenario: Scenario): Promise<void> {
  const tracker = actorTracker();
  const orchestrator: Orchestrator = createOrchestrator({
    maxConcurrentRuns: scenario.maxConcurrentRuns,
    store: createMemoryRunStore({ retention: { maxAgeMs: 60_000 } }),
    limits: {
      idleTimeoutMs: scenario.idleTimeoutMs,
      timeoutMs: scenario.timeoutMs,
      retry: { maxAttempts: scenario.maxAttempts, baseDelayMs: 10, maxDelayMs: 40, maxRetryAfterMs: 100 },
    },
    inspect: tracker.inspect,
  });
  const sizeBefore = (await orchestrator.listRuns()).length;
  // What the orchestrator says of each run, as it happens (its reads are asynchronous; this is not).
  const seen = new Map<string, { status: RunStatus; content: string }>();
  orchestrator.subscribe((notice) => {
    if (notice.type === 'created') seen.set(notice.run.run_id, { status: 'pending', content: '' });
    else if (notice.type === 'state') seen.get(notice.runId)!.status = notice.status;
    else if (notice.type === 'event' && notice.event.event === 'RunContent')
      seen.get(notice.runId)!.content += notice.event.content;
    else if (notice.type === 'finished') seen.set(notice.run.run_id, notice.run);
  });
  const other = new Agent({ name: 'Other', model: createFakeModel(), orchestrator });

  const runs: RunUnderTest[] = [];
  for (let i = 0; i < scenario.runs; i++) {
    const model = createFakeModel();
    const agent = new Agent({ name: `Agent ${i}`, model, orchestrator });
    const stream = agent.run(`input ${i}`, { stream: true });
    const observed: RunEvent[] = [];
    const observing = (async () => {
      for await (const event of await orchestrator.events(stream.runId)) observed.push(event);
    })();
    const entry: RunUnderTest = {
      runId: stream.runId,
      agent,
      model,
      calls: [],
      observed,
      observing,
      reader: stream[Symbol.asyncIterator](),
      read: [],
      disconnected: false,
      cancelledBy: [],
      answeredTrue: 0,
    };
    runs.push(entry);
  }
  const status = (entry: RunUnderTest) => seen.get(entry.runId)?.status;
  const content = (entry: RunUnderTest) => seen.get(entry.runId)?.content ?? '';
  const callOf = (entry: RunUnderTest): CallRecord | undefined => {
    // Record calls as the model receives them.
    for (const call of entry.model.calls.slice(entry.calls.length)) entry.calls.push({ call, emitted: [] });
    return entry.calls.at(-1);
  };
  const readAvailable = async (entry: RunUnderTest) => {
    await settle();
    while (!entry.disconnected && entry.read.length < entry.observed.length) {
      const next = await entry.reader.next();
      expect(next.done).toBe(false);
      entry.read.push(next.value as RunEvent);
    }
    expect(entry.read).toEqual(entry.observed.slice(0, entry.read.length));
  };
  /** The model's signal is aborted exactly when the run let go of a request the model had not ended. */
  const checkSignals = () => {
    for (const entry of runs) {
      callOf(entry);
      if (status(entry) === 'pending') expect(entry.calls).toHaveLength(0);
      for (const record of entry.calls) {
        if (record.endedBy) continue;
        expect(record.call.signal.aborted, `run ${entry.runId} call ${record.call.index}`).toBe(
          FINAL.has(status(entry)),
        );
      }
    }
    expect(orchestrator.activeCount).toBe(runs.filter((entry) => !FINAL.has(status(entry))).length);
    // The concurrency limit holds, and no run waits while a slot is free (before shutdown).
    const streaming = runs.filter((entry) => status(entry) === 'streaming').length;
    const pending = runs.filter((entry) => status(entry) === 'pending').length;
    expect(streaming).toBeLessThanOrEqual(scenario.maxConcurrentRuns);
    if (pending > 0) expect(streaming).toBe(scenario.maxConcurrentRuns);
  };

  // Every reader starts reading at once, as a `for await` loop does.
  for (const entry of runs) await readAvailable(entry);
  let shutdown: Promise<void> | undefined;

  for (const command of scenario.commands) {
    switch (command.kind) {
      case 'emit':
      case 'end':
      case 'fail':
      case 'close': {
        // Aim at runs with a request the model still serves (late actions on the others are no-ops).
        const serving = runs.filter((r) => {
          const latest = callOf(r);
          return latest && !latest.endedBy && !latest.call.signal.aborted;
        });
        const pool = serving.length > 0 && command.run % 4 !== 0 ? serving : runs;
        const entry = pool[command.run % pool.length]!;
        const record = callOf(entry);
        if (!record) break;
        if (!record.endedBy && !record.call.signal.aborted && command.kind !== 'emit')
          record.endedBy = command.kind;
        if (command.kind === 'emit') {
          record.emitted.push(command.delta);
          record.call.emit(command.delta);
        } else if (command.kind === 'end') {
          record.call.end();
        } else if (command.kind === 'close') {
          record.call.close();
        } else {
          const error = new RunstateError('MODEL_REQUEST_FAILED', 'upstream failed', {
            status: command.retryable ? 503 : 400,
            retryable: command.retryable,
            retryAfterMs: command.retryable ? 5 : undefined,
          });
          record.call.fail(error);
        }
        if (command.settle) await settle();
        break;
      }
      case 'stall':
        await vi.advanceTimersByTimeAsync(command.ms);
        await settle();
        break;
      case 'cancel': {
        const entry = runs[command.run % runs.length]!;
        // Several callers in the same tick: only the first one that finds the run active cancels it.
        for (const caller of command.callers) {
          const before = status(entry);
          const answer =
            caller === 'its agent'
              ? entry.agent.cancelRun(entry.runId)
              : caller === 'another agent'
                ? other.cancelRun(entry.runId)
                : orchestrator.cancelRun(entry.runId, caller === 'orchestrator (api)' ? 'api' : undefined);
          const { reason, answers } = CALLERS[caller];
          expect(answer, `${caller} cancelling a ${before} run`).toBe(answers && !FINAL.has(before));
          if (answer) {
            entry.answeredTrue++;
            entry.cancelledBy.push({ reason, content: content(entry) });
            expect(status(entry)).toBe('cancelled');
            // Aborted in the same tick.
            const record = callOf(entry);
            if (record && !record.endedBy) expect(record.call.signal.aborted).toBe(true);
          } else {
            expect(status(entry)).toBe(before);
          }
        }
        if (command.settle) await settle();
        break;
      }
      case 'read':
        await readAvailable(runs[command.run % runs.length]!);
        break;
      case 'disconnect': {
        const entry = runs[command.run % runs.length]!;
        if (entry.disconnected) break;
        await readAvailable(entry);
        const before = status(entry);
        const contentBefore = content(entry);
        entry.disconnected = true;
        await entry.reader.return!(undefined);
        expect(FINAL.has(status(entry))).toBe(true);
        const terminal = await lastEvent(orchestrator, entry.runId);
        if (
          !FINAL.has(before) &&
          terminal.event === 'RunCancelled' &&
          terminal.reason === 'client_disconnect'
        ) {
          entry.cancelledBy.push({ reason: 'client_disconnect', content: contentBefore });
        }
        break;
      }
      case 'shutdown': {
        if (shutdown) break;
        const active = runs.filter((entry) => !FINAL.has(status(entry)));
        const contents = active.map((entry) => content(entry));
        shutdown = orchestrator.shutdown();
        // Every run is final before shutdown() returns, and every request it held is aborted.
        active.forEach((entry, i) => {
          expect(status(entry)).toBe('cancelled');
          entry.cancelledBy.push({ reason: 'shutdown', content: contents[i]! });
        });
        checkSignals();
        await shutdown;
        expect(() =>
          orchestrator.startRun({ agentId: 'x', agentName: 'X', model: createFakeModel(), input: 'late' }),
        ).toThrow(
          expect.objectContaining({ code: 'SHUTTING_DOWN', message: 'the orchestrator is shutting down' }),
        );
        break;
      }
    }
    checkSignals();
  }

  if (!shutdown) {
    const active = runs.filter((entry) => !FINAL.has(status(entry)));
    const contents = active.map((entry) => content(entry));
    await orchestrator.shutdown();
    active.forEach((entry, i) => entry.cancelledBy.push({ reason: 'shutdown', content: contents[i]! }));
  }
  await settle();
  checkSignals();
  expect(orchestrator.activeCount).toBe(0);

  for (const entry of runs) {
    await entry.observing;
    await readAvailable(entry);
    const final = status(entry)!;
    expect(FINAL.has(final)).toBe(true);
    // One terminal event, last; seq from 1 without gaps; completed/cancelled content = the deltas.
    checkRunEvents(entry.observed, final);
    const output = await orchestrator.result(entry.runId);
    expect(output.status).toBe(final);
    const terminal = entry.observed.at(-1)!;

    // Deltas reach the log in order, each once, only from the request that streamed. Deltas that
    // arrived in one turn share a RunContent, so each RunContent is a run of whole deltas.
    const deltas = entry.observed
      .filter((event) => event.event === 'RunContent')
      .map((event) => event.content);
    const last = entry.calls.at(-1);
    const sent = (last?.emitted ?? []).filter((delta) => delta !== '');
    const deltaEnds = new Set<number>();
    sent.reduce((end, delta) => {
      deltaEnds.add(end + delta.length);
      return end + delta.length;
    }, 0);
    let received = 0;
    for (const delta of deltas) {
      expect(delta).not.toBe('');
      received += delta.length;
      expect(deltaEnds.has(received)).toBe(true);
    }
    expect(sent.join('').startsWith(deltas.join(''))).toBe(true);

    // `true` at most once, and a cancelled run was cancelled by exactly one caller, with what had streamed then.
    expect(entry.answeredTrue).toBeLessThanOrEqual(1);
    if (final === 'cancelled') {
      expect(entry.cancelledBy).toHaveLength(1);
      const [cancel] = entry.cancelledBy;
      expect(terminal).toMatchObject({
        event: 'RunCancelled',
        reason: cancel!.reason,
        content: cancel!.content,
      });
      expect(output.content).toBe(cancel!.content);
    } else {
      expect(entry.cancelledBy).toHaveLength(0);
    }
    if (final === 'completed') expect(last?.endedBy).toBe('end');

    // No stream left open, no abort listener left behind.
    for (const record of entry.calls) {
      expect(record.call.settled).toBe(true);
      expect(getEventListeners(record.call.signal, 'abort')).toHaveLength(0);
    }
  }

  // No actor and no timer left running; once retention has passed, the registry is back to its size.
  expect(tracker.running()).toEqual([]);
  expect(vi.getTimerCount()).toBe(0);
  await vi.advanceTimersByTimeAsync(60_001);
  expect(await orchestrator.listRuns()).toHaveLength(sizeBefore);
}

async function lastEvent(orchestrator: Orchestrator, runId: string): Promise<RunEvent> {
  let last: RunEvent | undefined;
  for await (const event of await orchestrator.events(runId)) last = event;
  return last!;
}

describe('orchestrator under random schedules', () => {
  it('keeps every run invariant over concurrent runs, cancels, stalls and shutdown', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb, play), { numRuns: 150, seed: 20_251_125 });
  });
});
