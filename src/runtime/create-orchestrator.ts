import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { isFinalStatus, runMachine, withRunClock, type RunMachineInput } from '../../machines/run.machine.js';
import {
  CANCEL_REASONS,
  RUN_STATUSES,
  type CancelReason,
  type ToolConfirmation,
  type ToolExecution,
} from '../../machines/run-types.js';
import { messageWithCause, RunstateError } from '../errors.js';
import { checkChatModel, type ChatMessage, type ChatModel } from '../model/chat-model.js';
import { createAdmission } from './admission.js';
import { createCancelRequests } from './cancel-requests.js';
import { createLeaseKeeper } from './create-lease-keeper.js';
import { followStoredRun, isStoredLogCut, type FollowStop } from './follow-stored-run.js';
import {
  catchingInspect,
  createLiveRun,
  INSPECT_EXPECTED,
  isInspectOption,
  type InspectOption,
  type LiveRun,
} from './live-run.js';
import { createMemoryCancelBus } from './memory-cancel-bus.js';
import { createMemoryEventBus } from './memory-event-bus.js';
import { createMemoryRunStore } from './memory-run-store.js';
import { createModelService } from './model-service.js';
import { createParkedRuns } from './parked-runs.js';
import {
  checkAfterSeq,
  isTerminalEvent,
  type RunEvent,
  type ReasoningStep,
  type RunOutput,
  type RunRecord,
} from './run-events.js';
import { activeRecord, recordWithStoredEvents, type RunIdentity } from './run-projection.js';
import { createRunRegistry } from './run-registry.js';
import { sessionHistory } from './session-history.js';
import type {
  CancelBus,
  EventBus,
  ParkedRun,
  RunAround,
  RunFilter,
  RunListener,
  RunNotice,
  RunStep,
  RunStore,
  SessionFilter,
  SessionRecord,
} from './storage.js';
import { createStoreWriter, type RunWriter } from './store-writer.js';
import {
  checkMethods,
  checkOptionsObject,
  checkOption,
  checkOptionNames,
  maxConcurrentRunsSchema,
  retryOverProblem,
  runLimitsSchema,
} from './run-limits.js';
import { confirmationsOf, toolAnswersSchema, type ToolAnswer } from './tool-answers.js';
import { checkTools, type Tool } from '../tools/tool.js';
import { createToolRunner } from './tool-runner.js';

/** Limits of a run; every field has a default (see `DEFAULT_RUN_LIMITS`). */
export interface RunLimits {
  /** A run with no chunk for this long fails with `RUN_TIMEOUT`. */
  idleTimeoutMs?: number | undefined;
  /** A run streaming for longer than this fails with `RUN_TIMEOUT`. */
  timeoutMs?: number | undefined;
  retry?: RunMachineInput['retry'];
  /** Model turns whose tool calls run (default 10); one more fails the run with `TOOL_ROUNDS_EXCEEDED`. */
  maxToolRounds?: number | undefined;
  /** Tool calls of one turn running at once (default 8). */
  maxConcurrentTools?: number | undefined;
  /** A run paused for a person's confirmation longer than this fails with `RUN_TIMEOUT` (default 1 hour). */
  pauseTimeoutMs?: number | undefined;
  /**
   * Earlier runs of the session sent to the model with a run: the last ones with an answer, at most
   * this many (default: every one the store keeps). `0` sends none, as an Agno agent without
   * `add_history_to_context`; Agno's `num_history_runs` is 3.
   */
  maxHistoryRuns?: number | undefined;
}

/**
 * The orchestrator's limits, overridden by a run's (or an agent's): a limit given as `undefined`
 * keeps the orchestrator's, and `retry` is merged field by field, as the config file's limits are
 * (an agent that sets only `baseDelayMs` keeps the orchestrator's `maxAttempts`).
 */
function mergeLimits(base: RunLimits, run: RunLimits | undefined): RunLimits {
  const merged = definedOver(base, run);
  if (base.retry && run?.retry) merged.retry = definedOver(base.retry, run.retry);
  return merged;
}

/** `base` with the fields `over` gives (not `undefined`) taking their place. */
function definedOver<T extends object>(base: T, over: T | undefined): T {
  const merged: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [name, value] of Object.entries(over ?? {})) if (value !== undefined) merged[name] = value;
  return merged as T;
}

/**
 * How long a cancel heard on the bus for a run that is not here is remembered, and how many are: a
 * paused run nobody owns may be taken here (continued) just after a cancel for it went by, and is
 * then cancelled as it is taken. Longer than a store's round trip, shorter than the re-sends.
 */
const HEARD_CANCEL_MS = 5_000;
const MAX_HEARD_CANCELS = 1_000;

/** The message of a run that ended `RUN_LOST`: the same where its owner ends it and where another instance does. */
const LOST_MESSAGE = 'the instance that ran this run stopped renewing its lease (stopped, frozen or cut off)';

/** How long an instance whose lease lapsed waits for the store to say how its runs ended elsewhere. */
const LAPSE_READ_MS = 1_000;

/**
 * How long `shutdown()` waits for the store to take the final records of its runs. The built-in
 * stores answer or fail well before (their queries have timeouts); a store with no timeouts of its
 * own, whose database stopped answering, would otherwise hold the shutdown, and the process, forever.
 */
const SHUTDOWN_STORE_MS = 30_000;

/** Options of {@link createOrchestrator}. */
export interface OrchestratorOptions {
  /** Runs streaming at once in this process; the others wait in `pending`. Default: no limit. */
  maxConcurrentRuns?: number | undefined;
  /** Limits of every run, unless a run sets its own. */
  limits?: RunLimits | undefined;
  /**
   * Handed to every run actor: `@statelyai/inspect`'s `inspect`, or any inspection observer (a
   * function, or an object with `next`; anything else is refused). What it throws never reaches a
   * run: the first throw is reported on `console.error`. runstate's built-in inspector is no
   * observer: attach it (`createInspector().attach(orchestrator)`).
   */
  inspect?: InspectOption | undefined;
  /**
   * Where run records, sessions and events are kept. Default: `createMemoryRunStore()` (its
   * options set retention and the other memory limits). The caller closes a store it passed.
   */
  store?: RunStore | undefined;
  /** How cancels reach the instance that owns a run. Default: within this process. */
  cancelBus?: CancelBus | undefined;
  /** How a run's live events reach followers on other instances. Default: within this process. */
  eventBus?: EventBus | undefined;
  idGenerator?: (() => string) | undefined;
  now?: (() => number) | undefined;
  random?: (() => number) | undefined;
}

/** What a run is asked to do. */
export interface StartRunRequest {
  agentId: string;
  agentName: string;
  model: ChatModel;
  input: string;
  /** The system message: the agent's description and instructions. */
  instructions?: string | undefined;
  /**
   * Runs of one session send the earlier turns to the model. A new session when absent or empty
   * (`''`, as the HTTP API's `session_id` and Agno's).
   */
  sessionId?: string | undefined;
  userId?: string | undefined;
  limits?: RunLimits | undefined;
  /** The tools the model may call (names unique). */
  tools?: readonly Tool[] | undefined;
}

/**
 * What a paused run needs from its agent to go on, wherever it was paused: a run is restored from
 * the store, and its model, tools and instructions are not data.
 */
export type ContinueRunRequest = Pick<
  StartRunRequest,
  'agentId' | 'agentName' | 'model' | 'instructions' | 'limits' | 'tools'
>;

/** A started run. */
export interface RunHandle {
  readonly runId: string;
  readonly sessionId: string;
  /**
   * Replays the run's events after `afterSeq`, then follows them to the terminal one; each loop
   * over the iterable reads them all. Throws `INVALID_INPUT` for an `afterSeq` past the run's last
   * event (a reader would skip what comes).
   */
  events(afterSeq?: number): AsyncIterable<RunEvent>;
  /**
   * Resolves when the run is final and the store has its final record (so every instance reads it
   * final); during an outage of the store, once the outage shows (its writes go on when the store is
   * back). Never rejects. The HTTP server ends a run's stream then, not at its terminal event.
   */
  readonly result: Promise<RunOutput>;
  /**
   * Resolves once the store recorded the run. Rejects with the store's refusal (`INVALID_INPUT`: the
   * session belongs to another agent; a backend's `STORE_UNAVAILABLE`); the run then fails with
   * that error before any model request.
   */
  readonly recorded: Promise<void>;
}

