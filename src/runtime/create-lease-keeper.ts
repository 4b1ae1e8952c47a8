import type { CancelReason } from '../../machines/run-types.js';
import type { RunEvent } from './run-events.js';
import type { RunLeases } from './run-leases.js';

/** Options of {@link createLeaseKeeper}. */
export interface LeaseKeeperOptions {
  /** The store's leases; the lease is renewed every third of `leases.leaseMs`, orphans looked for every half. */
  leases: RunLeases;
  /** Receives the terminal event of each orphan this instance finalised (to publish it). */
  onFinished?: (event: RunEvent) => void;
  /**
   * Renewals and sweeps that failed (an outage). A sweep is tried again on its next tick; a renewal
   * soon after (see {@link createLeaseKeeper}), as often as it fails.
   */
  onError?: (error: unknown) => void;
  /**
   * This instance could not renew its lease for `leases.leaseMs` (cut off from the database, or
   * frozen): from now on another instance may finalise its runs. Called once per lapse, before the
   * database's lease can have run out (it is counted from when the last renewal was sent), so that
   * the owner stops its runs before anybody else writes their end.
   */
  onLapse?: () => void;
  /**
   * A cancel of one of this instance's runs asked for on another instance, read from the store with
   * each renewal (see `RunLeases.requestCancel`): it may come again until the run is final.
   */
  onCancelRequested?: (runId: string, reason: CancelReason) => void;
}

/** Keeps an instance's lease alive and finalises the runs of instances that stopped renewing. */
export interface LeaseKeeper {
  /** Takes the lease (before the instance creates runs), then renews it and sweeps in the background. */
  start(): Promise<void>;
  /** Finalises every orphan now as `failed` (`RUN_LOST`); resolves with how many. */
  sweep(): Promise<number>;
  /**
   * Cancels a run whose owner is gone, at once: `cancelled` with its partial content. Resolves with
   * the terminal event, or `undefined` when the owner is alive or the run is final already.
   */
  cancelOrphan(runId: string, reason: CancelReason): Promise<RunEvent | undefined>;
  /** Stops renewing; with `release`, ends the lease (graceful shutdown, once the runs are final). */
  stop(options?: { release?: boolean }): Promise<void>;
  /** False from a lapse until the next renewal: a run started meanwhile could be taken for an orphan. */
  readonly holding: boolean;
  /**
   * Whether the lease has lapsed, by the clock: a lapse its timer has not told yet is handled now
   * (`onLapse`). A process frozen past its lease (a VM paused, SIGSTOP, a long pause of the
   * collector) runs its due timers in the order they were due when it wakes, a model's or a tool's
   * before the lapse's: asked before what they bring is used, so that nothing of a run is streamed
   * on after another instance may have ended it.
   */
  lapsed(): boolean;
}

/** The default lease: an owner silent for 15 s is lost. */
export const DEFAULT_LEASE_MS = 15_000;

/**
 * Creates the lease keeper of one instance. Only stores shared by processes over time need it
 * (PostgreSQL, PGlite on disk); the orchestrator composes it when its store has `leases`.
 */
