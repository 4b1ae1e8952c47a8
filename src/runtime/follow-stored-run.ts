import { RunstateError } from '../errors.js';
import { isTerminalEvent, type RunEvent } from './run-events.js';
import type { EventBus, RunStore } from './storage.js';

/**
 * Replays a run this process does not own from the store, then follows it on the event bus until
 * its terminal event. Rejects `RUN_NOT_FOUND` for an unknown run and `INVALID_INPUT` for an
 * `afterSeq` past the last event of a final run, or of a paused one in a store without owner leases,
 * before anything is read (an active run's next events may be on their way to the store).
 *
 * Gap-free: the bus is subscribed to before the store is read, and the owner publishes a batch only
 * once it is stored, so every event is either read or received (those seen twice are dropped by
 * `seq`). Should the bus ever skip (a `seq` jump), the missing events are read from the store; should
 * it stay silent for a second, the store is asked too (a bus that lost the last batches).
 *
 * With `isPausedAt`, the stream also ends at a `RunPaused`, as a paused run's stream does: at one
 * that came while it followed (however soon the run was continued), and at one it replays from the
 * store if `isPausedAt(seq)` says, as it is read, that the run still waits there. It reads on through
 * a pause the run had already left.
 *
 * A `stop` signal (the orchestrator's shutdown) ends the following with `SHUTTING_DOWN`: a follower
 * only watches, so its reader is let go at once, to resume on another instance (`Last-Event-ID`). A
 * run that ends before `afterSeq` (a resume from past its last event, which only the end can tell
 * while the owner's newest events may not be stored yet) ends it with `INVALID_INPUT`.
 * A run forgotten before its terminal event was read (its session deleted, or by the store's
 * retention) ends it with `RUN_NOT_FOUND`; a final run whose stored log ends before its terminal
 * event (its owner gave up a batch the store refused) with `INTERNAL` ({@link isStoredLogCut}).
 */
