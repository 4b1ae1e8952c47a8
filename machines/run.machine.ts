import { assign, emit, enqueueActions, fromCallback, not, raise, setup, type SnapshotFrom } from 'xstate';
import type {
  CancelReason,
  CheckedToolCall,
  FinalRunStatus,
  RetryPolicy,
  RunErrorData,
  RunMachineOutput,
  RunMetrics,
  ReasoningDetail,
  ReasoningField,
  RunStatus,
  TokenUsage,
  ToolConfirmation,
  ToolExecution,
  ToolRunnerEvent,
  ToolRunnerInput,
  TranscriptMessage,
} from './run-types.js';
import { MAX_TIMER_MS } from './run-types.js';
import {
  closeOpen,
  confirm,
  finished,
  isOpen,
  newExecutions,
  roundExecutions,
  roundMessages,
  started,
  updateExecution,
} from './tool-round.js';

/**
 * Events the run machine accepts. The model service sends `CHUNK`, `DONE` and `ERROR`; the tool
 * runner `TOOL_STARTED` and `TOOL_DONE`; a person's answer to a pause is `CONTINUE`.
 */
export type RunMachineEvent =
  | { type: 'START' }
  | { type: 'CANCEL'; reason: CancelReason }
  /**
   * Model output. `reasoning` is what a reasoning model streamed as its reasoning before `delta`
   * (the visible content) in the same chunk: the model service merges deltas without reordering.
   * `at`: when the chunk's last delta came, on the machine's clock (default: when the machine takes
   * it); the idle timer counts from there.
   */
  | { type: 'CHUNK'; delta: string; reasoning?: string | undefined; at?: number | undefined }
  /** The model's turn is over; `toolCalls` (checked by the runtime) are the calls it asks for. */
  | {
      type: 'DONE';
      finishReason: string;
      usage?: TokenUsage | undefined;
      toolCalls?: CheckedToolCall[] | undefined;
      /** The field the turn's reasoning came in, sent back in it with the turn's tool calls. */
      reasoningField?: ReasoningField | undefined;
      /** The turn's `reasoning_details` (OpenRouter), sent back as they are with its tool calls. */
      reasoningDetails?: ReasoningDetail[] | undefined;
    }
  | { type: 'ERROR'; error: RunErrorData }
  /** `pause`: also sent by the runtime to a run restored from the store after its pause ran out. */
  | { type: 'TIMEOUT'; limit: 'idle' | 'total' | 'pause' }
  | ToolRunnerEvent
  | { type: 'CONTINUE'; tools: ToolConfirmation[] };

/**
 * Emitted once per accepted chunk, so observers see output only when the machine took it.
 * `reasoning` (possibly `''`) came before `delta`.
 */
export interface RunContentEmitted {
  type: 'content';
  delta: string;
  reasoning: string;
}

/** What observers of tool calls and pauses receive (the wire events `ToolCall*`, `RunPaused`, `RunContinued`). */
export type RunToolEmitted =
  | { type: 'tool_started'; tool: ToolExecution }
  | { type: 'tool_completed'; tool: ToolExecution }
  | { type: 'paused'; tools: ToolExecution[] }
  | { type: 'continued'; tools: ToolExecution[] };

/** Everything the run machine emits. */
export type RunMachineEmitted = RunContentEmitted | RunToolEmitted;

/**
 * What the invoked model service receives: enough to find the run's model and messages, and the
 * messages this run added (tool calls and results), which follow them.
 */
export interface ModelServiceInput {
  runId: string;
  attempt: number;
  transcript: readonly TranscriptMessage[];
}

/** Input of one run actor. */
export interface RunMachineInput {
  runId: string;
  /** A run with no chunk for this long fails with `RUN_TIMEOUT`. */
  idleTimeoutMs?: number | undefined;
  /**
   * A run streaming for longer than this fails with `RUN_TIMEOUT`: the time it streamed across its
   * continues, not the time it waited paused (see `pauseTimeoutMs`).
   */
  timeoutMs?: number | undefined;
  /** Any part of the retry policy; a field left out or `undefined` keeps its default. */
  retry?: { [K in keyof RetryPolicy]?: RetryPolicy[K] | undefined } | undefined;
  /** Model turns whose tool calls run; a model asking for tools once more fails `TOOL_ROUNDS_EXCEEDED`. */
  maxToolRounds?: number | undefined;
  /** A run paused for a person longer than this fails with `RUN_TIMEOUT`. */
  pauseTimeoutMs?: number | undefined;
}

