/**
 * Two runstate instances sharing one PostgreSQL database and one Redis (a key prefix of this file):
 * real HTTP servers, in this process or as a child process killed with SIGKILL.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { openStorage, type Storage, type StorageOptions } from '../../src/runtime/open-storage.js';
import { createApp, startServer } from '../../src/server/index.js';
import { createFakeModel, nextTurn, type FakeModel } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';
import { spawnCli } from '../support/cli-process.js';
import { postRun } from '../support/app.js';
import { readSse, type Frame } from '../support/sse.js';
import { createTempDir, createTestDatabase, type TestDatabase } from '../support/databases.js';
import { eventually } from '../support/eventually.js';
import { REDIS_URL, redisPrefix } from '../support/redis-server.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

interface Instance {
  url: string;
  story: string;
  model: FakeModel;
  storage: Storage;
  close(): Promise<void>;
}

const open: Instance[] = [];
afterEach(async () => {
  for (const instance of open.splice(0).reverse()) await instance.close();
});

/** An instance in this process: its own storage connections, orchestrator and server. */
/** An instance's storage, orchestrator and agent (on the fake model), without a server. */
async function libraryInstance(options: StorageOptions) {
  const storage = await openStorage(options);
  const model = createFakeModel();
  const orchestrator = createOrchestrator({
    store: storage.store,
    cancelBus: storage.cancelBus,
    eventBus: storage.eventBus,
  });
  const agent = new Agent({ name: 'Story Writer Agent', model, orchestrator });
  return { storage, model, orchestrator, agent };
}

async function startInstance(options: StorageOptions, graceMs = 1_000): Promise<Instance> {
  const { storage, model, agent } = await libraryInstance(options);
  const server = await startServer(createApp({ agents: [agent], logger: { error: () => undefined } }), {
    port: 0,
    graceMs,
  });
  let closed: Promise<void> | undefined;
  const instance: Instance = {
    url: server.url,
    story: `${server.url}/agents/story-writer-agent`,
    model,
    storage,
    close: () => (closed ??= server.close().then(() => storage.close())),
  };
  open.push(instance);
  return instance;
}

/** The frames of a stream, as the wire has them: `id`, `event` and the JSON text (key order included). */
const wire = (frames: Frame[]) =>
  frames.map((frame) => `${frame.id} ${frame.event} ${JSON.stringify(frame.data)}`);

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.drop();
}, 30_000);

