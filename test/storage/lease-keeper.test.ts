import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLeaseKeeper } from '../../src/runtime/create-lease-keeper.js';
import type { RunLeases } from '../../src/runtime/run-leases.js';

afterEach(() => {
  vi.useRealTimers();
});

/** Leases whose renewals fail while `down` says so; when each renewal was tried. */
function scriptedLeases(leaseMs: number, down: (at: number) => boolean) {
  const tries: number[] = [];
  const leases: RunLeases = {
    instanceId: 'instance-a',
    leaseMs,
    renew() {
      const at = performance.now();
      tries.push(at);
      return down(at) ? Promise.reject(new Error('the database is out of reach')) : Promise.resolve();
    },
    release: () => Promise.resolve(),
    orphans: () => Promise.resolve([]),
    finishOrphan: () => Promise.resolve(undefined),
    finishedAsOrphan: () => Promise.resolve(false),
  };
  return { leases, tries };
}

describe('createLeaseKeeper', () => {
  it('keeps its lease through an outage shorter than the lease that covers two renewals', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const origin = performance.now();
    // Out of reach from just after the first renewal to 10.5 s: the renewals due at 5 and 10 s fail.
    const { leases, tries } = scriptedLeases(15_000, (at) => at - origin > 100 && at - origin < 10_500);
    const onLapse = vi.fn();
    const errors: unknown[] = [];
    const keeper = createLeaseKeeper({ leases, onLapse, onError: (error) => errors.push(error) });
    await keeper.start();

    await vi.advanceTimersByTimeAsync(40_000);

    expect(onLapse).not.toHaveBeenCalled();
    expect(keeper.holding).toBe(true);
    // Tried again each second while it failed, then every third of the lease once it renewed.
    const offsets = tries.map((at) => Math.round(at - origin));
    expect(offsets.slice(0, 9)).toEqual([0, 5_000, 6_000, 7_000, 8_000, 9_000, 10_000, 11_000, 16_000]);
    expect(errors).toHaveLength(6);
    await keeper.stop();
  });

  it('lapses when the outage outlasts the lease, and holds again once a renewal goes through', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const origin = performance.now();
    const { leases } = scriptedLeases(3_000, (at) => at - origin > 100 && at - origin < 4_000);
    const onLapse = vi.fn();
    const keeper = createLeaseKeeper({ leases, onLapse });
    await keeper.start();

    await vi.advanceTimersByTimeAsync(3_000);
    expect(onLapse).toHaveBeenCalledTimes(1);
    expect(keeper.holding).toBe(false);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(keeper.holding).toBe(true);
    expect(onLapse).toHaveBeenCalledTimes(1);
    await keeper.stop();
  });
});

describe('createLeaseKeeper: cancels asked for on other instances', () => {
  it('reads them after each renewal without holding the renewals back, one read at a time', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { leases, tries } = scriptedLeases(3_000, () => false);
    // A read that hangs (a busy database) until the test lets it go.
    let answer!: (requests: Array<{ runId: string; reason: 'api' }>) => void;
    const reads = vi.fn(
      () => new Promise<Array<{ runId: string; reason: 'api' }>>((resolve) => (answer = resolve)),
    );
    leases.cancelRequests = reads;
    const onCancelRequested = vi.fn();
    const onLapse = vi.fn();
    const keeper = createLeaseKeeper({ leases, onCancelRequested, onLapse });
    await keeper.start();

    await vi.advanceTimersByTimeAsync(10_000);
    // Renewed every second (a third of the lease) all along; one read was started and is still out.
    expect(tries.length).toBeGreaterThanOrEqual(10);
    expect(onLapse).not.toHaveBeenCalled();
    expect(reads).toHaveBeenCalledTimes(1);
    answer([{ runId: 'r1', reason: 'api' }]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(onCancelRequested).toHaveBeenCalledWith('r1', 'api');
    expect(reads).toHaveBeenCalledTimes(2);
    answer([]);
    await keeper.stop();
  });
});