/**
 * Where a run machine reads the time and its randomness. Part of the machine's implementations
 * (see {@link withRunClock}), never of its context: a context is plain data, so that a run's
 * snapshot can be stored and restored in another process.
 */
export interface RunClock {
  /** Milliseconds since the epoch. */
  now: () => number;
  /** A number in [0, 1), for retry jitter. */
  random: () => number;
}

/** The clock of {@link runMachine}: `Date.now` and `Math.random`. */
export const SYSTEM_CLOCK: RunClock = { now: () => Date.now(), random: () => Math.random() };

/** A run's limits, each one set (see {@link DEFAULT_RUN_LIMITS}). */
export interface RunMachineLimits {
  idleTimeoutMs: number;
  timeoutMs: number;
  retry: RetryPolicy;
  maxToolRounds: number;
  pauseTimeoutMs: number;
}

/** When a run's milestones happened, in milliseconds since the epoch (`null`: not yet). */
export interface RunMachineTimes {
  createdAt: number;
  startedAt: number | null;
  firstChunkAt: number | null;
  /** When the run reached its final state. */
  endedAt: number | null;
  /**
   * How long the run streamed before its last pause (the time paused does not count against
   * `timeoutMs`), and when it last began to stream. Absent in a snapshot stored by an earlier
   * runstate: its run gets the whole limit again when continued, as it did then.
   */
  streamedMs?: number;
  streamingSince?: number | null;
}

/**
 * The run's data. Its top-level fields are few on purpose: xstate's `assign` copies the context
 * (`Object.assign({}, context, patch)`) on every `CHUNK`, and from 20 fields on V8 builds that copy
 * as a dictionary, which costs about ten times as much (measured: 10 µs against 0.7 µs per copy).
 * Group new fields (as `limits` and `times` are) rather than adding top-level ones.
 */
export interface RunMachineContext {
  runId: string;
  /** Grows by string concatenation: V8 makes `+=` a rope, O(1) per chunk, flattened once when read. */
  content: string;
  /** The reasoning a reasoning model streamed; grows like `content`. */
  reasoning: string;
  chunkCount: number;
  attempt: number;
  times: RunMachineTimes;
  usage: TokenUsage | null;
  finishReason: string | null;
  error: RunErrorData | null;
  cancelReason: CancelReason | null;
  retryDelayMs: number;
  limits: RunMachineLimits;
  /** Every tool call of the run. */
  tools: ToolExecution[];
  /** The calls of the current round, as the model asked for them. */
  round: CheckedToolCall[];
  /** Rounds of tool calls so far. */
  toolRounds: number;
  /** Messages this run added to the conversation (see {@link ModelServiceInput}). */
  transcript: TranscriptMessage[];
  /**
   * Where the current model turn began, in `content`, `chunkCount`, `attempt` and `reasoning`; the
   * field its reasoning came in (set when it asks for tools); and its request's usage.
   */
  turn: {
    content: number;
    chunks: number;
    attempt: number;
    reasoning: number;
    reasoningField: ReasoningField | null;
    /**
     * The `reasoning_details` the turn streamed, set when it asks for tools and streamed some.
     * Absent from a snapshot stored by an earlier version (none).
     */
    reasoningDetails?: ReasoningDetail[] | undefined;
    /**
     * What the model's current request reported it used, once it ended (`DONE`); `null` before, or
     * when it reported none. A request's own, where `usage` is the run's (unknown once one is).
     * Absent from a snapshot stored by an earlier version.
     */
    usage?: TokenUsage | null | undefined;
  };
  /**
   * The idle timer of a streaming attempt: one timer, not one per chunk. `lastChunkAt` is when the
   * attempt's last chunk came (`null` before its first); `armedAt` the `chunkCount` when the timer
   * was armed: when it fires with more chunks than that, it is armed again for what is left.
   */
  idle: { lastChunkAt: number | null; armedAt: number };
}

/** Defaults of a run's limits. */
export const DEFAULT_RUN_LIMITS = {
  idleTimeoutMs: 60_000,
  timeoutMs: 10 * 60_000,
  retry: { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 8_000, maxRetryAfterMs: 30_000 },
  maxToolRounds: 10,
  pauseTimeoutMs: 60 * 60_000,
} as const satisfies RunMachineLimits;

