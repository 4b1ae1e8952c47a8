/**
 * Property-based test of the run machine against a reference model written from the design:
 * random event sequences (start, chunks, end, errors, cancels, any running timer firing, events
 * after the end) under random limits, applied with xstate's pure `transition`. After every event
 * the machine's state, content, reasoning, attempts, error and retry delay must equal the reference's, and
 * its output must be what the reference computes.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createActor, getNextTransitions, initialTransition, transition, type AnyEventObject } from 'xstate';
import {
  isFinalStatus,
  runMachine,
  runStatusOf,
  withRunClock,
  type RunMachineEvent,
  type RunSnapshot,
} from '../../machines/run.machine.js';
import type { CancelReason, RetryPolicy, RunErrorData, TokenUsage } from '../../machines/run-types.js';

type RefState = 'pending' | 'requesting' | 'receiving' | 'retrying' | 'completed' | 'cancelled' | 'failed';
type Timer = 'idleTimeout' | 'runTimeout' | 'retryDelay';

type Command =
  | { type: 'START' }
  | { type: 'CANCEL'; reason: CancelReason }
  | { type: 'CHUNK'; delta: string; reasoning?: string }
  | { type: 'DONE'; finishReason: string; usage: TokenUsage | undefined }
  | { type: 'ERROR'; error: RunErrorData }
  | { type: 'FIRE'; timer: Timer };

interface Ref {
  state: RefState;
  attempt: number;
  content: string;
  reasoning: string;
  chunks: number;
  startedAt: number | null;
  firstChunkAt: number | null;
  error: RunErrorData | null;
  cancelReason: CancelReason | null;
  finishReason: string | null;
  usage: TokenUsage | null;
  retryDelayMs: number;
  /** The attempt's last chunk; `null` before its first. */
  lastChunkAt: number | null;
  /** Chunks taken when the idle timer was armed in `receiving`: firing with more re-arms it. */
  idleArmedAt: number;
}

const FINAL: RefState[] = ['completed', 'cancelled', 'failed'];
const IN_ATTEMPT: RefState[] = ['requesting', 'receiving'];
const STREAMING: RefState[] = [...IN_ATTEMPT, 'retrying'];

/** The lifecycle as docs/architecture and DESIGN.md describe it, written without xstate. */
function reference(ref: Ref, command: Command, retry: RetryPolicy, random: number, now: number): Ref {
  if (FINAL.includes(ref.state)) return ref;
  const next = { ...ref };
  const fail = (error: RunErrorData) => Object.assign(next, { state: 'failed', error });
  switch (command.type) {
    case 'START':
      if (ref.state === 'pending')
        Object.assign(next, { state: 'requesting', attempt: 1, startedAt: now, lastChunkAt: null });
      break;
    case 'CANCEL':
      Object.assign(next, { state: 'cancelled', cancelReason: command.reason });
      break;
    case 'CHUNK':
      if (!IN_ATTEMPT.includes(ref.state)) break;
      Object.assign(next, {
        state: 'receiving',
        content: ref.content + command.delta,
        reasoning: ref.reasoning + (command.reasoning ?? ''),
        chunks: ref.chunks + 1,
        firstChunkAt: ref.firstChunkAt ?? now,
        lastChunkAt: now,
        // Entering `receiving` arms the idle timer; later chunks leave it as it is.
        idleArmedAt: ref.state === 'requesting' ? ref.chunks + 1 : ref.idleArmedAt,
      });
      break;
    case 'DONE':
      if (!IN_ATTEMPT.includes(ref.state)) break;
      Object.assign(next, {
        state: 'completed',
        finishReason: command.finishReason,
        usage: command.usage ?? null,
      });
      break;
    case 'ERROR': {
      if (!IN_ATTEMPT.includes(ref.state)) break;
      const { error } = command;
      const retry_ =
        error.retryable &&
        ref.firstChunkAt === null &&
        ref.attempt < retry.maxAttempts &&
        (error.retryAfterMs === undefined || error.retryAfterMs <= retry.maxRetryAfterMs);
      if (!retry_) {
        fail(error);
        break;
      }
      const backoff = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (ref.attempt - 1));
      const delay = error.retryAfterMs ?? backoff / 2 + (backoff / 2) * random;
      Object.assign(next, { state: 'retrying', error, retryDelayMs: delay });
      break;
    }
    case 'FIRE':
      if (command.timer === 'runTimeout' && STREAMING.includes(ref.state)) {
        fail({ code: 'RUN_TIMEOUT', message: 'the run exceeded its time limit', retryable: false });
      } else if (
        command.timer === 'idleTimeout' &&
        ref.state === 'receiving' &&
        ref.chunks > ref.idleArmedAt
      ) {
        // Chunks came since it was armed: armed again, for what is left since the last one.
        next.idleArmedAt = ref.chunks;
      } else if (command.timer === 'idleTimeout' && IN_ATTEMPT.includes(ref.state)) {
        fail({
          code: 'RUN_TIMEOUT',
          message: 'the model sent nothing within the idle timeout',
          retryable: false,
        });
      } else if (command.timer === 'retryDelay' && ref.state === 'retrying') {
        Object.assign(next, {
          state: 'requesting',
          attempt: ref.attempt + 1,
          error: null,
          lastChunkAt: null,
        });
      }
      break;
  }
  return next;
}

