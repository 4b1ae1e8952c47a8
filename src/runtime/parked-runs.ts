import { clampDelay, isFinalStatus } from '../../machines/run.machine.js';
import { MAX_TIMER_MS, type CancelReason, type RunStatus } from '../../machines/run-types.js';
import { messageWithCause, RunstateError } from '../errors.js';
import type { ContinueRunRequest } from './create-orchestrator.js';
import { followStoredRun } from './follow-stored-run.js';
import type { LiveRun } from './live-run.js';
import {
  isTerminalEvent,
  type RunEvent,
  type RunOutput,
  type RunRecord,
  type RunTerminalEvent,
} from './run-events.js';
import { forgottenRunOutput } from './run-projection.js';
import type { RunRegistry } from './run-registry.js';
import type { CancelBus, EventBus, ParkedRun, RunNotice, RunStore } from './storage.js';

/**
 * How long a continue that lost a parked run waits to learn what the taker made of it (its first
 * event after the pause), before it answers `streaming`: a few of the store's round trips.
 */
const TAKEN_STATUS_WAIT_MS = 2_000;

/** A run this instance parked in the store (see `onPark`). */
interface ParkedHere {
  agentId: string;
  /** Its record at the park: what a handle waiting here resolves with should the record be gone. */
  record: RunRecord;
  /** The `seq` of the park's `RunPaused`: a park of the run elsewhere since has another. */
  seq: number;
  /** Its event-bus subscription, which hears when another instance takes it (see `watchPark`). */
  watch: Promise<(() => void) | undefined> | undefined;
  /**
   * The listeners here were told another instance took it (`left`); the park's bookkeeping stays
   * until the run ends (see `watchPark`).
   */
  toldLeft: boolean;
}

/** What {@link createParkedRuns} needs from the orchestrator that composes it. */
export interface ParkedRunsOptions {
  store: RunStore;
  eventBus: EventBus;
  /** Where a cancel of a run parked here, taken by another instance since, goes. */
  cancelBus: CancelBus;
  /** The orchestrator's live runs: a parked run leaves it, a run taken back joins it. */
  registry: RunRegistry;
  now: () => number;
  /** True once the orchestrator shuts down: it takes no run back then, but to cancel it itself. */
  isClosing: () => boolean;
  /** Tells the orchestrator's listeners (`taken`, `left`). */
  notify: (notice: RunNotice) => void;
  /** The orchestrator's `result`: how a run taken elsewhere ends, read from the store. */
  result: (runId: string) => Promise<RunOutput>;
  /**
   * Builds the live run of a run just claimed from the store, in `paused` (not registered, not
   * resumed): with `agent`'s model and tools for a continue, without for a cancel or an expiry.
   */
  restore: (
    runId: string,
    claimed: { record: RunRecord; parked: ParkedRun },
    agent: ContinueRunRequest | undefined,
  ) => LiveRun;
  /** Called with each run taken back here, once it is registered and resumed. */
  onTaken: (run: LiveRun) => void;
}

/**
 * The paused runs this instance parks in the store, and takes back from it: what
 * {@link createParkedRuns} returns to the orchestrator.
 */