/**
 * The longest a run's limit is kept: a century. A longer one (`Infinity` included) is kept as this:
 * a number that JSON, a stored snapshot and a database's `bigint` deadline hold (`JSON.stringify`
 * writes `Infinity` as `null`, which a run continued from the store read as a limit of 0).
 */
const LONGEST_LIMIT_MS = 100 * 365 * 24 * 60 * 60_000;
const keptMs = (ms: number): number => Math.min(ms, LONGEST_LIMIT_MS);
const keptCount = (n: number): number => Math.min(n, Number.MAX_SAFE_INTEGER);

/** A delay as a timer can hold it: past 2^31-1 ms (`Infinity` included), 2^31-1 ms (24.8 days). */
export const clampDelay = (ms: number): number => Math.min(Math.max(0, ms), MAX_TIMER_MS);

/** What a turn whose server reported no usage used: unknown, not nothing. */
const UNKNOWN_USAGE: TokenUsage = { input_tokens: null, output_tokens: null, total_tokens: null };

/** Usage of several model turns: the sum, and unknown once any turn's count is (or its usage). */
function addUsage(total: TokenUsage | null, reported: TokenUsage | undefined): TokenUsage {
  const turn = reported ?? UNKNOWN_USAGE;
  if (!total) return turn;
  const add = (a: number | null, b: number | null) => (a === null || b === null ? null : a + b);
  return {
    input_tokens: add(total.input_tokens, turn.input_tokens),
    output_tokens: add(total.output_tokens, turn.output_tokens),
    total_tokens: add(total.total_tokens, turn.total_tokens),
  };
}

/** A chunk appended to the run's text: the context fields it changes (`idle` armed at `armedAt`). */
function appended(
  context: RunMachineContext,
  { delta, reasoning }: { delta: string; reasoning?: string | undefined },
  now: number,
  armedAt: number,
): Partial<RunMachineContext> {
  const idle = { lastChunkAt: now, armedAt };
  return reasoning
    ? {
        content: context.content + delta,
        reasoning: context.reasoning + reasoning,
        chunkCount: context.chunkCount + 1,
        idle,
      }
    : { content: context.content + delta, chunkCount: context.chunkCount + 1, idle };
}

const toolCallsOf = (event: RunMachineEvent): CheckedToolCall[] =>
  (event.type === 'DONE' && event.toolCalls) || [];

/** A retry policy: the given fields, the defaults for the others (`undefined` is not given). */
export function retryPolicy(
  given: RunMachineInput['retry'],
  defaults: RetryPolicy = DEFAULT_RUN_LIMITS.retry,
): RetryPolicy {
  return {
    maxAttempts: given?.maxAttempts ?? defaults.maxAttempts,
    baseDelayMs: given?.baseDelayMs ?? defaults.baseDelayMs,
    maxDelayMs: given?.maxDelayMs ?? defaults.maxDelayMs,
    maxRetryAfterMs: given?.maxRetryAfterMs ?? defaults.maxRetryAfterMs,
  };
}

/** `limits` with each one past what is kept ({@link LONGEST_LIMIT_MS}, a safe integer) kept as that. */
function keptLimits(limits: RunMachineLimits): RunMachineLimits {
  const { retry } = limits;
  return {
    idleTimeoutMs: keptMs(limits.idleTimeoutMs),
    timeoutMs: keptMs(limits.timeoutMs),
    retry: {
      maxAttempts: keptCount(retry.maxAttempts),
      baseDelayMs: keptMs(retry.baseDelayMs),
      maxDelayMs: keptMs(retry.maxDelayMs),
      maxRetryAfterMs: keptMs(retry.maxRetryAfterMs),
    },
    maxToolRounds: keptCount(limits.maxToolRounds),
    pauseTimeoutMs: keptMs(limits.pauseTimeoutMs),
  };
}

function retryDelay(context: RunMachineContext, error: RunErrorData, random: () => number): number {
  if (error.retryAfterMs !== undefined) return error.retryAfterMs;
  const { baseDelayMs, maxDelayMs } = context.limits.retry;
  // Doubled per retry of this turn: the requests of the turns before it were no retries.
  const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** (context.attempt - context.turn.attempt - 1));
  // "Equal jitter": half fixed, half random, so retries of many runs do not align.
  return backoff / 2 + (backoff / 2) * random();
}

/**
 * A run's metrics up to `endMs`: the final ones when the run ended, the ones up to its pause for a
 * paused run (what a non-streamed run that pauses resolves with).
 */
