/**
 * An oracle for lifecycle paths, independent of the run machine: from a path's inputs only (its
 * actions and the events they send, and its limits), what the run must do, written from the
 * documented rules (docs/architecture.md "The run machine", docs/tools.md, machines/run-types.ts),
 * never by running the machine. `getLifecyclePaths` takes each path's expected values from the
 * machine itself, so a test that checks only those passes on a broken machine; this one does not.
 *
 * It keeps no more than the rules need: where the run is (a coarse phase), the current turn's
 * attempts and output, the idle timer's arming, the tool calls' statuses, the usage and the time.
 */
import { expect } from 'vitest';
import type { AnyEventObject, StateValue } from 'xstate';
import type {
  CancelReason,
  ErrorCode,
  FinalRunStatus,
  RunErrorData,
  RunStatus,
  TokenUsage,
  ToolCallStatus,
} from '../../machines/run-types.js';
import type { LifecycleAction, LifecycleLimits } from '../../src/testing/index.js';

/** Where a run is: its status, and for a streaming one what it does. */
export type Phase = 'pending' | 'attempt' | 'retrying' | 'tools' | 'paused' | FinalRunStatus;

/** What the oracle says of a run after one step. */
export interface ExpectedStep {
  phase: Phase;
  status: RunStatus;
  /** Model requests so far. */
  attempts: number;
}

/** What the oracle says of a run at its end. */
export interface ExpectedEnd {
  status: FinalRunStatus;
  content: string;
  /** The model's own error, whole; for the run's own errors, their code. */
  error: RunErrorData | { code: ErrorCode } | null;
  cancelReason: CancelReason | null;
  finishReason: string | null;
  attempts: number;
  /**
   * The sum of the turns' usage, a count `null` once a turn did not report it, or ended after its
   * output with no end; all `null` with no turn.
   */
  usage: TokenUsage;
  tools: { tool_call_id: string; status: ToolCallStatus; result: string | null }[];
  /** The path's virtual time (ms from creation) when the run ended: what `times.endedAt` records. */
  endedAt: number;
  /** `metrics.duration`: seconds from the start (from creation for a run never started) to the end. */
  duration: number;
}

/** The phase of a run machine's state value. */
export function phaseOf(value: StateValue): Phase {
  if (typeof value === 'string') return value as Phase;
  const streaming = (value as { streaming?: StateValue }).streaming;
  if (streaming === undefined) throw new Error(`not a run state: ${JSON.stringify(value)}`);
  return (typeof streaming === 'string' ? streaming : Object.keys(streaming)[0]) as Phase;
}

const statusOf = (phase: Phase): RunStatus =>
  phase === 'attempt' || phase === 'retrying' || phase === 'tools' ? 'streaming' : phase;

const OPEN: ReadonlySet<ToolCallStatus> = new Set(['awaiting_confirmation', 'queued', 'running']);

/**
 * The expected run of a path's steps (each its `action` and the `event` it sends) under `limits`.
 * Throws, naming the step, when the path does what the rules do not allow there (a timer that cannot
 * be running, an event after the end) or does not end the run.
 */
