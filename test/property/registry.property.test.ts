/**
 * Property-based test of the orchestrator over its in-memory store against a reference model: random
 * runs of two agents in a few sessions, ends, cancels, session deletions and time passing, under
 * random retention limits, a small `maxSessions` and `maxRunsPerSession`. The orchestrator must
 * hold, list and filter the same runs as the reference, forget finished runs exactly when retention
 * says so (count, then age, to the millisecond), drop a forgotten run from its session (and the
 * session with its last run), and never forget an active run or its session.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunStatus } from '../../machines/run-types.js';
import { createMemoryRunStore, createOrchestrator, type RunHandle } from '../../src/runtime/index.js';
import { createFakeModel, type FakeModelCall } from '../../src/testing/index.js';
import { settle } from '../support/runs.js';

type Op =
  | { kind: 'start'; agent: 'a' | 'b'; session: 's1' | 's2' | 's3' }
  | { kind: 'end'; run: number }
  | { kind: 'cancel'; run: number }
  | { kind: 'deleteSession'; session: 's1' | 's2' | 's3' }
  | { kind: 'wait'; ms: number };

const sessionArb = fc.constantFrom('s1' as const, 's2' as const, 's3' as const);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('start' as const),
      agent: fc.constantFrom('a' as const, 'b' as const),
      session: sessionArb,
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('end' as const), run: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), run: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteSession' as const), session: sessionArb }) },
  // Whole and half seconds, so a run's age can equal the retention age exactly.
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.constantFrom(500, 1_000, 2_000) }),
  },
);

interface RefRun {
  id: string;
  agent: string;
  session: string;
  status: RunStatus;
  finishedAt?: number;
  deleted: boolean;
  handle: RunHandle;
  call: FakeModelCall;
}

describe('run registry', () => {
  it('holds, lists and forgets runs as the reference says', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { maxLength: 30, size: 'max' }),
        fc.constantFrom(1, 2, 1_000),
        fc.constantFrom(1_000, 3_000),
        fc.constantFrom(2, 10_000),
        fc.constantFrom(2, 100),
        async (ops, maxFinishedRuns, maxAgeMs, maxSessions, maxRunsPerSession) => {
          let now = 1_000_000;
          let drawn = 0;
          const clock = () => now;
          const store = createMemoryRunStore({
            retention: { maxFinishedRuns, maxAgeMs },
            maxSessions,
            maxRunsPerSession,
            now: clock,
          });
          const orchestrator = createOrchestrator({ store, now: clock, idGenerator: () => `run-${++drawn}` });
          const runs: RefRun[] = [];
          const finished: RefRun[] = []; // retained finished runs, oldest first
          const sessions = new Map<string, { agent: string; runs: RefRun[] }>(); // least recently used first

          const forget = (run: RefRun) => {
            run.deleted = true;
            const index = finished.indexOf(run);
            if (index >= 0) finished.splice(index, 1);
            const entry = sessions.get(run.session);
            if (!entry) return;
            entry.runs = entry.runs.filter((r) => r !== run);
            if (entry.runs.length === 0) sessions.delete(run.session);
          };
          const evict = () => {
            const cutoff = now - maxAgeMs;
            while (finished.length > 0) {
              const oldest = finished[0]!;
              // Kept for maxAgeMs to the millisecond after it finished.
              if (finished.length <= maxFinishedRuns && oldest.finishedAt! >= cutoff) break;
              forget(oldest);
            }
          };
          const isActive = (run: RefRun) => run.status === 'streaming' || run.status === 'pending';
          const boundSession = (entry: { runs: RefRun[] }) => {
            for (const run of [...entry.runs]) {
              if (entry.runs.length <= maxRunsPerSession) break;
              if (!isActive(run)) forget(run);
            }
          };
          const finish = (run: RefRun, status: RunStatus) => {
            run.status = status;
            run.finishedAt = now;
            finished.push(run);
            const entry = sessions.get(run.session);
            if (entry) boundSession(entry);
            evict();
          };

          for (const op of ops) {
            if (op.kind === 'wait') {
              now += op.ms;
            } else if (op.kind === 'start') {
              evict();
              const owner = sessions.get(op.session)?.agent;
              const request = {
                agentId: op.agent,
                agentName: op.agent.toUpperCase(),
                model: createFakeModel(),
                input: `to ${op.session}`,
                sessionId: op.session,
              };
              const handle = orchestrator.startRun(request);
              if (owner !== undefined && owner !== op.agent) {
                await expect(handle.recorded).rejects.toThrow(
                  `session ${op.session} belongs to agent ${owner}, not ${op.agent}`,
                );
                expect((await handle.result).error?.code).toBe('INVALID_INPUT');
                expect(request.model.calls).toHaveLength(0);
                continue;
              }
              const call = await request.model.nextCall();
              const run: RefRun = {
                id: handle.runId,
                agent: op.agent,
                session: op.session,
                status: 'streaming',
                deleted: false,
                handle,
                call,
              };
              runs.push(run);
              const entry = sessions.get(op.session) ?? { agent: op.agent, runs: [] };
              sessions.delete(op.session);
              entry.runs.push(run);
              sessions.set(op.session, entry);
              boundSession(entry);
              // The least recently used session without an active run goes first.
              for (const [id, other] of sessions) {
                if (sessions.size <= maxSessions) break;
                if (other.runs.some(isActive)) continue;
                for (const old of [...other.runs]) forget(old);
                sessions.delete(id);
              }
            } else if (op.kind === 'end' || op.kind === 'cancel') {
              const run = runs[op.run % Math.max(1, runs.length)];
              if (!run) continue;
              const active = !run.deleted && isActive(run);
              if (op.kind === 'end') {
                run.call.end();
              } else {
                expect(orchestrator.cancelRun(run.id, 'api')).toBe(active);
              }
              // The store has the final record once the writes of this turn landed.
              await settle();
              if (active) finish(run, op.kind === 'end' ? 'completed' : 'cancelled');
            } else {
              const entry = sessions.get(op.session);
              expect(await orchestrator.deleteSession(op.session)).toBe(entry !== undefined);
              if (!entry) continue;
              for (const run of entry.runs) {
                if (isActive(run)) run.status = 'cancelled';
                forget(run);
              }
              sessions.delete(op.session);
            }

            evict();
            const held = runs.filter((r) => !r.deleted);
            const listed = await orchestrator.listRuns();
            expect(listed.map((r) => [r.run_id, r.status])).toEqual(held.map((r) => [r.id, r.status]));
            expect(orchestrator.activeCount).toBe(held.filter((r) => r.status === 'streaming').length);
            const ids = (filter: (r: RefRun) => boolean) => held.filter(filter).map((r) => r.id);
            expect((await orchestrator.listRuns({ agentId: 'a' })).map((r) => r.run_id)).toEqual(
              ids((r) => r.agent === 'a'),
            );
            expect((await orchestrator.listRuns({ sessionId: 's2' })).map((r) => r.run_id)).toEqual(
              ids((r) => r.session === 's2'),
            );
            for (const status of ['streaming', 'completed', 'cancelled'] as const) {
              expect((await orchestrator.listRuns({ status })).map((r) => r.run_id)).toEqual(
                ids((r) => r.status === status),
              );
            }
            expect(
              (await orchestrator.listRuns({ agentId: 'b', status: 'completed' })).map((r) => r.run_id),
            ).toEqual(ids((r) => r.agent === 'b' && r.status === 'completed'));
            for (const run of runs) {
              if (run.deleted) {
                expect(await orchestrator.getRun(run.id)).toBeUndefined();
                await expect(orchestrator.events(run.id)).rejects.toThrow(`run ${run.id} not found`);
              } else {
                expect((await orchestrator.getRun(run.id))?.status).toBe(run.status);
              }
            }
            expect((await orchestrator.listSessions()).map((s) => s.session_id)).toEqual(
              [...sessions.keys()].reverse(),
            );
            for (const [id, entry] of sessions) {
              const retained = entry.runs.map((r) => r.id);
              expect((await orchestrator.sessionRuns(id)).map((r) => r.run_id)).toEqual(retained);
              expect((await orchestrator.getSession(id))?.run_ids).toEqual(retained);
            }
          }
          await orchestrator.shutdown();
        },
      ),
      { numRuns: 150, seed: 5_1515 },
    );
  });

  it('deleting a session keeps the finished runs of other sessions', async () => {
    const store = createMemoryRunStore({ retention: { maxFinishedRuns: 1 } });
    const orchestrator = createOrchestrator({ store });
    const model = createFakeModel();
    const kept = orchestrator.startRun({
      agentId: 'a',
      agentName: 'A',
      model,
      input: 'one',
      sessionId: 'keep',
    });
    (await model.nextCall()).end();
    await kept.result;
    orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'two', sessionId: 'drop' });
    await model.nextCall();
    expect(await orchestrator.deleteSession('drop')).toBe(true);
    expect((await orchestrator.getRun(kept.runId))?.status).toBe('completed');
  });

  it('refuses a run id already in use, and names unknown runs', async () => {
    const orchestrator = createOrchestrator({ idGenerator: () => 'same' });
    const model = createFakeModel();
    orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'one', sessionId: 's' });
    expect(() =>
      orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'two', sessionId: 's' }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_INPUT', message: 'run id same is already in use' }));
    await expect(orchestrator.result('nope')).rejects.toThrow(
      expect.objectContaining({ code: 'RUN_NOT_FOUND', message: 'run nope not found' }),
    );
    await orchestrator.shutdown();
  });
});