export function runMetrics(context: RunMachineContext, endMs: number): RunMetrics {
  const { createdAt, startedAt, firstChunkAt } = context.times;
  const start = startedAt ?? createdAt;
  const usage = context.usage;
  return {
    // Unknown stays unknown: a server that reports no usage did not use zero tokens.
    input_tokens: usage?.input_tokens ?? null,
    output_tokens: usage?.output_tokens ?? null,
    total_tokens: usage?.total_tokens ?? null,
    time_to_first_token: firstChunkAt === null ? null : (firstChunkAt - start) / 1000,
    duration: (endMs - start) / 1000,
  };
}

function finalOutput(status: FinalRunStatus, context: RunMachineContext): RunMachineOutput {
  return {
    status,
    content: context.content,
    reasoningContent: context.reasoning,
    // A failed attempt's error stays only on a run that failed (not one cancelled while it waited
    // to retry).
    error: status === 'failed' ? context.error : null,
    cancelReason: context.cancelReason,
    // The model's reason for ending the run's answer: a cancelled or failed run has none, though an
    // earlier turn of it may have finished (`tool_calls`).
    finishReason: status === 'completed' ? context.finishReason : null,
    attempts: context.attempt,
    tools: context.tools,
    transcript: context.transcript,
    metrics: runMetrics(context, context.times.endedAt ?? context.times.createdAt),
  };
}

const runSetup = setup({
  types: {
    context: {} as RunMachineContext,
    events: {} as RunMachineEvent,
    input: {} as RunMachineInput,
    output: {} as RunMachineOutput,
    emitted: {} as RunMachineEmitted,
  },
  actors: {
    // Replaced by the runtime; reports clearly if it was not.
    tools: fromCallback<RunMachineEvent, ToolRunnerInput>(({ input, sendBack }) => {
      for (const call of input.calls) {
        sendBack({ type: 'TOOL_DONE', toolCallId: call.id, result: 'Error: no tool runner', error: true });
      }
    }),
    // Replaced by the runtime (`runMachine.provide`); reports clearly if it was not.
    model: fromCallback<RunMachineEvent, ModelServiceInput>(({ sendBack }) => {
      sendBack({
        type: 'ERROR',
        error: { code: 'INTERNAL', message: 'no model service was provided', retryable: false },
      });
    }),
  },
  delays: {
    // Replaced by `clockDelays`, which counts from the attempt's last chunk.
    idleTimeout: ({ context }) => clampDelay(context.limits.idleTimeoutMs),
    // Replaced by `clockDelays`, which takes off what the run streamed before its pauses.
    runTimeout: ({ context }) => clampDelay(context.limits.timeoutMs),
    retryDelay: ({ context }) => clampDelay(context.retryDelayMs),
    pauseTimeout: ({ context }) => clampDelay(context.limits.pauseTimeoutMs),
  },
  guards: {
    // Only before the turn's first chunk: a retry after it would repeat output already delivered.
    canRetry: ({ context, event }) => {
      if (event.type !== 'ERROR') return false;
      const { error } = event;
      return (
        error.retryable &&
        context.chunkCount === context.turn.chunks &&
        context.attempt - context.turn.attempt < context.limits.retry.maxAttempts &&
        (error.retryAfterMs === undefined || error.retryAfterMs <= context.limits.retry.maxRetryAfterMs)
      );
    },
    asksForTools: ({ event }) => toolCallsOf(event).length > 0,
    // The idle timer fired with no chunk since it was armed: the model was silent for the whole timeout.
    silentSinceArmed: ({ context }) => context.chunkCount === context.idle.armedAt,
    roundsLeft: ({ context }) => context.toolRounds < context.limits.maxToolRounds,
    needsConfirmation: ({ event }) => toolCallsOf(event).some((call) => call.requiresConfirmation),
    roundOver: ({ context }) => !roundExecutions(context.tools, context.round.length).some(isOpen),
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
    recordPauseTimeout: assign({
      error: ({ context }) => ({
        code: 'RUN_TIMEOUT' as const,
        message: `nobody answered the paused tool calls within ${context.limits.pauseTimeoutMs} ms`,
        retryable: false,
      }),
    }),
    recordRoundsExceeded: assign({
      error: ({ context }) => ({
        code: 'TOOL_ROUNDS_EXCEEDED' as const,
        message: `the model asked for tools again after ${context.limits.maxToolRounds} rounds (maxToolRounds)`,
        retryable: false,
      }),
    }),
    // The round's results go to the model in its next turn, which starts afresh (attempts, retries).
    endRound: assign(({ context }) => ({
      transcript: [
        ...context.transcript,
        ...roundMessages(
          {
            content: context.content.slice(context.turn.content),
            reasoning: context.reasoning.slice(context.turn.reasoning),
            reasoningField: context.turn.reasoningField,
            reasoningDetails: context.turn.reasoningDetails,
          },
          context.round,
          roundExecutions(context.tools, context.round.length),
        ),
      ],
      round: [],
      turn: {
        content: context.content.length,
        chunks: context.chunkCount,
        attempt: context.attempt,
        reasoning: context.reasoning.length,
        reasoningField: null,
      },
    })),
    // A request that streamed output and ended with no `DONE` (cancelled, timed out, failed, cut)
    // reported no usage but used tokens: the run's sum is unknown from then on, as a `DONE` with no
    // usage makes it. (One that failed before its output, retried or not, is left out, as before.)
    closeRequest: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'DONE' && context.idle.lastChunkAt !== null)
        enqueue.assign({ usage: addUsage(context.usage, undefined) });
    }),
    emitPaused: emit(({ context }) => ({
      type: 'paused' as const,
      tools: context.tools.filter((tool) => tool.status === 'awaiting_confirmation'),
    })),
    // The idle timer counts from here: the chunks already taken do not re-arm it.
    armIdleTimer: assign({ idle: ({ context }) => ({ ...context.idle, armedAt: context.chunkCount }) }),
    emitContent: emit(({ event }) => ({
      type: 'content' as const,
      delta: event.type === 'CHUNK' ? event.delta : '',
      reasoning: (event.type === 'CHUNK' && event.reasoning) || '',
    })),
    idleTimeout: raise({ type: 'TIMEOUT', limit: 'idle' }),
  },
});