describe('two instances on PostgreSQL and Redis', () => {
  const shared = () => ({ databaseUrl: database.url, redisUrl: REDIS_URL, redisPrefix: prefix });
  let prefix: string;
  beforeAll(() => {
    prefix = redisPrefix();
  });

  it('cancels on one instance a run the other owns: 200, the owner aborts and its stream ends RunCancelled', async () => {
    const [a, b] = [await startInstance(shared()), await startInstance(shared())];
    const stream = readSse(await postRun(a.story, { message: 'Tell me a story' }));
    const started = (await stream.next())!.data;
    const call = await a.model.nextCall();
    call.emit('Once');

    const cancel = (instance: Instance) =>
      fetch(`${instance.story}/runs/${started.run_id}/cancel`, { method: 'POST' });
    const answer = await cancel(b);
    expect(answer.status).toBe(200);
    expect(await answer.json()).toStrictEqual({ run_id: started.run_id, status: 'cancelled' });
    expect(call.signal.aborted).toBe(true);
    const rest = await stream.rest();
    expect(rest.at(-1)!.data).toMatchObject({ event: 'RunCancelled', reason: 'api', content: 'Once' });

    // Repeats answer the same on both; an unknown run is a 404 on both.
    for (const instance of [a, b]) {
      expect((await cancel(instance)).status).toBe(200);
      const unknown = await fetch(`${instance.story}/runs/no-such-run/cancel`, { method: 'POST' });
      expect(unknown.status).toBe(404);
    }
  });

  it('cuts, at its shutdown, the streams of an instance that follows runs held by another', async () => {
    // A grace longer than the test: only letting the follower go ends the shutdown.
    const [a, b] = [await startInstance(shared()), await startInstance(shared(), 600_000)];
    const stream = readSse(await postRun(a.story, { message: 'Tell me a story' }));
    const { run_id } = (await stream.next())!.data;
    const call = await a.model.nextCall();
    call.emit('Once');
    const follower = readSse(await fetch(`${b.story}/runs/${run_id}/events`));
    expect((await follower.next())!.data.event).toBe('RunStarted');

    await b.close();
    // Cut, not ended: a clean end would look complete; EventSource reconnects after a cut.
    await expect(follower.rest()).rejects.toThrow();
    expect(call.signal.aborted).toBe(false);
    call.end();
    expect((await stream.rest()).at(-1)!.data).toMatchObject({ event: 'RunCompleted', content: 'Once' });
  });

  it('answers, at its shutdown, a cancel that waits for a run held by another: 503 SHUTTING_DOWN at once', async () => {
    // The owner hears no cancel: its link to Redis is cut, and it renews its lease (where it would
    // read a cancel recorded in the store) minutes apart. A grace longer than the test: only
    // answering the cancel ends b's shutdown.
    const proxy = await startTcpProxy('127.0.0.1', Number(new URL(REDIS_URL).port || 6379));
    try {
      const direct = { ...shared(), leaseMs: 600_000 };
      const a = await startInstance({ ...direct, redisUrl: `redis://127.0.0.1:${proxy.port}` });
      const b = await startInstance(direct, 600_000);
      const stream = readSse(await postRun(a.story, { message: 'Tell me a story' }));
      const { run_id } = (await stream.next())!.data;
      const call = await a.model.nextCall();
      call.emit('Once');
      await proxy.cut();
      const answer = fetch(`${b.story}/runs/${run_id}/cancel`, { method: 'POST' });
      // The cancel waits once it is recorded in the store (the owner would read it at its renewal).
      const sql = new pg.Client({ connectionString: database.url });
      await sql.connect();
      const recorded = async () => {
        const query = 'SELECT cancel_requested FROM runstate_runs WHERE run_id = $1';
        const { rows } = await sql.query<{ cancel_requested: string | null }>(query, [run_id]);
        return rows[0]?.cancel_requested === 'api';
      };
      await eventually(recorded, { what: 'the cancel recorded in the store' }).finally(() => sql.end());
      const closed = b.close();
      const response = await answer;
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('1');
      expect(await response.json()).toMatchObject({
        code: 'SHUTTING_DOWN',
        detail: `this instance is shutting down: the cancel of run ${run_id} was sent, and goes on; ask another instance for its answer`,
      });
      await closed;
      expect(call.signal.aborted).toBe(false);
      call.end();
      expect((await stream.rest()).at(-1)!.data).toMatchObject({ event: 'RunCompleted' });
    } finally {
      await proxy.close();
    }
  });

  it('lets a library caller waiting for a run held by another go at its shutdown: result rejects SHUTTING_DOWN', async () => {
    const [a, b] = [await libraryInstance(shared()), await libraryInstance(shared())];
    try {
      const run = a.agent.run('Tell me a story', { stream: true });
      const call = await a.model.nextCall();
      call.emit('Once');
      await run.recorded;
      const waiting = b.orchestrator.result(run.runId).catch((error: unknown) => error);
      await b.orchestrator.shutdown();
      expect(await waiting).toMatchObject({ code: 'SHUTTING_DOWN' });
      call.end();
      expect(await a.orchestrator.result(run.runId)).toMatchObject({ status: 'completed', content: 'Once' });
    } finally {
      for (const instance of [a, b]) {
        await instance.orchestrator.shutdown();
        await instance.storage.close();
      }
    }
  });

  it('refuses a resume from past the last event of a run held by the other instance, once it ends', async () => {
    const [a, b] = [await startInstance(shared()), await startInstance(shared())];
    const stream = readSse(await postRun(a.story, { message: 'Tell me a story' }));
    const { run_id } = (await stream.next())!.data;
    const call = await a.model.nextCall();
    // Past the end: the owner's newest events may not be stored yet, so only the run's end tells.
    const follower = readSse(
      await fetch(`${b.story}/runs/${run_id}/events`, { headers: { 'Last-Event-ID': '999' } }),
    );
    call.end();
    await stream.rest();
    await expect(follower.rest()).rejects.toThrow();
    const after = await fetch(`${b.story}/runs/${run_id}/events?after=999`);
    expect(after.status).toBe(422);
  });

  /**
   * A cancel sent to B of a run A owns, with one side's link to Redis cut (behind a proxy): the bus
   * reaches neither the owner nor, from the sender, anybody. The store is the way left: the sender
   * records the cancel, the owner reads it with its next renewal (its lease, renewed through
   * PostgreSQL, holds: the run is no orphan either). Answered 200, the owner's upstream aborted.
   */
  async function cancelWithRedisCut(cut: 'owner' | 'sender') {
    const proxy = await startTcpProxy('127.0.0.1', Number(new URL(REDIS_URL).port || 6379));
    try {
      const direct = { ...shared(), leaseMs: 1_000 };
      const viaProxy = { ...direct, redisUrl: `redis://127.0.0.1:${proxy.port}` };
      const a = await startInstance(cut === 'owner' ? viaProxy : direct);
      const b = await startInstance(cut === 'owner' ? direct : viaProxy);
      const stream = readSse(await postRun(a.story, { message: 'Tell me a story' }));
      const { run_id } = (await stream.next())!.data;
      const call = await a.model.nextCall();
      call.emit('Once');
      await proxy.cut();

      const answer = await fetch(`${b.story}/runs/${run_id}/cancel`, { method: 'POST' });
      expect(await answer.json()).toStrictEqual({ run_id, status: 'cancelled' });
      expect(answer.status).toBe(200);
      expect(call.signal.aborted).toBe(true);
      expect((await stream.rest()).at(-1)!.data).toMatchObject({ event: 'RunCancelled', reason: 'api' });
    } finally {
      await proxy.close();
    }
  }

  it('cancels a run whose owner lost its link to Redis (only its own): through the store, at its next renewal', () =>
    cancelWithRedisCut('owner'));

  it('cancels from an instance whose own link to Redis is down: through the store, answered 200', () =>
    cancelWithRedisCut('sender'));

  it('answers 409 on either instance for a run that completed on the other', async () => {
    const [a, b] = [await startInstance(shared()), await startInstance(shared())];
    const stream = readSse(await postRun(a.story, { message: 'Hi' }));
    const started = (await stream.next())!.data;
    (await a.model.nextCall()).end();
    await stream.rest();
    const answer = await fetch(`${b.story}/runs/${started.run_id}/cancel`, { method: 'POST' });
    expect(answer.status).toBe(409);
    expect(await answer.json()).toMatchObject({ code: 'RUN_ALREADY_FINISHED', status: 'completed' });
  });

  it('follows on one instance a run the other owns, with the same frames, from Last-Event-ID and ?after=', async () => {
    const [a, b] = [await startInstance(shared()), await startInstance(shared())];
    const own = readSse(await postRun(a.story, { message: 'Tell me a story' }));
    const started = (await own.next())!.data;
    const call = await a.model.nextCall();
    call.emit('Once');
    const second = (await own.next())!;
    // Resumed from 'Once' on the other instance, which the owner may not have stored yet.
    const events = `${b.story}/runs/${started.run_id}/events`;
    const followed = readSse(await fetch(events));
    const resumed = readSse(await fetch(events, { headers: { 'last-event-id': '1' } }));
    const after = readSse(await fetch(`${events}?after=2`));
    call.emit(' upon a time');
    const third = (await own.next())!;
    call.end();
    const ownFrames = [{ id: '1', event: 'RunStarted', data: started }, second, third, ...(await own.rest())];
    expect(ownFrames.at(-1)!.data.event).toBe('RunCompleted');
    expect(wire(await followed.rest())).toStrictEqual(wire(ownFrames));
    expect(wire(await resumed.rest())).toStrictEqual(wire(ownFrames.slice(1)));
    expect(wire(await after.rest())).toStrictEqual(wire(ownFrames.slice(2)));
    // Past the end of a final run: a 422 on either instance.
    for (const instance of [a, b])
      expect((await fetch(`${instance.story}/runs/${started.run_id}/events?after=99`)).status).toBe(422);
  });

  it('ends a library run’s stream once its record is stored: the session’s next run on the other instance sends it', async () => {
    const instances = [await libraryInstance(shared()), await libraryInstance(shared())];
    const [a, b] = instances as [(typeof instances)[0], (typeof instances)[0]];
    try {
      const first = a.agent.run('First question', { stream: true });
      const read = collect(first);
      const call = await a.model.nextCall();
      call.emit('First answer');
      call.end();
      expect((await read).at(-1)?.event).toBe('RunCompleted');
      // The loop is over: the run is final on the other instance at once.
      expect(await b.storage.store!.getRun(first.runId)).toMatchObject({ status: 'completed' });
      const second = b.agent.run('Second question', { stream: true, sessionId: first.sessionId });
      const next = await b.model.nextCall();
      expect(next.messages.map((m) => m.content)).toStrictEqual([
        'First question',
        'First answer',
        'Second question',
      ]);
      next.end();
      await collect(second);
    } finally {
      for (const { orchestrator, storage } of instances) {
        await orchestrator.shutdown();
        await storage.close();
      }
    }
  });

  it('reads sessions, their runs and run records the same from both', async () => {
    const [a, b] = [await startInstance(shared()), await startInstance(shared())];
    const first = readSse(await postRun(a.story, { message: 'First question' }));
    const { session_id, run_id } = (await first.next())!.data;
    const firstCall = await a.model.nextCall();
    firstCall.emit('First answer');
    firstCall.end();
    await first.rest();
    // A client that saw the run end reads it final on the other instance at once.
    expect(await b.storage.store!.getRun(run_id)).toMatchObject({ status: 'completed' });
    // The second turn on the other instance sends the first as history.
    const second = readSse(await postRun(b.story, { message: 'Second question', session_id }));
    await second.next();
    const call = await b.model.nextCall();
    expect(call.messages.map((m) => m.content)).toStrictEqual([
      'First question',
      'First answer',
      'Second question',
    ]);
    call.emit('Answer');
    call.end();
    await second.rest();
    const read = async (instance: Instance, path: string) => (await fetch(`${instance.url}${path}`)).json();
    for (const path of [
      `/sessions?type=agent&component_id=story-writer-agent&db_id=runstate`,
      `/sessions/${session_id}/runs?type=agent&db_id=runstate`,
      `/agents/story-writer-agent/runs/${run_id}`,
      `/agents/story-writer-agent/runs?session_id=${session_id}`,
    ])
      expect(await read(b, path)).toStrictEqual(await read(a, path));
    const runs = (await read(a, `/sessions/${session_id}/runs?type=agent&db_id=runstate`)) as {
      run_input: string;
    }[];
    expect(runs.map((run) => run.run_input)).toStrictEqual(['First question', 'Second question']);
  });

  it('reads a run streaming on the other instance with what it streamed so far, as its owner does', async () => {
    const [a, b] = [await startInstance(shared()), await startInstance(shared())];
    const own = readSse(await postRun(a.story, { message: 'Tell me a story' }));
    const { session_id, run_id } = (await own.next())!.data;
    const call = await a.model.nextCall();
    call.emit('Once');
    call.emit(' upon');
    // One RunContent (deltas of one tick are merged): the owner stores its events as they come,
    // its record only when the run pauses or ends.
    await eventually(async () => (await b.storage.store!.readEvents(run_id)).length === 2);
    const read = async (instance: Instance, path: string) => (await fetch(`${instance.url}${path}`)).json();
    const paths = [
      `/agents/story-writer-agent/runs/${run_id}`,
      `/sessions/${session_id}/runs/${run_id}?type=agent&db_id=runstate`,
      `/sessions/${session_id}/runs?type=agent&db_id=runstate`,
      `/agents/story-writer-agent/runs?session_id=${session_id}`,
    ];
    expect(await read(b, paths[0]!)).toMatchObject({ status: 'streaming', content: 'Once upon' });
    for (const path of paths) expect(await read(b, path), path).toStrictEqual(await read(a, path));
    call.end();
    await own.rest();
  });

  it('keeps history across a restart of every instance', async () => {
    const a = await startInstance(shared());
    const stream = readSse(await postRun(a.story, { message: 'Remember me' }));
    const { session_id, run_id } = (await stream.next())!.data;
    const call = await a.model.nextCall();
    call.emit('Remembered');
    call.end();
    const before = await stream.rest();
    await a.close();

    const again = await startInstance(shared());
    const replay = readSse(await fetch(`${again.story}/runs/${run_id}/events`));
    expect(wire((await replay.rest()).slice(1))).toStrictEqual(wire(before));
    const runs = (await (await fetch(`${again.url}/sessions/${session_id}/runs`)).json()) as {
      content: string;
    }[];
    expect(runs).toMatchObject([{ run_id, status: 'completed', content: 'Remembered' }]);
  });
});