/** Options of {@link Orchestrator.requestCancel}. */
export interface CancelRequestOptions {
  /** Only a run of this agent: another agent's run is `RUN_NOT_FOUND`. */
  agentId?: string | undefined;
}

/**
 * Runs agent runs. Create it with {@link createOrchestrator}. It owns the actors of the runs it
 * started; reads go to its store, so they also see runs that other instances sharing the store own.
 */
export interface Orchestrator {
  /**
   * Starts a run: it is registered and in `pending` before this returns (streaming at once when a
   * slot is free). Throws `SHUTTING_DOWN` after {@link Orchestrator.shutdown}, `INVALID_INPUT` for an
   * input that is not a string, a `sessionId` or `userId` that is not one, `limits` out of range, or
   * when the id generator repeats a live run's id, `STORE_UNAVAILABLE` while this instance could not renew
   * its lease (a shared store out of reach for longer than the lease). A store's refusal comes later, in `recorded`.
   */
  startRun(request: StartRunRequest): RunHandle;
  /**
   * Cancels a run this process owns, now: the machine moves to `cancelled` and the model request is
   * aborted before this returns. `true` when this call cancelled an active run, or took a run this
   * process paused to be cancelled (it waits in the store: it is taken back and ends `cancelled` a
   * moment later, unless another instance continued it first; `getRun` and `result` wait for it);
   * `false` for a run not owned here (see {@link Orchestrator.requestCancel}, which also reaches a
   * run paused elsewhere), unknown, of another agent than `options.agentId`, or already final.
   * Throws only `INVALID_INPUT`, for a `reason` that is none of {@link CancelReason}'s.
   */
  cancelRun(runId: string, reason?: CancelReason, options?: CancelRequestOptions): boolean;
  /**
   * Cancels a run wherever it runs (this process, or the instance that owns it, through the cancel
   * bus) and resolves with its final record once it is `cancelled`, also when it already was. The
   * one place where a cancel's answer is decided. Rejects `RUN_NOT_FOUND` for an unknown run (or
   * one of another agent than `options.agentId`), `RUN_ALREADY_FINISHED` (with `details.status`)
   * for a run that ended otherwise, `INVALID_INPUT` for a `reason` that is none of {@link CancelReason}'s,
   * `SHUTTING_DOWN` when this orchestrator shuts down while it waits for a run held by another
   * instance (the cancel was sent and recorded, and goes on: another instance answers it).
   */
  requestCancel(runId: string, reason?: CancelReason, options?: CancelRequestOptions): Promise<RunOutput>;
  /**
   * Answers the tool calls a paused run waits for, and resumes it here, wherever it paused: a paused
   * run waits in the store, owned by no instance, and the first instance to take it (atomically)
   * restores its actor from the stored snapshot. Confirmed calls are queued when the promise resolves
   * and start in a later job: a cancel before then means they never run.
   * Every pending call needs exactly one answer; an entry for a call that waits for nothing (as a
   * paused run's own `tools` list it, `confirmed: null`) is ignored (see {@link ToolAnswer}). The handle's `events()` start at `RunContinued`
   * (`seq` goes on from `RunPaused`) and end at the next pause or the end. Rejects `RUN_NOT_FOUND`
   * (unknown, or of another agent than `agent.agentId`), `RUN_NOT_PAUSED` (not paused: never was,
   * continued already (here or on another instance), final, or its pause ran out: it is then failed
   * `RUN_TIMEOUT`), `INVALID_INPUT` (an answer for a call that does not wait, a call left
   * unanswered, two answers), `SHUTTING_DOWN` after (or during) {@link Orchestrator.shutdown} (the run
   * stays paused, or ends `cancelled` with the shutdown when it was taken already).
   */
  continueRun(runId: string, tools: readonly ToolAnswer[], agent: ContinueRunRequest): Promise<RunHandle>;
  /**
   * True while a run this process paused waits for a continue: held here, or parked in the store by
   * this process and not taken since (by a continue, a cancel or its deadline, here or elsewhere).
   */
  isPaused(runId: string): boolean;
  /** The run's record, or `undefined` for an unknown (or forgotten) run. Rejects on a store error. */
  getRun(runId: string): Promise<RunRecord | undefined>;
  /** Retained runs, in the order they were created. Rejects on a store error. */
  listRuns(filter?: RunFilter): Promise<RunRecord[]>;
  /**
   * Replays a run's events after `afterSeq`, then follows them to the terminal one, or to a
   * `RunPaused` (a paused run's events end there: read again from its `seq` once it is continued,
   * and the events from `RunContinued` on follow). Rejects
   * `RUN_NOT_FOUND` for an unknown run, `INVALID_INPUT` for an `afterSeq` past the last event.
   * Each loop over the iterable reads every event after `afterSeq`: a second loop, or two at once,
   * each get them all (a later loop reads them anew, from the store where the run is not here).
   */
  events(runId: string, afterSeq?: number): Promise<AsyncIterable<RunEvent>>;
  /**
   * Resolves with the run's output once it is final. Rejects `RUN_NOT_FOUND` for an unknown run,
   * `SHUTTING_DOWN` when this orchestrator shuts down while it waits for a run held by another
   * instance (as a follower of its events is let go).
   */
  result(runId: string): Promise<RunOutput>;
  /** Sessions, most recently updated first. Rejects on a store error. */
  listSessions(filter?: SessionFilter): Promise<SessionRecord[]>;
  /** The session, or `undefined`. Rejects on a store error. */
  getSession(sessionId: string): Promise<SessionRecord | undefined>;
  /** The session's retained runs, oldest first, active ones with their content so far. */
  sessionRuns(sessionId: string): Promise<RunRecord[]>;
  /**
   * Names a session (AgentOS's rename): later reads answer `name` as its `session_name`. Resolves
   * with the renamed session, or `undefined` when there is no such session. Rejects on a store error.
   */
  renameSession(sessionId: string, name: string): Promise<SessionRecord | undefined>;
  /**
   * Forgets a session and its runs, and cancels its active runs (reason `api`), paused ones
   * included: a handle waiting for one, on any instance, resolves `cancelled`. `false` when there
   * was no such session. Rejects on a store error, and `SHUTTING_DOWN` when this orchestrator shuts
   * down while it waits for a run of the session held by another instance to end (nothing is
   * forgotten then; the cancels go on).
   */
  deleteSession(sessionId: string): Promise<boolean>;
  /**
   * Follows the lifecycle of every run this orchestrator owns (see {@link RunNotice}): the listener
   * is called synchronously as things happen. Returns unsubscribe.
   */
  subscribe(listener: RunListener, options?: SubscribeOptions): () => void;
  /**
   * The events of one run after `afterSeq`, as {@link Orchestrator.events} gives them (replayed, then
   * followed to the terminal one), without awaiting it first: `for await (const event of
   * orchestrator.subscribe(runId, seq))`. Its errors (`RUN_NOT_FOUND`, `INVALID_INPUT`) come from the
   * first `next()`. Each loop over it reads them all, as over `events()`'s.
   */
  subscribe(runId: string, afterSeq?: number): AsyncIterable<RunEvent>;
  /** Runs owned here that are pending or streaming: what {@link Orchestrator.shutdown} cancels. */
  readonly activeCount: number;
  /**
   * Runs paused here waiting for a person: parked by this instance (and not taken by another since),
   * or paused and still being parked. What {@link Orchestrator.shutdown} leaves in a store that
   * outlives the process, or cancels with one that does not.
   */
  readonly pausedCount: number;
  /**
   * Refuses new runs, cancels the active ones with reason `shutdown` (paused runs stay in a store
   * that outlives the process; with one that does not, they are cancelled too), and resolves when they are
   * final and stored (or, with a store that stops answering, after 30 s of waiting for it, said on
   * `console.error`). The store and buses stay open (they may be shared): close them after.
   */
  shutdown(): Promise<void>;
}

