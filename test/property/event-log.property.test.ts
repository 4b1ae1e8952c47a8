/**
 * Property-based test of the in-memory event log: random appends, closes, reads and followers that
 * attach at any time, from any `seq`, and wait together. Every follower sees exactly the events after
 * its `seq`, in order, and ends once the log is closed; `read` is a slice; a closed log refuses appends.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isListenable, RunEventList } from '../../src/runtime/event-log.js';
import { MemoryEventLog, type RunEvent } from '../../src/runtime/index.js';
import { nextTurn } from '../../src/testing/index.js';

type Op =
  { kind: 'append' } | { kind: 'follow'; after: number } | { kind: 'read'; after: number } | { kind: 'tick' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'append' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('follow' as const), after: fc.integer({ min: -2, max: 8 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('read' as const), after: fc.integer({ min: -2, max: 8 }) }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'tick' as const }) },
);

const event = (seq: number): RunEvent => ({
  event: 'RunContent',
  content: `#${seq}`,
  run_id: 'r',
  agent_id: 'a',
  agent_name: 'A',
  session_id: 's',
  created_at: 0,
  seq,
});

const tick = nextTurn;

describe('MemoryEventLog', () => {
  it('replays then follows, for any number of followers, until it is closed', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 30, size: 'max' }), async (ops) => {
        const log = new MemoryEventLog();
        const appended: RunEvent[] = [];
        const followers: { after: number; seen: RunEvent[]; done: Promise<void> }[] = [];
        for (const op of ops) {
          if (op.kind === 'append') {
            const next = event(appended.length + 1);
            log.append(next);
            appended.push(next);
            expect(log.size).toBe(appended.length);
          } else if (op.kind === 'follow') {
            const seen: RunEvent[] = [];
            const done = (async () => {
              for await (const e of log.follow(op.after)) seen.push(e);
            })();
            followers.push({ after: op.after, seen, done });
          } else if (op.kind === 'read') {
            expect(log.read(op.after)).toEqual(appended.slice(Math.max(0, op.after)));
          } else {
            await tick();
            // Followers that had time to run have caught up with everything appended.
            for (const f of followers) expect(f.seen).toEqual(appended.slice(Math.max(0, f.after)));
          }
        }
        expect(log.closed).toBe(false);
        log.close();
        expect(log.closed).toBe(true);
        expect(log.read()).toEqual(appended);
        expect(() => log.append(event(appended.length + 1))).toThrow('event log of run r is closed');
        await Promise.all(followers.map((f) => f.done));
        for (const f of followers) expect(f.seen).toEqual(appended.slice(Math.max(0, f.after)));
        // A follower that attaches after the close replays and ends at once.
        const late: RunEvent[] = [];
        for await (const e of log.follow()) late.push(e);
        expect(late).toEqual(appended);
      }),
      { numRuns: 200, seed: 7_1105 },
    );
  });
});

describe('MemoryEventLog follow with endsAfter', () => {
  it('ends after the event endsAfter names, asked when the reader wants the next one', async () => {
    const log = new MemoryEventLog();
    for (let seq = 1; seq <= 3; seq++) log.append(event(seq));
    let endAt = 2;
    const reader = log.follow(0, (e) => e.seq === endAt);
    expect((await reader.next()).value?.seq).toBe(1);
    expect((await reader.next()).value?.seq).toBe(2);
    // The reader asks after seq 2 only now: moved on meanwhile, it reads through.
    endAt = 3;
    expect((await reader.next()).value?.seq).toBe(3);
    const waiting = reader.next();
    log.append(event(4));
    expect(await waiting).toEqual({ done: true, value: undefined });
    expect(await reader.next()).toEqual({ done: true, value: undefined });
  });

  it('ends at return() and at the close, also while waiting', async () => {
    const log = new MemoryEventLog();
    log.append(event(1));
    const left = log.follow();
    expect((await left.next()).done).toBe(false);
    expect(await left.return!()).toEqual({ done: true, value: undefined });
    expect((await left.next()).done).toBe(true);
    const waiting = log.follow(1).next();
    log.close();
    expect((await waiting).done).toBe(true);
  });
});

describe('MemoryEventLog follow, listened to', () => {
  const isListenableFollower = (reader: AsyncIterator<RunEvent>) => {
    if (!isListenable(reader)) throw new Error('a live log reader can be listened to');
    return reader;
  };

  it('pushes what is there at once, then each append in its call, and the end at the close', () => {
    const log = new MemoryEventLog();
    log.append(event(1));
    const reader = isListenableFollower(log.follow());
    const seen: (number | 'end')[] = [];
    reader.listen((e) => {
      seen.push(e ? e.seq : 'end');
      return true;
    });
    expect(seen).toEqual([1]);
    log.append(event(2));
    expect(seen).toEqual([1, 2]);
    log.close();
    expect(seen).toEqual([1, 2, 'end']);
  });

  it('stops where its listener says, and goes on from there by listening again or by next()', async () => {
    const log = new MemoryEventLog();
    for (let seq = 1; seq <= 3; seq++) log.append(event(seq));
    const reader = isListenableFollower(log.follow());
    const seen: number[] = [];
    reader.listen((e) => {
      seen.push(e!.seq);
      return e!.seq < 2;
    });
    log.append(event(4));
    expect(seen).toEqual([1, 2]);

    const stop = reader.listen((e) => {
      seen.push(e!.seq);
      return true;
    });
    expect(seen).toEqual([1, 2, 3, 4]);
    stop();
    log.append(event(5));
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(((await reader.next()).value as RunEvent | undefined)?.seq).toBe(5);
  });
});

/** Events of one run as a list may meet them: mostly plain deltas, some it must keep whole. */
const listEventArb = (seq: number): fc.Arbitrary<RunEvent> => {
  const run = { run_id: 'r', agent_id: 'a', agent_name: 'A', session_id: 's' };
  const base = { ...run, seq };
  return fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .record({ created_at: fc.integer({ min: 0, max: 3 }), content: fc.string({ maxLength: 3 }) })
        // The key order of `toWireEvent`'s: a list that builds the event again must keep it.
        .map(({ created_at, content }): RunEvent => ({
          event: 'RunContent',
          ...run,
          created_at,
          seq,
          content,
        })),
    },
    {
      weight: 1,
      arbitrary: fc.constant<RunEvent>({
        event: 'RunContent',
        ...base,
        created_at: 1,
        content: '',
        reasoning_content: 'hm',
      }),
    },
    // A delta with a field more, of another run, out of place, or not a delta: kept as it is.
    {
      weight: 1,
      arbitrary: fc.constant({
        event: 'RunContent',
        ...base,
        created_at: 2,
        content: 'x',
        extra: 1,
      } as RunEvent),
    },
    {
      weight: 1,
      arbitrary: fc.constant<RunEvent>({
        event: 'RunContent',
        ...base,
        run_id: 'other',
        created_at: 2,
        content: 'y',
      }),
    },
    {
      weight: 1,
      arbitrary: fc.constant<RunEvent>({
        event: 'RunContent',
        ...base,
        seq: seq + 5,
        created_at: 2,
        content: 'z',
      }),
    },
    { weight: 1, arbitrary: fc.constant<RunEvent>({ event: 'ReasoningStarted', ...base, created_at: 3 }) },
    // Too long for a compacted list's lengths: the list stays as it is.
    {
      weight: 1,
      arbitrary: fc.constant<RunEvent>({
        event: 'RunContent',
        ...run,
        created_at: 3,
        seq,
        content: 'x'.repeat(0xffff),
      }),
    },
  );
};

