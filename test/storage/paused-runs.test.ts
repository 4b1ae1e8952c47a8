/**
 * A paused run waits in the store, owned by no instance: it survives a restart (PGlite on disk) and
 * is continued, rejected or cancelled on any instance (PostgreSQL and Redis, two instances), with
 * `seq` going on from its `RunPaused`. Two instances continuing it at once: one `RunContinued`, one
 * 409. A pause that ran out while its instance was gone is failed `RUN_TIMEOUT` by whichever instance
 * finds it.
 */
import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { Agent } from '../../src/agent.js';
import { RunstateError } from '../../src/errors.js';
import { createPrometheusMetrics } from '../../src/observe/index.js';
import { createOrchestrator, type OrchestratorOptions } from '../../src/runtime/create-orchestrator.js';
import { openStorage, type StorageOptions } from '../../src/runtime/open-storage.js';
import type { ParkState, RunNotice, RunStore } from '../../src/runtime/storage.js';
import { createApp, startServer } from '../../src/server/index.js';
import { tool } from '../../src/tools/tool.js';
import { checkRunEvents, createFakeModel, type FakeModel } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';
import { eventually } from '../support/eventually.js';
import { startTcpProxy } from '../support/tcp-proxy.js';
import { sample } from '../support/notices.js';
import { createTempDir, createTestDatabase } from '../support/databases.js';
import { REDIS_URL, redisPrefix } from '../support/redis-server.js';
import { readSse } from '../support/sse.js';

/** One runstate instance: its storage connections, orchestrator, agent (with `publish`) and model. */
interface Instance {
  agent: Agent;
  model: FakeModel;
  published: string[];
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startInstance(
  storageOptions: StorageOptions,
  orchestratorOptions: OrchestratorOptions = {},
  wrapStore?: (store: RunStore) => RunStore,
): Promise<Instance> {
  const storage = await openStorage(storageOptions);
  const orchestrator = createOrchestrator({
    ...orchestratorOptions,
    store: wrapStore && storage.store ? wrapStore(storage.store) : storage.store,
    cancelBus: storage.cancelBus,
    eventBus: storage.eventBus,
  });
  const model = createFakeModel();
  const published: string[] = [];
  const publish = tool({
    name: 'publish',
    description: 'Publishes a post',
    parameters: z.object({ title: z.string() }),
    requiresConfirmation: true,
    execute: ({ title }) => {
      published.push(title);
      return `published ${title}`;
    },
  });
  const agent = new Agent({ name: 'Publisher', model, orchestrator, tools: [publish] });
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= orchestrator.shutdown().then(() => storage.close()));
  cleanups.push(close);
  return { agent, model, published, close };
}

/** Runs until the model asks for `publish` (id `call`) and the run pauses; its events so far. */
async function pausedRun(instance: Instance, title: string, call = 'c1') {
  const run = instance.agent.run(`publish ${title}`, { stream: true });
  (await instance.model.nextCall()).callTools([{ id: call, name: 'publish', arguments: { title } }]);
  const events = await collect(run);
  expect(events.map((e) => e.event)).toEqual(['RunStarted', 'RunPaused']);
  // The handle too: its `result` resolves wherever the run ends.
  return { runId: run.runId, events, run };
}

/** What the handle of a run paused at `publish` resolves with once its session was deleted. */
const cancelledWithItsSession = (runId: string) => ({
  run_id: runId,
  status: 'cancelled',
  cancel_reason: 'api',
  tools: [{ tool_call_id: 'c1', status: 'cancelled' }],
});

/** Confirms the paused `publish` call (`c1`) on `instance`, streaming: the continued run and its turn. */
async function confirmOn(instance: Instance, runId: string) {
  const continued = await instance.agent.continueRun(runId, {
    tools: [{ tool_call_id: 'c1', confirmed: true }],
    stream: true,
  });
  return { continued, turn: await instance.model.nextCall() };
}

const tempDir = async () => {
  const dir = await createTempDir('runstate-paused-');
  cleanups.unshift(() => dir.remove());
  return dir.path;
};