/** A config file of one slow offline agent: its run is still streaming when its process is killed. */
const agentsConfig = async () => {
  const dir = await createTempDir();
  const file = join(dir.path, 'runstate.config.json');
  const agents = [
    {
      id: 'story-writer-agent',
      name: 'Story Writer Agent',
      model: { provider: 'offline', tokensPerSecond: 20 },
    },
  ];
  await writeFile(file, JSON.stringify({ agents }));
  return { file, remove: () => dir.remove() };
};

describe('an owner killed with SIGKILL', () => {
  /** The owner: `runstate serve` in a child process on the shared database and Redis. */
  async function owner(prefix: string, leaseMs: number) {
    const config = await agentsConfig();
    const cli = spawnCli(['serve', '--port', '0', '--config', config.file], {
      DATABASE_URL: database.url,
      REDIS_URL: REDIS_URL,
      RUNSTATE_REDIS_PREFIX: prefix,
      RUNSTATE_LEASE_MS: String(leaseMs),
    });
    const url = await cli.listening();
    const stream = readSse(await postRun(`${url}/agents/story-writer-agent`, { message: 'A long story' }));
    const started = (await stream.next())!.data;
    const content = (await stream.next())!.data;
    expect(content.event).toBe('RunContent');
    return {
      runId: started.run_id,
      sessionId: started.session_id,
      async kill() {
        process.kill(-cli.child.pid!, 'SIGKILL');
        await cli.exit;
        await config.remove();
      },
    };
  }

  it('ends its run failed RUN_LOST, as a follower on the other instance sees it', async () => {
    const prefix = redisPrefix();
    const killed = await owner(prefix, 1_000);
    const b = await startInstance({
      databaseUrl: database.url,
      redisUrl: REDIS_URL,
      redisPrefix: prefix,
      leaseMs: 1_000,
    });
    const follower = readSse(await fetch(`${b.story}/runs/${killed.runId}/events`));
    expect((await follower.next())!.data.event).toBe('RunStarted');
    await killed.kill();

    const frames = await follower.rest();
    const last = frames.at(-1)!.data;
    expect(last).toMatchObject({ event: 'RunError', code: 'RUN_LOST', status: 'failed' });
    expect(frames.filter((frame) => frame.data.event === 'RunError')).toHaveLength(1);
    expect(frames.map((frame) => Number(frame.id))).toStrictEqual(frames.map((_, i) => i + 2));
    const record = (await (await fetch(`${b.story}/runs/${killed.runId}`)).json()) as Record<string, unknown>;
    expect(record).toMatchObject({ status: 'failed', error: { code: 'RUN_LOST' } });
    // A cancel now answers 409: the run ended otherwise.
    expect((await fetch(`${b.story}/runs/${killed.runId}/cancel`, { method: 'POST' })).status).toBe(409);
    // Counted where it was finalised: its owner, gone, counted its start only.
    const failed = 'runstate_runs_finished_total{agent="story-writer-agent",status="failed"} 1';
    await eventually(async () => (await (await fetch(`${b.url}/prometheus`)).text()).includes(failed), {
      what: 'the lost run counted',
    });
  });

  /**
   * An owner killed with a run streaming, and another instance that sweeps rarely, so that only a
   * cancel can finalise the run; `expectCancelledBy(answer)` checks the cancel's answer and the run's
   * one terminal event.
   */
  async function killedOwnerAndOther(ownerLeaseMs: number) {
    const prefix = redisPrefix();
    const killed = await owner(prefix, ownerLeaseMs);
    const other = await startInstance({
      databaseUrl: database.url,
      redisUrl: REDIS_URL,
      redisPrefix: prefix,
      leaseMs: 600_000,
    });
    await killed.kill();
    const cancel = () => fetch(`${other.story}/runs/${killed.runId}/cancel`, { method: 'POST' });
    async function expectCancelledBy(answer: Response): Promise<void> {
      expect(answer.status).toBe(200);
      expect(await answer.json()).toStrictEqual({ run_id: killed.runId, status: 'cancelled' });
      const frames = await readSse(await fetch(`${other.story}/runs/${killed.runId}/events`)).rest();
      expect(frames.at(-1)!.data).toMatchObject({ event: 'RunCancelled', reason: 'api' });
      const terminal = frames.filter((frame) =>
        /^Run(Cancelled|Error|Completed)$/.test(String(frame.data.event)),
      );
      expect(terminal).toHaveLength(1);
    }
    return { runId: killed.runId, sessionId: killed.sessionId, other, cancel, expectCancelledBy };
  }

  it('a cancel of its run on the other instance, once its lease ran out, cancels it at once', async () => {
    // (A lease long enough that a loaded machine renews it until the kill: a lapse before it ends the
    // run RUN_LOST before its first content.)
    const { runId, other, cancel, expectCancelledBy } = await killedOwnerAndOther(1_000);
    await eventually(async () => (await other.storage.store!.leases!.orphans()).includes(runId), {
      what: "the killed owner's lease to run out",
    });
    await expectCancelledBy(await cancel());
  });

  it('a cancel of its run sent before its lease ran out cancels it once the lease has run out', async () => {
    const { cancel, expectCancelledBy } = await killedOwnerAndOther(1_000);
    // Sent while the owner's lease still holds: nobody can tell yet that it is gone.
    await expectCancelledBy(await cancel());
  });

  it('a delete of its session on the other instance cancels it first: a follower there gets RunCancelled', async () => {
    const { runId, sessionId, other } = await killedOwnerAndOther(1_000);
    const follower = readSse(await fetch(`${other.story}/runs/${runId}/events`));
    expect((await follower.next())!.data.event).toBe('RunStarted');
    // Sent while the owner's lease still holds: answered once the lease has run out and the run is
    // finalised, as a cancel of it is.
    const deleted = await fetch(`${other.url}/sessions/${sessionId}`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    const frames = await follower.rest();
    expect(frames.at(-1)!.data).toMatchObject({ event: 'RunCancelled', reason: 'api' });
    const terminal = frames.filter((frame) =>
      /^Run(Cancelled|Error|Completed)$/.test(String(frame.data.event)),
    );
    expect(terminal).toHaveLength(1);
    expect((await fetch(`${other.story}/runs/${runId}`)).status).toBe(404);
    expect((await fetch(`${other.url}/sessions/${sessionId}`)).status).toBe(404);
  });
});

describe('PGlite in a data dir', () => {
  it('shares cancels and live events between two orchestrators of one process on one storage', async () => {
    const dir = await createTempDir();
    // A lease of an hour: a cancel through the store would wait for the owner's renewal that long.
    const storage = await openStorage({ dataDir: dir.path, leaseMs: 3_600_000 });
    try {
      const [owner, other] = [0, 1].map(() =>
        createOrchestrator({
          store: storage.store,
          cancelBus: storage.cancelBus,
          eventBus: storage.eventBus,
        }),
      );
      const model = createFakeModel();
      const agent = new Agent({ name: 'Story Writer Agent', model, orchestrator: owner! });
      const run = agent.run('Tell me a story', { stream: true });
      const call = await model.nextCall();
      call.emit('Once');
      await nextTurn();
      const followed = collect(await other!.events(run.runId));
      // Through the process's buses, at once: not at the owner's next lease renewal (seconds).
      const cancelled = other!.requestCancel(run.runId, 'api');
      await call.aborted;
      expect(await cancelled).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
      expect((await followed).map((event) => event.event)).toEqual([
        'RunStarted',
        'RunContent',
        'RunCancelled',
      ]);
      await Promise.all([owner!.shutdown(), other!.shutdown()]);
    } finally {
      await storage.close();
      await dir.remove();
    }
  }, 60_000);

  it('sends a turn that ended on one orchestrator with the next, started on another at once', async () => {
    const dir = await createTempDir();
    const storage = await openStorage({ dataDir: dir.path });
    try {
      const model = createFakeModel();
      const [first, second] = [0, 1].map(
        () =>
          new Agent({
            id: 'writer',
            name: 'Writer',
            model,
            orchestrator: createOrchestrator({
              store: storage.store,
              cancelBus: storage.cancelBus,
              eventBus: storage.eventBus,
            }),
          }),
      );
      const turn = first!.run('first', { stream: true, sessionId: 's' });
      const call = await model.nextCall();
      call.emit('one');
      call.end();
      // Read to the terminal event, which comes before the run's record is stored...
      await collect(turn);
      // ...and the next turn at once, on the other orchestrator: it must wait for that record.
      const next = second!.run('second', { sessionId: 's' });
      const sent = await model.nextCall();
      expect(sent.messages.map((message) => `${message.role}: ${String(message.content)}`)).toEqual([
        'user: first',
        'assistant: one',
        'user: second',
      ]);
      sent.end();
      expect(await next).toMatchObject({ status: 'completed' });
      await Promise.all([first!.orchestrator.shutdown(), second!.orchestrator.shutdown()]);
    } finally {
      await storage.close();
      await dir.remove();
    }
  }, 60_000);

  it('keeps history across a restart', async () => {
    const dir = await createTempDir();
    try {
      const a = await startInstance({ dataDir: dir.path });
      const stream = readSse(await postRun(a.story, { message: 'Remember me' }));
      const { session_id, run_id } = (await stream.next())!.data;
      const call = await a.model.nextCall();
      call.emit('Remembered');
      call.end();
      const before = await stream.rest();
      await a.close();

      const again = await startInstance({ dataDir: dir.path });
      const replay = readSse(await fetch(`${again.story}/runs/${run_id}/events`));
      expect(wire((await replay.rest()).slice(1))).toStrictEqual(wire(before));
      const sessions = (await (await fetch(`${again.url}/sessions`)).json()) as {
        data: { session_id: string }[];
      };
      expect(sessions.data.map((session) => session.session_id)).toStrictEqual([session_id]);
      await again.close();
    } finally {
      await dir.remove();
    }
  }, 60_000);

  it('ends the run of a server killed with SIGKILL RUN_LOST when the next one starts, not a lease later', async () => {
    const dir = await createTempDir();
    const config = await agentsConfig();
    try {
      // The default lease (15 s): the next server must not wait for it, the lock says the old one is gone.
      const cli = spawnCli(['serve', '--port', '0', '--config', config.file, '--data-dir', dir.path], {});
      const url = await cli.listening();
      const stream = readSse(await postRun(`${url}/agents/story-writer-agent`, { message: 'A long story' }));
      const { run_id } = (await stream.next())!.data;
      expect((await stream.next())!.data.event).toBe('RunContent');
      process.kill(-cli.child.pid!, 'SIGKILL');
      await cli.exit;

      const again = await startInstance({ dataDir: dir.path });
      // Within the killed server's lease: only the lock can have told that its runs are orphans.
      const store = again.storage.store!;
      const orphaned = (await store.leases!.orphans()).includes(run_id);
      expect(orphaned || (await store.getRun(run_id))?.status === 'failed').toBe(true);
      // Ended by the first sweep, at the start: the next would be half a lease (7.5 s) later.
      await eventually(async () => (await store.getRun(run_id))?.status === 'failed', {
        timeoutMs: 5_000,
        what: 'the first sweep to end the run',
      });
      const follower = readSse(await fetch(`${again.story}/runs/${run_id}/events`));
      const frames = await follower.rest();
      expect(frames.at(-1)!.data).toMatchObject({ event: 'RunError', code: 'RUN_LOST', status: 'failed' });
      expect(frames.filter((frame) => frame.data.event === 'RunError')).toHaveLength(1);
    } finally {
      await config.remove();
      await dir.remove();
    }
  }, 60_000);
});