/** The delays that read the clock: provided again by {@link withRunClock}. */
function clockDelays(clock: RunClock) {
  return {
    // What is left of the limit (at least 1 ms): the time streamed before a pause counts, not the
    // pause. Read on entering `streaming`, when `streamedMs` holds the streaming before this stretch.
    runTimeout: ({ context }: { context: RunMachineContext }) =>
      clampDelay(Math.max(1, context.limits.timeoutMs - (context.times.streamedMs ?? 0))),
    // From the attempt's last chunk (from now before its first): a re-armed timer waits for what is left.
    idleTimeout: ({ context }: { context: RunMachineContext }) =>
      // At least 1 ms, as Node's timers do: a timer due at once still fires after what happens now.
      clampDelay(
        Math.max(1, (context.idle.lastChunkAt ?? clock.now()) + context.limits.idleTimeoutMs - clock.now()),
      ),
  };
}

/** The actions that read the clock: provided again by {@link withRunClock}. */
function clockActions(clock: RunClock) {
  return {
    recordCreated: runSetup.assign({
      times: ({ context }) => ({ ...context.times, createdAt: clock.now() }),
    }),
    // Entered again after a pause: the run started the first time, and streams again from now.
    recordStart: runSetup.assign({
      times: ({ context }) => {
        const now = clock.now();
        return { ...context.times, startedAt: context.times.startedAt ?? now, streamingSince: now };
      },
    }),
    // The stretch of streaming that the pause ends counts against `timeoutMs`.
    recordPause: runSetup.assign({
      times: ({ context }) => {
        const { streamedMs = 0, streamingSince } = context.times;
        const now = clock.now();
        return {
          ...context.times,
          streamedMs: streamedMs + (streamingSince == null ? 0 : now - streamingSince),
          streamingSince: null,
        };
      },
    }),
    recordEnd: runSetup.assign({ times: ({ context }) => ({ ...context.times, endedAt: clock.now() }) }),
    // A new round: its calls are recorded; those that cannot run are over (and reported) at once.
    startRound: runSetup.enqueueActions(({ context, event, enqueue }) => {
      const calls = toolCallsOf(event);
      const added = newExecutions(calls, clock.now());
      enqueue.assign({
        round: calls,
        tools: [...context.tools, ...added],
        toolRounds: context.toolRounds + 1,
        turn: {
          ...context.turn,
          reasoningField: (event.type === 'DONE' && event.reasoningField) || null,
          reasoningDetails: (event.type === 'DONE' && event.reasoningDetails) || undefined,
        },
      });
      for (const tool of added) if (!isOpen(tool)) enqueue.emit({ type: 'tool_completed', tool });
    }),
    toolStarted: runSetup.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'TOOL_STARTED') return;
      const size = context.round.length;
      const tools = updateExecution(context.tools, size, event.toolCallId, (tool) =>
        started(tool, clock.now()),
      );
      enqueue.assign({ tools });
      const tool = roundExecutions(tools, size).find((t) => t.tool_call_id === event.toolCallId);
      if (tool) enqueue.emit({ type: 'tool_started', tool });
    }),
    toolDone: runSetup.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'TOOL_DONE') return;
      const id = event.toolCallId;
      const size = context.round.length;
      const tools = updateExecution(context.tools, size, id, (tool) =>
        isOpen(tool) ? finished(tool, event.result, event.error, clock.now()) : tool,
      );
      enqueue.assign({ tools });
      const tool = roundExecutions(tools, size).find((t) => t.tool_call_id === id);
      if (tool) enqueue.emit({ type: 'tool_completed', tool });
    }),
    continueRound: runSetup.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'CONTINUE') return;
      const before = context.tools;
      const tools = confirm(before, event.tools, clock.now());
      enqueue.assign({ tools });
      const answered = tools.filter((tool, i) => tool !== before[i]);
      enqueue.emit({ type: 'continued', tools: answered });
      for (const tool of answered)
        if (tool.status === 'rejected') enqueue.emit({ type: 'tool_completed', tool });
    }),
    closeTools: runSetup.assign({ tools: ({ context }) => closeOpen(context.tools, clock.now()) }),
    // Per chunk: no timer is touched, the chunk's time is noted for the idle timer (see `idle`).
    appendChunk: runSetup.assign(({ context, event }) =>
      event.type === 'CHUNK' ? appended(context, event, event.at ?? clock.now(), context.idle.armedAt) : {},
    ),
    // An attempt's first chunk, in one `assign` (each one builds a snapshot): the run's first chunk
    // (time to first token is the run's, not the turn's), the chunk, and the idle timer of
    // `receiving` armed from here.
    takeFirstChunk: runSetup.assign(({ context, event }) => {
      if (event.type !== 'CHUNK') return {};
      const now = event.at ?? clock.now();
      const patch = appended(context, event, now, context.chunkCount + 1);
      return context.times.firstChunkAt === null
        ? { ...patch, times: { ...context.times, firstChunkAt: now } }
        : patch;
    }),
    // Calls that came whole with the end (a model that streams none of their arguments) are the
    // turn's output: a run's time to first token counts to them, not to a later turn's text.
    recordDone: runSetup.assign(({ context, event }) => {
      if (event.type !== 'DONE') return {};
      const patch = {
        finishReason: event.finishReason,
        usage: addUsage(context.usage, event.usage),
        turn: { ...context.turn, usage: event.usage ?? null },
      };
      return context.times.firstChunkAt === null && event.toolCalls?.length
        ? { ...patch, times: { ...context.times, firstChunkAt: clock.now() } }
        : patch;
    }),
    scheduleRetry: runSetup.assign({
      retryDelayMs: ({ context, event }) =>
        event.type === 'ERROR' ? retryDelay(context, event.error, clock.random) : 0,
      error: ({ event }) => (event.type === 'ERROR' ? event.error : null),
    }),
  };
}