function refValue(state: RefState): unknown {
  if (IN_ATTEMPT.includes(state)) return { streaming: { attempt: state } };
  if (state === 'retrying') return { streaming: 'retrying' };
  return state;
}

const errorArb: fc.Arbitrary<RunErrorData> = fc.record(
  {
    code: fc.constantFrom('MODEL_REQUEST_FAILED' as const, 'MODEL_STREAM_INCOMPLETE' as const),
    message: fc.constantFrom('upstream 503', 'reset'),
    status: fc.constantFrom(429, 500, 503),
    retryable: fc.boolean(),
    // Around the policies' maxRetryAfterMs (0 or 1000), where a retry turns into a failure.
    retryAfterMs: fc.oneof(fc.constantFrom(0, 1, 999, 1_000, 1_001), fc.integer({ min: 0, max: 2_000 })),
  },
  { requiredKeys: ['code', 'message', 'retryable'] },
);

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.constant({ type: 'START' as const }), weight: 2 },
  {
    arbitrary: fc.record({
      type: fc.constant('CANCEL' as const),
      reason: fc.constantFrom<CancelReason>('api', 'code', 'client_disconnect', 'shutdown'),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record(
      {
        type: fc.constant('CHUNK' as const),
        delta: fc.string({ maxLength: 4 }),
        reasoning: fc.string({ maxLength: 4 }),
      },
      { requiredKeys: ['type', 'delta'] },
    ),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      type: fc.constant('DONE' as const),
      finishReason: fc.constantFrom('stop', 'length'),
      usage: fc.option(
        fc.tuple(fc.option(fc.nat(50)), fc.option(fc.nat(50))).map(([i, o]) => ({
          input_tokens: i,
          output_tokens: o,
          total_tokens: i === null || o === null ? null : i + o,
        })),
        { nil: undefined },
      ),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ type: fc.constant('ERROR' as const), error: errorArb }), weight: 3 },
  {
    arbitrary: fc.record({
      type: fc.constant('FIRE' as const),
      timer: fc.constantFrom<Timer>('idleTimeout', 'runTimeout', 'retryDelay'),
    }),
    weight: 2,
  },
);

/**
 * Runs that dwell on retries. Among uniform commands, few errors come in an attempt before its first
 * chunk, fewer are retried, and the retry timer hardly ever fires in `retrying`: here errors are
 * retryable (after the backoff, or a `retry-after` of 0), chunks are rare, and the retry timer
 * is two commands in five (400 runs: it fires in `retrying` 122 times, in 90 runs; none before).
 */
const retryingCommandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    arbitrary: fc.record({
      type: fc.constant('ERROR' as const),
      error: fc
        .tuple(errorArb, fc.constantFrom(undefined, 0))
        .map(([error, retryAfterMs]) => ({ ...error, retryable: true, retryAfterMs })),
    }),
    weight: 4,
  },
  { arbitrary: fc.constant({ type: 'FIRE' as const, timer: 'retryDelay' as const }), weight: 4 },
  { arbitrary: commandArb, weight: 2 },
);

/** Half the runs with any command, half started at once and dwelling on retries. */
const commandsArb: fc.Arbitrary<Command[]> = fc.oneof(
  fc.array(commandArb, { maxLength: 30, size: 'max' }),
  fc
    .array(retryingCommandArb, { maxLength: 29, size: 'max' })
    .map((commands): Command[] => [{ type: 'START' }, ...commands]),
);

const retryArb: fc.Arbitrary<RetryPolicy> = fc.record({
  maxAttempts: fc.integer({ min: 1, max: 4 }),
  baseDelayMs: fc.integer({ min: 1, max: 1_000 }),
  maxDelayMs: fc.integer({ min: 1, max: 4_000 }),
  maxRetryAfterMs: fc.constantFrom(0, 1_000),
});

/** The machine event for a command; for a timer, the `xstate.after.*` event of that timer if it runs. */
function toEvent(snapshot: RunSnapshot, command: Command): AnyEventObject | undefined {
  if (command.type !== 'FIRE') return command;
  const prefix = `xstate.after.${command.timer}.`;
  return getNextTransitions(snapshot)
    .map((t) => ({ type: t.eventType as string }))
    .find((event) => event.type.startsWith(prefix));
}

