import type { StateValue } from 'xstate';
import { RunstateError } from '../errors.js';
import type { CancelReason, RunErrorData, RunStatus, TokenUsage } from '../../machines/run-types.js';
import type { RunEvent, RunOutput, RunRecord } from './run-events.js';
import type { RunLeases } from './run-leases.js';

/**
 * The three interfaces the orchestrator keeps its state behind. The in-memory implementations
 * (`createMemoryRunStore`, `createMemoryCancelBus`, `createMemoryEventBus`) are the defaults; a
 * database or a broker is another implementation of the same interface, never a branch in the
 * orchestrator.
 *
 * Who writes what: a run has one owner, the orchestrator instance that started it. Only the owner
 * (its run actor, through the orchestrator) writes the run's record and events; any instance reads
 * them. Every method that can do I/O returns a promise; events are written in batches (never one
 * call per token).
 */

/** Filters of {@link RunStore.listRuns}; absent fields do not filter. */
export interface RunFilter {
  agentId?: string | undefined;
  sessionId?: string | undefined;
  status?: RunStatus | undefined;
}

/** Filters of {@link RunStore.listSessions}; absent fields do not filter. */
export interface SessionFilter {
  agentId?: string | undefined;
  userId?: string | undefined;
}

/** A session: the runs of one conversation. Wire object, as AgentOS names its fields. */
export interface SessionRecord {
  session_id: string;
  agent_id: string;
  user_id: string | null;
  /** The start of the first user message (at most 100 characters), as Agno's Agent UI shows it. */
  session_name: string;
  /** Unix time in seconds. */
  created_at: number;
  /** Unix time in seconds: when its last run was created. */
  updated_at: number;
  /** The session's retained runs, oldest first, active ones included. */
  run_ids: string[];
}

/**
 * A change to a run's record. Fields beyond {@link RunRecord}'s are the owner's to keep with the run
 * (a persisted machine snapshot, a lease); a store keeps them and `getRun` returns them as written.
 */
export type RunPatch = Partial<Omit<RunRecord, 'run_id'>> & Record<string, unknown>;

/**
 * A run paused for a person, as the store keeps it while it waits: owned by no instance, so that any
 * instance (this one after a restart, or another) can take it and carry on.
 */
export interface ParkedRun {
  /** The run actor's persisted snapshot (`actor.getPersistedSnapshot()`): plain JSON. */
  snapshot: unknown;
  /** The `seq` of its `RunPaused`, its last event: the run goes on from the next. */
  seq: number;
  /** When the pause runs out (milliseconds since the epoch): the run then fails `RUN_TIMEOUT`. */
  until: number;
}

/** A run's status, and the `seq` of its park's `RunPaused` while it is parked (see `RunStore.parkStates`). */
export interface ParkState {
  status: RunStatus;
  parkedSeq: number | null;
}

/**
 * Whether a run of `runUser` may join a session of `sessionUser`: unless both are named and differ.
 * A run or a session with no user scopes nothing (as a read with no `user_id` sees every session).
 */
export function userMayJoinSession(sessionUser: string | null, runUser: string | null | undefined): boolean {
  return sessionUser === null || runUser == null || sessionUser === runUser;
}

/**
 * The refusal of a run in session `sessionId`, which belongs to agent `owner`: of another agent, or,
 * when `owner` is the run's agent `agentId`, of another user ({@link userMayJoinSession}). A 422
 * naming `session_id` over HTTP, whether a store or the run route found it.
 */
export function sessionOfAnother(sessionId: string, owner: string, agentId: string): RunstateError {
  return new RunstateError(
    'INVALID_INPUT',
    owner === agentId
      ? `session ${sessionId} belongs to another user`
      : `session ${sessionId} belongs to agent ${owner}, not ${agentId}`,
    { details: { field: 'session_id' } },
  );
}

/**
 * Run records, sessions (with their runs) and each run's event log.
 *
 * Contract, for every implementation:
 * - Writes of one run come from its owner, one at a time and in order: `createRun` first, then any
 *   number of `updateRun` and `appendEvents`, then `finishRun`. A store need not order concurrent
 *   writes of one run; it must make each write visible to every later read once its promise resolved
 *   (read-your-writes, on any instance).
 * - Sessions exist through their runs: `createRun` creates the session on its first run, and
 *   retention that forgets a session's last run forgets the session.
 * - Retention is the store's own option (how many finished runs, how old, how many sessions): what a
 *   store forgot reads as absent everywhere (`getRun`, `listRuns`, `readEvents`, `sessionRuns`,
 *   `run_ids`). A store never forgets an active run.
 * - Errors: a refused write rejects with a `RunstateError` (`INVALID_INPUT` for a bad request,
 *   `STORE_UNAVAILABLE` when the backend cannot be reached).
 */
