import type { CancelReason } from '../../machines/run-types.js';
import { RunstateError } from '../errors.js';
import type { LeaseKeeper } from './create-lease-keeper.js';
import type { CancelRequestOptions, Orchestrator } from './create-orchestrator.js';
import type { ParkedRuns } from './parked-runs.js';
import type { RunOutput } from './run-events.js';
import type { RunRegistry } from './run-registry.js';
import type { CancelBus, RunStore } from './storage.js';

/** How often a cancel sent to a run's owner over the bus is sent again while the run goes on. */
const CANCEL_RESEND_MS = 1_000;

/** What {@link createCancelRequests} needs from the orchestrator that composes it. */
export interface CancelRequestsOptions {
  store: RunStore;
  /** How a cancel reaches the instance that owns a run. */
  cancelBus: CancelBus;
  /** The runs this process owns: a cancel of one of them is the orchestrator's `cancelRun`. */
  registry: RunRegistry;
  /** The runs this process parked: a parked run is taken back here to be cancelled. */
  parkedRuns: Pick<ParkedRuns, 'parkInFlight' | 'isParkedHere' | 'take'>;
  /** With a store that leases runs: finalises the run of an owner that is gone (`cancelOrphan`). */
  keeper: LeaseKeeper | undefined;
  /** The orchestrator's `cancelRun`, for a run this process owns. */
  cancelRun: (runId: string, reason: CancelReason) => boolean;
  /**
   * The orchestrator's `result`: the run's output once it is final; rejects `SHUTTING_DOWN` at a
   * shutdown while the run is held elsewhere.
   */
  result: (runId: string) => Promise<RunOutput>;
}

/** The cross-instance cancel policy: what {@link createCancelRequests} returns to the orchestrator. */
export interface CancelRequests {
  /** {@link Orchestrator.requestCancel}: cancels a run wherever it runs, and answers with its end. */
  readonly requestCancel: Orchestrator['requestCancel'];
}

/**
 * Creates the cancel of a run wherever it runs: this process's own `cancelRun`, or the cancel bus
 * and the store for a run another instance owns (sent again until the run is final), a parked run
 * taken back here to be cancelled, or the run of an owner that is gone finalised here.
 */
export function createCancelRequests(options: CancelRequestsOptions): CancelRequests {
  const { store, cancelBus, registry, parkedRuns, keeper, cancelRun, result } = options;

  /** What a publish on the cancel bus was refused with, or `null`: never rejects. */
  const refusal = (published: Promise<void>): Promise<Error | null> =>
    published.then(
      () => null,
      (error: unknown) => error as Error,
    );

  async function requestCancel(
    runId: string,
    reason: CancelReason = 'api',
    { agentId }: CancelRequestOptions = {},
  ): Promise<RunOutput> {
    const notFound = () =>
      new RunstateError(
        'RUN_NOT_FOUND',
        agentId === undefined ? `run ${runId} not found` : `run ${runId} of agent ${agentId} not found`,
      );
    let output: RunOutput;
    await parkedRuns.parkInFlight(runId);
    const live = registry.get(runId);
    if (live) {
      if (agentId !== undefined && live.identity.agentId !== agentId) throw notFound();
      cancelRun(runId, reason);
      output = live.output ?? (await live.result);
    } else {
      // Sent before the store is read (a round trip): the owner, wherever it is, cancels at once, and
      // only a run of `agentId`. Harmless for a run that has no owner (unknown, final, paused elsewhere).
      const early = parkedRuns.isParkedHere(runId)
        ? undefined
        : refusal(cancelBus.publish(runId, reason, agentId));
      const record = await store.getRun(runId);
      if (!record || (agentId !== undefined && record.agent_id !== agentId)) throw notFound();
      // A parked run is taken back here to be cancelled; one that somebody took first is theirs.
      // (A closing instance takes none back; the cancel sent above reaches the instance that paused
      // it, if that one still runs.)
      const taken =
        record.finished_at === null && record.status === 'paused'
          ? await parkedRuns.take(runId, undefined).catch((error: unknown) => {
              throw early && isShuttingDown(error)
                ? sentWhileClosing(runId, 'to the instance that paused it, which cancels it if it still runs')
                : error;
            })
          : undefined;
      let resend: NodeJS.Timeout | undefined;
      if (taken) taken.run.cancel(reason);
      else if (record.finished_at === null) {
        // The owner acts on the bus within milliseconds; should it be gone, the run is finalised
        // here, at once (both are tried together: the check costs the owner's cancel no time).
        // Sent again when the run was paused: whoever took it meanwhile may not have held it when
        // the first went by.
        const refused =
          (record.status === 'paused' ? undefined : early) ??
          refusal(cancelBus.publish(runId, reason, agentId));
        // Also in the store, which the owner reads with each renewal of its lease (a third of it):
        // the way that does not need the owner's link to the bus, nor this instance's.
        const recorded = store.leases?.requestCancel?.(runId, reason).then(
          () => true,
          () => false,
        );
        const orphan = await keeper?.cancelOrphan(runId, reason);
        const error = await refused;
        // Refused by the bus and not recorded either: nothing will reach the owner.
        if (!orphan && error && !(await recorded)) throw error;
        // A bus delivers only to those listening now: an owner whose link to Redis is down (while
        // this instance's is up) does not hear it. Sent again each second until the run is final,
        // it reaches the owner once its link is back, if the store's way has not first; an owner
        // that heard it cancels once. An owner that is gone (killed, frozen) hears nothing: as soon
        // as its lease has run out, the run is finalised here, `cancelled` as asked, rather than
        // left for a sweep to call it lost.
        // An owner that never heard it may park the run meanwhile (it waits for a person): owned by
        // nobody, no renewal reads a cancel recorded for it; it is taken here and cancelled then.
        let checkingPark: Promise<void> | undefined;
        resend = setInterval(() => {
          void refusal(cancelBus.publish(runId, reason, agentId));
          keeper?.cancelOrphan(runId, reason).catch(() => undefined);
          checkingPark ??= cancelIfParked(runId, reason).finally(() => (checkingPark = undefined));
        }, CANCEL_RESEND_MS);
        // The wait for the run's end is what holds a caller; the timer alone keeps no process alive.
        resend.unref();
      }
      try {
        output = await result(runId);
      } catch (error) {
        if (!isShuttingDown(error)) throw error;
        throw sentWhileClosing(runId, 'and goes on');
      } finally {
        clearInterval(resend);
      }
    }
    if (output.status === 'cancelled') return output;
    throw new RunstateError('RUN_ALREADY_FINISHED', `run ${runId} already finished: ${output.status}`, {
      details: { run_id: runId, status: output.status },
    });
  }

  /** Takes a run back from the store and cancels it, if it is parked now; never rejects. */
  async function cancelIfParked(runId: string, reason: CancelReason): Promise<void> {
    try {
      const record = await store.getRun(runId);
      if (record?.finished_at !== null || record.status !== 'paused') return;
      (await parkedRuns.take(runId, undefined))?.run.cancel(reason);
    } catch {
      // The store out of reach, or this instance closing: the next resend tries again.
    }
  }

  return { requestCancel };
}

const isShuttingDown = (error: unknown): boolean =>
  error instanceof RunstateError && error.code === 'SHUTTING_DOWN';

/** `SHUTTING_DOWN` for a cancel this closing instance sent but cannot see through. */
function sentWhileClosing(runId: string, how: string): RunstateError {
  return new RunstateError(
    'SHUTTING_DOWN',
    `this instance is shutting down: the cancel of run ${runId} was sent, ${how}; ask another instance for its answer`,
  );
}