const systemClockActions = clockActions(SYSTEM_CLOCK);
const systemClockDelays = clockDelays(SYSTEM_CLOCK);

/**
 * The lifecycle of one agent run: `pending → streaming (⇄ paused) → completed | cancelled | failed`.
 *
 * Pure: the model service (`model`) and the tool runner (`tools`) are placeholders that the runtime
 * provides. Leaving `streaming.attempt` stops the model service, leaving `streaming.tools` stops the
 * tool runner, and both abort what they run when stopped, so a `CANCEL` closes the upstream socket,
 * or aborts every running tool, in the same tick.
 *
 * A model turn that asks for tools moves to `streaming.tools`, which runs them and goes back to
 * `streaming.attempt` with the results for the next turn. When one of the calls needs a person's
 * confirmation, the run waits in the top-level `paused` state first, until `CONTINUE` (or `CANCEL`,
 * or its time limit).
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
export const runMachine = runSetup
  .extend({ actions: systemClockActions, delays: systemClockDelays })
  .createMachine({
    id: 'run',
    context: ({ input }) => {
      return {
        runId: input.runId,
        content: '',
        reasoning: '',
        chunkCount: 0,
        attempt: 0,
        // `createdAt` is set by `recordCreated`, the root's entry: the clock is an implementation, not input.
        times: {
          createdAt: 0,
          startedAt: null,
          firstChunkAt: null,
          endedAt: null,
          streamedMs: 0,
          streamingSince: null,
        },
        usage: null,
        finishReason: null,
        error: null,
        cancelReason: null,
        retryDelayMs: 0,
        limits: keptLimits({
          idleTimeoutMs: input.idleTimeoutMs ?? DEFAULT_RUN_LIMITS.idleTimeoutMs,
          timeoutMs: input.timeoutMs ?? DEFAULT_RUN_LIMITS.timeoutMs,
          retry: retryPolicy(input.retry),
          maxToolRounds: input.maxToolRounds ?? DEFAULT_RUN_LIMITS.maxToolRounds,
          pauseTimeoutMs: input.pauseTimeoutMs ?? DEFAULT_RUN_LIMITS.pauseTimeoutMs,
        }),
        tools: [],
        round: [],
        toolRounds: 0,
        transcript: [],
        turn: { content: 0, chunks: 0, attempt: 0, reasoning: 0, reasoningField: null, usage: null },
        idle: { lastChunkAt: null, armedAt: 0 },
      };
    },
    entry: 'recordCreated',
    initial: 'pending',
    states: {
      pending: {
        on: {
          START: 'streaming',
          CANCEL: { target: 'cancelled', actions: 'recordCancel' },
        },
      },
      streaming: {
        entry: 'recordStart',
        after: { runTimeout: { actions: raise({ type: 'TIMEOUT', limit: 'total' }) } },
        on: {
          CANCEL: { target: 'cancelled', actions: ['recordCancel', 'closeTools'] },
          TIMEOUT: { target: 'failed', actions: ['recordTimeout', 'closeTools'] },
        },
        initial: 'attempt',
        states: {
          // One model request. The service lives as long as this state: leaving it aborts the request.
          attempt: {
            exit: 'closeRequest',
            entry: assign({
              attempt: ({ context }) => context.attempt + 1,
              error: null,
              idle: ({ context }) => ({ lastChunkAt: null, armedAt: context.chunkCount }),
              turn: ({ context }) => ({ ...context.turn, usage: null }),
            }),
            invoke: {
              id: 'model',
              src: 'model',
              input: ({ context }) => ({
                runId: context.runId,
                attempt: context.attempt,
                transcript: context.transcript,
              }),
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
              DONE: [
                { guard: not('asksForTools'), target: '#run.completed', actions: 'recordDone' },
                {
                  guard: not('roundsLeft'),
                  target: '#run.failed',
                  actions: ['recordDone', 'recordRoundsExceeded'],
                },
                { guard: 'needsConfirmation', target: '#run.paused', actions: ['recordDone', 'startRound'] },
                { target: 'tools', actions: ['recordDone', 'startRound'] },
              ],
              ERROR: [
                { guard: 'canRetry', target: 'retrying', actions: 'scheduleRetry' },
                { target: '#run.failed', actions: 'recordError' },
              ],
            },
            initial: 'requesting',
            states: {
              // The idle timer lives in these children, so re-arming it never restarts the request.
              requesting: {
                after: { idleTimeout: { actions: 'idleTimeout' } },
                on: {
                  CHUNK: { target: 'receiving', actions: ['takeFirstChunk', 'emitContent'] },
                },
              },
              // One idle timer for the stream, not one per chunk (re-arming a timer per chunk cost more
              // than the rest of the chunk's transition): when it fires after newer chunks, it is armed
              // again for what is left of the timeout since the last one. The first chunk arms it.
              receiving: {
                after: {
                  idleTimeout: [
                    { guard: 'silentSinceArmed', actions: 'idleTimeout' },
                    { target: 'receiving', reenter: true, actions: 'armIdleTimer' },
                  ],
                },
                on: {
                  CHUNK: { actions: ['appendChunk', 'emitContent'] },
                },
              },
            },
          },
          // Waiting before the next attempt; a CANCEL or the run's time limit ends it at once.
          retrying: {
            after: { retryDelay: 'attempt' },
          },
          // The calls of one model turn run, each with its own signal; leaving this state aborts them.
          tools: {
            invoke: {
              id: 'tools',
              src: 'tools',
              input: ({ context }) => {
                const queued = new Set(
                  roundExecutions(context.tools, context.round.length)
                    .filter((tool) => tool.status === 'queued')
                    .map((tool) => tool.tool_call_id),
                );
                return {
                  runId: context.runId,
                  calls: context.round
                    .filter((call) => queued.has(call.id))
                    .map(({ id, name, arguments: args }) => ({ id, name, arguments: args })),
                };
              },
              onError: {
                target: '#run.failed',
                actions: [
                  assign({
                    error: ({ event }) => ({
                      code: 'INTERNAL' as const,
                      message: event.error instanceof Error ? event.error.message : String(event.error),
                      retryable: false,
                    }),
                  }),
                  'closeTools',
                ],
              },
            },
            on: {
              TOOL_STARTED: { actions: 'toolStarted' },
              TOOL_DONE: { actions: 'toolDone' },
            },
            always: { guard: 'roundOver', target: 'attempt', actions: 'endRound' },
          },
        },
      },
      // Waiting for a person to confirm or reject tool calls; nothing runs meanwhile.
      paused: {
        entry: ['recordPause', 'emitPaused'],
        // A run restored from the store has no timer (timers are not in a snapshot): the runtime
        // sends it the TIMEOUT when its pause has run out.
        after: { pauseTimeout: { actions: raise({ type: 'TIMEOUT', limit: 'pause' }) } },
        on: {
          CONTINUE: { target: '#run.streaming.tools', actions: 'continueRound' },
          CANCEL: { target: 'cancelled', actions: ['recordCancel', 'closeTools'] },
          TIMEOUT: { target: 'failed', actions: ['recordPauseTimeout', 'closeTools'] },
        },
      },
      completed: {
        type: 'final',
        entry: 'recordEnd',
        output: ({ context }) => finalOutput('completed', context),
      },
      cancelled: {
        type: 'final',
        entry: 'recordEnd',
        output: ({ context }) => finalOutput('cancelled', context),
      },
      failed: { type: 'final', entry: 'recordEnd', output: ({ context }) => finalOutput('failed', context) },
    },
    // The machine's output is the output of the final state it reached.
    output: ({ event }) => event.output as RunMachineOutput,
  });

/**
 * The run machine reading the time and randomness from `clock`: what an orchestrator (or a test)
 * injects. `machine` is {@link runMachine} or one made from it with `provide`.
 *
 * @example
 * ```ts
 * const machine = withRunClock(runMachine, { now: () => fakeNow, random: () => 0.5 });
 * ```
 */
