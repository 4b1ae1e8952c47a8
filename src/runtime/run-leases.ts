import type { CancelReason } from '../../machines/run-types.js';
import type { RunEvent } from './run-events.js';

/** How a run whose owner is gone ends: lost (`failed`, `RUN_LOST`), or cancelled by a user. */
export type OrphanOutcome = { status: 'failed' } | { status: 'cancelled'; reason: CancelReason };

/**
 * Leases of a store shared by many instances (PostgreSQL, PGlite across restarts). Each instance
 * renews one lease that covers every run it owns; a run whose owner's lease ran out is an orphan,
 * which any live instance may finalise. Times are the database's clock, so instances' clocks may
 * differ.
 */
export interface RunLeases {
  /** This instance: the owner the store writes on the runs it creates. */
  readonly instanceId: string;
  /** How long a lease lasts without renewal: an owner silent for this long is lost. */
  readonly leaseMs: number;
  /** Takes or extends this instance's lease until `leaseMs` from now (default {@link leaseMs}). */
  renew(leaseMs?: number): Promise<void>;
  /** Ends this instance's lease (graceful shutdown, once its runs are final). */
  release(): Promise<void>;
  /**
   * Active runs whose owner's lease ran out. (Asked at every sweep: a store may forget there the
   * leases of owners gone with none of their runs left active.)
   */
  orphans(): Promise<string[]>;
  /**
   * Finalises an orphan, once, in one transaction: its record and one terminal event (the next
   * `seq` after those stored). Resolves with that event, or `undefined` when the run is final
   * already or its owner is alive (then the owner decides).
   */
  finishOrphan(runId: string, outcome: OrphanOutcome): Promise<RunEvent | undefined>;
  /** Whether the run's end was written by {@link finishOrphan} (its owner lost), not by its owner. */
  finishedAsOrphan(runId: string): Promise<boolean>;
  /**
   * Records that a cancel of an active run was asked for on another instance. The cancel bus
   * carries it within milliseconds; this is the way that does not depend on the owner's link to
   * the bus: the owner reads it with its next renewal ({@link cancelRequests}).
   */
  requestCancel?: ((runId: string, reason: CancelReason) => Promise<void>) | undefined;
  /** The cancels asked for ({@link requestCancel}) of this instance's active runs. */
  cancelRequests?: (() => Promise<Array<{ runId: string; reason: CancelReason }>>) | undefined;
}
