/**
 * Property-based test of the session store against a reference model: random runs added to a few
 * sessions by a few agents and users, finished turns, deletions and time passing, under a small
 * `maxSessions`. The store must keep the same sessions (least recently used forgotten first), list
 * them most recent first with the same filters, and send the same history to the model.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { FinalRunStatus } from '../../machines/run-types.js';
import { SessionStore, type SessionRecord } from '../../src/runtime/index.js';

type Op =
  | { kind: 'add'; session: string; agent: string; user: string | null; input: string }
  | { kind: 'finish'; session: string; status: FinalRunStatus; content: string }
  | { kind: 'delete'; session: string }
  | { kind: 'wait'; ms: number };

const session = fc.constantFrom('s1', 's2', 's3', 's4');
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('add' as const),
      session,
      agent: fc.constantFrom('a', 'b'),
      user: fc.constantFrom('u1', 'u2', null),
      input: fc.oneof(fc.constantFrom('hi', 'how are you?'), fc.string({ minLength: 95, maxLength: 110 })),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('finish' as const),
      session,
      status: fc.constantFrom<FinalRunStatus>('completed', 'cancelled', 'failed'),
      content: fc.constantFrom('', 'an answer'),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), session }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 1, max: 3_000 }) }),
  },
);

interface RefSession {
  record: SessionRecord;
  turns: { input: string; content: string; status: FinalRunStatus }[];
}

describe('SessionStore', () => {
  it('agrees with a least-recently-used reference on sessions, listings and history', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 40, size: 'max' }),
        fc.integer({ min: 1, max: 3 }),
        (ops, maxSessions) => {
          let now = 1_700_000_000_500;
          const store = new SessionStore({ maxSessions, now: () => now });
          // Insertion order is recency: the first key is the least recently used.
          const ref = new Map<string, RefSession>();
          let runs = 0;
          for (const op of ops) {
            if (op.kind === 'wait') {
              now += op.ms;
            } else if (op.kind === 'add') {
              const runId = `r${++runs}`;
              store.addRun(op.session, { runId, agentId: op.agent, userId: op.user, input: op.input });
              const seconds = Math.floor(now / 1000);
              const existing = ref.get(op.session);
              ref.delete(op.session);
              const entry: RefSession = existing ?? {
                record: {
                  session_id: op.session,
                  agent_id: op.agent,
                  user_id: op.user,
                  session_name: op.input.slice(0, 100),
                  created_at: seconds,
                  updated_at: seconds,
                  run_ids: [],
                },
                turns: [],
              };
              entry.record.run_ids.push(runId);
              entry.record.updated_at = seconds;
              ref.set(op.session, entry);
              while (ref.size > maxSessions) ref.delete(ref.keys().next().value!);
            } else if (op.kind === 'finish') {
              const entry = ref.get(op.session);
              const input = entry ? `turn ${entry.turns.length}` : 'orphan';
              store.finishRun(op.session, { run_id: 'x', input, content: op.content, status: op.status });
              entry?.turns.push({ input, content: op.content, status: op.status });
            } else {
              expect(store.delete(op.session)).toBe(ref.delete(op.session));
            }

            expect(store.size).toBe(ref.size);
            const all = [...ref.values()].map((entry) => entry.record).reverse();
            expect(store.list()).toEqual(all);
            expect(store.list({ agentId: 'a' })).toEqual(all.filter((r) => r.agent_id === 'a'));
            expect(store.list({ userId: 'u1' })).toEqual(all.filter((r) => r.user_id === 'u1'));
            expect(store.list({ agentId: 'b', userId: 'u2' })).toEqual(
              all.filter((r) => r.agent_id === 'b' && r.user_id === 'u2'),
            );
            for (const id of ['s1', 's2', 's3', 's4']) {
              const entry = ref.get(id);
              expect(store.get(id)).toEqual(entry?.record);
              // A cancelled turn keeps its partial answer; failed turns and empty answers are left out.
              const history = (entry?.turns ?? [])
                .filter((turn) => turn.status !== 'failed' && turn.content !== '')
                .flatMap((turn) => [
                  { role: 'user', content: turn.input },
                  { role: 'assistant', content: turn.content },
                ]);
              expect(store.history(id)).toEqual(history);
              expect(store.turns(id).map((turn) => turn.input)).toEqual(
                (entry?.turns ?? []).map((t) => t.input),
              );
            }
          }
          // Records are copies: changing one does not change the store.
          const first = store.list()[0];
          if (first) {
            first.run_ids.push('intruder');
            expect(store.get(first.session_id)?.run_ids).not.toContain('intruder');
          }
        },
      ),
      { numRuns: 300, seed: 3_0303 },
    );
  });
});