export interface ParkedRuns {
  /** Handed to live runs: a paused run goes to the store and this instance lets go of it. */
  readonly onPark: (run: LiveRun, written: Promise<boolean>, park: { until: number; seq: number }) => void;
  /**
   * Takes a parked run from the store (exactly one instance wins) and restores its actor here, in
   * `paused` (or ended: by a cancel promised here meanwhile, or `RUN_TIMEOUT` when found past its
   * pause limit); `undefined` when somebody took it first, or when `accept` refuses its parked record
   * (see `RunStore.claimParked`). Rejects `SHUTTING_DOWN` once closing.
   */
  take(
    runId: string,
    agent: ContinueRunRequest | undefined,
    accept?: (record: RunRecord) => boolean,
  ): Promise<{ run: LiveRun } | undefined>;
  /** The park of the run in flight here, if one is: a continue or cancel here waits for it. */
  parkInFlight(runId: string): Promise<void> | undefined;
  /** Whether the run is being parked by this instance now. */
  isParking(runId: string): boolean;
  /** Whether this instance parked the run and has not learnt of its end (a continue elsewhere keeps it). */
  isParkedHere(runId: string): boolean;
  /** The agent and session of a run this instance parked, or `undefined`. */
  parkedIdentity(runId: string): { agentId: string; sessionId: string } | undefined;
  /** Parked here, and not heard of since as continued elsewhere. */
  waitsHere(runId: string): boolean;
  /** How many runs parked here wait (see {@link ParkedRuns.waitsHere}). */
  readonly waitingCount: number;
  /**
   * Takes back a run this instance paused, to cancel it, in a moment: `undefined` when closing or
   * when another call is cancelling it already, else the cancel (promised; it never rejects), done
   * once the run's final record is stored.
   */
  cancel(runId: string, reason: CancelReason): Promise<void> | undefined;
  /** The cancel of a run taken back here still going through the store, if one is. */
  cancelling(runId: string): { done: Promise<void>; reason: CancelReason } | undefined;
  /** A run ended here: the handles of its earlier pauses, waiting here, resolve with its output. */
  resolveHandles(run: LiveRun): void;
  /** What became of a parked run another request took, on any instance: streaming again or final. */
  statusWhenTaken(runId: string): Promise<RunStatus>;
  /** A run parked here is another instance's now (or final): this one forgets the park. */
  takenElsewhere(runId: string): void;
  /** Ends the parked runs whose pause ran out (in the store, by any instance); never rejects. */
  sweepExpiredPauses(): Promise<void>;
  /**
   * Asks the store what became of the runs parked here: one taken or ended elsewhere while the
   * event bus could not tell (it was down) is let go as the bus would have. Never rejects.
   */
  recheckParks(): Promise<void>;
  /** At a shutdown: the pause timers of the runs parked here stop. */
  clearPauseTimers(): void;
  /** The parks in flight here now: a shutdown waits for them. */
  parksInFlight(): Promise<void>[];
  /**
   * The takes in flight here now (each may reject): a shutdown waits for them, so that a run taken
   * by a continue that began before it is among the runs it ends.
   */
  takesInFlight(): Promise<unknown>[];
  /**
   * At a shutdown, with a store that does not outlive the process: takes back every run parked
   * here (a closing instance takes runs back only so), for the shutdown to cancel them.
   */
  takeAllBack(): Promise<({ run: LiveRun } | undefined)[]>;
  /** At a shutdown: lets go of the runs parked here, left in the store for whichever instance takes them. */
  letGo(): void;
}

/**
 * Creates the bookkeeping of the runs this orchestrator parks in the store (paused runs): the parks
 * in flight, the pause timers, the handles waiting here, the bus watch that hears when another
 * instance takes a run, and the cancels of parked runs going through the store.
 */