export interface RunStore {
  /**
   * Records a new run (its status is `pending`) and adds it to its session, creating the session
   * on its first run. Rejects `INVALID_INPUT` when the session belongs to another agent or to
   * another user ({@link userMayJoinSession}), or the run id is already recorded; nothing is written
   * then.
   */
  createRun(run: RunRecord): Promise<void>;
  /** Merges `patch` into an active run's record. Ignored for an unknown or final run. */
  updateRun(runId: string, patch: RunPatch): Promise<void>;
  /**
   * Makes a run final with its output. Idempotent: resolves `true` when this call finished the run,
   * `false` when it was already final (the first output stays) or is unknown.
   */
  finishRun(record: RunOutput): Promise<boolean>;
  /** The run's record, or `undefined` for an unknown or forgotten run. */
  getRun(runId: string): Promise<RunRecord | undefined>;
  /** Retained runs matching `filter`, in the order they were created. */
  listRuns(filter?: RunFilter): Promise<RunRecord[]>;
  /**
   * Appends a batch of one run's events. `events` are in `seq` order and continue the log without a
   * gap (the first `seq` is the log's size + 1). Events whose `seq` is already stored are ignored,
   * so a batch sent again after an error does no harm.
   */
  appendEvents(runId: string, events: readonly RunEvent[]): Promise<void>;
  /** The run's stored events with `seq > afterSeq` (default 0), in order; `[]` for an unknown run. */
  readEvents(runId: string, afterSeq?: number): Promise<RunEvent[]>;
  /** The session, or `undefined`. */
  getSession(sessionId: string): Promise<SessionRecord | undefined>;
  /** Sessions matching `filter`, most recently updated first. */
  listSessions(filter?: SessionFilter): Promise<SessionRecord[]>;
  /** The session's retained runs, oldest first (a conversation's history is built from them). */
  sessionRuns(sessionId: string): Promise<RunRecord[]>;
  /**
   * Parks a paused run, in one step: appends `events` (the last is its `RunPaused`, as in
   * `appendEvents`), merges `patch` into its record, keeps `parked` and releases the run from its
   * owner (no lease covers it). Written by the owner, in order with its other writes. Ignored for an
   * unknown or final run.
   */
  parkRun(runId: string, patch: RunPatch, events: readonly RunEvent[], parked: ParkedRun): Promise<void>;
  /**
   * Takes a parked run, once: of callers racing (on any instance), exactly one gets it, and becomes
   * its owner (its lease covers it). Resolves with its record and parked state, or `undefined` when
   * the run is not parked (unknown, final, never paused, or taken already). With `expiredBefore`,
   * only a run whose pause ran out before it (milliseconds since the epoch); with `accept`, only a
   * run whose parked record it accepts (a continue, of the pause it checked its answers against).
   */
  claimParked(
    runId: string,
    expiredBefore?: number,
    accept?: (record: RunRecord) => boolean,
  ): Promise<{ record: RunRecord; parked: ParkedRun } | undefined>;
  /** Parked runs whose pause ran out before `nowMs`, oldest first. */
  expiredParked(nowMs: number): Promise<string[]>;
  /**
   * Where `runIds` are: each run's status, and the `seq` of the `RunPaused` of its park while it is
   * parked (`null` once taken, or never parked); a run the store does not hold (forgotten) is not
   * in the map. How an instance that parked runs learns what it missed of them (its event bus was
   * down when another instance took them, or took and parked them again).
   */
  parkStates(runIds: readonly string[]): Promise<Map<string, ParkState>>;
  /** Forgets a session, its runs and their events; `false` when there was no such session. */
  deleteSession(sessionId: string): Promise<boolean>;
  /**
   * Names a session (AgentOS's rename): later reads answer `name` as its `session_name`. Resolves
   * with the renamed session, or `undefined` when there is no such session.
   */
  renameSession(sessionId: string, name: string): Promise<SessionRecord | undefined>;
  /** Releases the store's connections. Calls after it reject. */
  close(): Promise<void>;
  /**
   * Present in stores that outlive a process or are shared by several (PostgreSQL, PGlite on disk):
   * the owner leases with which a live instance finalises the runs of one that is gone. The
   * orchestrator renews its lease and sweeps orphans when a store has them.
   */
  readonly leases?: RunLeases | undefined;
}

/**
 * A cancel, delivered to the instance that owns the run (which may be another process).
 *
 * Contract: a cancel published after a subscription's promise resolved reaches that subscriber,
 * once, unless the bus is unavailable (then `publish` rejects `STORE_UNAVAILABLE`). Every
 * subscriber receives every cancel: the owner acts on it, the others ignore runs they do not own.
 * Delivery is at most once; whoever asked for the cancel watches the run's record or events to learn
 * the outcome.
 */