describe('a paused run across a restart (PGlite on disk)', () => {
  it('leaves the listeners of the instance that shuts down with it parked: a left notice, a tracer ends its span', async () => {
    const dataDir = await tempDir();
    const before = await startInstance({ dataDir });
    const notices: RunNotice[] = [];
    before.agent.orchestrator.subscribe((notice) => void notices.push(notice));
    const metrics = createPrometheusMetrics();
    before.agent.orchestrator.subscribe(metrics.listener, { causes: false });
    const { runId } = await pausedRun(before, 'news');
    expect(sample(await metrics.registry.metrics(), 'runstate_runs_active', { state: 'paused' })).toBe(1);
    await before.close();
    expect(notices.filter((notice) => notice.type === 'left')).toEqual([{ type: 'left', runId }]);
    expect(sample(await metrics.registry.metrics(), 'runstate_runs_active', { state: 'paused' })).toBe(0);
    // Still parked, for the next instance.
    const after = await startInstance({ dataDir });
    expect((await after.agent.getRun(runId))?.status).toBe('paused');
  });

  it('is continued after the restart: RunContinued with the next seq, the tool runs, RunCompleted', async () => {
    const dataDir = await tempDir();
    const before = await startInstance({ dataDir });
    const { runId } = await pausedRun(before, 'news');
    await before.close();

    const after = await startInstance({ dataDir });
    expect((await after.agent.getRun(runId))?.status).toBe('paused');
    const continued = await after.agent.continueRun(runId, {
      tools: [{ tool_call_id: 'c1', confirmed: true, confirmation_note: 'go' }],
      stream: true,
    });
    const turn = await after.model.nextCall();
    // The restored run sends what it had: the user's message, the call and its result.
    expect(turn.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    expect(turn.messages.at(-1)).toMatchObject({ tool_call_id: 'c1', content: 'published news' });
    turn.emit('Done.');
    turn.end();
    const events = await collect(continued);
    expect(events.map((e) => [e.seq, e.event])).toEqual([
      [3, 'RunContinued'],
      [4, 'ToolCallStarted'],
      [5, 'ToolCallCompleted'],
      [6, 'RunContent'],
      [7, 'RunCompleted'],
    ]);
    expect(after.published).toEqual(['news']);
    checkRunEvents(await collect(await after.agent.orchestrator.events(runId)), 'completed');
    const record = await after.agent.getRun(runId);
    expect(record).toMatchObject({ status: 'completed', content: 'Done.' });
    expect(record?.tools).toEqual([
      expect.objectContaining({
        tool_call_id: 'c1',
        status: 'completed',
        confirmed: true,
        confirmation_note: 'go',
        result: 'published news',
      }),
    ]);
  });

  it('is rejected or cancelled after the restart, and a pause that ran out is failed RUN_TIMEOUT', async () => {
    const dataDir = await tempDir();
    const before = await startInstance({ dataDir });
    const rejected = await pausedRun(before, 'draft');
    const cancelled = await pausedRun(before, 'rumour');
    const expired = await pausedRun(before, 'old news');
    await before.close();

    // Two hours on: past the default pause limit of one hour.
    const later = () => Date.now() + 2 * 60 * 60_000;
    const after = await startInstance({ dataDir });
    const output = after.agent.continueRun(rejected.runId, {
      tools: [{ tool_call_id: 'c1', confirmed: false, confirmation_note: 'not now' }],
    });
    const turn = await after.model.nextCall();
    expect(turn.messages.at(-1)).toMatchObject({ content: 'The user rejected this call: not now' });
    turn.end();
    expect((await output).tools[0]).toMatchObject({ status: 'rejected', confirmed: false });

    const cancel = await after.agent.orchestrator.requestCancel(cancelled.runId, 'api');
    expect(cancel).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    expect(cancel.tools.map((t) => t.status)).toEqual(['cancelled']);
    const cancelEvents = await collect(await after.agent.orchestrator.events(cancelled.runId));
    checkRunEvents(cancelEvents, 'cancelled');
    expect(cancelEvents.at(-1)).toMatchObject({ event: 'RunCancelled', seq: 3 });
    expect(after.published).toEqual([]);
    await after.close();

    const muchLater = await startInstance({ dataDir }, { now: later });
    await expect(
      muchLater.agent.continueRun(expired.runId, { tools: [{ tool_call_id: 'c1', confirmed: true }] }),
    ).rejects.toMatchObject({ code: 'RUN_NOT_PAUSED', details: { status: 'failed' } });
    const record = await muchLater.agent.getRun(expired.runId);
    expect(record).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });
    checkRunEvents(await collect(await muchLater.agent.orchestrator.events(expired.runId)), 'failed');
    expect(muchLater.published).toEqual([]);
  });
});