describe('run machine against a reference model', () => {
  it('agrees on state, content, attempts, errors, delays and output after every event', () => {
    fc.assert(
      fc.property(
        commandsArb,
        retryArb,
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (commands, retry, random) => {
          let now = 1_000;
          const createdAt = now;
          let endedAt = now;
          const machine = withRunClock(runMachine, { now: () => now, random: () => random });
          let [snapshot] = initialTransition(machine, { runId: 'r', retry });
          let ref: Ref = {
            state: 'pending',
            attempt: 0,
            content: '',
            reasoning: '',
            chunks: 0,
            startedAt: null,
            firstChunkAt: null,
            error: null,
            cancelReason: null,
            finishReason: null,
            usage: null,
            retryDelayMs: 0,
            lastChunkAt: null,
            idleArmedAt: 0,
          };
          for (const command of commands) {
            now += 7;
            const event = toEvent(snapshot, command);
            // A timer that is not running cannot fire.
            if (!event) continue;
            const before = snapshot;
            const expected = reference(ref, command, retry, random, now);
            let actions;
            [snapshot, actions] = transition(machine, snapshot, event as RunMachineEvent);
            const emitted = (actions as { type: string; params: unknown }[])
              .filter((action) => action.type === 'xstate.emit')
              .map((action) => (action.params as { event: { delta: string; reasoning: string } }).event);
            const accepted = command.type === 'CHUNK' && expected.chunks > ref.chunks;
            expect(emitted).toEqual(
              accepted ? [{ type: 'content', delta: command.delta, reasoning: command.reasoning ?? '' }] : [],
            );
            if (before.status === 'done') expect(snapshot).toBe(before);
            if (!FINAL.includes(ref.state) && FINAL.includes(expected.state)) endedAt = now;
            ref = expected;
            expect(snapshot.value).toEqual(refValue(ref.state));
            expect(runStatusOf(snapshot)).toBe(
              FINAL.includes(ref.state) ? ref.state : ref.state === 'pending' ? 'pending' : 'streaming',
            );
            expect(isFinalStatus(runStatusOf(snapshot))).toBe(snapshot.status === 'done');
            const { context } = snapshot;
            expect(context.content).toBe(ref.content);
            expect(context.reasoning).toBe(ref.reasoning);
            expect(context.chunkCount).toBe(ref.chunks);
            expect(context.attempt).toBe(ref.attempt);
            expect(context.error).toEqual(ref.error);
            expect(context.cancelReason).toBe(ref.cancelReason);
            if (ref.state === 'retrying') expect(context.retryDelayMs).toBe(ref.retryDelayMs);
            expect(context.times.firstChunkAt).toBe(ref.firstChunkAt);
            expect(context.times.startedAt).toBe(ref.startedAt);
            if (IN_ATTEMPT.includes(ref.state)) expect(context.idle.lastChunkAt).toBe(ref.lastChunkAt);
          }
          if (snapshot.status !== 'done') return;
          const start = ref.startedAt ?? createdAt;
          expect(snapshot.output).toEqual({
            status: ref.state,
            content: ref.content,
            reasoningContent: ref.reasoning,
            // The output keeps an error only for a failed run, a finish reason only for a completed
            // one (a run cancelled while it waited to retry keeps neither).
            error: ref.state === 'failed' ? ref.error : null,
            cancelReason: ref.cancelReason,
            finishReason: ref.state === 'completed' ? ref.finishReason : null,
            attempts: ref.attempt,
            // The reference's model asks for no tools (their paths are replayed in test/model).
            tools: [],
            transcript: [],
            metrics: {
              input_tokens: ref.usage?.input_tokens ?? null,
              output_tokens: ref.usage?.output_tokens ?? null,
              total_tokens: ref.usage?.total_tokens ?? null,
              time_to_first_token: ref.firstChunkAt === null ? null : (ref.firstChunkAt - start) / 1000,
              duration: (endedAt - start) / 1000,
            },
          });
        },
      ),
      { numRuns: 400, seed: 4_2025 },
    );
  });

  it('retries when the server asks to wait up to maxRetryAfterMs, and fails the run beyond it', () => {
    fc.assert(
      fc.property(fc.nat(60_000), fc.integer({ min: -1, max: 1 }), (maxRetryAfterMs, offset) => {
        const retryAfterMs = Math.max(0, maxRetryAfterMs + offset);
        const machine = withRunClock(runMachine, { now: () => 0, random: Math.random });
        let [snapshot] = initialTransition(machine, { runId: 'r', retry: { maxRetryAfterMs } });
        [snapshot] = transition(machine, snapshot, { type: 'START' });
        const error = {
          code: 'MODEL_REQUEST_FAILED' as const,
          message: '429',
          retryable: true,
          retryAfterMs,
        };
        [snapshot] = transition(machine, snapshot, { type: 'ERROR', error });
        expect(snapshot.value).toEqual(
          retryAfterMs <= maxRetryAfterMs ? { streaming: 'retrying' } : 'failed',
        );
      }),
      { numRuns: 100, seed: 1_429 },
    );
  });

  it('fails a run whose machine was given no model service, instead of waiting forever', () => {
    const actor = createActor(runMachine, { input: { runId: 'r' } }).start();
    actor.send({ type: 'START' });
    expect(actor.getSnapshot().output).toMatchObject({
      status: 'failed',
      error: { code: 'INTERNAL', message: 'no model service was provided', retryable: false },
    });
  });
});

/** What a schedule of tool calls does to the machine: one step of a model, a runner, a person or time. */
type ToolCommand =
  | { type: 'START' }
  | { type: 'CANCEL'; reason: CancelReason }
  | { type: 'CHUNK'; delta: string }
  | { type: 'END' }
  | { type: 'CALL'; calls: Array<'run' | 'confirm' | 'invalid'> }
  | { type: 'TOOL_STARTED'; pick: number }
  | { type: 'TOOL_DONE'; pick: number; error: boolean }
  | { type: 'CONTINUE'; confirm: boolean[] }
  | { type: 'FIRE'; timer: 'idleTimeout' | 'runTimeout' | 'retryDelay' | 'pauseTimeout' };