export async function followStoredRun(
  store: RunStore,
  eventBus: EventBus,
  runId: string,
  afterSeq = 0,
  isPausedAt?: (seq: number) => Promise<boolean>,
  stop?: FollowStop,
): Promise<AsyncIterable<RunEvent>> {
  const record = await store.getRun(runId);
  if (!record) throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found`);
  // Only a final run's log is whole in the store: an active one's lags its owner's by a write, and
  // a client that read event n from the owner may resume from n here before n is stored. So is a
  // paused one's in a store without owner leases (memory: its `RunPaused` was stored with the park,
  // and a continue makes it live here); in one with leases another instance may have taken it, its
  // events not stored yet.
  if (record.finished_at !== null || (record.status === 'paused' && !store.leases)) {
    await endAfter(store, runId, afterSeq);
  }
  return follow(store, eventBus, runId, afterSeq, isPausedAt, stop);
}

/**
 * Whether `event` is the end that another instance wrote for a run whose owner went, as a reader
 * resuming after `afterSeq` never saw it: a `RunError` `RUN_LOST` at or before `afterSeq`, or a
 * `RunCancelled` (a cancel that found the owner gone) before it, or at it when the store says
 * another instance wrote it. The owner sends each event to its own clients before the store has it,
 * so the events it sent last may never have been stored, and that end takes the seq after the last
 * stored one: a client of the owner resumes from an id at or past it. (A `RunCancelled` the owner
 * wrote at `afterSeq` is the one its reader read.) A reader that read such an end from a follower
 * and resumes from it gets it again, as with `RUN_LOST`: the seq cannot tell it from the owner's
 * client, which must not be left without an end.
 */
async function endsLostOwner(store: RunStore, event: RunEvent, afterSeq: number): Promise<boolean> {
  // Only a store with owner leases ends a run for an owner that went; in any other, every end is
  // its owner's, stored before it was sent, and a resume past it asks for events that never were.
  if (!store.leases || event.seq > afterSeq) return false;
  if (event.event === 'RunError') return event.code === 'RUN_LOST';
  if (event.event !== 'RunCancelled') return false;
  return event.seq < afterSeq || store.leases.finishedAsOrphan(event.run_id);
}

/**
 * What a resume after `afterSeq` that finds nothing more of a final run gets: the end of a lost
 * owner (see {@link endsLostOwner}), which it never saw (`end`); nothing when `afterSeq` is the
 * run's last event (`at` is that event); `INVALID_INPUT` naming the last event when the store holds
 * no event `afterSeq`.
 */
async function endAfter(
  store: RunStore,
  runId: string,
  afterSeq: number,
): Promise<{ end?: RunEvent | undefined; at?: RunEvent | undefined }> {
  if (afterSeq === 0) return {};
  const from = await store.readEvents(runId, afterSeq - 1);
  const last = from.length > 0 ? from.at(-1) : (await store.readEvents(runId)).at(-1);
  if (last && (await endsLostOwner(store, last, afterSeq))) return { end: last };
  if (from.length > 0) return { at: from[0] };
  throw new RunstateError(
    'INVALID_INPUT',
    // (Not "yet": a final run has no more to come.)
    `run ${runId} has no event ${afterSeq} (its last is ${last?.seq ?? 0})`,
  );
}

const forgotten = (runId: string) =>
  new RunstateError(
    'RUN_NOT_FOUND',
    `run ${runId} was deleted (with its session, or by the store's retention) before its end was read`,
  );

/**
 * Whether a follower failed because the run is final but its stored log ends before its terminal
 * event (a batch of its events was refused, and its owner reported it): its final record holds its
 * output all the same.
 */
export function isStoredLogCut(error: unknown): boolean {
  return (
    error instanceof RunstateError &&
    error.code === 'INTERNAL' &&
    error.details?.['stored_up_to'] !== undefined
  );
}

/** When a follower lets its reader go (see {@link followStoredRun}). */
export interface FollowStop {
  /** Aborted: the instance is shutting down. */
  signal: AbortSignal;
  /** The run is held by this instance, which ends it and tells its followers: followed on. */
  heldHere: () => boolean;
}

/** How long a follower waits on a silent bus before it asks the store. */
const RECHECK_MS = 1_000;

async function* follow(
  store: RunStore,
  eventBus: EventBus,
  runId: string,
  afterSeq: number,
  isPausedAt: ((seq: number) => Promise<boolean>) | undefined,
  stop: FollowStop | undefined,
): AsyncGenerator<RunEvent> {
  const received: RunEvent[] = [];
  let wake: (() => void) | undefined;
  const stopped = () => {
    if (stop?.signal.aborted && !stop.heldHere()) {
      throw new RunstateError(
        'SHUTTING_DOWN',
        `this instance is shutting down: follow run ${runId} on another`,
      );
    }
  };
  const onStop = () => wake?.();
  stop?.signal.addEventListener('abort', onStop);
  // Subscribed on the first read, so that an iterable nobody reads holds no subscription. With the
  // bus out of reach (Redis down), the store is read after each quiet spell, and the subscription
  // tried again then.
  let unsubscribe: (() => void) | null = null;
  const subscribe = async () => {
    unsubscribe ??= await unlessUnavailable(
      eventBus.subscribe(runId, (events) => {
        received.push(...events);
        wake?.();
      }),
    );
  };
  await subscribe();
  // A read the follower cannot go on without: with the store out of reach it is tried again after
  // each quiet spell (or as soon as the bus brings something), as the later reads are.
  const untilAvailable = async <T>(read: () => Promise<T>): Promise<T> => {
    for (;;) {
      const value = await unlessUnavailable(read());
      if (value !== null) return value;
      stopped();
      await new Promise<void>((resolve) => {
        const quiet = setTimeout(resolve, RECHECK_MS);
        wake = () => {
          clearTimeout(quiet);
          resolve();
        };
      });
      wake = undefined;
    }
  };
  try {
    let last = afterSeq;
    const replay = await untilAvailable(() => store.readEvents(runId, last));
    // Events after this one came while this reader followed. Whether an event ends the stream is
    // asked as it is read, not when the reader wants the next one (by then the run may have gone on).
    const since = replay.at(-1)?.seq ?? last;
    const ends = async (event: RunEvent): Promise<boolean> =>
      isTerminalEvent(event) ||
      (event.event === 'RunPaused' &&
        isPausedAt !== undefined &&
        (event.seq > since || (await isPausedAt(event.seq))));
    for (const event of replay) {
      last = event.seq;
      const end = await ends(event);
      yield event;
      if (end) return;
    }
    // Gone (forgotten) or final without its terminal event read: nothing more will be published.
    const now = await untilAvailable(() => store.getRun(runId));
    const gone = now === undefined;
    let over = gone || now.finished_at !== null;
    for (;;) {
      while (received.length > 0) {
        const event = received.shift()!;
        // Already read; a terminal event here ends a resume from its seq, and refuses one from past it,
        // but for the end of a lost owner, which its reader never saw (see `endsLostOwner`).
        if (event.seq <= last) {
          if (!isTerminalEvent(event)) continue;
          if (last === afterSeq && (await endsLostOwner(store, event, afterSeq))) {
            yield event;
            return;
          }
          if (event.seq < afterSeq) await endAfter(store, runId, afterSeq);
          return;
        }
        if (event.seq > last + 1) {
          // The bus lost a batch: what it skipped is in the store (the owner stores before it publishes).
          received.unshift(event);
          for (const missed of await store.readEvents(runId, last)) {
            if (missed.seq >= event.seq) break;
            last = missed.seq;
            const end = await ends(missed);
            yield missed;
            if (end) return;
          }
          if (received[0]!.seq > last + 1) {
            throw new RunstateError(
              'INTERNAL',
              `run ${runId}: events ${last + 1}..${event.seq - 1} are lost`,
            );
          }
          continue;
        }
        last = event.seq;
        const end = await ends(event);
        yield event;
        if (end) return;
      }
      if (over) {
        // Final when it was read: its every event is stored (the owner stores the terminal event,
        // then the final record, then publishes), also those the bus has not brought yet.
        for (const missed of await store.readEvents(runId, last)) {
          last = missed.seq;
          const end = await ends(missed);
          yield missed;
          if (end) return;
        }
        // Nothing read after `afterSeq`: the end of a lost owner, or was it an event of the run at all?
        if (last === afterSeq && !gone) {
          const { end, at } = await endAfter(store, runId, afterSeq);
          if (end) yield end;
          // (Resumed from its terminal event: nothing more to read.)
          if (end || (at && isTerminalEvent(at))) return;
        }
        // No terminal event: forgotten (its session deleted, its age past the store's retention),
        // or final with a stored log that ends early. Ended cleanly, the stream would look complete.
        if (gone || (await store.getRun(runId)) === undefined) throw forgotten(runId);
        throw new RunstateError(
          'INTERNAL',
          `run ${runId} is over, but the store holds its events only up to ${last}: the rest were not stored`,
          { details: { stored_up_to: last } },
        );
      }
      // A bus may drop messages (pub/sub while Redis restarts) and then stay silent: after a quiet
      // spell, the store is asked what was missed, so a follower never waits forever.
      stopped();
      const quiet = setTimeout(() => wake?.(), RECHECK_MS);
      await new Promise<void>((resolve) => (wake = resolve));
      clearTimeout(quiet);
      wake = undefined;
      if (received.length > 0) continue;
      await subscribe();
      // The store out of reach (an outage): the bus may still bring the events, and the store is
      // asked again after the next quiet spell. A follower waits an outage out, as the owner does.
      const missing = await unlessUnavailable(store.readEvents(runId, last));
      for (const missed of missing ?? []) {
        last = missed.seq;
        const end = await ends(missed);
        yield missed;
        if (end) return;
      }
      if (!missing || missing.length > 0) continue;
      const now = await unlessUnavailable(store.getRun(runId));
      // Forgotten meanwhile (its session deleted) without its end read here: ended cleanly, the
      // stream would look complete to its reader, who never learns how the run ended.
      if (now === undefined) throw forgotten(runId);
      // Final now: its end may have been stored after the events were read (another instance's
      // sweep or cancel between the two reads), so they are read once more, as for a run found
      // final at the start.
      if (now !== null && now.finished_at !== null) over = true;
    }
  } finally {
    stop?.signal.removeEventListener('abort', onStop);
    (unsubscribe as (() => void) | null)?.();
  }
}

/** What `read` resolves with, or `null` while the store is out of reach (`STORE_UNAVAILABLE`). */
async function unlessUnavailable<T>(read: Promise<T>): Promise<T | null> {
  try {
    return await read;
  } catch (error) {
    if (error instanceof RunstateError && error.code === 'STORE_UNAVAILABLE') return null;
    throw error;
  }
}