export function withRunClock(machine: typeof runMachine, clock: RunClock): typeof runMachine {
  // Only the implementations that still read the system clock: one the caller provided (a shorter
  // `idleTimeout`) stays as given.
  const { actions, delays } = machine.implementations as {
    actions: Record<string, unknown>;
    delays: Record<string, unknown>;
  };
  const onClock = <T extends Record<string, unknown>>(given: Record<string, unknown>, system: T, mine: T) =>
    Object.fromEntries(Object.entries(mine).filter(([name]) => given[name] === system[name])) as Partial<T>;
  return machine.provide({
    actions: onClock(actions, systemClockActions, clockActions(clock)),
    delays: onClock(delays, systemClockDelays, clockDelays(clock)),
  });
}

/** A snapshot of a run actor. */
export type RunSnapshot = SnapshotFrom<typeof runMachine>;

/**
 * The run's status: its machine's top-level state.
 *
 * @example
 * ```ts
 * const actor = createActor(runMachine, { input: { runId: 'r1' } }).start();
 * runStatusOf(actor.getSnapshot()); // 'pending'
 * ```
 */
export function runStatusOf(snapshot: RunSnapshot): RunStatus {
  const value = snapshot.value;
  return (typeof value === 'string' ? value : Object.keys(value)[0]) as RunStatus;
}

/**
 * True for `completed`, `cancelled` and `failed`.
 *
 * @example
 * ```ts
 * if (isFinalStatus(record.status)) console.log(`${record.run_id} ended ${record.status}`);
 * ```
 */
export function isFinalStatus(status: RunStatus): status is FinalRunStatus {
  return status === 'completed' || status === 'cancelled' || status === 'failed';
}