/** Options of {@link Orchestrator.subscribe}. */
export interface SubscribeOptions {
  /**
   * The listener reads the machine event that caused each `state` notice (its `event`). Knowing
   * causes turns on xstate's inspection of every run started while such a listener is subscribed,
   * which costs every chunk a few objects (about a tenth of an HTTP server's time per paced chunk);
   * `false` leaves it off, and runs started meanwhile report `{ type: 'unknown' }`. Default `true`.
   * The built-in metrics and tracer need no causes.
   */
  causes?: boolean | undefined;
  /**
   * Also tells the listener, before `subscribe` returns, of the runs held here now that are not
   * final: for each, `created` (its record as it is) and `state` (its state now, caused by
   * `unknown`). For a view that starts watching after runs started, as an inspector attached late.
   * Default `false`.
   */
  current?: boolean | undefined;
  /**
   * Runs each model request and tool call of the runs here within this function (see
   * {@link RunAround}), for as long as the listener is subscribed: what a tracer needs to make its
   * spans the parents of what a tool or the model's HTTP client does (`createRunTracer().around`).
   */
  around?: RunAround | undefined;
}

/**
 * An observer's `around` that must not break the step it wraps: a throw of its own is reported, and
 * the step runs without it (or, when it ran already, keeps what it returned); what the step itself
 * throws goes on as it is.
 */
function aroundSafely<T>(around: RunAround, step: RunStep, work: () => T): T {
  let outcome: { value: T } | { error: unknown } | undefined;
  try {
    return around(step, () => {
      try {
        const value = work();
        outcome = { value };
        return value;
      } catch (error) {
        outcome = { error };
        throw error;
      }
    });
  } catch (error) {
    if (outcome && 'error' in outcome && outcome.error === error) throw error;
    console.error("runstate: a subscriber's around threw", error);
    if (outcome === undefined) return work();
    if ('error' in outcome) throw outcome.error;
    return outcome.value;
  }
}

/** A promise made when it is first awaited (`then`), and the same one after. */
function readOnce<T>(read: () => Promise<T>): PromiseLike<T> {
  let promise: Promise<T> | undefined;
  return {
    then: (onFulfilled, onRejected) => (promise ??= read()).then(onFulfilled, onRejected),
  };
}

/**
 * The longest session or user id, in UTF-16 code units: refused alike on every store, since
 * PostgreSQL's index of a key refuses one of more than ~2,700 bytes (and a character may take 4).
 */
export const MAX_ID_LENGTH = 512;

/**
 * What its types say of a start request, checked for callers that types do not reach (JavaScript,
 * data from elsewhere): a number as input or `NaN` as a limit would fail far from the call.
 */
function checkStartRequest(request: StartRunRequest): void {
  if (typeof request !== 'object' || request === null)
    throw new RunstateError(
      'INVALID_INPUT',
      'startRun takes a request: { agentId, agentName, model, input }',
    );
  // A misspelt `sesionId` would start a new session without a word.
  checkOptionNames(request, START_REQUEST_FIELDS, 'startRun');
  for (const name of ['agentId', 'agentName'] as const) {
    if (typeof request[name] !== 'string' || request[name] === '')
      throw new RunstateError('INVALID_INPUT', `${name} must be a string that is not empty`);
  }
  checkChatModel(request.model);
  if (request.instructions !== undefined && typeof request.instructions !== 'string')
    throw new RunstateError('INVALID_INPUT', 'instructions must be a string');
  if (request.tools !== undefined) checkTools(request.tools);
  if (typeof request.input !== 'string') {
    throw new RunstateError('INVALID_INPUT', `input must be a string, got ${typeof request.input}`);
  }
  // As the HTTP API (422) and the CLI refuse it: a model asked nothing answers anything.
  if (request.input.trim() === '') throw new RunstateError('INVALID_INPUT', 'input must not be blank');
  for (const name of ['sessionId', 'userId'] as const) {
    const value: unknown = request[name];
    if (value != null && typeof value !== 'string') {
      throw new RunstateError('INVALID_INPUT', `${name} must be a string, got ${typeof value}`);
    }
  }
  for (const name of ['input', 'sessionId', 'userId', 'agentId', 'agentName'] as const) {
    refuseUnstorable(request[name], name);
  }
  for (const name of ['sessionId', 'userId'] as const) {
    if ((request[name]?.length ?? 0) > MAX_ID_LENGTH) {
      throw new RunstateError('INVALID_INPUT', `${name} must be at most ${MAX_ID_LENGTH} characters`, {
        details: { field: name },
      });
    }
  }
  if (request.limits !== undefined) checkOption(runLimitsSchema, request.limits, 'limits');
}

/**
 * A character no store keeps alike is refused whatever the store: a run must not be taken by one
 * store and refused, or changed, by another (see {@link unstorableCharacter}).
 */
function refuseUnstorable(value: string | null | undefined, name: string): void {
  const what = value == null ? undefined : unstorableCharacter(value);
  if (what !== undefined) {
    throw new RunstateError('INVALID_INPUT', `${name} must not contain ${what}`, {
      details: { field: name },
    });
  }
}

/** Read by code points (`u`): a paired surrogate is one code point, not of category Cs. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * What in `text` no store can keep as it is, named; `undefined` when nothing. A NUL character
 * (U+0000), which PostgreSQL's text cannot store, and a lone surrogate (half of a UTF-16 pair, which
 * JSON can carry as `"\ud800"` but which is no Unicode text: PostgreSQL and PGlite keep U+FFFD).
 */
export function unstorableCharacter(text: string): string | undefined {
  if (text.includes('\0')) return 'a NUL character (U+0000)';
  if (LONE_SURROGATE.test(text)) return 'a lone surrogate (half of a UTF-16 pair: not Unicode text)';
  return undefined;
}

/**
 * Which pause of a run its record shows: the calls it waits for, and how many calls it made (a
 * later pause has more, even when a server numbers its calls' ids per response).
 */
function pauseOf(tools: readonly ToolExecution[]): string {
  const waiting = tools.filter((tool) => tool.status === 'awaiting_confirmation');
  return JSON.stringify([tools.length, waiting.map((tool) => tool.tool_call_id)]);
}

/**
 * Every call a paused run waits for needs exactly one answer, and nothing else is answered. The
 * error's `details.field` is `tools`, the field of a continue that holds the answers.
 */
function checkAnswers(
  runId: string,
  tools: readonly ToolExecution[],
  answers: readonly ToolConfirmation[],
): void {
  const pending = tools.filter((tool) => tool.status === 'awaiting_confirmation').map((t) => t.tool_call_id);
  const answered = new Set(answers.map((answer) => answer.tool_call_id));
  const unknown = [...answered].filter((id) => !pending.includes(id));
  const missing = pending.filter((id) => !answered.has(id));
  const twice = [...answered].filter((id) => answers.filter((a) => a.tool_call_id === id).length > 1);
  if (unknown.length > 0 || missing.length > 0 || twice.length > 0) {
    throw new RunstateError(
      'INVALID_INPUT',
      `run ${runId} waits for one answer to each of ${pending.join(', ')}` +
        (unknown.length > 0 ? `; not waiting for ${unknown.join(', ')}` : '') +
        (missing.length > 0 ? `; no answer for ${missing.join(', ')}` : '') +
        (twice.length > 0 ? `; more than one answer for ${twice.join(', ')}` : ''),
      { details: { field: 'tools' } },
    );
  }
}

/**
 * The model a parked run names, for a run taken back only to end it (a cancel, an expired pause):
 * its events and record name the model; it is never asked for anything.
 */
function recordedModel(record: RunRecord): ChatModel {
  return {
    id: record.model,
    provider: record.model_provider,
    stream() {
      throw new RunstateError(
        'INTERNAL',
        `run ${record.run_id} was taken back to end it, not to call its model`,
      );
    },
  };
}

// The runs of each store whose final records are being stored, by session (`settledSessionRuns`).
const settlingByStore = new WeakMap<RunStore, Map<string, Promise<unknown>>>();

function settlingRunsOf(store: RunStore): Map<string, Promise<unknown>> {
  let settling = settlingByStore.get(store);
  if (!settling) settlingByStore.set(store, (settling = new Map<string, Promise<unknown>>()));
  return settling;
}

