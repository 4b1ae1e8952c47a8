/**
 * Property-based test of the orchestrator: random schedules of model chunks, ends, errors and
 * incomplete streams, tool calls (tools that return, throw, time out or ignore their signal; calls
 * that wait for a person, continued or not), stalls (time passing, so idle, run, tool and pause
 * timeouts and retries fire), cancels from several callers in the same tick, readers that
 * disconnect, and shutdown, over several concurrent runs on one orchestrator with the fake model.
 * Commands may or may not let the previous ones land first, so cancels race chunks, ends, tool
 * results and continues. The same schedules (fewer of them) run over PGlite and PostgreSQL, where
 * what a client reads back once a run is stored must equal what it saw live.
 */
import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import type { CancelReason } from '../../machines/run-types.js';
import { Agent } from '../../src/agent.js';
import { RunstateError } from '../../src/errors.js';
import {
  createMemoryRunStore,
  createOrchestrator,
  type Orchestrator,
  type RunEvent,
  type RunNotice,
  type RunStatus,
  type RunStore,
} from '../../src/runtime/index.js';
import { createSqlRunStore } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import type { SqlDatabase } from '../../src/runtime/sql/sql-database.js';
import { tool } from '../../src/tools/tool.js';
import {
  checkRunEvents,
  createFakeModel,
  type FakeModel,
  type FakeModelCall,
} from '../../src/testing/index.js';
import { collect } from '../support/collect.js';
import { createTempDir, createTestDatabase } from '../support/databases.js';
import { actorTracker, counterIds, FAKE_TIMERS, settle } from '../support/runs.js';

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
  | { kind: 'callTools'; run: number; tools: ToolName[]; settle: boolean }
  | { kind: 'toolResult'; run: number; call: number; outcome: 'return' | 'throw'; settle: boolean }
  | { kind: 'continue'; run: number; confirm: boolean; via: 'agent' | 'orchestrator'; settle: boolean }
  | { kind: 'read'; run: number }
  | { kind: 'disconnect'; run: number }
  | { kind: 'shutdown' };

/** `work` runs until the test answers (or its timeout); `approve` waits for a person first. */
type ToolName = 'work' | 'approve';

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
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('callTools' as const),
      run,
      tools: fc.array(fc.constantFrom<ToolName>('work', 'work', 'approve'), { minLength: 1, maxLength: 3 }),
      settle: fc.boolean(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('toolResult' as const),
      run,
      call: fc.nat(5),
      outcome: fc.constantFrom('return' as const, 'return' as const, 'throw' as const),
      settle: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('continue' as const),
      run,
      confirm: fc.boolean(),
      via: fc.constantFrom('agent' as const, 'orchestrator' as const),
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
  maxToolRounds: fc.constantFrom(1, 3),
  toolTimeoutMs: fc.constantFrom(40, 100),
  pauseTimeoutMs: fc.constantFrom(50, 500),
  /** Whether the tools of even runs reject when their signal aborts; odd runs' do the opposite. */
  honourSignals: fc.boolean(),
  commands: fc.array(commandArb, { maxLength: 80, size: 'max' }),
});
type Scenario = typeof scenarioArb extends fc.Arbitrary<infer S> ? S : never;

interface CallRecord {
  call: FakeModelCall;
  /** How the model ended the stream itself, if it did before the run let go of it. */
  endedBy?: 'end' | 'fail' | 'close' | 'tools';
  /** Deltas sent while the run still wanted the request (later ones are no-ops). */
  emitted: string[];
}

/** One execution of a tool, held until the test answers it. */
interface ToolRecord {
  toolCallId: string;
  signal: AbortSignal;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** The test answered it (a late answer, when its signal was aborted first). */
  answered: boolean;
}

