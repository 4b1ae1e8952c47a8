import { assign, emit, fromCallback, raise, setup, type SnapshotFrom } from 'xstate';
import type {
  CancelReason,
  FinalRunStatus,
  RetryPolicy,
  RunErrorData,
  RunMachineOutput,
  RunStatus,
  TokenUsage,
} from './run-types.js';

/** Events the run machine accepts. The model service sends `CHUNK`, `DONE` and `ERROR`. */
export type RunMachineEvent =
  | { type: 'START' }
  | { type: 'CANCEL'; reason: CancelReason }
  /**
   * Model output. `reasoning` is what a reasoning model streamed as its reasoning before `delta`
   * (the visible content) in the same chunk: the model service merges deltas without reordering.
   */
  | { type: 'CHUNK'; delta: string; reasoning?: string | undefined }
  | { type: 'DONE'; finishReason: string; usage?: TokenUsage | undefined }
  | { type: 'ERROR'; error: RunErrorData }
  | { type: 'TIMEOUT'; limit: 'idle' | 'total' };

/**
 * Emitted once per accepted chunk, so observers see output only when the machine took it.
 * `reasoning` (possibly `''`) came before `delta`.
 */
export interface RunContentEmitted {
  type: 'content';
  delta: string;
  reasoning: string;
}

/** What the invoked model service receives: enough to find the run's model and messages. */
export interface ModelServiceInput {
  runId: string;
  attempt: number;
}

/** Input of one run actor. */
export interface RunMachineInput {
  runId: string;
  /** A run with no chunk for this long fails with `RUN_TIMEOUT`. */
  idleTimeoutMs?: number;
  /** A run streaming for longer than this fails with `RUN_TIMEOUT`. */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  /** Clock in milliseconds; injected so that tests and replays are deterministic. */
  now?: () => number;
  /** Random source in [0, 1) for retry jitter. */
  random?: () => number;
}

export interface RunMachineContext {
  runId: string;
  /** Grows by string concatenation: V8 makes `+=` a rope, O(1) per chunk, flattened once when read. */
  content: string;
  /** The reasoning a reasoning model streamed; grows like `content`. */
  reasoning: string;
  chunkCount: number;
  attempt: number;
  createdAt: number;
  startedAt: number | null;
  firstChunkAt: number | null;
  usage: TokenUsage | null;
  finishReason: string | null;
  error: RunErrorData | null;
  cancelReason: CancelReason | null;
  retryDelayMs: number;
  idleTimeoutMs: number;
  timeoutMs: number;
  retry: RetryPolicy;
  now: () => number;
  random: () => number;
}

/** Defaults of a run's limits. */
export const DEFAULT_RUN_LIMITS = {
  idleTimeoutMs: 60_000,
  timeoutMs: 10 * 60_000,
  retry: { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 8_000, maxRetryAfterMs: 30_000 },
} as const satisfies { idleTimeoutMs: number; timeoutMs: number; retry: RetryPolicy };

// setTimeout fires at once for delays past 2^31-1 ms; clamp so "very long" stays very long.
const MAX_TIMER_MS = 2 ** 31 - 1;
const clampDelay = (ms: number): number => Math.min(Math.max(0, ms), MAX_TIMER_MS);

function retryDelay(context: RunMachineContext, error: RunErrorData): number {
  if (error.retryAfterMs !== undefined) return error.retryAfterMs;
  const { baseDelayMs, maxDelayMs } = context.retry;
  const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** (context.attempt - 1));
  // "Equal jitter": half fixed, half random, so retries of many runs do not align.
  return backoff / 2 + (backoff / 2) * context.random();
}

function finalOutput(status: FinalRunStatus, context: RunMachineContext): RunMachineOutput {
  const end = context.now();
  const start = context.startedAt ?? context.createdAt;
  const usage = context.usage;
  return {
    status,
    content: context.content,
    reasoningContent: context.reasoning,
    error: context.error,
    cancelReason: context.cancelReason,
    finishReason: context.finishReason,
    attempts: context.attempt,
    metrics: {
      // Unknown stays unknown: a server that reports no usage did not use zero tokens.
      input_tokens: usage?.input_tokens ?? null,
      output_tokens: usage?.output_tokens ?? null,
      total_tokens: usage?.total_tokens ?? null,
      time_to_first_token: context.firstChunkAt === null ? null : (context.firstChunkAt - start) / 1000,
      duration: (end - start) / 1000,
    },
  };
}