/**
 * Creates an orchestrator: the run actors of this process (a live registry), the concurrency limit
 * (admission), and the projection of each run to wire events, records and notices, over a run store,
 * a cancel bus and an event bus (in memory unless given).
 *
 * @throws `RunstateError` `INVALID_INPUT` for a `maxConcurrentRuns` that is not a whole number ≥ 1
 * (or `Infinity`), or `limits` out of range (a duration not > 0, a count not whole), naming each.
 *
 * @example
 * ```ts
 * const orchestrator = createOrchestrator({ maxConcurrentRuns: 100 });
 * const run = orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input: 'Hi' });
 * for await (const event of run.events()) console.log(event.event);
 * orchestrator.cancelRun(run.runId, 'code');
 * ```
 */
export function createOrchestrator(options: OrchestratorOptions = {}): Orchestrator {
  checkOrchestratorOptions(options);
  const {
    maxConcurrentRuns = Infinity,
    limits: defaultLimits = {},
    store = createMemoryRunStore({ now: options.now }),
    cancelBus = createMemoryCancelBus(),
    eventBus = createMemoryEventBus(),
    idGenerator = randomUUID,
    now = Date.now,
    random = Math.random,
  } = options;
  const inspect = options.inspect && catchingInspect(options.inspect);
  checkOption(maxConcurrentRunsSchema, maxConcurrentRuns, 'maxConcurrentRuns');
  checkOption(runLimitsSchema, defaultLimits, 'limits');
  // A backoff base over the default cap, where the orchestrator sets no cap of its own.
  refuseRetryOver(defaultLimits.retry, undefined);
  const registry = createRunRegistry();
  const admission = createAdmission<LiveRun>({
    maxConcurrent: maxConcurrentRuns,
    start: (run) => run.start(),
  });
  const listeners = new Set<RunListener>();
  /** Aborted by `shutdown`: ends the following of runs this instance does not hold. */
  const followersStop = new AbortController();
  // One listener per follower of a run held elsewhere, each removed when it stops: many at once
  // are no leak.
  setMaxListeners(0, followersStop.signal);
  // Listeners that read the causes of state changes: while there are none, runs start uninspected.
  let causeListeners = 0;
  const writer = createStoreWriter({
    store,
    eventBus,
    onError: (error, runId) => {
      // An outage (a write given up at shutdown) is an operator's matter: one line, its cause named.
      // Anything else is a bug, with its stack.
      if (error instanceof RunstateError && error.code === 'STORE_UNAVAILABLE')
        console.error(`runstate: the run store refused a write of run ${runId}: ${messageWithCause(error)}`);
      else console.error(`runstate: the run store refused a write of run ${runId}`, error);
    },
  });
  const machine = withRunClock(runMachine, { now, random }).provide({
    actors: {
      model: createModelService((runId) => registry.get(runId)?.call),
      tools: createToolRunner((runId) => registry.get(runId)?.toolRun),
    },
  });
  let closing = false;
  // The paused runs this instance parks in the store, and takes back from it.
  const parkedRuns = createParkedRuns({
    store,
    eventBus,
    cancelBus,
    registry,
    now,
    isClosing: () => closing,
    notify,
    result,
    restore: restoreRun,
    onTaken: cancelIfHeard,
  });

  // Cancels heard for runs not here, by run id, oldest first (see HEARD_CANCEL_MS).
  const heardCancels = new Map<string, { reason: CancelReason; agentId: string | undefined; at: number }>();

  // Cancels published by any instance; this one acts on the runs it owns.
  const cancels = cancelBus.subscribe((runId, reason, agentId) => {
    if (!registry.has(runId) && !parkedRuns.isParkedHere(runId)) {
      heardCancels.delete(runId);
      if (heardCancels.size === MAX_HEARD_CANCELS) heardCancels.delete(heardCancels.keys().next().value!);
      heardCancels.set(runId, { reason, agentId, at: performance.now() });
      return;
    }
    // A run this instance paused (and parks, or parked) is cancelled through the store.
    cancelRun(runId, reason, { agentId });
  });

  /** Cancels a run just taken here when a cancel for it went by while nobody held it. */
  function cancelIfHeard(run: LiveRun): void {
    const heard = heardCancels.get(run.identity.runId);
    if (!heard) return;
    heardCancels.delete(run.identity.runId);
    const forThisRun = heard.agentId === undefined || heard.agentId === run.identity.agentId;
    if (forThisRun && performance.now() - heard.at <= HEARD_CANCEL_MS) run.cancel(heard.reason);
  }
  cancels.catch((error: unknown) => console.error('runstate: cannot listen to the cancel bus', error));

  // A store shared across processes leases the runs to their owner: this instance renews its lease
  // and finalises the runs of owners that stopped renewing theirs (their followers get the end).
  const keeper =
    store.leases &&
    createLeaseKeeper({
      leases: store.leases,
      onFinished: (event) => {
        eventBus.publish(event.run_id, [event]);
        // Its owner is gone and told no one: its end is told here (metrics count it here).
        if (listeners.size > 0) void notifyOrphanEnd(event.run_id);
      },
      // Asked for on another instance, and read from the store: the bus may not have brought it.
      onCancelRequested: (runId, reason) => void cancelRun(runId, reason),
      onError: (error) =>
        console.error(`runstate: lease renewal or sweep failed: ${messageWithCause(error)}`),
      // Another instance may finalise these runs from now on: they end here first, the same way,
      // so that their end is not written twice and their clients see what the store will keep.
      onLapse: () => {
        const active = [...registry.values()].filter((run) => !run.output);
        console.error(
          `runstate: could not renew the lease for ${store.leases!.leaseMs} ms: ${active.length} active run(s) end RUN_LOST (or as another instance stored their end)`,
        );
        // Nothing more of them streams from now on; their end is told once the store is asked.
        for (const run of active) {
          run.halt();
          endAsStored(run).catch((error: unknown) =>
            console.error(`runstate: run ${run.identity.runId} could not end after the lapse`, error),
          );
        }
      },
    });
  /**
   * The end of a run halted at a lapse of the lease: the one another instance stored for it (a
   * process frozen past its lease wakes after a cancel or a sweep there), when it is the run's next
   * event, so that its clients here see what the store keeps; else `RUN_LOST`, the end the others
   * will store. A store out of reach (the usual lapse) is not waited for long.
   */
  async function endAsStored(run: LiveRun): Promise<void> {
    const runId = run.identity.runId;
    const read = async () => {
      const record = await store.getRun(runId);
      if (record?.finished_at == null) return;
      const [end] = (await store.readEvents(runId, run.lastSeq())).filter(isTerminalEvent);
      if (end) run.endAs(record as RunOutput, end);
    };
    let timer: NodeJS.Timeout | undefined;
    const outOfReach = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, LAPSE_READ_MS);
      timer.unref();
    });
    await Promise.race([read().catch(() => undefined), outOfReach]);
    clearTimeout(timer);
    run.lose(LOST_MESSAGE);
  }
  /**
   * How a wait for a run held elsewhere ends at a shutdown (see {@link FollowStop}). A run parked
   * here in a store that does not outlive the process (memory) is held here: the shutdown takes it
   * back and cancels it, and the wait gets that end.
   */
  const followStop = (runId: string): FollowStop => ({
    signal: followersStop.signal,
    heldHere: () => registry.has(runId) || (!store.leases && parkedRuns.isParkedHere(runId)),
  });
  // A cancel of a run wherever it runs: here, or through the cancel bus and the store.
  const { requestCancel } = createCancelRequests({
    store,
    cancelBus,
    registry,
    parkedRuns,
    keeper,
    cancelRun,
    // A caller waiting for a run held elsewhere is let go at a shutdown (`SHUTTING_DOWN`, to ask
    // another instance), as a follower is: the cancel was sent and recorded, and goes on without it.
    result: (runId) => result(runId, followStop(runId)),
  });
  const leased = keeper?.start();
  const checkLease = keeper && ((): void => void keeper.lapsed());
  /** No run starts or goes on here while this instance's lease has lapsed: another may take it for lost. */
  const refuseWhileLapsed = (): void => {
    if (keeper?.lapsed())
      throw new RunstateError(
        'STORE_UNAVAILABLE',
        'this instance could not renew its lease on its runs (the database is out of reach)',
      );
  };
  // In a store shared over time, a pause that ran out while no instance timed it (its instance
  // stopped) is ended by whichever instance finds it first; and the runs parked here that another
  // instance took while the event bus was down (it told nothing) are let go here.
  const expirySweep = store.leases
    ? setInterval(
        () => {
          void parkedRuns.sweepExpiredPauses();
          void parkedRuns.recheckParks();
        },
        Math.max(1, Math.floor(store.leases.leaseMs / 2)),
      )
    : undefined;
  expirySweep?.unref();
  leased?.catch((error: unknown) =>
    console.error(`runstate: cannot take a lease: ${messageWithCause(error)}`),
  );

  /** The `finished` notice of a run another instance owned and this one finalised, from its record. */
  async function notifyOrphanEnd(runId: string): Promise<void> {
    const record = await store.getRun(runId).catch(() => undefined);
    // (Another finalisation may have come between, or the run be forgotten already.)
    if (record?.finished_at != null && record.metrics && isFinalStatus(record.status))
      notify({ type: 'finished', run: record as RunOutput });
  }

  // What the subscribers' `around` options wrap the runs' model requests and tool calls in.
  const arounds = new Set<RunAround>();

  /** Runs a step of a run within every subscribed `around`; just runs it when there are none. */
  function around<T>(step: RunStep, work: () => T): T {
    let wrapped = work;
    for (const outer of arounds) {
      const inner = wrapped;
      wrapped = () => aroundSafely(outer, step, inner);
    }
    return wrapped();
  }

  function notify(notice: RunNotice): void {
    for (const listener of listeners) {
      try {
        listener(notice);
      } catch (error) {
        console.error('runstate: a run listener threw', error);
      }
    }
  }

  // The final writes not done yet: a shutdown waits for them.
  const storing = new Set<Promise<void>>();

  function onFinal(run: LiveRun): Promise<void> {
    const { settled, stored } = run.writer.finish(run.output!);
    // Before the slot goes to the next run: a run of this session waiting for it reads this turn.
    settleInSession(run.identity.sessionId, settled);
    admission.release(run);
    parkedRuns.resolveHandles(run);
    storing.add(stored);
    void stored.then(() => {
      storing.delete(stored);
      // Stored: from now on the store answers for it.
      registry.delete(run);
    });
    return settled;
  }

  // By session: the runs that ended here whose final records are not settled in the store yet. A
  // consumer may start the session's next run as soon as it read a run's terminal event, which is
  // handed out before its record is stored: the next run's history waits for them. Shared by the
  // orchestrators of one store (one `openStorage` given to several), since that next run may start
  // on another.
  const settlingBySession = settlingRunsOf(store);

  function settleInSession(sessionId: string, settled: Promise<void>): void {
    const before = settlingBySession.get(sessionId);
    const all = before ? Promise.all([before, settled]) : settled;
    settlingBySession.set(sessionId, all);
    void all.then(() => {
      if (settlingBySession.get(sessionId) === all) settlingBySession.delete(sessionId);
    });
  }

  /** The session's runs in the store, once the final records of those that ended here are settled. */
  function settledSessionRuns(sessionId: string): Promise<RunRecord[]> {
    const settling = settlingBySession.get(sessionId);
    return settling ? settling.then(() => store.sessionRuns(sessionId)) : store.sessionRuns(sessionId);
  }

  /** A live run of this orchestrator: new (`restored` absent), or taken back from the store. */
  function liveRun(
    identity: RunIdentity,
    request: Pick<StartRunRequest, 'limits' | 'tools'>,
    messages: PromiseLike<ChatMessage[]>,
    runWriter: RunWriter,
    restored?: { snapshot: unknown; seq: number; reasoningSteps?: readonly ReasoningStep[] | undefined },
  ): LiveRun {
    // (Checked by `checkTools` before the run was recorded or taken back.)
    const tools = new Map((request.tools ?? []).map((tool) => [tool.name, tool]));
    return createLiveRun({
      machine,
      tools,
      onPause: (paused, isPaused) => (isPaused ? admission.release(paused) : admission.resume(paused)),
      onPark: parkedRuns.onPark,
      restored,
      identity,
      messages,
      limits: mergeLimits(defaultLimits, request.limits),
      inspect,
      writer: runWriter,
      observed: () => listeners.size > 0,
      around,
      captureCauses: causeListeners > 0 || inspect !== undefined,
      notify,
      onFinal,
      now,
      checkLease,
    });
  }

  /**
   * The messages for the model: the instructions, the session's turns before this run (the last
   * `limits.maxHistoryRuns` of them), its input.
   */
  function conversation(
    request: Pick<StartRunRequest, 'instructions' | 'limits'>,
    runs: readonly RunRecord[],
    input: string,
  ): ChatMessage[] {
    const out: ChatMessage[] = [];
    if (request.instructions) out.push({ role: 'system', content: request.instructions });
    const maxRuns = mergeLimits(defaultLimits, request.limits).maxHistoryRuns;
    out.push(...sessionHistory(runs, maxRuns), { role: 'user', content: input });
    return out;
  }

  /** An id from `idGenerator`, refused unless a store can keep it: a run or session would be lost. */
  function newId(): string {
    const id: unknown = idGenerator();
    if (
      typeof id !== 'string' ||
      id === '' ||
      id.length > MAX_ID_LENGTH ||
      unstorableCharacter(id) !== undefined
    )
      throw new RunstateError(
        'INVALID_INPUT',
        `idGenerator must return a string of 1 to ${MAX_ID_LENGTH} characters a store can keep, got ${JSON.stringify(id) ?? typeof id}`,
      );
    return id;
  }

  // Runs created and not admitted yet, in the order they were created, and how many `startRun`s are
  // telling listeners of theirs: a run a listener starts (at another's `created` notice or its
  // RunStarted) is admitted after that one, first in first out.
  const created: LiveRun[] = [];
  let opening = 0;

  function admitCreated(): void {
    // One at a time: admitting one tells listeners (its state), which may start another run, that
    // comes after those still in the list.
    let run: LiveRun | undefined;
    while ((run = created.shift())) {
      // A listener may have cancelled it already (at its `created` notice or its RunStarted): ended,
      // its slot was released before it had one, and one taken now would never be given back.
      if (run.output === null) admission.admit(run);
    }
  }

  /** A run's retry over the orchestrator's: refused as the config file refuses an agent's. */
  function checkMergedRetry(limits: RunLimits | undefined): void {
    refuseRetryOver(limits?.retry, defaultLimits.retry);
  }

  function startRun(request: StartRunRequest): RunHandle {
    if (closing) throw new RunstateError('SHUTTING_DOWN', 'the orchestrator is shutting down');
    checkStartRequest(request);
    checkMergedRetry(request.limits);
    refuseWhileLapsed();
    const runId = newId();
    if (registry.has(runId)) throw new RunstateError('INVALID_INPUT', `run id ${runId} is already in use`);
    const identity: RunIdentity = {
      runId,
      agentId: request.agentId,
      agentName: request.agentName,
      sessionId: request.sessionId || newId(),
      userId: request.userId ?? null,
      input: request.input,
      model: request.model,
      createdAt: now(),
    };
    const record = activeRecord(identity, 'pending', { content: '', reasoning: '' });
    const runWriter = writer.open(record);
    // Read when the model service first asks, once the run has its slot: a run that waited behind
    // `maxConcurrentRuns` sends the turns of its session that ended meanwhile (the one before it,
    // started just before it). A run cancelled before never reads it. Read once the run is recorded:
    // recording it may forget the session's oldest run (`maxRunsPerSession`), which a read made
    // beside it would still send (a database store; the memory store forgets it at once).
    const messages = readOnce(() =>
      runWriter.recorded
        .then(() => settledSessionRuns(identity.sessionId))
        .then((runs) => conversation(request, runs, request.input)),
    );
    const run = liveRun(identity, request, messages, runWriter);
    registry.add(run);
    created.push(run);
    opening++;
    try {
      notify({ type: 'created', run: record });
      run.open();
    } finally {
      opening--;
    }
    if (opening === 0) admitCreated();
    return {
      runId,
      sessionId: identity.sessionId,
      events: (afterSeq) => eachLoopReads(followLive(run, afterSeq), () => followLive(run, afterSeq)),
      result: run.result,
      recorded: runWriter.recorded,
    };
  }

  /**
   * A run's events after `afterSeq`: followed live where it runs here, else read from the store
   * and the event bus. `RUN_NOT_FOUND` for an unknown run, `INVALID_INPUT` for a bad `afterSeq`.
   */
  async function openEvents(runId: string, afterSeq: number | undefined): Promise<AsyncIterable<RunEvent>> {
    checkAfterSeq(afterSeq);
    const live = registry.get(runId);
    if (!live || (afterSeq ?? 0) < live.firstSeq) {
      // A stream of a parked run ends at its RunPaused, as a live one's does.
      return followStoredRun(
        store,
        eventBus,
        runId,
        afterSeq,
        async (seq) => {
          const held = registry.get(runId);
          if (held) return held.status() === 'paused' && held.lastSeq() === seq;
          const [record, after] = await Promise.all([store.getRun(runId), store.readEvents(runId, seq)]);
          return record?.status === 'paused' && after.length === 0;
        },
        // At a shutdown, the followers of runs held elsewhere are let go; a run held here (taken
        // back from the store) ends here, its followers told.
        { signal: followersStop.signal, heldHere: () => registry.has(runId) },
      );
    }
    return followLive(live, afterSeq);
  }

  /** A live run's events after `afterSeq`; `INVALID_INPUT` for one past its last event. */
  function followLive(run: LiveRun, afterSeq: number | undefined): AsyncIterable<RunEvent> {
    checkAfterSeq(afterSeq);
    // Past the last event, a reader would silently skip the events still to come.
    if (afterSeq !== undefined && afterSeq > run.lastSeq()) {
      throw new RunstateError(
        'INVALID_INPUT',
        `run ${run.identity.runId} has no event ${afterSeq} yet (its last is ${run.lastSeq()})`,
      );
    }
    return run.follow(afterSeq);
  }

  /**
   * The live run of a run claimed from the store, restored in `paused`. `agent` gives what a
   * continue needs (model, tools); a cancel or an expiry needs none.
   */
  function restoreRun(
    runId: string,
    { record, parked }: { record: RunRecord; parked: ParkedRun },
    agent: ContinueRunRequest | undefined,
  ): LiveRun {
    const identity: RunIdentity = {
      runId,
      agentId: record.agent_id,
      agentName: record.agent_name,
      sessionId: record.session_id,
      userId: record.user_id,
      input: record.run_input,
      model: agent?.model ?? recordedModel(record),
      createdAt: record.created_at * 1000,
    };
    // The session's turns before this run (later runs of the session are not its history).
    const messages = settledSessionRuns(record.session_id).then((runs) => {
      const index = runs.findIndex((r) => r.run_id === runId);
      return conversation(agent ?? {}, index < 0 ? runs : runs.slice(0, index), record.run_input);
    });
    messages.catch(() => undefined);
    const runWriter = writer.open(record, { recorded: true });
    // Its reasoning before the pause: its RunCompleted lists every phase.
    const restored = { ...parked, reasoningSteps: record.extra_data?.reasoning_steps };
    return liveRun(identity, agent ?? {}, messages, runWriter, restored);
  }

  function notPaused(runId: string, status: string): RunstateError {
    return new RunstateError('RUN_NOT_PAUSED', `run ${runId} is not paused: ${status}`, {
      details: { run_id: runId, status },
    });
  }

  async function continueRun(
    runId: string,
    entries: readonly ToolAnswer[],
    agent: ContinueRunRequest,
  ): Promise<RunHandle> {
    if (typeof agent !== 'object' || agent === null)
      throw new RunstateError(
        'INVALID_INPUT',
        "continueRun needs the run's agent: { model, tools, instructions, limits }",
      );
    checkOption(toolAnswersSchema, entries, 'tools');
    for (const entry of entries) refuseUnstorable(entry.confirmation_note, 'tools');
    if (agent.limits !== undefined) checkOption(runLimitsSchema, agent.limits, 'limits');
    checkMergedRetry(agent.limits);
    // Before the run is taken from the store: a refusal after would leave it taken, and nobody's.
    if (agent.tools !== undefined) checkTools(agent.tools);
    await parkedRuns.parkInFlight(runId);
    const record = registry.get(runId)?.record() ?? (await store.getRun(runId));
    if (!record || record.agent_id !== agent.agentId) {
      throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found`);
    }
    if (record.status !== 'paused') {
      // Parked here, and ended since by whichever instance took it.
      if (isFinalStatus(record.status) && !registry.get(runId)) parkedRuns.takenElsewhere(runId);
      throw notPaused(runId, record.status);
    }
    const answers = confirmationsOf(runId, record.tools, entries);
    checkAnswers(runId, record.tools, answers);
    refuseWhileLapsed();
    // Only the pause the answers were checked against: continued meanwhile by another request and
    // paused again, the run waits for answers to its new calls, which these would reject.
    const pause = pauseOf(record.tools);
    const taken = await parkedRuns.take(runId, agent, (parked) => pauseOf(parked.tools) === pause);
    if (!taken) {
      const current = registry.get(runId)?.record() ?? (await store.getRun(runId));
      if (current?.status === 'paused' && pauseOf(current.tools) !== pause) {
        throw new RunstateError(
          'RUN_NOT_PAUSED',
          `run ${runId} is not paused at these calls: it was continued meanwhile, and waits at others`,
          { details: { run_id: runId, status: 'paused' } },
        );
      }
    }
    // Taken meanwhile by another continue or a cancel, here or on another instance.
    if (!taken) {
      const here = registry.get(runId);
      if (here) throw notPaused(runId, here.status());
      parkedRuns.takenElsewhere(runId);
      throw notPaused(runId, await parkedRuns.statusWhenTaken(runId));
    }
    const { run } = taken;
    // Taken as this orchestrator began to shut down: ended with the shutdown, not continued.
    if (closing) {
      if (!isFinalStatus(run.status())) run.cancel('shutdown');
      throw new RunstateError('SHUTTING_DOWN', 'the orchestrator is shutting down');
    }
    // A cancel promised here while this continue was taking it (see `takeParked`), or one that went
    // by while nobody held it, ended it as it was taken: the cancel came first.
    // (Or, found past its pause limit, `takeParked` ended it as its own timer would have.)
    if (isFinalStatus(run.status())) throw notPaused(runId, run.status());
    const afterSeq = run.lastSeq();
    run.continue(answers);
    return {
      runId,
      sessionId: run.identity.sessionId,
      events: (after = afterSeq) => followLive(run, after),
      result: run.result,
      recorded: run.writer.recorded,
    };
  }

  function cancelRun(
    runId: string,
    reason: CancelReason = 'code',
    { agentId }: CancelRequestOptions = {},
  ): boolean {
    const run = registry.get(runId);
    // The identity of an active run here, or of a paused one this instance parked.
    const owner = run && !run.output ? run.identity : parkedRuns.parkedIdentity(runId);
    if (owner === undefined || (agentId !== undefined && owner.agentId !== agentId)) return false;
    // A run this instance paused goes (or went) to the store: it is taken back from there and
    // cancelled, in a moment. Only a run whose park the store refused is still this actor's alone.
    if (!run || run.output || (run.status() === 'paused' && parkedRuns.isParking(runId))) {
      const cancelled = parkedRuns.cancel(runId, reason);
      if (!cancelled) return false;
      // Ended as of now, as a live run's cancel is: a run of its session started next reads the
      // session once this cancel is stored, as it would after a run that ended here.
      settleInSession(owner.sessionId, cancelled);
      return true;
    }
    // Final now (the machine moved to `cancelled`), unless it was already ending another way; or,
    // from a listener of the run's own events, once the event being handled is.
    return run.cancel(reason);
  }

  /**
   * The run's output: at once when it is final, else once its terminal event is stored. With
   * `stop`, the wait for a run held elsewhere ends `SHUTTING_DOWN` at a shutdown, as a follower's.
   */
  async function result(runId: string, stop?: FollowStop): Promise<RunOutput> {
    await parkedRuns.cancelling(runId)?.done;
    const live = registry.get(runId);
    if (live) return live.result;
    let record = await store.getRun(runId);
    if (!record) throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found`);
    if (record.finished_at === null) {
      try {
        for await (const event of await followStoredRun(store, eventBus, runId, 0, undefined, stop))
          if (isTerminalEvent(event)) break;
      } catch (error) {
        // Final, its log cut short by a refused write: its final record holds its output.
        if (!isStoredLogCut(error)) throw error;
      }
      record = await store.getRun(runId);
      // The owner stores the terminal event, then the final record: on another instance (a network
      // store), the record may lag the event by a round trip.
      for (let waitMs = 2; record?.finished_at === null && waitMs < 4_000; waitMs *= 2) {
        await delay(waitMs);
        record = await store.getRun(runId);
      }
      if (record?.finished_at == null) throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found`);
    }
    return record as RunOutput;
  }

  /**
   * Records from the store, with the content so far of the live runs: from the run itself when this
   * process holds it, else from its stored events.
   */
  const withLive = (records: RunRecord[]): Promise<RunRecord[]> => Promise.all(records.map(withProgress));

  async function withProgress(record: RunRecord): Promise<RunRecord> {
    const live = registry.get(record.run_id);
    if (live) return live.record();
    // Streaming elsewhere (a pending run has nothing yet, a paused one was stored whole at its park).
    if (record.finished_at !== null || record.status !== 'streaming') return record;
    return recordWithStoredEvents(record, await store.readEvents(record.run_id));
  }

  const orchestrator: Orchestrator = {
    startRun,
    cancelRun(runId, reason, options) {
      checkCancelReason(reason);
      return cancelRun(runId, reason, options);
    },
    async requestCancel(runId, reason, options) {
      checkCancelReason(reason);
      return requestCancel(runId, reason, options);
    },
    continueRun,
    isPaused(runId) {
      const run = registry.get(runId);
      // Parked here, and not heard of since as continued elsewhere.
      return run ? run.status() === 'paused' : parkedRuns.waitsHere(runId);
    },
    // A caller waiting for a run held elsewhere is let go at a shutdown, as a follower is.
    result: (runId) => result(runId, followStop(runId)),
    async getRun(runId) {
      await parkedRuns.cancelling(runId)?.done;
      const live = registry.get(runId);
      if (live) return live.record();
      const record = await store.getRun(runId);
      return record && withProgress(record);
    },
    async listRuns(filter) {
      filter ??= {};
      checkOptionNames(filter, RUN_FILTERS, 'listRuns');
      // A status no run has would list nothing, as if there were no such runs.
      if (filter.status !== undefined && !RUN_STATUSES.includes(filter.status))
        throw new RunstateError(
          'INVALID_INPUT',
          `listRuns's status must be one of ${RUN_STATUSES.join(', ')}`,
        );
      // The status of a live run is its machine's: filtered after the live records replaced the stored.
      const records = await withLive(
        await store.listRuns({ agentId: filter.agentId, sessionId: filter.sessionId }),
      );
      return filter.status === undefined ? records : records.filter((run) => run.status === filter.status);
    },
    async events(runId, afterSeq) {
      const again = () => followEvents(() => orchestrator.events(runId, afterSeq));
      return eachLoopReads(await openEvents(runId, afterSeq), again);
    },
    async listSessions(filter) {
      filter ??= {};
      checkOptionNames(filter, SESSION_FILTERS, 'listSessions');
      return store.listSessions(filter);
    },
    getSession: (sessionId) => store.getSession(sessionId),
    async renameSession(sessionId, name) {
      if (typeof name !== 'string')
        throw new RunstateError('INVALID_INPUT', 'a session name must be a string');
      refuseUnstorable(name, 'name');
      return store.renameSession(sessionId, name);
    },
    async sessionRuns(sessionId) {
      return withLive(await store.sessionRuns(sessionId));
    },
    async deleteSession(sessionId) {
      // A run started here a moment ago may still be on its way into the store, and its record
      // creates the session: deleted before it lands, the session would come back with it.
      const inSession = (run: LiveRun) => run.identity.sessionId === sessionId;
      await Promise.all(
        [...registry.values()].filter(inSession).map((run) => run.writer.recorded.catch(() => undefined)),
      );
      const runs = await store.sessionRuns(sessionId);
      // Its paused runs, owned by no instance, are taken here and cancelled while the session is
      // still there: their end is stored and published as any cancel's, so the instance that
      // paused one (a handle waiting there) hears it. (One taken elsewhere first is told below.)
      const parked = runs.filter((run) => run.finished_at === null && run.status === 'paused');
      const taken = await Promise.all(
        parked.map((run) => parkedRuns.take(run.run_id, undefined).catch(() => undefined)),
      );
      const cancelled = taken.filter((it) => it !== undefined).map(({ run }) => run);
      for (const run of cancelled) run.cancel('api');
      await Promise.all(cancelled.map((run) => run.result));
      // Its runs on other instances are cancelled as the cancel route cancels them, and their ends
      // awaited before anything is forgotten: a follower elsewhere gets its RunCancelled, also when
      // the owner is gone (finalised here once its lease has run out, as a cancel of it is). With
      // the owner out of reach this rejects (`STORE_UNAVAILABLE`), and a retry finds the session.
      const elsewhere = runs.filter((run) => run.finished_at === null && !registry.has(run.run_id));
      await Promise.all(elsewhere.map((run) => requestCancel(run.run_id, 'api').catch(unlessEnded)));
      const existed = await store.deleteSession(sessionId);
      // The session is forgotten before the runs here are cancelled: their terminal events still
      // reach their followers, but their final records are no longer stored (they would count
      // against retention).
      const owned = [...registry.values()].filter(inSession);
      for (const run of owned) cancelRun(run.identity.runId, 'api');
      await Promise.all(owned.map((run) => run.result));
      return existed;
    },
    subscribe: ((target: RunListener | string, options?: SubscribeOptions | number) => {
      if (typeof target === 'string')
        return eachLoopReads(undefined, () =>
          followEvents(() => orchestrator.events(target, options as number)),
        );
      // A wrong first argument would otherwise fail later, in every notice of every run.
      if (typeof target !== 'function') {
        throw new RunstateError(
          'INVALID_INPUT',
          'subscribe takes a listener function, or a run id and the seq to follow its events from',
        );
      }
      const listener = target;
      // A misspelt `current` would miss the runs already going, without a word.
      if (options !== undefined) checkOptionNames(options, SUBSCRIBE_OPTIONS, 'subscribe');
      // Wrapped, so that one function subscribed twice is two subscriptions.
      const entry: RunListener = (notice) => listener(notice);
      const causes = (options as SubscribeOptions | undefined)?.causes !== false;
      const aroundOption = (options as SubscribeOptions | undefined)?.around;
      if (aroundOption !== undefined && typeof aroundOption !== 'function')
        throw new RunstateError('INVALID_INPUT', 'subscribe: `around` must be a function');
      // Wrapped, as the listener is: one function given twice wraps the steps twice.
      const aroundEntry: RunAround | undefined = aroundOption && ((step, work) => aroundOption(step, work));
      listeners.add(entry);
      if (aroundEntry) arounds.add(aroundEntry);
      if (causes) causeListeners++;
      if ((options as SubscribeOptions | undefined)?.current) {
        for (const run of registry.values()) {
          if (run.output) continue;
          const { value, context } = run.actor.getSnapshot();
          const { runId } = run.identity;
          entry({ type: 'created', run: run.record() });
          entry({
            type: 'state',
            runId,
            value,
            status: run.status(),
            event: { type: 'unknown' },
            error: context.error,
            usage: context.usage,
          });
        }
      }
      return () => {
        if (aroundEntry) arounds.delete(aroundEntry);
        if (listeners.delete(entry) && causes) causeListeners--;
      };
    }) as Orchestrator['subscribe'],
    get activeCount() {
      return registry.activeCount;
    },
    get pausedCount() {
      let count = 0;
      for (const run of registry.values()) if (!run.output && run.status() === 'paused') count++;
      return count + parkedRuns.waitingCount;
    },
    async shutdown() {
      closing = true;
      admission.close();
      // Followers of runs held elsewhere only watch: let go at once, to resume on another instance.
      followersStop.abort();
      clearInterval(expirySweep);
      // Paused runs are left to what follows: parked, they outlive this instance in a durable store.
      for (const run of registry.values())
        if (run.status() !== 'paused') cancelRun(run.identity.runId, 'shutdown');
      parkedRuns.clearPauseTimers();
      // Parks in flight finish: a parked run outlives this instance in a store that does. And takes
      // in flight (a continue that began before): a run taken here is among those ended below.
      // A store with no timeouts of its own that stops answering is waited for no longer than below.
      const parksAndTakes = async () => {
        let inFlight: Promise<unknown>[];
        while ((inFlight = [...parkedRuns.parksInFlight(), ...parkedRuns.takesInFlight()]).length > 0)
          await Promise.allSettled(inFlight);
      };
      if (!(await withinStoreWait(parksAndTakes()))) {
        console.error(
          `runstate: shutdown: the run store finished no park or take of a paused run in ${SHUTDOWN_STORE_MS / 1_000} s; not waiting longer`,
        );
      }
      const live = [...registry.values()];
      // Paused here and not parked (the store refused it): nobody else can reach it.
      for (const run of live) if (!run.output) run.cancel('shutdown');
      await Promise.all(live.map((run) => run.result));
      // A store that does not outlive the process (no leases: memory) would lose them: cancelled.
      if (!store.leases) {
        const taken = await parkedRuns.takeAllBack();
        for (const entry of taken) entry?.run.cancel('shutdown');
        await Promise.all(taken.flatMap((entry) => (entry ? [entry.run.result] : [])));
      }
      // Kept in the store for whichever instance takes them: they leave this one's listeners.
      parkedRuns.letGo();
      // A store that is down gets one more try of each write, not retries without end.
      writer.close();
      const unanswered = storing.size;
      if (!(await withinStoreWait(Promise.all(storing)))) {
        console.error(
          `runstate: shutdown: the run store took no final record of ${storing.size} of ${unanswered} runs in ${SHUTDOWN_STORE_MS / 1_000} s; not waiting longer`,
        );
      }
      await (
        await cancels.catch(() => undefined)
      )?.();
      // Its runs are final and stored: nothing is left for the lease to cover.
      await leased?.catch(() => undefined);
      await keeper?.stop({ release: true }).catch(() => undefined);
    },
  };
  return orchestrator;
}