export interface CancelBus {
  /**
   * Sends a cancel for `runId`; resolves once the bus accepted it (not when the run is final). With
   * `agentId`, only a run of that agent is to be cancelled: the sender has not read the run yet.
   */
  publish(runId: string, reason: CancelReason, agentId?: string): Promise<void>;
  /** Receives every cancel published from now on; resolves once listening, with `unsubscribe`. */
  subscribe(
    listener: (runId: string, reason: CancelReason, agentId?: string) => void,
  ): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/**
 * A run's live events, from its owner to followers on any instance.
 *
 * Contract: the owner publishes each batch after the store has it (`appendEvents` resolved), in
 * `seq` order. A subscriber receives, in order, every batch of that run published after its
 * subscription's promise resolved. So a follower that subscribes first and then reads the store
 * misses nothing: an event is either already stored when it reads, or published after it
 * subscribed. That is what "gap-free, resumable by `seq`" means here: a follower drops events with
 * a `seq` it has already seen, and if it ever sees a jump in `seq` (a bus that lost a message) it
 * reads the missing events from the store.
 */
export interface EventBus {
  /** Sends a batch of a run's events to its followers. Never waits: a slow follower costs the owner nothing. */
  publish(runId: string, events: readonly RunEvent[]): void;
  /** Follows a run's events published from now on; resolves once listening, with `unsubscribe`. */
  subscribe(runId: string, listener: (events: readonly RunEvent[]) => void): Promise<() => void>;
  close(): Promise<void>;
}

/**
 * What `orchestrator.subscribe(listener)` reports about the runs this orchestrator owns, each
 * synchronously, as it happens, in this order per run: `created`; then `state` and `event` as the
 * machine moves and the wire events are appended; `finished` once, after the terminal event. A
 * paused run parked in the store may end on another instance: there it begins with `taken` (in
 * place of `created`), and the instance that parked it is told `left` once it learns. The one
 * source of run lifecycle for the inspector, HTTP streams, tracing and metrics.
 */
export type RunNotice =
  /**
   * Inside `startRun`, before it returns: an OpenTelemetry `context.active()` is the caller's. (To
   * a listener subscribed with `current: true`, also at the subscription, for each run held then.)
   */
  | { type: 'created'; run: RunRecord }
  /**
   * Every change of the run machine's state: `value` is xstate's state value, `event` the machine
   * event that caused it (`START`, `CANCEL`, `ERROR`...; `xstate.init` for the first state), or
   * `unknown` for a run that started while no listener asked for causes (knowing them costs every
   * chunk: see `subscribe`'s `causes`). `error` is the machine's: the failed attempt's while
   * `retrying`, the run's once `failed`, otherwise `null`. `usage` is the tokens of the run's model
   * requests that ended so far (`null` before the first; a count the server did not report, and
   * every sum with it, is `null`). `requestUsage` is what the current request reported, once it
   * ended (`null` before, or when it reported none; absent for a run restored from a snapshot of an
   * earlier version).
   */
  | {
      type: 'state';
      runId: string;
      value: StateValue;
      status: RunStatus;
      event: { type: string };
      error: RunErrorData | null;
      usage?: TokenUsage | null | undefined;
      requestUsage?: TokenUsage | null | undefined;
    }
  /** Every wire event of the run, as it is appended (`seq` 1, 2, 3...). */
  | { type: 'event'; runId: string; event: RunEvent }
  /**
   * Once per run, after its terminal event. Also for a run whose owner was lost (another instance of
   * a shared store, gone) that this instance finalised: no notice of it came before.
   */
  | { type: 'finished'; run: RunOutput }
  /**
   * A run this instance paused and parked in the store was taken by another instance (continued,
   * cancelled or failed at its deadline there), which tells its later notices and its `finished`:
   * nothing more of it comes here. Told when this instance learns it: when the run's next events
   * come over the event bus from the instance that took it; else when the run's pause deadline
   * comes, or a cancel or continue of it reaches this instance. Also told at this instance's
   * shutdown for the runs it leaves parked in a store that outlives it (for the next to take).
   */
  | { type: 'left'; runId: string }
  /**
   * A run parked in the store by another instance (or by this one before a restart) was taken here,
   * to be continued, cancelled or failed at its pause deadline: its notices come here from now on,
   * `state` first (`paused`). It was `created` where it started, and is not again. (A run this
   * instance parked and takes back itself was never let go of by its listeners: no notice.)
   */
  | { type: 'taken'; run: RunRecord };

/**
 * Receives {@link RunNotice}s. It should not throw: a listener that throws is reported to
 * `console.error` and affects neither the run nor the other listeners.
 */
export type RunListener = (notice: RunNotice) => void;

/**
 * A step of a run that runs code not runstate's own: a model request (from the call that starts it
 * to its last chunk) or a tool call's `execute`. Begun after the notice that tells of it: the
 * `state` notice of `streaming.attempt`, or the `ToolCallStarted` event.
 */
export type RunStep = { type: 'model'; runId: string } | { type: 'tool'; runId: string; toolCallId: string };

/**
 * Runs a {@link RunStep}'s code (`work`) within what an observer provides, and returns what it
 * returns: a tracer makes the step's span the active OpenTelemetry context, so that the spans the
 * tool or the model's HTTP client make are its children. Called once per model request and per tool
 * call (never per chunk); it must call `work` once, synchronously. One that throws before calling
 * it is reported to `console.error`, and the step runs without it.
 */
export type RunAround = <T>(step: RunStep, work: () => T) => T;