/**
 * The lifecycle of one agent run: `pending → streaming → completed | cancelled | failed`.
 *
 * Pure: the model service (`model`) is a placeholder that the runtime provides. Leaving
 * `streaming.attempt` stops the service, and the service aborts its request when stopped, so a
 * `CANCEL` closes the upstream socket in the same tick.
 *
 * @example
 * ```ts
 * const actor = createActor(runMachine.provide({ actors: { model: myModelService } }), {
 *   input: { runId: 'r1' },
 * }).start();
 * actor.send({ type: 'START' });
 * actor.send({ type: 'CANCEL', reason: 'code' });
 * actor.getSnapshot().value; // 'cancelled'
 * ```
 */
export const runMachine = setup({
  types: {
    context: {} as RunMachineContext,
    events: {} as RunMachineEvent,
    input: {} as RunMachineInput,
    output: {} as RunMachineOutput,
    emitted: {} as RunContentEmitted,
  },
  actors: {
    // Replaced by the runtime (`runMachine.provide`); reports clearly if it was not.
    model: fromCallback<RunMachineEvent, ModelServiceInput>(({ sendBack }) => {
      sendBack({
        type: 'ERROR',
        error: { code: 'INTERNAL', message: 'no model service was provided', retryable: false },
      });
    }),
  },
  delays: {
    idleTimeout: ({ context }) => clampDelay(context.idleTimeoutMs),
    runTimeout: ({ context }) => clampDelay(context.timeoutMs),
    retryDelay: ({ context }) => clampDelay(context.retryDelayMs),
  },
  guards: {
    // Only before the first chunk: a retry after it would repeat output already delivered.
    canRetry: ({ context, event }) => {
      if (event.type !== 'ERROR') return false;
      const { error } = event;
      return (
        error.retryable &&
        context.firstChunkAt === null &&
        context.attempt < context.retry.maxAttempts &&
        (error.retryAfterMs === undefined || error.retryAfterMs <= context.retry.maxRetryAfterMs)
      );
    },
  },
  actions: {
    recordCancel: assign({
      cancelReason: ({ event }) => (event.type === 'CANCEL' ? event.reason : null),
    }),
    recordError: assign({
      error: ({ event }) => (event.type === 'ERROR' ? event.error : null),
    }),
    recordTimeout: assign({
      error: ({ event }) => ({
        code: 'RUN_TIMEOUT' as const,
        message:
          event.type === 'TIMEOUT' && event.limit === 'total'
            ? 'the run exceeded its time limit'
            : 'the model sent nothing within the idle timeout',
        retryable: false,
      }),
    }),
    appendChunk: assign(({ context, event }) => {
      if (event.type !== 'CHUNK') return {};
      const { delta, reasoning } = event;
      return reasoning
        ? {
            content: context.content + delta,
            reasoning: context.reasoning + reasoning,
            chunkCount: context.chunkCount + 1,
          }
        : { content: context.content + delta, chunkCount: context.chunkCount + 1 };
    }),
    emitContent: emit(({ event }) => ({
      type: 'content' as const,
      delta: event.type === 'CHUNK' ? event.delta : '',
      reasoning: (event.type === 'CHUNK' && event.reasoning) || '',
    })),
    recordFirstChunk: assign({ firstChunkAt: ({ context }) => context.now() }),
    recordDone: assign(({ event }) =>
      event.type === 'DONE' ? { finishReason: event.finishReason, usage: event.usage ?? null } : {},
    ),
    scheduleRetry: assign({
      retryDelayMs: ({ context, event }) => (event.type === 'ERROR' ? retryDelay(context, event.error) : 0),
      error: ({ event }) => (event.type === 'ERROR' ? event.error : null),
    }),
    idleTimeout: raise({ type: 'TIMEOUT', limit: 'idle' }),
  },
}).createMachine({
  id: 'run',
  context: ({ input }) => {
    const now = input.now ?? Date.now;
    return {
      runId: input.runId,
      content: '',
      reasoning: '',
      chunkCount: 0,
      attempt: 0,
      createdAt: now(),
      startedAt: null,
      firstChunkAt: null,
      usage: null,
      finishReason: null,
      error: null,
      cancelReason: null,
      retryDelayMs: 0,
      idleTimeoutMs: input.idleTimeoutMs ?? DEFAULT_RUN_LIMITS.idleTimeoutMs,
      timeoutMs: input.timeoutMs ?? DEFAULT_RUN_LIMITS.timeoutMs,
      retry: { ...DEFAULT_RUN_LIMITS.retry, ...input.retry },
      now,
      random: input.random ?? Math.random,
    };
  },
  initial: 'pending',
  states: {
    pending: {
      on: {
        START: 'streaming',
        CANCEL: { target: 'cancelled', actions: 'recordCancel' },
      },
    },
    streaming: {
      entry: assign({ startedAt: ({ context }) => context.now() }),
      after: { runTimeout: { actions: raise({ type: 'TIMEOUT', limit: 'total' }) } },
      on: {
        CANCEL: { target: 'cancelled', actions: 'recordCancel' },
        TIMEOUT: { target: 'failed', actions: 'recordTimeout' },
      },
      initial: 'attempt',
      states: {
        // One model request. The service lives as long as this state: leaving it aborts the request.
        attempt: {
          entry: assign({ attempt: ({ context }) => context.attempt + 1, error: null }),
          invoke: {
            id: 'model',
            src: 'model',
            input: ({ context }) => ({ runId: context.runId, attempt: context.attempt }),
            onError: {
              target: '#run.failed',
              actions: assign({
                error: ({ event }) => ({
                  code: 'INTERNAL' as const,
                  message: event.error instanceof Error ? event.error.message : String(event.error),
                  retryable: false,
                }),
              }),
            },
          },
          on: {
            DONE: { target: '#run.completed', actions: 'recordDone' },
            ERROR: [
              { guard: 'canRetry', target: 'retrying', actions: 'scheduleRetry' },
              { target: '#run.failed', actions: 'recordError' },
            ],
          },
          initial: 'requesting',
          states: {
            // The idle timer lives in these children, so a chunk re-enters only the child and never
            // restarts the invoked request.
            requesting: {
              after: { idleTimeout: { actions: 'idleTimeout' } },
              on: {
                CHUNK: { target: 'receiving', actions: ['recordFirstChunk', 'appendChunk', 'emitContent'] },
              },
            },
            receiving: {
              after: { idleTimeout: { actions: 'idleTimeout' } },
              on: {
                CHUNK: { target: 'receiving', reenter: true, actions: ['appendChunk', 'emitContent'] },
              },
            },
          },
        },
        // Waiting before the next attempt; a CANCEL or the run's time limit ends it at once.
        retrying: {
          after: { retryDelay: 'attempt' },
        },
      },
    },
    completed: { type: 'final', output: ({ context }) => finalOutput('completed', context) },
    cancelled: { type: 'final', output: ({ context }) => finalOutput('cancelled', context) },
    failed: { type: 'final', output: ({ context }) => finalOutput('failed', context) },
  },
  // The machine's output is the output of the final state it reached.
  output: ({ event }) => event.output as RunMachineOutput,
});

/** A snapshot of a run actor. */
export type RunSnapshot = SnapshotFrom<typeof runMachine>;

/** The run's status: its machine's top-level state. */
export function runStatusOf(snapshot: RunSnapshot): RunStatus {
  const value = snapshot.value;
  return (typeof value === 'string' ? value : Object.keys(value)[0]) as RunStatus;
}

/** True for `completed`, `cancelled` and `failed`. */
export function isFinalStatus(status: RunStatus): status is FinalRunStatus {
  return status === 'completed' || status === 'cancelled' || status === 'failed';
}