/** Options `createOrchestrator` once had, and where they went. */
const MOVED_OPTIONS: Readonly<Record<string, string>> = {
  retention: 'retention is an option of the store (createMemoryRunStore({ retention }), createSqlRunStore)',
};

/**
 * The names `createOrchestrator` takes: its options, and the rest of what `openStorage` gives (its
 * `description` and `close`), which may be spread in whole (`{ ...storage, maxConcurrentRuns }`).
 */
const ORCHESTRATOR_OPTIONS = [
  'maxConcurrentRuns',
  'limits',
  'inspect',
  'store',
  'cancelBus',
  'eventBus',
  'idGenerator',
  'now',
  'random',
  'description',
  'close',
] as const satisfies readonly (keyof OrchestratorOptions | 'description' | 'close')[];

/**
 * Refuses an option `createOrchestrator` does not have (one it no longer has says where it went),
 * and a store or a bus that is none: either would otherwise fail later, at a run, or not at all.
 */
function checkOrchestratorOptions(options: OrchestratorOptions): void {
  checkOptionsObject(options, 'createOrchestrator');
  for (const name of Object.keys(options)) {
    const moved = Object.hasOwn(MOVED_OPTIONS, name) ? MOVED_OPTIONS[name] : undefined;
    if (moved)
      throw new RunstateError('INVALID_INPUT', `createOrchestrator has no option "${name}": ${moved}`);
  }
  checkOptionNames(options, ORCHESTRATOR_OPTIONS, 'createOrchestrator');
  for (const name of ['idGenerator', 'now', 'random'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function')
      throw new RunstateError('INVALID_INPUT', `createOrchestrator's ${name} must be a function`);
  }
  if (options.inspect !== undefined && !isInspectOption(options.inspect))
    throw new RunstateError('INVALID_INPUT', `inspect must be ${INSPECT_EXPECTED}`);
  const { store, cancelBus, eventBus } = options;
  if (store !== undefined)
    checkMethods(store, STORE_METHODS, 'store', 'a run store (createMemoryRunStore(), openStorage().store)');
  for (const [name, bus] of [
    ['cancelBus', cancelBus],
    ['eventBus', eventBus],
  ] as const) {
    if (bus !== undefined)
      checkMethods(bus, ['publish', 'subscribe', 'close'], name, `a ${name} (openStorage().${name})`);
  }
}

/** Refuses a reason that is none of {@link CancelReason}'s: it would be stored and sent as it came. */
function checkCancelReason(reason: unknown): void {
  if (reason !== undefined && !(CANCEL_REASONS as readonly unknown[]).includes(reason))
    throw new RunstateError(
      'INVALID_INPUT',
      `a cancel's reason must be one of ${CANCEL_REASONS.join(', ')}, got ${JSON.stringify(reason) ?? typeof reason}`,
    );
}

/**
 * What a cancel of a session's run is answered with when the run ended otherwise meanwhile (or its
 * record went with the session first): nothing to do. Anything else (the store out of reach) is thrown.
 */
function unlessEnded(error: unknown): void {
  const code = error instanceof RunstateError ? error.code : undefined;
  if (code !== 'RUN_ALREADY_FINISHED' && code !== 'RUN_NOT_FOUND') throw error;
}

/** The options of `subscribe(listener, options)`. */
const SUBSCRIBE_OPTIONS = [
  'causes',
  'current',
  'around',
] as const satisfies readonly (keyof SubscribeOptions)[];
/** The filters of `listRuns` and of `listSessions`: a misspelt one would return every run or session. */
const RUN_FILTERS = ['agentId', 'sessionId', 'status'] as const satisfies readonly (keyof RunFilter)[];
const START_REQUEST_FIELDS = [
  'agentId',
  'agentName',
  'model',
  'input',
  'instructions',
  'sessionId',
  'userId',
  'limits',
  'tools',
] as const satisfies readonly (keyof StartRunRequest)[];
const SESSION_FILTERS = ['agentId', 'userId'] as const satisfies readonly (keyof SessionFilter)[];

/** What every store has (see {@link RunStore}). */
const STORE_METHODS = [
  'createRun',
  'updateRun',
  'finishRun',
  'getRun',
  'listRuns',
  'appendEvents',
  'readEvents',
  'getSession',
  'listSessions',
  'sessionRuns',
] as const satisfies readonly (keyof RunStore)[];

/**
 * An iterable each loop over which reads every event from where it was asked to start: the first
 * loop reads `first` (opened already, when there is one), each later loop opens its own. Over one
 * iterator, a second loop, or two at once, would share one position, each missing what the other read.
 */
function eachLoopReads<T>(
  first: AsyncIterable<T> | undefined,
  open: () => AsyncIterable<T>,
): AsyncIterable<T> {
  let unread = first;
  return {
    [Symbol.asyncIterator]() {
      const iterable = unread ?? open();
      unread = undefined;
      return iterable[Symbol.asyncIterator]();
    },
  };
}

/**
 * The events `events()` resolves with, as one async iterable (`subscribe(runId, seq)`). Asked for at
 * the first `next()`: an iterable never read leaves no rejection unhandled.
 */
async function* followEvents(events: () => Promise<AsyncIterable<RunEvent>>): AsyncGenerator<RunEvent> {
  yield* await events();
}

/** `INVALID_INPUT` naming the field when `own` retry over `base` (see {@link retryOverProblem}) is. */
function refuseRetryOver(own: RunLimits['retry'], base: RunLimits['retry']): void {
  const problem = retryOverProblem(own, base, "the orchestrator's");
  if (!problem) return;
  const field = `limits.retry.${problem.field}`;
  throw new RunstateError('INVALID_INPUT', `${field}: ${problem.message}`, { details: { field } });
}

/** Whether `work` settled within {@link SHUTDOWN_STORE_MS}: how long a shutdown waits for a store. */
async function withinStoreWait(work: Promise<unknown>): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const settled = await Promise.race([
    work.then(
      () => true,
      () => true,
    ),
    new Promise<false>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_STORE_MS, false))),
  ]);
  clearTimeout(timer);
  return settled;
}