describe('a paused run on two instances (PostgreSQL and Redis)', () => {
  /** Two instances on one database and Redis; the second's own storage and orchestrator options. */
  async function twoInstances(laterStorage: StorageOptions = {}, laterOptions: OrchestratorOptions = {}) {
    const database = await createTestDatabase();
    cleanups.unshift(() => database.drop());
    const shared = { databaseUrl: database.url, redisUrl: REDIS_URL, redisPrefix: redisPrefix() };
    return [
      await startInstance(shared),
      await startInstance({ ...shared, ...laterStorage }, laterOptions),
    ] as const;
  }

  it('is continued over HTTP on both at once: one streams RunContinued to RunCompleted, the other answers 409', async () => {
    const [a, b] = await twoInstances();
    const servers = await Promise.all(
      [a, b].map((instance) =>
        startServer(createApp({ agents: [instance.agent], logger: { error: () => undefined } }), {
          port: 0,
          graceMs: 1_000,
        }),
      ),
    );
    for (const server of servers) cleanups.push(() => server.close());
    const { runId, events: paused } = await pausedRun(a, 'launch');

    const form = () => {
      const body = new FormData();
      body.set('tools', JSON.stringify([{ tool_call_id: 'c1', confirmed: true }]));
      body.set('session_id', paused[0]!.session_id);
      return { method: 'POST', body };
    };
    const answers = await Promise.all(
      servers.map((server) => fetch(`${server.url}/agents/publisher/runs/${runId}/continue`, form())),
    );
    expect(answers.map((r) => r.status).sort()).toEqual([200, 409]);
    const refused = answers.find((r) => r.status === 409)!;
    expect(await refused.json()).toMatchObject({ code: 'RUN_NOT_PAUSED' });
    const winner = answers.indexOf(answers.find((r) => r.status === 200)!);
    const owner = [a, b][winner]!;

    const turn = await owner.model.nextCall();
    turn.emit('Launched.');
    turn.end();
    const rest = (await readSse(answers[winner]!).rest()).map((frame) => frame.data);
    expect(rest[0]).toMatchObject({ event: 'RunContinued', seq: 3 });
    checkRunEvents([...paused, ...rest], 'completed');
    expect(owner.published).toEqual(['launch']);
    expect([a, b][1 - winner]!.published).toEqual([]);
    // Both instances read the same run, finished, from the store.
    for (const instance of [a, b]) {
      const record = await instance.agent.orchestrator.result(runId);
      expect(record.tools[0]).toMatchObject({ status: 'completed', confirmed: true });
      expect(await collect(await instance.agent.orchestrator.events(runId))).toEqual([...paused, ...rest]);
    }
  });

  it('ends a follower on the other instance at the RunPaused it saw come, however soon the run goes on', async () => {
    const [a, b] = await twoInstances();
    const run = a.agent.run('publish news', { stream: true });
    await run.recorded;
    // Following from b, the instance the run is not on (from the store, then the event bus), and
    // waiting for the next event while the run pauses.
    const follower = (await b.agent.orchestrator.events(run.runId, 1))[Symbol.asyncIterator]();
    const first = follower.next();
    (await a.model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: { title: 'news' } }]);
    const paused = await collect(run);
    expect(paused.map((e) => e.event)).toEqual(['RunStarted', 'RunPaused']);
    expect((await first).value).toEqual(paused[1]);
    // Continued before the follower asks for more: its stream still ends at the pause it read, as
    // the paused run's own stream did; what follows is the continue's.
    const { continued, turn } = await confirmOn(b, run.runId);
    expect((await follower.next()).done).toBe(true);
    turn.emit('Published.');
    turn.end();
    const rest = await collect(continued);
    checkRunEvents([...paused, ...rest], 'completed');
    // A follower that starts after the run left its pause reads on through it.
    expect(await a.agent.orchestrator.result(run.runId)).toMatchObject({ status: 'completed' });
    expect(await collect(await a.agent.orchestrator.events(run.runId, 1))).toEqual([paused[1], ...rest]);
  });

  it('ends a follower that started while the run was paused at that pause, however soon the run goes on', async () => {
    const [a, b] = await twoInstances();
    const { runId, events: paused } = await pausedRun(a, 'later');
    const follower = (await b.agent.orchestrator.events(runId, 1))[Symbol.asyncIterator]();
    expect((await follower.next()).value).toEqual(paused[1]);
    // Continued before the follower asks for more: it read the pause while the run waited there.
    const { continued, turn } = await confirmOn(b, runId);
    expect((await follower.next()).done).toBe(true);
    turn.emit('Later.');
    turn.end();
    checkRunEvents([...paused, ...(await collect(continued))], 'completed');
  });

  it('is cancelled with its session, deleted on the instance that paused it: its handle resolves cancelled', async () => {
    const [a] = await twoInstances();
    const { run } = await pausedRun(a, 'news');
    expect(await a.agent.orchestrator.deleteSession(run.sessionId)).toBe(true);
    expect(await run.result).toMatchObject(cancelledWithItsSession(run.runId));
    expect(await a.agent.getRun(run.runId)).toBeUndefined();
  });

  it("is in the history of its session's next run, started as soon as agent.cancelRun returned", async () => {
    const [a] = await twoInstances();
    // A few times: the cancel goes through the store, and the next run's record may come first.
    for (let i = 0; i < 5; i++) {
      const run = a.agent.run(`publish ${i}`, { stream: true });
      const call = await a.model.nextCall();
      call.emit(`Publishing ${i}.`);
      call.callTools([{ id: `c${i}`, name: 'publish', arguments: { title: `t${i}` } }]);
      expect((await collect(run)).at(-1)?.event).toBe('RunPaused');
      expect(a.agent.cancelRun(run.runId)).toBe(true);
      const next = a.agent.run('and now?', { sessionId: run.sessionId });
      const sent = await a.model.nextCall();
      expect(sent.messages).toEqual([
        { role: 'user', content: `publish ${i}` },
        { role: 'assistant', content: `Publishing ${i}.` },
        { role: 'user', content: 'and now?' },
      ]);
      sent.end();
      await next;
    }
  });

  it('is cancelled from the other instance', async () => {
    const [a, b] = await twoInstances();
    const { runId } = await pausedRun(a, 'gossip');
    const cancel = await b.agent.orchestrator.requestCancel(runId, 'api');
    expect(cancel).toMatchObject({ status: 'cancelled' });
    expect(cancel.tools.map((t) => t.status)).toEqual(['cancelled']);
    // The instance that paused it learns the end from the store and the bus.
    expect((await a.agent.orchestrator.result(runId)).status).toBe('cancelled');
    checkRunEvents(await collect(await a.agent.orchestrator.events(runId)), 'cancelled');
  });

  it('is cancelled with its session, deleted on the other instance: the handle of the instance that paused it resolves cancelled', async () => {
    const [a, b] = await twoInstances();
    const { run } = await pausedRun(a, 'news');
    expect(await b.agent.orchestrator.deleteSession(run.sessionId)).toBe(true);
    // Its record went with the session: the handle ends as the run's end on the bus said.
    expect(await run.result).toMatchObject(cancelledWithItsSession(run.runId));
    expect(a.agent.orchestrator.isPaused(run.runId)).toBe(false);
    expect(await a.agent.getRun(run.runId)).toBeUndefined();
    expect(a.published).toEqual([]);
  });

  it('resolves the handle of the instance that paused it, its session deleted by one it cannot hear: cancelled, at its deadline', async () => {
    // One database, no shared bus: the instance that paused the run hears nothing of the other.
    const database = await createTestDatabase();
    cleanups.unshift(() => database.drop());
    const parker = await startInstance({ databaseUrl: database.url }, { limits: { pauseTimeoutMs: 200 } });
    const other = await startInstance({ databaseUrl: database.url });
    const { run } = await pausedRun(parker, 'news');
    expect(await other.agent.orchestrator.deleteSession(run.sessionId)).toBe(true);
    // At its deadline the parker finds neither the park nor the record: what it had, cancelled.
    expect(await run.result).toMatchObject(cancelledWithItsSession(run.runId));
    expect(parker.agent.orchestrator.isPaused(run.runId)).toBe(false);
  });

  /**
   * Two instances on one database and Redis, the first reaching Redis through a proxy a test cuts:
   * what the other publishes, it does not hear. `leaseMs`: how often they renew (and check parks).
   */
  async function oneCutOffFromRedis(leaseMs: number) {
    const proxy = await startTcpProxy('127.0.0.1', Number(new URL(REDIS_URL).port || 6379));
    cleanups.unshift(() => proxy.close());
    const database = await createTestDatabase();
    cleanups.unshift(() => database.drop());
    const shared = { databaseUrl: database.url, redisUrl: REDIS_URL, redisPrefix: redisPrefix(), leaseMs };
    const cutOff = await startInstance({ ...shared, redisUrl: `redis://127.0.0.1:${proxy.port}` });
    return { proxy, database, cutOff, other: await startInstance(shared) };
  }

  it('is cancelled by a cancel its owner never heard that was sent before it paused (the owner cut from Redis)', async () => {
    // Renewals minutes apart: the owner reads no cancel recorded in the store while this test runs.
    const { proxy, database, cutOff: owner, other } = await oneCutOffFromRedis(600_000);
    const run = owner.agent.run('publish news', { stream: true });
    const call = await owner.model.nextCall();
    await proxy.cut();
    const cancel = other.agent.orchestrator.requestCancel(run.runId, 'api');
    const sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    const recorded = async () => {
      const { rows } = await sql.query<{ cancel_requested: string | null }>(
        'SELECT cancel_requested FROM runstate_runs WHERE run_id = $1',
        [run.runId],
      );
      return rows[0]?.cancel_requested === 'api';
    };
    await eventually(recorded, { what: 'the cancel recorded in the store' });
    await sql.end();
    // The owner, which heard nothing, parks the run: from now on no instance's renewal reads it.
    call.callTools([{ id: 'c1', name: 'publish', arguments: { title: 'news' } }]);
    expect((await collect(run)).map((e) => e.event)).toEqual(['RunStarted', 'RunPaused']);
    expect(await cancel).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    expect(owner.published).toEqual([]);
    await proxy.restore();
  });

  it('is let go by the instance that paused it when another one ends it: its handle resolves, it is no longer paused there', async () => {
    const [a, b] = await twoInstances();
    // Kept past its RunPaused: a's handle resolves with the run's end, wherever it ends.
    const first = a.agent.run('publish news', { stream: true });
    (await a.model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: { title: 'news' } }]);
    expect((await collect(first)).map((e) => e.event)).toEqual(['RunStarted', 'RunPaused']);
    const left = new Promise<void>((resolve) =>
      a.agent.orchestrator.subscribe((notice) => void (notice.type === 'left' && resolve())),
    );
    const { continued, turn } = await confirmOn(b, first.runId);
    // a heard the run go on at b (its RunContinued) before the run's end was published.
    await left;
    turn.emit('Out.');
    turn.end();
    expect(await continued.result).toMatchObject({ status: 'completed' });
    // Not at the pause's deadline an hour later: a heard the end on the event bus.
    expect(await first.result).toMatchObject({ run_id: first.runId, status: 'completed', content: 'Out.' });
    expect(a.agent.orchestrator.isPaused(first.runId)).toBe(false);
    expect(a.agent.cancelRun(first.runId)).toBe(false);
    expect(await a.agent.getRun(first.runId)).toMatchObject({ status: 'completed' });

    // Cancelled from b while paused: a's handle resolves cancelled.
    const second = a.agent.run('publish rumours', { stream: true });
    (await a.model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: { title: 'rumours' } }]);
    await collect(second);
    await b.agent.orchestrator.requestCancel(second.runId, 'api');
    expect(await second.result).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    expect(a.agent.orchestrator.isPaused(second.runId)).toBe(false);
    expect(a.agent.cancelRun(second.runId)).toBe(false);
  });

  /**
   * The lease of an instance whose parks a test waits for it to check (every half lease): short
   * for the test's sake, yet not so short that a loaded machine lets it run out while the run still
   * streams there (400 ms did, in CI: the run then ends RUN_LOST, and never pauses).
   */
  const CHECKING_LEASE_MS = 2_000;

  it('is let go by the instance that paused it when another one ended it while its Redis link was down', async () => {
    const { proxy, cutOff: a, other: b } = await oneCutOffFromRedis(CHECKING_LEASE_MS);
    const metrics = createPrometheusMetrics();
    a.agent.orchestrator.subscribe(metrics.listener, { causes: false });
    const { runId, run } = await pausedRun(a, 'unheard');
    // a hears nothing of what b does with the run: not its RunContinued, not its end.
    await proxy.cut();
    const { continued, turn } = await confirmOn(b, runId);
    turn.emit('Out.');
    turn.end();
    expect(await continued.result).toMatchObject({ status: 'completed' });
    await proxy.restore();
    // Not at the pause's deadline an hour later: a read the run's end from the store.
    expect(await run.result).toMatchObject({ run_id: runId, status: 'completed', content: 'Out.' });
    expect(a.agent.orchestrator.isPaused(runId)).toBe(false);
    expect(a.agent.cancelRun(runId)).toBe(false);
    expect(sample(await metrics.registry.metrics(), 'runstate_runs_active', { state: 'paused' })).toBe(0);
  });

  it('is let go by the instance that paused it when another one continued it and paused it again while its Redis link was down', async () => {
    const { proxy, cutOff: a, other: b } = await oneCutOffFromRedis(CHECKING_LEASE_MS);
    const left: RunNotice[] = [];
    a.agent.orchestrator.subscribe((notice) => void (notice.type === 'left' && left.push(notice)));
    const { runId } = await pausedRun(a, 'first');
    await proxy.cut();
    // b takes it, and it pauses again there: parked once more, as a's park was.
    const { continued, turn } = await confirmOn(b, runId);
    turn.callTools([{ id: 'c2', name: 'publish', arguments: { title: 'second' } }]);
    expect((await collect(continued)).at(-1)).toMatchObject({ event: 'RunPaused' });
    await proxy.restore();
    await eventually(() => !a.agent.orchestrator.isPaused(runId), { what: 'a letting go of the run' });
    expect(left).toEqual([{ type: 'left', runId }]);
    expect([a.agent.orchestrator.pausedCount, b.agent.orchestrator.pausedCount]).toEqual([0, 1]);
  });

  it('keeps the runs it parked, saying so once a check, when the store does not answer where they are', async () => {
    const database = await createTestDatabase();
    cleanups.unshift(() => database.drop());
    let checked!: () => void;
    const refused = new Promise<void>((resolve) => (checked = resolve));
    const wrap = (store: RunStore): RunStore => ({
      ...store,
      parkStates(): Promise<Map<string, ParkState>> {
        setImmediate(checked);
        return Promise.reject(new RunstateError('STORE_UNAVAILABLE', 'the database is unavailable'));
      },
    });
    const reported = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const a = await startInstance({ databaseUrl: database.url, leaseMs: CHECKING_LEASE_MS }, {}, wrap);
      const { runId } = await pausedRun(a, 'kept');
      await refused;
      expect(a.agent.orchestrator.isPaused(runId)).toBe(true);
      expect(reported.mock.calls).toContainEqual([
        'runstate: the check of the runs parked here failed: the database is unavailable',
      ]);
    } finally {
      reported.mockRestore();
    }
  });

  it('keeps a run it paused again here while a check of its earlier park was on its way', async () => {
    const database = await createTestDatabase();
    cleanups.unshift(() => database.drop());
    const gate = () => {
      let open!: () => void;
      const opened = new Promise<void>((resolve) => (open = resolve));
      return { open, opened };
    };
    // The first check waits before its query and again before its answer is read; the second
    // park is awaited until what follows its write here has run (a turn later).
    const [asked, enter, answer, answered, reparked] = [gate(), gate(), gate(), gate(), gate()];
    let checks = 0;
    let parks = 0;
    const wrap = (store: RunStore): RunStore => ({
      ...store,
      async parkStates(runIds): Promise<Map<string, ParkState>> {
        if (++checks > 1) return store.parkStates(runIds);
        asked.open();
        await enter.opened;
        const states = await store.parkStates(runIds);
        await answer.opened;
        setImmediate(answered.open);
        return states;
      },
      async parkRun(...args) {
        await store.parkRun(...args);
        if (++parks === 2) setImmediate(reparked.open);
      },
    });
    const a = await startInstance({ databaseUrl: database.url, leaseMs: CHECKING_LEASE_MS }, {}, wrap);
    const left: RunNotice[] = [];
    a.agent.orchestrator.subscribe((notice) => void (notice.type === 'left' && left.push(notice)));
    const { runId } = await pausedRun(a, 'first');
    await asked.opened;
    // Continued here while the check waits: the store will say the run streams.
    const { continued, turn } = await confirmOn(a, runId);
    const events = continued[Symbol.asyncIterator]();
    expect((await events.next()).value).toMatchObject({ event: 'RunContinued' });
    enter.open();
    turn.callTools([{ id: 'c2', name: 'publish', arguments: { title: 'second' } }]);
    await reparked.opened;
    answer.open();
    await answered.opened;
    // The answer was about the earlier park: the run waits here, parked again.
    expect(a.agent.orchestrator.isPaused(runId)).toBe(true);
    expect(left).toEqual([]);
  });

  it('is cancelled by the instance that paused it after another one continued it: the cancel reaches the new owner', async () => {
    const [a, b] = await twoInstances();
    const { runId } = await pausedRun(a, 'handover');
    expect(a.agent.orchestrator.isPaused(runId)).toBe(true);
    // Paused is not active: a shutdown leaves it in the store, and says so apart.
    expect([a.agent.orchestrator.pausedCount, a.agent.orchestrator.activeCount]).toEqual([1, 0]);
    // b holds it now, waiting for its model: a's knowledge of the park is stale.
    const { continued, turn } = await confirmOn(b, runId);
    expect([b.agent.orchestrator.pausedCount, b.agent.orchestrator.activeCount]).toEqual([0, 1]);
    expect(a.agent.cancelRun(runId)).toBe(true);
    expect(await continued.result).toMatchObject({ status: 'cancelled', cancel_reason: 'code' });
    expect(turn.signal.aborted).toBe(true);
    expect(a.agent.orchestrator.isPaused(runId)).toBe(false);
    expect((await a.agent.orchestrator.result(runId)).status).toBe('cancelled');
  });

  it('moves from the observers of the instance that paused it to those of the one that took it', async () => {
    const [a, b] = await twoInstances();
    const [metrics, taker] = [createPrometheusMetrics(), createPrometheusMetrics()];
    const left: RunNotice[] = [];
    const taken: RunNotice[] = [];
    let heardLeft!: () => void;
    const leftHeard = new Promise<void>((resolve) => (heardLeft = resolve));
    a.agent.orchestrator.subscribe(metrics.listener, { causes: false });
    a.agent.orchestrator.subscribe((notice) => {
      if (notice.type !== 'left') return;
      left.push(notice);
      heardLeft();
    });
    b.agent.orchestrator.subscribe(taker.listener, { causes: false });
    b.agent.orchestrator.subscribe((notice) => void (notice.type === 'taken' && taken.push(notice)));
    const active = async (instance: typeof metrics, state: string) =>
      sample(await instance.registry.metrics(), 'runstate_runs_active', { state });
    const { runId } = await pausedRun(a, 'moving');
    expect(await active(metrics, 'paused')).toBe(1);
    const { continued, turn } = await confirmOn(b, runId);
    // b follows it from the park on: a `taken` notice, then its states.
    expect(taken).toMatchObject([{ type: 'taken', run: { run_id: runId, status: 'paused' } }]);
    expect(await active(taker, 'streaming.attempt.requesting')).toBe(1);
    // a hears b's RunContinued on the event bus: its listeners let go of the run then, not at the
    // run's deadline an hour later.
    await leftHeard;
    expect(left).toEqual([{ type: 'left', runId }]);
    expect(a.agent.orchestrator.isPaused(runId)).toBe(false);
    expect(await active(metrics, 'paused')).toBe(0);
    turn.emit('Moved.');
    turn.end();
    expect(await continued.result).toMatchObject({ status: 'completed' });
    const counted = await taker.registry.metrics();
    expect(sample(counted, 'runstate_runs_finished_total', { agent: 'publisher', status: 'completed' })).toBe(
      1,
    );
    expect(sample(counted, 'runstate_runs_started_total', { agent: 'publisher' })).toBe(undefined);
    // A continue reaching a later is answered from the store, and tells its listeners nothing more.
    await expect(
      a.agent.continueRun(runId, { tools: [{ tool_call_id: 'c1', confirmed: true }] }),
    ).rejects.toMatchObject({ code: 'RUN_NOT_PAUSED' });
    expect(left).toHaveLength(1);
    expect(a.agent.orchestrator.isPaused(runId)).toBe(false);
  });

  it('leaves the observers of the instance that paused it when a continue reaches it, if the bus said nothing', async () => {
    // The event bus is out of the picture: memory buses, one per instance, on a shared PostgreSQL.
    const database = await createTestDatabase();
    cleanups.unshift(() => database.drop());
    const [a, b] = [
      await startInstance({ databaseUrl: database.url }),
      await startInstance({ databaseUrl: database.url }),
    ];
    const left: RunNotice[] = [];
    a.agent.orchestrator.subscribe((notice) => void (notice.type === 'left' && left.push(notice)));
    const { runId } = await pausedRun(a, 'quiet');
    const { continued, turn } = await confirmOn(b, runId);
    turn.emit('Done.');
    turn.end();
    expect(await continued.result).toMatchObject({ status: 'completed' });
    expect(left).toEqual([]);
    await expect(
      a.agent.continueRun(runId, { tools: [{ tool_call_id: 'c1', confirmed: true }] }),
    ).rejects.toMatchObject({ code: 'RUN_NOT_PAUSED' });
    expect(left).toEqual([{ type: 'left', runId }]);
  });

  it('is failed RUN_TIMEOUT by the instance whose sweep finds its pause ran out', async () => {
    // Paused on `a`, whose clock gives the pause an hour to go; `b`'s clock is two hours later, and
    // its short lease makes it sweep often. (`a` keeps the default lease: one of 200 ms can run out
    // on a loaded machine while the run still streams there, which ends it RUN_LOST instead.)
    const [a, b] = await twoInstances({ leaseMs: 200 }, { now: () => Date.now() + 2 * 60 * 60_000 });
    const { runId } = await pausedRun(a, 'stale');
    const output = await b.agent.orchestrator.result(runId);
    expect(output).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });
    checkRunEvents(await collect(await a.agent.orchestrator.events(runId)), 'failed');
  });
});