const toolCommandArb: fc.Arbitrary<ToolCommand> = fc.oneof(
  { arbitrary: fc.constant({ type: 'START' as const }), weight: 1 },
  {
    arbitrary: fc.record({
      type: fc.constant('CANCEL' as const),
      reason: fc.constantFrom<CancelReason>('api', 'code', 'client_disconnect', 'shutdown'),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({ type: fc.constant('CHUNK' as const), delta: fc.constantFrom('a', 'bc') }),
    weight: 2,
  },
  { arbitrary: fc.constant({ type: 'END' as const }), weight: 1 },
  {
    arbitrary: fc.record({
      type: fc.constant('CALL' as const),
      calls: fc.array(
        fc.constantFrom('run' as const, 'run' as const, 'confirm' as const, 'invalid' as const),
        {
          minLength: 1,
          maxLength: 3,
        },
      ),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ type: fc.constant('TOOL_STARTED' as const), pick: fc.nat(3) }), weight: 4 },
  {
    arbitrary: fc.record({ type: fc.constant('TOOL_DONE' as const), pick: fc.nat(3), error: fc.boolean() }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      type: fc.constant('CONTINUE' as const),
      confirm: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      type: fc.constant('FIRE' as const),
      timer: fc.constantFrom(
        'idleTimeout' as const,
        'runTimeout' as const,
        'retryDelay' as const,
        'pauseTimeout' as const,
      ),
    }),
    weight: 1,
  },
);

/** Where a call may go from each status: forward only, and `cancelled` only when the run ends. */
const NEXT_STATUS: Record<string, string[]> = {
  awaiting_confirmation: ['queued', 'rejected', 'cancelled'],
  queued: ['running', 'cancelled'],
  running: ['completed', 'failed', 'cancelled'],
  completed: [],
  failed: [],
  rejected: [],
  cancelled: [],
};
const OPEN = new Set(['awaiting_confirmation', 'queued', 'running']);

describe('run machine with tools under random schedules', () => {
  it('keeps the tool calls, rounds, pauses and transcript consistent after every event', () => {
    fc.assert(
      fc.property(
        fc.array(toolCommandArb, { maxLength: 40, size: 'max' }),
        fc.integer({ min: 1, max: 3 }),
        (commands, maxToolRounds) => {
          let now = 0;
          let calls = 0;
          const machine = withRunClock(runMachine, { now: () => now, random: () => 0.5 });
          let [snapshot] = initialTransition(machine, { runId: 'r', maxToolRounds });
          const completedEmitted = new Map<string, number>();
          for (const command of commands) {
            now += 5;
            const { context } = snapshot;
            const open = (status: string) => context.tools.filter((t) => t.status === status);
            let event: AnyEventObject | undefined;
            switch (command.type) {
              case 'START':
              case 'CANCEL':
                event = command;
                break;
              case 'CHUNK':
                event = { type: 'CHUNK', delta: command.delta };
                break;
              case 'END':
                event = { type: 'DONE', finishReason: 'stop' };
                break;
              case 'CALL':
                event = {
                  type: 'DONE',
                  finishReason: 'tool_calls',
                  toolCalls: command.calls.map((kind) => {
                    const id = `call_${++calls}`;
                    return {
                      id,
                      name: kind === 'confirm' ? 'publish' : 'lookup',
                      arguments: '{}',
                      args: {},
                      invalid: kind === 'invalid' ? 'Error: arguments are not JSON' : null,
                      requiresConfirmation: kind === 'confirm',
                    };
                  }),
                };
                break;
              case 'TOOL_STARTED': {
                const queued = open('queued');
                const call = queued[command.pick % Math.max(queued.length, 1)];
                if (call) event = { type: 'TOOL_STARTED', toolCallId: call.tool_call_id };
                break;
              }
              case 'TOOL_DONE': {
                const running = open('running');
                const call = running[command.pick % Math.max(running.length, 1)];
                if (call)
                  event = {
                    type: 'TOOL_DONE',
                    toolCallId: call.tool_call_id,
                    result: 'r',
                    error: command.error,
                  };
                break;
              }
              case 'CONTINUE':
                event = {
                  type: 'CONTINUE',
                  tools: open('awaiting_confirmation').map((t, i) => ({
                    tool_call_id: t.tool_call_id,
                    confirmed: command.confirm[i % 3]!,
                  })),
                };
                break;
              case 'FIRE': {
                const prefix = `xstate.after.${command.timer}.`;
                event = getNextTransitions(snapshot)
                  .map((t) => ({ type: t.eventType as string }))
                  .find((e) => e.type.startsWith(prefix));
                break;
              }
            }
            if (!event) continue;
            const before = snapshot;
            let actions;
            [snapshot, actions] = transition(machine, snapshot, event as RunMachineEvent);
            for (const action of actions as { type: string; params: unknown }[]) {
              if (action.type !== 'xstate.emit') continue;
              const emitted = (action.params as { event: { type: string; tool?: { tool_call_id: string } } })
                .event;
              if (emitted.type === 'tool_completed') {
                const id = emitted.tool!.tool_call_id;
                completedEmitted.set(id, (completedEmitted.get(id) ?? 0) + 1);
              }
            }
            const after = snapshot.context;
            const status = runStatusOf(snapshot);
            // A call only moves forward; cancelled only as the run ends.
            for (const tool of after.tools) {
              const was = before.context.tools.find((t) => t.tool_call_id === tool.tool_call_id);
              if (!was) {
                expect(['awaiting_confirmation', 'queued', 'failed']).toContain(tool.status);
                continue;
              }
              if (was.status !== tool.status) expect(NEXT_STATUS[was.status]).toContain(tool.status);
              if (tool.status === 'cancelled') expect(isFinalStatus(status)).toBe(true);
            }
            // Paused exactly while a call waits for a person; tools run only in streaming.tools.
            const waits = after.tools.some((t) => t.status === 'awaiting_confirmation');
            expect(status === 'paused').toBe(waits && !isFinalStatus(status));
            // (A call of a round that pauses waits queued for the others' answers.)
            const running = after.tools.some((t) => t.status === 'running');
            if (running && !isFinalStatus(status)) expect(snapshot.value).toEqual({ streaming: 'tools' });
            const queued = after.tools.some((t) => t.status === 'queued');
            if (queued && !isFinalStatus(status)) expect(['paused', 'streaming']).toContain(status);
            if (queued && status === 'streaming') expect(snapshot.value).toEqual({ streaming: 'tools' });
            if (isFinalStatus(status)) expect(after.tools.filter((t) => OPEN.has(t.status))).toEqual([]);
            // Rounds: at most maxToolRounds run; one more fails the run.
            expect(after.toolRounds).toBeLessThanOrEqual(maxToolRounds);
            if (after.error?.code === 'TOOL_ROUNDS_EXCEEDED') expect(after.toolRounds).toBe(maxToolRounds);
            // Each finished round adds the assistant's calls and one result per call, ids matching.
            const assistant = after.transcript.filter((m) => m.role === 'assistant');
            const results = after.transcript.filter((m) => m.role === 'tool');
            expect(results.map((m) => m.tool_call_id)).toEqual(
              assistant.flatMap((m) => (m.role === 'assistant' ? m.tool_calls.map((c) => c.id) : [])),
            );
          }
          // Every call that ended with a result or an error was told once (ToolCallCompleted).
          for (const tool of snapshot.context.tools) {
            const told = completedEmitted.get(tool.tool_call_id) ?? 0;
            expect(told, tool.tool_call_id).toBe(
              ['completed', 'failed', 'rejected'].includes(tool.status) ? 1 : 0,
            );
          }
        },
      ),
      { numRuns: 400, seed: 14_2025 },
    );
  });
});