describe('RunEventList', () => {
  it('reads back every event as it was appended, field for field and in the same key order, compacted or not', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5 }),
        fc
          .integer({ min: 0, max: 40 })
          .chain((n) =>
            fc.tuple(...Array.from({ length: n }, (_, i) => fc.nat(1000).map((k) => [i, k] as const))),
          ),
        fc.integer({ min: 0, max: 1000 }),
        (before, slots, seed) => {
          const list = new RunEventList(before);
          const appended: RunEvent[] = [];
          for (const [i, k] of slots) {
            const [next] = fc.sample(listEventArb(before + i + 1), { numRuns: 1, seed: seed + k });
            list.push(next!);
            appended.push(next!);
            // Compacted at times (a push after it undoes it), and always at the end.
            if (k % 7 === 0) list.compact();
          }
          if (seed % 2 === 0) list.compact();
          expect(list.size).toBe(appended.length);
          for (const after of [0, 1, appended.length - 1, appended.length]) {
            const read = list.slice(after);
            expect(JSON.stringify(read)).toBe(JSON.stringify(appended.slice(Math.max(0, after))));
          }
          for (let i = 0; i < appended.length; i++) expect(list.at(i)).toStrictEqual(appended[i]);
        },
      ),
      { numRuns: 300, seed: 12_1930 },
    );
  });
});
