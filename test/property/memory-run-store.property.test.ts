/**
 * Property-based test of the in-memory run store's sessions against a reference model: runs created
 * in a few sessions by a few agents and users, finished with an answer or not, session deletions and
 * time passing, under a small `maxSessions` and `maxRunsPerSession`. The store must keep the same
 * sessions (the least recently used without an active run forgotten first, never one with an active
 * run), list them most recent first with the same filters, refuse a session of another agent, and
 * give the same history for the model.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { FinalRunStatus } from '../../machines/run-types.js';
import { createMemoryRunStore, type RunRecord, type SessionRecord } from '../../src/runtime/index.js';
import { sessionHistory } from '../../src/runtime/session-history.js';
import { referenceShortened } from '../support/shortened-reference.js';

type Op =
  | { kind: 'create'; session: string; agent: string; user: string | null; input: string }
  | { kind: 'finish'; session: string; status: FinalRunStatus; content: string }
  | { kind: 'delete'; session: string }
  | { kind: 'wait'; ms: number };

const session = fc.constantFrom('s1', 's2', 's3', 's4');
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('create' as const),
      session,
      agent: fc.constantFrom('a', 'b'),
      user: fc.constantFrom('u1', 'u2', null),
      input: fc.oneof(
        fc.constantFrom('hi', 'how are you?'),
        fc.string({ minLength: 95, maxLength: 110, unit: 'binary' }),
      ),
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
  record: Omit<SessionRecord, 'run_ids'>;
  runs: RunRecord[];
}

function runRecord(id: string, op: Extract<Op, { kind: 'create' }>, createdAt: number): RunRecord {
  return {
    run_id: id,
    agent_id: op.agent,
    agent_name: op.agent.toUpperCase(),
    session_id: op.session,
    user_id: op.user,
    status: 'pending',
    run_input: op.input,
    input: { input_content: op.input },
    content: '',
    reasoning_content: '',
    finish_reason: null,
    model: 'm',
    model_provider: 'p',
    metrics: null,
    error: null,
    cancel_reason: null,
    tools: [],
    created_at: createdAt,
    finished_at: null,
  };
}

const METRICS = {
  input_tokens: 0,
  output_tokens: 0,
  total_tokens: 0,
  time_to_first_token: null,
  duration: 0,
};

describe('createMemoryRunStore: sessions', () => {
  it('agrees with a least-recently-used reference on sessions, listings and history', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { maxLength: 40, size: 'max' }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom(2, 100),
        async (ops, maxSessions, maxRunsPerSession) => {
          let now = 1_700_000_000_500;
          const store = createMemoryRunStore({ maxSessions, maxRunsPerSession, now: () => now });
          // Insertion order is recency: the first key is the least recently used.
          const ref = new Map<string, RefSession>();
          const active = (entry: RefSession) => entry.runs.some((run) => run.finished_at === null);
          let runs = 0;
          for (const op of ops) {
            const seconds = Math.floor(now / 1000);
            if (op.kind === 'wait') {
              now += op.ms;
            } else if (op.kind === 'create') {
              const run = runRecord(`r${++runs}`, op, seconds);
              const existing = ref.get(op.session);
              if (existing && existing.record.agent_id !== op.agent) {
                await expect(store.createRun(run)).rejects.toThrow(
                  `session ${op.session} belongs to agent ${existing.record.agent_id}, not ${op.agent}`,
                );
                continue;
              }
              // A session of one user takes no run of another (a run or session with no user joins any).
              const sessionUser = existing?.record.user_id ?? null;
              if (sessionUser !== null && op.user !== null && sessionUser !== op.user) {
                await expect(store.createRun(run)).rejects.toThrow(
                  `session ${op.session} belongs to another user`,
                );
                continue;
              }
              await store.createRun(run);
              ref.delete(op.session);
              const entry: RefSession = existing ?? {
                record: {
                  session_id: op.session,
                  agent_id: op.agent,
                  user_id: op.user,
                  session_name: referenceShortened(op.input.trim(), 100),
                  created_at: seconds,
                  updated_at: seconds,
                },
                runs: [],
              };
              entry.runs.push(run);
              entry.record.updated_at = seconds;
              ref.set(op.session, entry);
              for (const old of [...entry.runs]) {
                if (entry.runs.length <= maxRunsPerSession) break;
                if (old.finished_at !== null) entry.runs.splice(entry.runs.indexOf(old), 1);
              }
              for (const [id, other] of ref) {
                if (ref.size <= maxSessions) break;
                if (!active(other)) ref.delete(id);
              }
            } else if (op.kind === 'finish') {
              const entry = ref.get(op.session);
              const run = entry?.runs.find((r) => r.finished_at === null);
              const output = {
                ...(run ??
                  runRecord(
                    'orphan',
                    { kind: 'create', session: op.session, agent: 'a', user: null, input: '' },
                    seconds,
                  )),
                status: op.status,
                content: op.content,
                metrics: METRICS,
                finished_at: seconds,
              };
              expect(await store.finishRun(output)).toBe(run !== undefined);
              expect(await store.finishRun(output)).toBe(false); // idempotent
              if (!run || !entry) continue;
              Object.assign(run, output);
              for (const old of [...entry.runs]) {
                if (entry.runs.length <= maxRunsPerSession) break;
                if (old.finished_at !== null) entry.runs.splice(entry.runs.indexOf(old), 1);
              }
            } else {
              expect(await store.deleteSession(op.session)).toBe(ref.delete(op.session));
            }

            const all = [...ref.values()]
              .map((entry) => ({ ...entry.record, run_ids: entry.runs.map((run) => run.run_id) }))
              .reverse();
            expect(await store.listSessions()).toEqual(all);
            expect(await store.listSessions({ agentId: 'a' })).toEqual(all.filter((r) => r.agent_id === 'a'));
            expect(await store.listSessions({ userId: 'u1' })).toEqual(all.filter((r) => r.user_id === 'u1'));
            expect(await store.listSessions({ agentId: 'b', userId: 'u2' })).toEqual(
              all.filter((r) => r.agent_id === 'b' && r.user_id === 'u2'),
            );
            for (const id of ['s1', 's2', 's3', 's4']) {
              const entry = ref.get(id);
              const runsOf = await store.sessionRuns(id);
              expect(runsOf).toEqual(entry?.runs ?? []);
              // A cancelled turn keeps its partial answer; failed turns and empty answers are left out.
              const history = (entry?.runs ?? [])
                .filter(
                  (run) => (run.status === 'completed' || run.status === 'cancelled') && run.content !== '',
                )
                .flatMap((run) => [
                  { role: 'user', content: run.run_input },
                  { role: 'assistant', content: run.content },
                ]);
              expect(sessionHistory(runsOf)).toEqual(history);
            }
          }
          // Records are copies: changing one does not change the store.
          const first = (await store.listSessions())[0];
          if (first) {
            first.run_ids.push('intruder');
            expect((await store.getSession(first.session_id))?.run_ids).not.toContain('intruder');
          }
        },
      ),
      { numRuns: 300, seed: 3_0303 },
    );
  });
});