export function lifecycleOracle(
  steps: ReadonlyArray<{ action: LifecycleAction; event: AnyEventObject }>,
  limits: LifecycleLimits,
): { steps: ExpectedStep[]; end: ExpectedEnd } {
  let now = 0;
  let startedAt: number | null = null;
  let phase: Phase = 'pending';
  let attempts = 0;
  // The current model turn (a tool round starts a new one, with its own attempts and retries).
  let turnAttempts = 0;
  let turnOutput = false;
  // The idle timer: armed when an attempt begins and at its first chunk; one that fires after newer
  // chunks is armed again, one that fires with none since it was armed times the run out.
  let lastOutputAt = 0;
  let chunksSinceArmed = 0;
  let retryError: RunErrorData | null = null;
  let content = '';
  let usage: TokenUsage | null = null;
  let rounds = 0;
  let roundStart = 0;
  const tools: ExpectedEnd['tools'] = [];
  let end: Pick<ExpectedEnd, 'status' | 'error' | 'cancelReason' | 'finishReason'> | undefined;
  const expected: ExpectedStep[] = [];

  const newAttempt = () => {
    attempts++;
    turnAttempts++;
    phase = 'attempt';
    lastOutputAt = now;
    chunksSinceArmed = 0;
  };
  /** `byModel`: the model's end (or its calls) ended the run, with the request's usage. */
  const finish = (
    status: FinalRunStatus,
    error: ExpectedEnd['error'],
    cancelReason: CancelReason | null,
    byModel = false,
  ) => {
    // A request that streamed output and did not reach its end (cancelled, timed out, failed)
    // reported no usage: the run's is unknown. (One that ended before its output is left out.)
    if (phase === 'attempt' && turnOutput && !byModel) addUsage(undefined);
    end = { status, error, cancelReason, finishReason: null };
    phase = status;
    // A run that ends with calls still open (cancel, timeout, crash) cancels them, with no result.
    for (const tool of tools) if (OPEN.has(tool.status)) tool.status = 'cancelled';
  };
  const addUsage = (reported: TokenUsage | undefined) => {
    const turn = reported ?? { input_tokens: null, output_tokens: null, total_tokens: null };
    const add = (a: number | null, b: number | null) => (a === null || b === null ? null : a + b);
    usage = usage
      ? {
          input_tokens: add(usage.input_tokens, turn.input_tokens),
          output_tokens: add(usage.output_tokens, turn.output_tokens),
          total_tokens: add(usage.total_tokens, turn.total_tokens),
        }
      : turn;
  };
  // When every call of the round is over, its results go to the model in a new turn.
  const endRoundIfOver = () => {
    if (tools.slice(roundStart).some((tool) => OPEN.has(tool.status))) return;
    turnAttempts = 0;
    turnOutput = false;
    newAttempt();
  };
  const runningTool = (id: string) => {
    const tool = tools.slice(roundStart).find((t) => t.tool_call_id === id);
    if (tool?.status !== 'running') throw new Error(`tool call ${id} is not running`);
    return tool;
  };

  for (const [index, { action, event }] of steps.entries()) {
    const at = `step ${index + 1} (${action.type})`;
    const expectPhase = (...phases: Phase[]) => {
      if (!phases.includes(phase)) throw new Error(`${at}: the run is ${phase}, not ${phases.join(' or ')}`);
    };
    if (end) throw new Error(`${at}: the run already ended ${end.status}`);
    switch (action.type) {
      case 'start':
        expectPhase('pending');
        startedAt = now;
        newAttempt();
        break;
      case 'chunk':
        expectPhase('attempt');
        content += action.delta;
        // The first chunk of an attempt arms the idle timer (a retry comes only before any); later
        // ones only note their time.
        if (turnOutput) chunksSinceArmed++;
        turnOutput = true;
        lastOutputAt = now;
        break;
      case 'end':
        expectPhase('attempt');
        addUsage(action.usage);
        finish('completed', null, null, true);
        end!.finishReason = action.finishReason;
        break;
      case 'callTools': {
        expectPhase('attempt');
        addUsage((event as { usage?: TokenUsage }).usage);
        // Tools once more past maxToolRounds fail the run; the calls of that turn never run (nor are
        // they recorded as calls of the run).
        if (rounds >= limits.maxToolRounds) {
          finish('failed', { code: 'TOOL_ROUNDS_EXCEEDED' }, null, true);
          break;
        }
        rounds++;
        roundStart = tools.length;
        for (const call of action.calls) {
          const status = call.invalid
            ? 'failed'
            : call.requiresConfirmation
              ? 'awaiting_confirmation'
              : 'queued';
          tools.push({ tool_call_id: call.id, status, result: call.invalid });
        }
        // A call that needs a person pauses the run before any call of the turn runs.
        phase = action.calls.some((call) => call.requiresConfirmation) ? 'paused' : 'tools';
        if (phase === 'tools') endRoundIfOver();
        break;
      }
      case 'toolStarted': {
        expectPhase('tools');
        const tool = tools.slice(roundStart).find((t) => t.tool_call_id === action.toolCallId);
        if (tool?.status !== 'queued') throw new Error(`${at}: ${action.toolCallId} is not queued`);
        tool.status = 'running';
        break;
      }
      case 'toolDone':
      case 'toolThrew':
      case 'toolTimeout': {
        expectPhase('tools');
        if (action.type === 'toolTimeout') now += action.ms;
        const tool = runningTool(action.toolCallId);
        // A throw or a timeout is no failed run: the model is told, and the run goes on.
        tool.status = action.type === 'toolDone' ? 'completed' : 'failed';
        tool.result = action.result;
        endRoundIfOver();
        break;
      }
      case 'continue': {
        expectPhase('paused');
        const answers = new Map(action.tools.map((answer) => [answer.tool_call_id, answer]));
        for (const tool of tools.slice(roundStart)) {
          if (tool.status !== 'awaiting_confirmation') continue;
          // A confirmed call runs; a rejected (or unanswered) one does not, and the model is told so.
          const answer = answers.get(tool.tool_call_id);
          if (answer?.confirmed) tool.status = 'queued';
          else {
            tool.status = 'rejected';
            const note = answer?.confirmation_note;
            tool.result = `The user rejected this call${note ? `: ${note}` : '.'}`;
          }
        }
        phase = 'tools';
        endRoundIfOver();
        break;
      }
      case 'error': {
        expectPhase('attempt');
        const { error } = action;
        const { maxAttempts, maxRetryAfterMs } = limits.retry;
        // Retried only before the turn's first output, within its attempts, and when the server does
        // not ask for a longer wait than maxRetryAfterMs; otherwise the run fails with that error.
        const retried =
          error.retryable &&
          !turnOutput &&
          turnAttempts < maxAttempts &&
          (error.retryAfterMs === undefined || error.retryAfterMs <= maxRetryAfterMs);
        if (retried) {
          phase = 'retrying';
          retryError = error;
        } else finish('failed', error, null);
        break;
      }
      case 'crash':
        // The model service or the tool runner itself threw.
        expectPhase('attempt', 'tools');
        finish('failed', { code: 'INTERNAL' }, null);
        break;
      case 'cancel':
        // Cancelling is no error: a reason, never a code (not even a failed attempt's).
        finish('cancelled', null, action.reason);
        break;
      case 'wait':
        now += action.ms;
        switch (action.timer) {
          case 'retryDelay': {
            expectPhase('retrying');
            // The server's retry-after, else the backoff (doubled per retry, capped) with equal jitter.
            const { baseDelayMs, maxDelayMs } = limits.retry;
            const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** (turnAttempts - 1));
            if (retryError!.retryAfterMs !== undefined) expect(action.ms, at).toBe(retryError!.retryAfterMs);
            else {
              expect(action.ms, at).toBeGreaterThanOrEqual(backoff / 2);
              expect(action.ms, at).toBeLessThanOrEqual(backoff);
            }
            newAttempt();
            break;
          }
          case 'idleTimeout':
            expectPhase('attempt');
            if (chunksSinceArmed > 0) {
              chunksSinceArmed = 0;
            } else {
              expect(now - lastOutputAt, `${at}: silent for`).toBeGreaterThanOrEqual(limits.idleTimeoutMs);
              finish('failed', { code: 'RUN_TIMEOUT' }, null);
            }
            break;
          case 'runTimeout':
            expectPhase('attempt', 'retrying', 'tools');
            expect(now - startedAt!, `${at}: streamed for`).toBeGreaterThanOrEqual(limits.timeoutMs);
            finish('failed', { code: 'RUN_TIMEOUT' }, null);
            break;
          case 'pauseTimeout':
            expectPhase('paused');
            expect(action.ms, at).toBe(limits.pauseTimeoutMs);
            finish('failed', { code: 'RUN_TIMEOUT' }, null);
            break;
          default:
            throw new Error(`${at}: no rule for the timer ${action.timer}`);
        }
        break;
    }
    expected.push({ phase, status: statusOf(phase), attempts });
  }
  if (!end) throw new Error(`the path ends with the run ${phase}, not final`);
  return {
    steps: expected,
    end: {
      ...end,
      content,
      attempts,
      usage: usage ?? { input_tokens: null, output_tokens: null, total_tokens: null },
      tools,
      endedAt: now,
      duration: (now - (startedAt ?? 0)) / 1000,
    },
  };
}
