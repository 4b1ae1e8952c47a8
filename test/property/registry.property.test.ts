/**
 * Property-based test of the run registry against a reference model: random runs of two agents in a
 * few sessions, ends, cancels, session deletions and time passing, under random retention limits
 * and a small `maxSessions`. The orchestrator must hold, list and filter the same runs as the
 * reference, forget finished runs exactly when retention says so (count, then age, to the
 * millisecond), and keep answering for sessions whose runs it forgot.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunStatus } from '../../machines/run-types.js';
import { createOrchestrator, type RunHandle } from '../../src/runtime/index.js';
import { createFakeModel, type FakeModelCall } from '../../src/testing/index.js';
import { settle } from '../model/support.js';

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
        async (ops, maxFinishedRuns, maxAgeMs, maxSessions) => {
          let now = 1_000_000;
          let drawn = 0;
          const orchestrator = createOrchestrator({
            retention: { maxFinishedRuns, maxAgeMs },
            maxSessions,
            now: () => now,
            idGenerator: () => `run-${++drawn}`,
          });
          const runs: RefRun[] = [];
          const finished: RefRun[] = []; // retained finished runs, oldest first
          const sessions = new Map<string, { agent: string; runs: string[] }>(); // least recently used first

          const evict = () => {
            const cutoff = now - maxAgeMs;
            while (finished.length > 0) {
              const oldest = finished[0]!;
              // Kept for maxAgeMs to the millisecond after it finished.
              if (finished.length <= maxFinishedRuns && oldest.finishedAt! >= cutoff) break;
              finished.shift();
              oldest.deleted = true;
            }
          };
          const finish = (run: RefRun, status: RunStatus) => {
            run.status = status;
            run.finishedAt = now;
            finished.push(run);
            evict();
          };

          for (const op of ops) {
            if (op.kind === 'wait') {
              now += op.ms;
            } else if (op.kind === 'start') {
              const owner = sessions.get(op.session)?.agent;
              const request = {
                agentId: op.agent,
                agentName: op.agent.toUpperCase(),
                model: createFakeModel(),
                input: `to ${op.session}`,
                sessionId: op.session,
              };
              if (owner !== undefined && owner !== op.agent) {
                expect(() => orchestrator.startRun(request)).toThrow(
                  `session ${op.session} belongs to agent ${owner}, not ${op.agent}`,
                );
                continue;
              }
              evict();
              const handle = orchestrator.startRun(request);
              const call = await request.model.nextCall();
              runs.push({
                id: handle.runId,
                agent: op.agent,
                session: op.session,
                status: 'streaming',
                deleted: false,
                handle,
                call,
              });
              const entry = sessions.get(op.session) ?? { agent: op.agent, runs: [] };
              sessions.delete(op.session);
              entry.runs.push(handle.runId);
              sessions.set(op.session, entry);
              while (sessions.size > maxSessions) sessions.delete(sessions.keys().next().value!);
            } else if (op.kind === 'end' || op.kind === 'cancel') {
              const run = runs[op.run % Math.max(1, runs.length)];
              if (!run) continue;
              const active = !run.deleted && (run.status === 'streaming' || run.status === 'pending');
              if (op.kind === 'end') {
                run.call.end();
                await settle();
                if (active) finish(run, 'completed');
              } else {
                expect(orchestrator.cancelRun(run.id, 'api')).toBe(active);
                if (active) finish(run, 'cancelled');
              }
            } else {
              const entry = sessions.get(op.session);
              expect(orchestrator.deleteSession(op.session)).toBe(entry !== undefined);
              if (!entry) continue;
              sessions.delete(op.session);
              for (const run of runs.filter((r) => entry.runs.includes(r.id) && !r.deleted)) {
                if (run.status === 'streaming') run.status = 'cancelled';
                run.deleted = true;
                const index = finished.indexOf(run);
                if (index >= 0) finished.splice(index, 1);
              }
            }

            evict();
            const held = runs.filter((r) => !r.deleted);
            const listed = orchestrator.listRuns();
            expect(listed.map((r) => [r.run_id, r.status])).toEqual(held.map((r) => [r.id, r.status]));
            expect(orchestrator.size).toBe(held.length);
            expect(orchestrator.activeCount).toBe(held.filter((r) => r.status === 'streaming').length);
            const ids = (filter: (r: RefRun) => boolean) => held.filter(filter).map((r) => r.id);
            expect(orchestrator.listRuns({ agentId: 'a' }).map((r) => r.run_id)).toEqual(
              ids((r) => r.agent === 'a'),
            );
            expect(orchestrator.listRuns({ sessionId: 's2' }).map((r) => r.run_id)).toEqual(
              ids((r) => r.session === 's2'),
            );
            for (const status of ['streaming', 'completed', 'cancelled'] as const) {
              expect(orchestrator.listRuns({ status }).map((r) => r.run_id)).toEqual(
                ids((r) => r.status === status),
              );
            }
            expect(orchestrator.listRuns({ agentId: 'b', status: 'completed' }).map((r) => r.run_id)).toEqual(
              ids((r) => r.agent === 'b' && r.status === 'completed'),
            );
            for (const run of runs) {
              if (run.deleted) {
                expect(orchestrator.getRun(run.id)).toBeUndefined();
                expect(() => orchestrator.events(run.id)).toThrow(`run ${run.id} not found`);
              } else {
                expect(orchestrator.getRun(run.id)?.status).toBe(run.status);
              }
            }
            expect(orchestrator.listSessions().map((s) => s.session_id)).toEqual(
              [...sessions.keys()].reverse(),
            );
            for (const [id, entry] of sessions) {
              // Runs no longer held are rebuilt from the session's turns.
              const known = entry.runs.filter((runId) => {
                const run = runs.find((r) => r.id === runId)!;
                return !run.deleted || run.finishedAt !== undefined;
              });
              expect(orchestrator.sessionRuns(id).map((r) => r.run_id)).toEqual(known);
            }
          }
          await orchestrator.shutdown();
        },
      ),
      { numRuns: 150, seed: 5_1515 },
    );
  });

  it('deleting a session keeps the finished runs of other sessions', async () => {
    const orchestrator = createOrchestrator({ retention: { maxFinishedRuns: 1 } });
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
    expect(orchestrator.deleteSession('drop')).toBe(true);
    expect(orchestrator.getRun(kept.runId)?.status).toBe('completed');
  });

  it('refuses a run id already in use, and names unknown runs', async () => {
    const orchestrator = createOrchestrator({ idGenerator: () => 'same' });
    const model = createFakeModel();
    orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'one', sessionId: 's' });
    expect(() =>
      orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'two', sessionId: 's' }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_INPUT', message: 'run id same is already in use' }));
    expect(() => orchestrator.result('nope')).toThrow(
      expect.objectContaining({ code: 'RUN_NOT_FOUND', message: 'run nope not found' }),
    );
    await orchestrator.shutdown();
  });
});