interface RunUnderTest {
  runId: string;
  agent: Agent;
  model: FakeModel;
  calls: CallRecord[];
  /** Every event, as the orchestrator published it. */
  observed: RunEvent[];
  /** The agent's stream, read on command only: `return()` never waits behind a pending read. */
  reader: AsyncIterator<RunEvent>;
  read: RunEvent[];
  disconnected: boolean;
  /** Who cancelled it (a `true` answer, a disconnect, shutdown) and the content at that moment. */
  cancelledBy: { reason: CancelReason; content: string }[];
  answeredTrue: number;
  tools: ToolRecord[];
  /** The reader's stream ended at a pause; a continue gives a new one. */
  readerEnded: boolean;
  /** The reader is an orchestrator continue's handle, which only watches the run. */
  watching?: boolean;
  continued: number;
  /** Broken rules seen where no `expect` can throw (inside a tool, a model call). */
  violations: string[];
}

const FINAL = new Set<RunStatus | undefined>(['completed', 'cancelled', 'failed']);

beforeEach(() => {
  vi.useFakeTimers({ ...FAKE_TIMERS, toFake: [...FAKE_TIMERS.toFake] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** Where the runs of a schedule are stored; `durable` stores are read back at the end. */
interface Backend {
  name: string;
  durable: boolean;
  open(): RunStore;
}

async function play(scenario: Scenario, backend: Backend, ids: () => string): Promise<void> {
  const tracker = actorTracker();
  const store = backend.open();
  const orchestrator: Orchestrator = createOrchestrator({
    maxConcurrentRuns: scenario.maxConcurrentRuns,
    store,
    limits: {
      idleTimeoutMs: scenario.idleTimeoutMs,
      timeoutMs: scenario.timeoutMs,
      retry: { maxAttempts: scenario.maxAttempts, baseDelayMs: 10, maxDelayMs: 40, maxRetryAfterMs: 100 },
      maxToolRounds: scenario.maxToolRounds,
      pauseTimeoutMs: scenario.pauseTimeoutMs,
    },
    inspect: tracker.inspect,
    idGenerator: ids,
  });
  const sizeBefore = (await orchestrator.listRuns()).length;
  // What the orchestrator says of each run, as it happens (its reads are asynchronous; this is not).
  const seen = new Map<string, { status: RunStatus; content: string }>();
  // Every event of every run, as the orchestrator publishes it (also across pauses).
  const published = new Map<string, RunEvent[]>();
  // When each run last paused (the fake clock): a pause past its limit cannot be continued.
  const pausedAt = new Map<string, number>();
  const listener = (notice: RunNotice) => {
    if (notice.type === 'created') seen.set(notice.run.run_id, { status: 'pending', content: '' });
    else if (notice.type === 'state') {
      const entry = seen.get(notice.runId)!;
      if (notice.status === 'paused' && entry.status !== 'paused') pausedAt.set(notice.runId, Date.now());
      entry.status = notice.status;
    } else if (notice.type === 'finished') seen.set(notice.run.run_id, notice.run);
    if (notice.type !== 'event') return;
    if (notice.event.event === 'RunContent') seen.get(notice.runId)!.content += notice.event.content;
    let events = published.get(notice.runId);
    if (!events) published.set(notice.runId, (events = []));
    events.push(notice.event);
  };
  orchestrator.subscribe(listener);
  const other = new Agent({ name: 'Other', model: createFakeModel(), orchestrator });

  const runs: RunUnderTest[] = [];
  for (let i = 0; i < scenario.runs; i++) {
    // Filled in below: the run's tools and model report to it.
    const entry = { tools: [], violations: [] } as unknown as RunUnderTest;
    const honours = scenario.honourSignals === (i % 2 === 0);
    const execute = (_args: unknown, context: { signal: AbortSignal; toolCallId: string }) =>
      new Promise((resolve, reject) => {
        // No tool runs after its run ended.
        if (FINAL.has(status(entry))) entry.violations.push(`tool started in a ${status(entry)} run`);
        const record: ToolRecord = { ...context, resolve, reject, answered: false };
        entry.tools.push(record);
        if (honours) {
          context.signal.addEventListener(
            'abort',
            () => reject(new Error('aborted', { cause: context.signal.reason })),
            { once: true },
          );
        }
      });
    const tools = [
      tool({
        name: 'work',
        description: '',
        parameters: z.object({}),
        timeoutMs: scenario.toolTimeoutMs,
        execute,
      }),
      tool({
        name: 'approve',
        description: '',
        parameters: z.object({}),
        requiresConfirmation: true,
        execute,
      }),
    ];
    // No model request after its run ended.
    const model = createFakeModel({
      onCall: () => {
        if (FINAL.has(status(entry))) entry.violations.push(`model called in a ${status(entry)} run`);
      },
    });
    const agent = new Agent({ name: `Agent ${i}`, model, orchestrator, tools });
    const stream = agent.run(`input ${i}`, { stream: true });
    Object.assign(entry, {
      runId: stream.runId,
      agent,
      model,
      calls: [],
      reader: stream[Symbol.asyncIterator](),
      read: [],
      disconnected: false,
      cancelledBy: [],
      answeredTrue: 0,
      readerEnded: false,
      continued: 0,
    });
    entry.observed = published.get(stream.runId)!;
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
    while (!entry.disconnected && !entry.readerEnded && entry.read.length < entry.observed.length) {
      const next = await entry.reader.next();
      if (next.done) {
        // A stream ends at a pause, right after its RunPaused.
        expect(entry.read.at(-1)?.event).toBe('RunPaused');
        entry.readerEnded = true;
        break;
      }
      entry.read.push(next.value);
    }
    expect(entry.read).toEqual(entry.observed.slice(0, entry.read.length));
  };
  /**
   * The model's signal is aborted exactly when the run let go of a request the model had not ended;
   * a tool's exactly when its run ended or the call timed out.
   */
  const checkSignals = () => {
    for (const entry of runs) {
      callOf(entry);
      const final = FINAL.has(status(entry));
      if (status(entry) === 'pending') expect(entry.calls).toHaveLength(0);
      for (const record of entry.calls) {
        if (record.endedBy) continue;
        expect(record.call.signal.aborted, `run ${entry.runId} call ${record.call.index}`).toBe(final);
      }
      for (const record of entry.tools) {
        if (record.answered && !record.signal.aborted) continue;
        // Its own timeout: the model was told it timed out.
        const timedOut = entry.observed.some(
          (event) =>
            event.event === 'ToolCallError' &&
            event.tool.tool_call_id === record.toolCallId &&
            event.error.includes('timed out after'),
        );
        expect(record.signal.aborted, `run ${entry.runId} tool ${record.toolCallId}`).toBe(final || timedOut);
      }
      expect(entry.violations, `run ${entry.runId}`).toEqual([]);
    }
    // A paused run leaves this orchestrator once it is parked in the store (owned by nobody).
    const active = runs.filter((entry) => !FINAL.has(status(entry)));
    expect(orchestrator.activeCount).toBeLessThanOrEqual(active.length);
    expect(orchestrator.activeCount).toBeGreaterThanOrEqual(
      active.filter((entry) => status(entry) !== 'paused').length,
    );
    // The concurrency limit holds (a continued run takes its slot back even past it), and no run
    // waits while a slot is free (before shutdown).
    const streaming = runs.filter((entry) => status(entry) === 'streaming');
    const pending = runs.filter((entry) => status(entry) === 'pending').length;
    const resumed = streaming.filter((entry) => entry.continued > 0).length;
    expect(streaming.length).toBeLessThanOrEqual(scenario.maxConcurrentRuns + resumed);
    if (pending > 0) expect(streaming.length).toBeGreaterThanOrEqual(scenario.maxConcurrentRuns);
  };

  /**
   * Runs paused when the orchestrator shut down: a store that does not outlive the process (memory)
   * has them cancelled (`shutdown`); a durable one keeps them paused, for another instance.
   */
  const endPausedAtShutdown = (paused: RunUnderTest[], contents: string[]) => {
    paused.forEach((entry, i) => {
      if (backend.durable) return;
      expect(status(entry)).toBe('cancelled');
      entry.cancelledBy.push({ reason: 'shutdown', content: contents[i]! });
    });
  };

  // Every reader starts reading at once, as a `for await` loop does.
  for (const entry of runs) await readAvailable(entry);
  let shutdown: Promise<void> | undefined;

  for (const command of scenario.commands) {
    switch (command.kind) {
      case 'emit':
      case 'end':
      case 'fail':
      case 'close':
      case 'callTools': {
        // Aim at runs with a request the model still serves (late actions on the others are no-ops).
        const serving = runs.filter((r) => {
          const latest = callOf(r);
          return latest && !latest.endedBy && !latest.call.signal.aborted;
        });
        const pool = serving.length > 0 && command.run % 4 !== 0 ? serving : runs;
        const entry = pool[command.run % pool.length]!;
        const record = callOf(entry);
        if (!record) break;
        const serves = !record.endedBy && !record.call.signal.aborted;
        if (serves && command.kind !== 'emit' && command.kind !== 'callTools') record.endedBy = command.kind;
        if (command.kind === 'emit') {
          if (serves) record.emitted.push(command.delta);
          record.call.emit(command.delta);
        } else if (command.kind === 'end') {
          record.call.end();
        } else if (command.kind === 'callTools') {
          if (serves) record.endedBy = 'tools';
          const calls = command.tools.map((name, i) => ({ id: `call_${record.call.index}_${i}`, name }));
          record.call.callTools(calls);
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
        // A paused run waits in the store: the first cancel takes it from there (the run ends
        // `cancelled` a moment later); a cancel in the same tick finds it taken.
        let pausedTaken = false;
        for (const caller of command.callers) {
          const before = status(entry);
          const answer =
            caller === 'its agent'
              ? entry.agent.cancelRun(entry.runId)
              : caller === 'another agent'
                ? other.cancelRun(entry.runId)
                : orchestrator.cancelRun(entry.runId, caller === 'orchestrator (api)' ? 'api' : undefined);
          const { reason, answers } = CALLERS[caller];
          // After shutdown, a paused run waits in the store for another instance: not cancelled here.
          expect(answer, `${caller} cancelling a ${before} run`).toBe(
            answers && !FINAL.has(before) && !(before === 'paused' && (pausedTaken || shutdown)),
          );
          if (answer && before === 'paused') {
            pausedTaken = true;
            entry.answeredTrue++;
            entry.cancelledBy.push({ reason, content: content(entry) });
            expect(status(entry)).toBe('paused');
          } else if (answer) {
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
        if (pausedTaken) {
          // Reads wait for the cancel taken from the store.
          expect((await orchestrator.getRun(entry.runId))?.status).toBe('cancelled');
          await settle();
          expect(status(entry)).toBe('cancelled');
        }
        // A cancel through the store (HTTP's cancel route) reaches it too.
        if (status(entry) === 'paused' && command.callers.includes('orchestrator (api)')) {
          const contentBefore = content(entry);
          const output = await orchestrator
            .requestCancel(entry.runId, 'api')
            .catch((error: unknown) => error);
          if ((output as { status?: string }).status === 'cancelled' && status(entry) === 'cancelled') {
            entry.answeredTrue++;
            entry.cancelledBy.push({ reason: 'api', content: contentBefore });
          }
        }
        if (command.settle) await settle();
        break;
      }
      case 'toolResult': {
        // Aim at runs with a call the test has not answered yet (running, or aborted and ignoring it).
        const waiting = runs.filter((r) => r.tools.some((t) => !t.answered));
        const entry =
          waiting.length > 0 ? waiting[command.run % waiting.length]! : runs[command.run % runs.length]!;
        const open = entry.tools.filter((t) => !t.answered);
        const record = open[command.call % Math.max(open.length, 1)];
        if (!record) break;
        record.answered = true;
        const late = record.signal.aborted;
        // What the run has pending (another call answered without a settle) happens first, so that
        // only what this answer causes is measured: a late one causes nothing.
        if (late) await settle();
        const before = entry.observed.length;
        if (command.outcome === 'return') record.resolve(`result of ${record.toolCallId}`);
        else record.reject(new Error(`${record.toolCallId} failed`));
        if (late) {
          // An answer after the call was aborted (cancel, timeout) is dropped: it changes nothing.
          await settle();
          expect(entry.observed.length, 'a late tool answer').toBe(before);
        } else if (command.settle) {
          await settle();
        }
        break;
      }
      case 'continue': {
        const paused = runs.filter((r) => status(r) === 'paused');
        const entry =
          paused.length > 0 ? paused[command.run % paused.length]! : runs[command.run % runs.length]!;
        const waiting = entry.observed.findLast((event) => event.event === 'RunPaused');
        const answers =
          waiting?.event === 'RunPaused'
            ? waiting.tools.map((t) => ({ tool_call_id: t.tool_call_id, confirmed: command.confirm }))
            : [];
        const go = async () => {
          if (command.via === 'agent') {
            const stream = await entry.agent.continueRun(entry.runId, { tools: answers, stream: true });
            return stream[Symbol.asyncIterator]();
          }
          const { agent } = entry;
          const request = {
            agentId: agent.id,
            agentName: agent.name,
            model: agent.model,
            tools: agent.tools,
          };
          const handle = await orchestrator.continueRun(entry.runId, answers, request);
          return handle.events()[Symbol.asyncIterator]();
        };
        if (shutdown) {
          // A shut-down orchestrator takes no paused run back from the store (another instance does).
          const codes = ['SHUTTING_DOWN', 'RUN_NOT_PAUSED', 'RUN_NOT_FOUND'];
          expect(codes).toContain(await rejectedCode(go()));
          break;
        }
        const expired = (pausedAt.get(entry.runId) ?? Infinity) + scenario.pauseTimeoutMs <= Date.now();
        if (status(entry) !== 'paused' || expired) {
          // Refused: RUN_NOT_PAUSED for a known run (a pause past its limit is failed then); once
          // final it may be forgotten.
          const codes = FINAL.has(status(entry)) ? ['RUN_NOT_PAUSED', 'RUN_NOT_FOUND'] : ['RUN_NOT_PAUSED'];
          const code = await rejectedCode(go());
          if (code === 'INVALID_INPUT' && backend.durable && !FINAL.has(status(entry))) {
            // The run paused in the database before its RunPaused (told once stored) reached this
            // reader: the answers, taken from what was seen, do not fit the calls it waits for.
            expect((await orchestrator.getRun(entry.runId))?.status).toBe('paused');
          } else {
            expect(codes).toContain(code);
          }
          break;
        }
        const started = await go().catch(async (error: unknown) => {
          // Over a database, a run's pause is told once stored: the RunPaused this reader saw may be
          // an earlier one than the pause the run waits in, and its answers do not fit.
          if (!backend.durable || (error as { code?: string }).code !== 'INVALID_INPUT') throw error;
          expect((await orchestrator.getRun(entry.runId))?.status).toBe('paused');
          return undefined;
        });
        if (!started) break;
        const reader = started;
        entry.continued++;
        expect(status(entry)).toBe('streaming');
        // Continuing twice: the second is refused.
        await expect(go()).rejects.toMatchObject({ code: 'RUN_NOT_PAUSED' });
        // The stream from before the pause ends at its RunPaused (the run waited in the store, and the
        // continue restored it); the continue's stream goes on from RunContinued.
        if (!entry.disconnected) {
          if (!entry.readerEnded) {
            for (let next = await entry.reader.next(); !next.done; next = await entry.reader.next())
              entry.read.push(next.value);
            expect(entry.read.at(-1)?.event).toBe('RunPaused');
          }
          entry.reader = reader;
          entry.readerEnded = false;
          // The orchestrator's handle only watches: leaving it cancels nothing.
          entry.watching = command.via === 'orchestrator';
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
        if (entry.readerEnded || before === 'paused') {
          // Its stream already ended at a pause, or the run paused before its RunPaused reached the
          // reader (it is being written to the store): a paused run waits for a continue, not a reader.
          entry.disconnected = true;
          await entry.reader.return!(undefined);
          expect(status(entry)).toBe(before);
          break;
        }
        const contentBefore = content(entry);
        entry.disconnected = true;
        if (entry.watching) {
          await entry.reader.return!(undefined);
          expect(status(entry)).toBe(before);
          break;
        }
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
        const active = runs.filter((entry) => !FINAL.has(status(entry)) && status(entry) !== 'paused');
        const paused = runs.filter((entry) => status(entry) === 'paused');
        const contents = active.map((entry) => content(entry));
        const pausedContents = paused.map((entry) => content(entry));
        shutdown = orchestrator.shutdown();
        // Every running run is final before shutdown() returns, and every request it held is aborted.
        active.forEach((entry, i) => {
          expect(status(entry)).toBe('cancelled');
          entry.cancelledBy.push({ reason: 'shutdown', content: contents[i]! });
        });
        checkSignals();
        await shutdown;
        endPausedAtShutdown(paused, pausedContents);
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
    const active = runs.filter((entry) => !FINAL.has(status(entry)) && status(entry) !== 'paused');
    const paused = runs.filter((entry) => status(entry) === 'paused');
    const contents = active.map((entry) => content(entry));
    const pausedContents = paused.map((entry) => content(entry));
    await orchestrator.shutdown();
    active.forEach((entry, i) => entry.cancelledBy.push({ reason: 'shutdown', content: contents[i]! }));
    endPausedAtShutdown(paused, pausedContents);
  }
  // Runs paused at shutdown outlive it in a durable store: another instance takes them and cancels them.
  const leftovers = runs.filter((entry) => status(entry) === 'paused');
  if (leftovers.length > 0) {
    expect(backend.durable).toBe(true);
    const next = createOrchestrator({ store });
    next.subscribe(listener);
    for (const entry of leftovers) {
      const before = content(entry);
      expect(await next.requestCancel(entry.runId, 'api')).toMatchObject({ status: 'cancelled' });
      entry.cancelledBy.push({ reason: 'api', content: before });
    }
    await next.shutdown();
  }
  await settle();
  checkSignals();
  expect(orchestrator.activeCount).toBe(0);

  for (const entry of runs) {
    await readAvailable(entry);
    const final = status(entry)!;
    expect(FINAL.has(final)).toBe(true);
    // One terminal event, last; seq from 1 without gaps; completed/cancelled content = the deltas.
    checkRunEvents(entry.observed, final);
    const output = await orchestrator.result(entry.runId);
    expect(output.status).toBe(final);
    const terminal = entry.observed.at(-1)!;

    // Deltas reach the log in order, each once, only from requests the run wanted. Deltas that
    // arrived in one turn share a RunContent, so each RunContent is a run of whole deltas.
    const deltas = entry.observed
      .filter((event) => event.event === 'RunContent')
      .map((event) => event.content);
    const last = entry.calls.at(-1);
    const sent = entry.calls.flatMap((record) => record.emitted).filter((delta) => delta !== '');
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

    // The record's tool calls are what the events said: each call over with its last
    // ToolCallCompleted; one that started and never completed is `cancelled` (the run ended first).
    const completed = new Map<string, unknown>();
    for (const event of entry.observed) {
      if (event.event === 'ToolCallCompleted') completed.set(event.tool.tool_call_id, event.tool);
    }
    for (const call of output.tools) {
      const done = completed.get(call.tool_call_id);
      if (done) expect(call).toEqual(done);
      else expect(call.status, `${call.tool_call_id} never completed`).toBe('cancelled');
    }
    if (terminal.event === 'RunCompleted') expect(terminal.tools).toEqual(output.tools);
    // Each execution the runtime started is a call of the record; none of a run that had ended.
    const recorded = new Set(output.tools.map((call) => call.tool_call_id));
    for (const record of entry.tools) expect(recorded).toContain(record.toolCallId);
    expect(entry.violations).toEqual([]);

    if (backend.durable) {
      // What a client reads back once the run is stored is what it saw live.
      expect(await collect(await orchestrator.events(entry.runId))).toEqual(entry.observed);
      expect(await orchestrator.getRun(entry.runId)).toEqual(output);
      const session = (await orchestrator.sessionRuns(output.session_id)).map((run) => run.run_id);
      expect(session).toEqual([entry.runId]);
    }

    // No stream left open, no abort listener left behind.
    for (const record of entry.calls) {
      expect(record.call.settled).toBe(true);
      expect(getEventListeners(record.call.signal, 'abort')).toHaveLength(0);
    }
  }

  // No actor and no timer left running; once retention has passed, the registry is back to its size.
  expect(tracker.running()).toEqual([]);
  if (backend.durable) {
    // (A database client keeps its own timers; retention is the store contract's business.)
    await store.close();
    return;
  }
  expect(vi.getTimerCount()).toBe(0);
  await vi.advanceTimersByTimeAsync(60_001);
  expect(await orchestrator.listRuns()).toHaveLength(sizeBefore);
}

/** The `code` of what `promise` rejects with. */
async function rejectedCode(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: unknown }).code;
  }
  throw new Error('expected a rejection');
}

async function lastEvent(orchestrator: Orchestrator, runId: string): Promise<RunEvent> {
  let last: RunEvent | undefined;
  for await (const event of await orchestrator.events(runId)) last = event;
  return last!;
}

const memory: Backend = {
  name: 'memory',
  durable: false,
  open: () => createMemoryRunStore({ retention: { maxAgeMs: 60_000 } }),
};

describe('orchestrator under random schedules', () => {
  it('keeps every run invariant over concurrent runs, tools, pauses, cancels, stalls and shutdown', async () => {
    const ids = counterIds();
    await fc.assert(
      fc.asyncProperty(scenarioArb, (scenario) => play(scenario, memory, ids)),
      { numRuns: 150, seed: 20_251_125 },
    );
  });
});

/** A database shared by the schedules of one backend: closing a schedule's store leaves it open. */
function shared(db: SqlDatabase): SqlDatabase {
  return {
    query: (text, params) => db.query(text, params),
    transaction: (fn) => db.transaction(fn),
    close: () => Promise.resolve(),
  };
}

const durable = [
  {
    name: 'PGlite',
    openDb: async () => {
      const dir = await createTempDir('runstate-property-');
      return { db: await openSqlDatabase({ dataDir: dir.path }), remove: () => dir.remove() };
    },
  },
  {
    name: 'PostgreSQL',
    openDb: async () => {
      const database = await createTestDatabase();
      return { db: await openSqlDatabase({ databaseUrl: database.url }), remove: () => database.drop() };
    },
  },
];

describe.each(durable)('orchestrator over $name under random schedules', ({ name, openDb }) => {
  let opened: { db: SqlDatabase; remove(): Promise<void> } | undefined;
  beforeAll(async () => {
    opened = await openDb();
  }, 60_000);
  afterAll(async () => {
    await opened?.db.close();
    await opened?.remove();
  });

  it('keeps every run invariant, and reads back what it published', async () => {
    const backend: Backend = {
      name,
      durable: true,
      open: () => createSqlRunStore({ db: shared(opened!.db) }),
    };
    // Run ids are unique in the file's database.
    const ids = counterIds(`${name}-run`);
    await fc.assert(
      fc.asyncProperty(scenarioArb, (scenario) => play(scenario, backend, ids)),
      { numRuns: 12, seed: 20_251_130 },
    );
    // Each schedule waits on database round trips: slower on a machine busy with the whole suite.
  }, 60_000);
});
