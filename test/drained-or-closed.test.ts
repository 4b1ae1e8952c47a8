/** `runstate run`'s wait for a full pipe: once per full pipe, and nothing left behind. */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { drainedOrClosed } from '../src/drained-or-closed.js';

describe('drainedOrClosed', () => {
  it('resolves at each drain and leaves no drain, close or error listener (a long answer waits many times)', async () => {
    const slow = new Writable({
      highWaterMark: 1,
      write: (_chunk, _encoding, done) => setImmediate(done),
    });
    const before = ['drain', 'close', 'error'].map((name) => slow.listenerCount(name));
    for (let i = 0; i < 20; i++) {
      expect(slow.write('chunk')).toBe(false);
      await drainedOrClosed(slow);
    }
    expect(['drain', 'close', 'error'].map((name) => slow.listenerCount(name))).toEqual(before);
  });

  it('resolves when the stream closes instead (its reader went away)', async () => {
    const stuck = new Writable({ highWaterMark: 1, write: () => undefined });
    stuck.write('chunk');
    const waiting = drainedOrClosed(stuck);
    stuck.destroy();
    await waiting;
    expect(stuck.listenerCount('drain')).toBe(0);
  });
});

describe('drainedOrClosed with a stall limit', () => {
  it('tells how the wait ended: drained, closed, or stalled (nothing read for that long), and leaves no listener', async () => {
    const slow = new Writable({ highWaterMark: 1, write: (_chunk, _encoding, done) => setImmediate(done) });
    slow.write('chunk');
    expect(await drainedOrClosed(slow, 60_000)).toBe('drained');

    const stuck = new Writable({ highWaterMark: 1, write: () => undefined });
    stuck.write('chunk');
    expect(await drainedOrClosed(stuck, 5)).toBe('stalled');
    expect(['drain', 'close', 'error'].map((name) => stuck.listenerCount(name))).toEqual([0, 0, 0]);

    const waiting = drainedOrClosed(stuck, 60_000);
    stuck.destroy();
    expect(await waiting).toBe('closed');
  });
});