export function createLeaseKeeper(options: LeaseKeeperOptions): LeaseKeeper {
  const { leases, onFinished, onError = () => undefined, onLapse, onCancelRequested } = options;
  const { leaseMs } = leases;
  const timers = new Set<NodeJS.Timeout>();
  let running = false;
  const pending = new Set<Promise<unknown>>();
  let holding = true;
  let lapse: NodeJS.Timeout | undefined;
  /** When the lease lapses (`performance.now()` time): real time, also under a test's fake timers. */
  let deadline = Infinity;
  /** The last renewal failed: the database is out of reach (or refuses), as far as this instance knows. */
  let renewalFailing = false;

  function lapseNow(): void {
    clearTimeout(lapse);
    holding = false;
    onLapse?.();
  }

  function armLapse(at: number): void {
    deadline = at;
    lapse = setTimeout(
      () => {
        if (performance.now() < deadline) return armLapse(deadline);
        lapseNow();
      },
      Math.max(0, deadline - performance.now()),
    );
    lapse.unref();
  }

  /** Renews, and moves the lapse to `leaseMs` after the renewal was sent: the database's lease ends no earlier. */
  async function renew(): Promise<void> {
    const sent = performance.now();
    try {
      await leases.renew();
    } catch (error) {
      renewalFailing = true;
      throw error;
    }
    renewalFailing = false;
    holding = true;
    clearTimeout(lapse);
    deadline = Infinity;
    if (!running) return;
    armLapse(sent + leaseMs);
    readCancelRequests();
  }

  let readingCancels = false;
  /**
   * The cancels asked for of this instance's runs, read after each renewal and never awaited by it:
   * a slow read (a busy database) must not hold the next renewal back, or the lease would lapse. One
   * read at a time; a failure is reported and the next renewal reads again.
   */
  function readCancelRequests(): void {
    const read = leases.cancelRequests;
    if (!onCancelRequested || !read || readingCancels) return;
    readingCancels = true;
    const done = read()
      .then((requests) => {
        if (running) for (const { runId, reason } of requests) onCancelRequested(runId, reason);
      }, onError)
      .finally(() => {
        readingCancels = false;
        pending.delete(done);
      });
    pending.add(done);
  }

  /**
   * Runs `task` every `everyMs`, never two at once, until stopped; `retryMs` after a try that failed.
   */
  function every(everyMs: number, task: () => Promise<unknown>, retryMs = everyMs, firstMs = everyMs): void {
    const tick = () => {
      timers.delete(timer);
      if (!running) return;
      let failed = false;
      const done = task()
        .catch((error: unknown) => {
          failed = true;
          onError(error);
        })
        .finally(() => {
          pending.delete(done);
          if (running) schedule(failed ? retryMs : everyMs);
        });
      pending.add(done);
    };
    let timer: NodeJS.Timeout;
    const schedule = (delayMs: number) => {
      timer = setTimeout(tick, delayMs);
      // A lease must not keep a process alive that has nothing else to do.
      timer.unref();
      timers.add(timer);
    };
    schedule(firstMs);
  }

  async function finish(runId: string, outcome: Parameters<RunLeases['finishOrphan']>[1]) {
    const event = await leases.finishOrphan(runId, outcome);
    if (event) onFinished?.(event);
    return event;
  }

  async function sweep(): Promise<number> {
    let count = 0;
    for (const runId of await leases.orphans()) if (await finish(runId, { status: 'failed' })) count++;
    return count;
  }

  return {
    async start() {
      running = true;
      // Scheduled first: should the first renewal fail, the next ones still come. A renewal that
      // failed is tried again within a second (a fifteenth of a short lease), not a third of the
      // lease later: two failures a third apart would let the lease lapse, all runs RUN_LOST, after
      // an outage of barely more than a third of it, however long the database has been back.
      every(
        Math.max(1, Math.floor(leaseMs / 3)),
        renew,
        Math.max(1, Math.min(1_000, Math.floor(leaseMs / 15))),
      );
      // The first sweep at once: the runs of an instance that went while none was running (a
      // restart) end now, not half a lease later.
      every(Math.max(1, Math.floor(leaseMs / 2)), sweep, undefined, 0);
      await renew();
    },
    sweep,
    cancelOrphan: (runId, reason) => finish(runId, { status: 'cancelled', reason }),
    async stop({ release = false } = {}) {
      running = false;
      clearTimeout(lapse);
      deadline = Infinity;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await Promise.all(pending);
      // A database the last renewal could not reach would take this try's timeout to say so again;
      // the lease then runs out on its own, and the runs it covered are final already.
      if (release && !renewalFailing) await leases.release();
    },
    get holding() {
      return holding;
    },
    lapsed() {
      if (!holding) return true;
      if (performance.now() < deadline) return false;
      lapseNow();
      return true;
    },
  };
}