export function createParkedRuns(options: ParkedRunsOptions): ParkedRuns {
  const { store, eventBus, cancelBus, registry, now, isClosing, notify, result, restore, onTaken } = options;
  // Paused runs: parks in flight here (a continue or cancel here waits for it), the pause timers of
  // runs this instance parked, and the handles of those runs, resolved when this instance ends them.
  const parking = new Map<string, Promise<void>>();
  // Takes of parked runs in flight here (see takesInFlight).
  const takes = new Set<Promise<unknown>>();
  const pauseTimers = new Map<string, ReturnType<typeof setTimeout>>();
  const waiting = new Map<string, (output: RunOutput) => void>();
  // The runs this instance parked, until their deadline, a cancel or a continue takes them.
  const parkedHere = new Map<string, ParkedHere>();
  // Runs this instance is taking from the store now: the store may say they are parked no more
  // before the take here has forgotten the park (see `recheckParks`).
  const claiming = new Set<string>();
  // Cancels of paused runs taken here (sync `cancelRun`) that are still going through the store:
  // reads of such a run wait for them, so a caller reads the run cancelled, and a continue here that
  // takes the run first cancels it instead (the cancel was answered `true`).
  const cancellingParked = new Map<string, { done: Promise<void>; reason: CancelReason }>();

  /**
   * A paused run goes to the store (snapshot, deadline, its events), and this instance lets go of
   * it: from then on any instance may take it. Until it is parked, a continue or cancel here waits.
   */
  function onPark(
    run: LiveRun,
    written: Promise<boolean>,
    { until, seq }: { until: number; seq: number },
  ): void {
    const runId = run.identity.runId;
    const done = written.then((ok) => {
      // Refused (an outage past the writer's retries): the run stays here, paused, and its own
      // timer fails it when the pause runs out; nobody can continue it. A run that ended meanwhile
      // (its pause ran out, its lease was lost) is final: its final record clears the park.
      // Halted at a lapse of the lease meanwhile: it ends here (its stored end or RUN_LOST).
      if (!ok || run.output || run.halted) return;
      registry.delete(run);
      run.detach(
        new Promise<RunOutput>((resolve) => {
          // Paused again after a continue here: the handles of the earlier pauses wait too.
          const earlier = waiting.get(runId);
          waiting.set(runId, earlier ? (output) => (earlier(output), resolve(output)) : resolve);
        }),
      );
      const parkedRun: ParkedHere = {
        agentId: run.identity.agentId,
        record: run.record(),
        seq,
        watch: undefined,
        toldLeft: false,
      };
      parkedHere.set(runId, parkedRun);
      // A closing instance times nothing: the runs it parked are the store's (or shutdown's).
      if (!isClosing()) {
        parkedRun.watch = watchPark(runId, parkedRun, seq);
        timePause(runId, until);
      }
    });
    parking.set(runId, done);
    void done.finally(() => {
      if (parking.get(runId) === done) parking.delete(runId);
    });
  }

  /**
   * Times a run parked here out at `until`. A deadline past Node's longest timer (~24.8 days; a
   * longer one fires at once) is reached in steps: that timer, when it fires, sets the next.
   */
  function timePause(runId: string, until: number): void {
    const wait = until - now();
    const fire = wait > MAX_TIMER_MS ? () => timePause(runId, until) : () => void expire(runId, until);
    pauseTimers.set(runId, setTimeout(fire, clampDelay(wait)));
  }

  /**
   * Takes a parked run from the store (exactly one instance wins) and restores its actor here, in
   * `paused`. `agent` gives what a continue needs (model, tools); a cancel or an expiry needs none.
   */
  function takeParked(
    runId: string,
    agent: ContinueRunRequest | undefined,
    expiredBefore?: number,
    forShutdown = false,
    accept?: (record: RunRecord) => boolean,
  ): Promise<{ run: LiveRun } | undefined> {
    // A closing instance takes no run back (another instance will), but to cancel it itself.
    if (isClosing() && !forShutdown)
      return Promise.reject(new RunstateError('SHUTTING_DOWN', 'the orchestrator is shutting down'));
    // A take that began before a shutdown may end after it began: the shutdown waits for it.
    const taking = claimAndRestore(runId, agent, expiredBefore, accept);
    takes.add(taking);
    const taken = () => void takes.delete(taking);
    taking.then(taken, taken);
    return taking;
  }

  async function claimAndRestore(
    runId: string,
    agent: ContinueRunRequest | undefined,
    expiredBefore: number | undefined,
    accept: ((record: RunRecord) => boolean) | undefined,
  ): Promise<{ run: LiveRun } | undefined> {
    await parking.get(runId);
    claiming.add(runId);
    const claimed = await store
      .claimParked(runId, expiredBefore, accept)
      .finally(() => claiming.delete(runId));
    if (!claimed) return undefined;
    clearTimeout(pauseTimers.get(runId));
    pauseTimers.delete(runId);
    // Parked here, and its listeners never told it left: they follow it on without a `taken`.
    const parkedByThis = forgetPark(runId)?.toldLeft === false;
    const run = restore(runId, claimed, agent);
    registry.add(run);
    // Listeners here follow it from now on (those of the instance that parked it were told `left`).
    if (!parkedByThis) notify({ type: 'taken', run: claimed.record });
    run.resume();
    // A `cancelRun` here answered `true` while the run was being taken (by a continue, its own
    // deadline, a shutdown: whichever the store gave it to): the cancel is kept, as its answer promised.
    const cancelling = cancellingParked.get(runId);
    if (cancelling) run.cancel(cancelling.reason);
    // Past its pause limit with nobody to time it out (the instance that paused it is gone, or its
    // timer has not fired yet): it ends as that timer would have, whoever took it (a continue, a
    // cancel from another instance, a shutdown): the same end every instance then reads.
    if (!isFinalStatus(run.status()) && claimed.parked.until < now())
      run.actor.send({ type: 'TIMEOUT', limit: 'pause' });
    onTaken(run);
    return { run };
  }

  /**
   * Fails a parked run whose pause ran out by `until` (`RUN_TIMEOUT`), unless somebody took it first
   * (a later pause of it has a later deadline, and is left alone).
   */
  async function expire(runId: string, until: number): Promise<void> {
    clearTimeout(pauseTimers.get(runId));
    pauseTimers.delete(runId);
    const taken = await takeParked(runId, undefined, until + 1).catch((error: unknown) => {
      console.error(`runstate: cannot end the expired pause of run ${runId}`, error);
      return undefined;
    });
    if (taken) {
      // (Unless a cancel promised meanwhile ended it as it was taken.)
      if (!isFinalStatus(taken.run.status())) taken.run.actor.send({ type: 'TIMEOUT', limit: 'pause' });
      return;
    }
    // Taken elsewhere (continued, cancelled).
    takenElsewhere(runId);
  }

  async function sweepExpiredPauses(): Promise<void> {
    try {
      const at = now();
      for (const runId of await store.expiredParked(at)) await expire(runId, at);
    } catch (error) {
      console.error(`runstate: the sweep of expired pauses failed: ${messageWithCause(error)}`);
    }
  }

  async function recheckParks(): Promise<void> {
    if (parkedHere.size === 0) return;
    // The parks asked about: an answer is about them, not a later park of the same run here.
    const asked = new Map(parkedHere);
    try {
      const states = await store.parkStates([...asked.keys()]);
      for (const [runId, parkedRun] of asked) {
        if (claiming.has(runId) || parkedHere.get(runId) !== parkedRun) continue;
        const state = states.get(runId);
        // Ended (or forgotten): let go, a handle waiting here resolved from the store. Parked by
        // this park still: nothing to do. Taken (and perhaps parked again elsewhere): its listeners
        // here are told it left (its end is heard, or found by a later check).
        if (!state || isFinalStatus(state.status)) takenElsewhere(runId);
        else if (state.parkedSeq !== parkedRun.seq) tellLeft(runId);
      }
    } catch (error) {
      console.error(`runstate: the check of the runs parked here failed: ${messageWithCause(error)}`);
    }
  }

  /**
   * What became of a parked run another request took, on any instance: streaming again (a continue)
   * or final (a cancel). The store's record says it once written; before then, the run's first
   * event after its `RunPaused` does (the taker stores its events before its record).
   */
  async function statusWhenTaken(runId: string): Promise<RunStatus> {
    const stored = await store.getRun(runId).catch(() => undefined);
    if (stored && stored.status !== 'paused') return stored.status;
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), TAKEN_STATUS_WAIT_MS);
    try {
      const paused = (await store.readEvents(runId)).filter((event) => event.event === 'RunPaused').at(-1);
      const after = paused?.seq ?? 0;
      const events = await followStoredRun(store, eventBus, runId, after, undefined, {
        signal: stop.signal,
        heldHere: () => false,
      });
      for await (const event of events) {
        if (event.event === 'RunContinued') return 'streaming';
        if (isTerminalEvent(event)) return event.status;
      }
    } catch {
      // The store out of reach, or nothing came in time: it was taken, and no longer waits. (Or
      // its log was cut short by a refused write: its record says how it ended.)
      const now = await store.getRun(runId).catch(() => undefined);
      if (now && now.status !== 'paused') return now.status;
    } finally {
      clearTimeout(timer);
    }
    return 'streaming';
  }

  /**
   * A run parked here is another instance's now (or final): this one forgets the park (its
   * listeners are told `left`, unless they were), and a handle waiting here learns how the run ends
   * from the store.
   */
  function takenElsewhere(runId: string, end?: RunTerminalEvent): void {
    clearTimeout(pauseTimers.get(runId));
    pauseTimers.delete(runId);
    const parkedRun = forgetPark(runId);
    if (parkedRun?.toldLeft === false) notify({ type: 'left', runId });
    const resolve = waiting.get(runId);
    waiting.delete(runId);
    // Its record gone (its session deleted since): the handle still resolves, never hangs.
    const forgotten = () => parkedRun && resolve!(forgottenRunOutput(parkedRun.record, end, now()));
    if (resolve) result(runId).then(resolve, forgotten);
  }

  /** Drops this instance's park of a run (and its bus watch); what it was, if there was one. */
  function forgetPark(runId: string): ParkedHere | undefined {
    const parkedRun = parkedHere.get(runId);
    if (!parkedRun) return undefined;
    parkedHere.delete(runId);
    unwatch(parkedRun);
    return parkedRun;
  }

  function unwatch(parkedRun: ParkedHere): void {
    void parkedRun.watch?.then((unsubscribe) => unsubscribe?.());
    parkedRun.watch = undefined;
  }

  /**
   * Follows a run parked here on the event bus: the first events another instance publishes for it
   * (`RunContinued`, or its end) say it was taken, and the listeners here hear it then, not at its
   * deadline. While it goes on elsewhere, the park's bookkeeping stays (a cancel here still reaches
   * the run); at its end this instance forgets it, and a handle waiting here gets the end.
   */
  function watchPark(
    runId: string,
    parkedRun: ParkedHere,
    pausedSeq: number,
  ): Promise<(() => void) | undefined> {
    const heard = (events: readonly RunEvent[]) => {
      // Only for this park: the run may have come back here and paused again since.
      if (parkedHere.get(runId) !== parkedRun) return;
      const end = events.find(isTerminalEvent);
      if (end) takenElsewhere(runId, end);
      else if (events.some((event) => event.event === 'RunContinued')) tellLeft(runId);
    };
    return (
      eventBus
        .subscribe(runId, heard)
        .then((unsubscribe) => {
          // What was published before the subscription took effect is in the store by now.
          store.readEvents(runId, pausedSeq).then(heard, () => undefined);
          return unsubscribe;
        })
        // The bus out of reach: `recheckParks`, the deadline, or a cancel or continue reaching this
        // instance tell it.
        .catch(() => undefined)
    );
  }

  /** The listeners here are told once that a run parked here was taken elsewhere. */
  function tellLeft(runId: string): void {
    const parkedRun = parkedHere.get(runId);
    if (!parkedRun || parkedRun.toldLeft) return;
    parkedRun.toldLeft = true;
    // Still watched: its end, published wherever it ends, resolves a handle waiting here.
    notify({ type: 'left', runId });
  }

  async function cancelParked(runId: string, reason: CancelReason): Promise<void> {
    try {
      const taken = await takeParked(runId, undefined);
      // Not in the store: its park was refused (it is still only here), or a continue here took it
      // first; either way the run is this instance's now, and the cancel was answered `true`.
      const run = taken?.run ?? registry.get(runId);
      if (run) {
        run.cancel(reason);
        // Done once its final record is stored: what waits for this cancel (a read of the run, the
        // history of its session's next run) reads it ended.
        await run.result;
        return;
      }
      // Taken by another instance since it was parked here: the cancel goes to whoever holds it now.
      takenElsewhere(runId);
      await cancelBus.publish(runId, reason);
    } catch (error) {
      console.error(`runstate: cannot cancel the paused run ${runId}`, error);
    }
  }

  return {
    onPark,
    take: (runId, agent, accept) => takeParked(runId, agent, undefined, false, accept),
    parkInFlight: (runId) => parking.get(runId),
    isParking: (runId) => parking.has(runId),
    isParkedHere: (runId) => parkedHere.has(runId),
    parkedIdentity(runId) {
      const parkedRun = parkedHere.get(runId);
      return parkedRun && { agentId: parkedRun.agentId, sessionId: parkedRun.record.session_id };
    },
    waitsHere: (runId) => parkedHere.get(runId)?.toldLeft === false,
    get waitingCount() {
      let count = 0;
      for (const parkedRun of parkedHere.values()) if (!parkedRun.toldLeft) count++;
      return count;
    },
    cancel(runId, reason) {
      // A closing instance takes no run back from the store: the next instance (or shutdown, for a
      // store that does not outlive it) ends it. A cancel promised here would never come.
      if (isClosing()) return undefined;
      if (cancellingParked.has(runId)) return undefined; // another call took it first
      const done = cancelParked(runId, reason).finally(() => cancellingParked.delete(runId));
      cancellingParked.set(runId, { done, reason });
      return done;
    },
    cancelling: (runId) => cancellingParked.get(runId),
    resolveHandles(run) {
      const waiter = waiting.get(run.identity.runId);
      waiting.delete(run.identity.runId);
      if (waiter) void run.result.then(waiter);
    },
    statusWhenTaken,
    takenElsewhere: (runId) => takenElsewhere(runId),
    sweepExpiredPauses,
    recheckParks,
    clearPauseTimers() {
      for (const timer of pauseTimers.values()) clearTimeout(timer);
      pauseTimers.clear();
    },
    parksInFlight: () => [...parking.values()],
    takesInFlight: () => [...takes],
    takeAllBack() {
      const ids = [...parkedHere.keys()];
      return Promise.all(ids.map((runId) => takeParked(runId, undefined, undefined, true)));
    },
    letGo() {
      for (const [runId, parkedRun] of parkedHere) {
        unwatch(parkedRun);
        // Kept in the store for whichever instance takes it: it leaves this one's listeners (a
        // tracer ends its span, a gauge drops it), as when another instance takes it.
        if (!parkedRun.toldLeft) {
          parkedRun.toldLeft = true;
          notify({ type: 'left', runId });
        }
      }
    },
  };
}
