/**
 * The run store contract, once, against every backend: memory, PGlite (a data dir) and PostgreSQL
 * (a database of this file on the local server).
 */
import { randomUUID } from 'node:crypto';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { messageWithCause } from '../../src/errors.js';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import type { RunEvent, RunOutput, RunRecord } from '../../src/runtime/run-events.js';
import { createSqlRunStore, type SqlRunStoreOptions } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import type { SqlDatabase } from '../../src/runtime/sql/sql-database.js';
import type { RunStore } from '../../src/runtime/storage.js';
import { createTempDir, createTestDatabase, type TestDatabase } from '../support/databases.js';
import { streamingRecord } from '../support/runs.js';
import { MAX_ID_LENGTH } from '../../src/runtime/create-orchestrator.js';

type StoreOptions = Omit<SqlRunStoreOptions, 'db'> & {
  /** SQL backends: the store's database seen through this (to count or alter statements). */
  wrap?: ((db: SqlDatabase) => SqlDatabase) | undefined;
};

interface Backend {
  name: string;
  durable: boolean;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** A store; `fresh` asks for an empty database of its own (retention counts every run). */
  open(
    options?: StoreOptions & { fresh?: boolean },
  ): Promise<{ store: RunStore; reopen(): Promise<RunStore> }>;
}

const cleanups: (() => Promise<void>)[] = [];
/**
 * What one test opened (its stores, its PostgreSQL database), closed when it ends: left open to the
 * file's end, the idle connections of every test's pool (60-odd) could fill the server's
 * `max_connections` beside the other test files.
 */
const afterTest: (() => Promise<void>)[] = [];

/** A database shared by the tests of one backend: `close()` of its stores leaves it open. */
function shared(db: SqlDatabase): SqlDatabase {
  return {
    query: (t, p) => db.query(t, p),
    transaction: (fn) => db.transaction(fn),
    close: () => Promise.resolve(),
  };
}

function pgliteBackend(): Backend {
  let template: string;
  let db: SqlDatabase;
  return {
    name: 'PGlite',
    durable: true,
    async setup() {
      const dir = await createTempDir();
      cleanups.push(() => dir.remove());
      // A migrated, empty data dir to copy from: copying takes a second, creating one several.
      template = join(dir.path, 'template');
      await (await openSqlDatabase({ dataDir: template })).close();
      await cp(template, join(dir.path, 'shared'), { recursive: true });
      db = await openSqlDatabase({ dataDir: join(dir.path, 'shared') });
    },
    async teardown() {
      await db.close();
    },
    async open({ wrap = (db: SqlDatabase) => db, ...options } = {}) {
      if (!options.fresh) {
        const store = createSqlRunStore({ ...options, db: wrap(shared(db)) });
        return {
          store,
          reopen: () => Promise.resolve(createSqlRunStore({ ...options, db: wrap(shared(db)) })),
        };
      }
      const dir = await createTempDir();
      afterTest.push(() => dir.remove());
      await cp(template, dir.path, { recursive: true });
      const open = async () =>
        createSqlRunStore({ ...options, db: wrap(await openSqlDatabase({ dataDir: dir.path })) });
      return { store: await open(), reopen: open };
    },
  };
}

function postgresBackend(): Backend {
  return {
    name: 'PostgreSQL',
    durable: true,
    async setup() {},
    async teardown() {},
    async open({ wrap = (db: SqlDatabase) => db, ...options } = {}) {
      const database: TestDatabase = await createTestDatabase();
      afterTest.push(() => database.drop());
      const open = async () =>
        createSqlRunStore({
          ...options,
          db: wrap(await openSqlDatabase({ databaseUrl: database.url })),
        });
      return { store: await open(), reopen: open };
    },
  };
}

function memoryBackend(): Backend {
  return {
    name: 'memory',
    durable: false,
    async setup() {},
    async teardown() {},
    open(options = {}) {
      const { retention, maxSessions, maxRunsPerSession, now } = options;
      const store = createMemoryRunStore({ retention, maxSessions, maxRunsPerSession, now });
      return Promise.resolve({
        store,
        reopen: () => Promise.reject(new Error('a memory store keeps nothing')),
      });
    },
  };
}

const backends: Backend[] = [memoryBackend(), pgliteBackend(), postgresBackend()];

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}, 60_000);

let clock = 1_800_000_000_000;
const now = () => clock;

function record(
  fields: Partial<RunRecord> & { run_id: string; session_id: string; agent_id: string },
): RunRecord {
  return streamingRecord({
    run_input: 'Hello there',
    created_at: Math.floor(clock / 1000),
    status: 'pending',
    ...fields,
  });
}

function output(run: RunRecord, status: RunOutput['status'] = 'completed'): RunOutput {
  return {
    ...run,
    status,
    content: 'done',
    metrics: { input_tokens: 1, output_tokens: 2, total_tokens: 3, time_to_first_token: 0.1, duration: 0.5 },
    finished_at: Math.floor(clock / 1000),
  };
}

function content(run: RunRecord, seq: number, text = `t${seq}`): RunEvent {
  // Keys in the wire order; a durable store must give them back in that order.
  return {
    event: 'RunContent',
    run_id: run.run_id,
    agent_id: run.agent_id,
    agent_name: run.agent_name,
    session_id: run.session_id,
    created_at: run.created_at,
    seq,
    content: text,
  };
}

/** Ids unique to one test: backends may share a database between tests. */
function ids() {
  const tag = randomUUID().slice(0, 8);
  return { agent: `agent-${tag}`, session: `session-${tag}`, run: (n: number) => `run-${tag}-${n}` };
}

describe.each(backends)('run store contract: $name', (backend) => {
  beforeAll(() => backend.setup(), 60_000);
  afterAll(() => backend.teardown());
  afterEach(async () => {
    for (const cleanup of afterTest.splice(0).reverse()) await cleanup();
  }, 30_000);

  async function open(options?: StoreOptions & { fresh?: boolean }) {
    const opened = await backend.open({ now, ...options });
    afterTest.push(() => opened.store.close());
    return opened;
  }

  it('creates the session on its first run and lists the runs of a session oldest first', async () => {
    const { store } = await open();
    const id = ids();
    const first = record({
      run_id: id.run(1),
      session_id: id.session,
      agent_id: id.agent,
      run_input: 'First question',
    });
    const second = record({
      run_id: id.run(2),
      session_id: id.session,
      agent_id: id.agent,
      run_input: 'Second',
    });
    await store.createRun(first);
    await store.createRun(second);

    expect(await store.getRun(first.run_id)).toStrictEqual(first);
    const session = await store.getSession(id.session);
    expect(session).toMatchObject({
      session_id: id.session,
      agent_id: id.agent,
      user_id: null,
      session_name: 'First question',
      run_ids: [first.run_id, second.run_id],
    });
    expect(typeof session!.created_at).toBe('number');
    expect((await store.sessionRuns(id.session)).map((run) => run.run_id)).toStrictEqual([
      first.run_id,
      second.run_id,
    ]);
    expect(await store.getSession('no-such-session')).toBeUndefined();
    expect(await store.getRun('no-such-run')).toBeUndefined();
    expect(await store.sessionRuns('no-such-session')).toStrictEqual([]);
  });

  it('gives a record stored before records had `input` and `reasoning_steps` both, from `run_input` and `extra_data`', async ({
    skip,
  }) => {
    if (!backend.durable) skip();
    let db: SqlDatabase | undefined;
    const { store } = await open({ wrap: (given) => (db = given) });
    const id = ids();
    const steps = [{ title: 'Think.', reasoning: 'Think.' }];
    const run = record({
      run_id: id.run(1),
      session_id: id.session,
      agent_id: id.agent,
      run_input: 'Old one',
      reasoning_steps: steps,
      extra_data: { reasoning_steps: steps },
    });
    await store.createRun(run);
    await db!.query(
      `UPDATE runstate_runs SET record = record - 'input' - 'reasoning_steps' WHERE run_id = $1`,
      [run.run_id],
    );
    const read = await store.getRun(run.run_id);
    expect(read).toStrictEqual({ ...run, input: { input_content: 'Old one' } });
    // In the order a record stored whole is read in.
    const whole = { ...run, run_id: id.run(2) };
    await store.createRun(whole);
    expect(Object.keys(read!)).toStrictEqual(Object.keys((await store.getRun(whole.run_id))!));
  });

  it('names a session after the first 100 characters of its first input, never half an emoji or a flag', async () => {
    const { store } = await open();
    const id = ids();
    const input = `a${'🐉'.repeat(120)}`;
    await store.createRun(
      record({ run_id: id.run(1), session_id: id.session, agent_id: id.agent, run_input: input }),
    );
    expect((await store.getSession(id.session))?.session_name).toBe(`a${'🐉'.repeat(99)}`);
    // A flag is two code points and one character: one that would pass the 100th is left out whole.
    const flagged = `${id.session}-flag`;
    await store.createRun(
      record({
        run_id: id.run(2),
        session_id: flagged,
        agent_id: id.agent,
        run_input: `${'x'.repeat(99)}🇫🇷`,
      }),
    );
    expect((await store.getSession(flagged))?.session_name).toBe('x'.repeat(99));
  });

  it("refuses a run in another agent's session and a run id already used", async () => {
    const { store } = await open();
    const id = ids();
    await store.createRun(record({ run_id: id.run(1), session_id: id.session, agent_id: id.agent }));
    await expect(
      store.createRun(record({ run_id: id.run(2), session_id: id.session, agent_id: 'another-agent' })),
    ).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(
      store.createRun(record({ run_id: id.run(1), session_id: `${id.session}-b`, agent_id: id.agent })),
    ).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    expect((await store.getSession(id.session))!.run_ids).toStrictEqual([id.run(1)]);
  });

  it("refuses a run of one user in another user's session; a run or session with no user joins", async () => {
    const { store } = await open();
    const id = ids();
    const run = (n: number, session: string, user_id: string | null) =>
      record({ run_id: id.run(n), session_id: session, agent_id: id.agent, user_id });
    await store.createRun(run(1, id.session, 'u1'));
    await expect(store.createRun(run(2, id.session, 'u2'))).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: `session ${id.session} belongs to another user`,
    });
    await store.createRun(run(3, id.session, 'u1'));
    await store.createRun(run(4, id.session, null));
    const open_ = `${id.session}-open`;
    await store.createRun(run(5, open_, null));
    await store.createRun(run(6, open_, 'u2'));
    expect((await store.getSession(id.session))!.run_ids).toStrictEqual([id.run(1), id.run(3), id.run(4)]);
    expect((await store.getSession(open_))!.run_ids).toStrictEqual([id.run(5), id.run(6)]);
  });

  it('updates an active run, finishes it once, and filters runs by agent, session and status', async () => {
    const { store } = await open();
    const id = ids();
    const a = record({ run_id: id.run(1), session_id: id.session, agent_id: id.agent });
    const b = record({ run_id: id.run(2), session_id: `${id.session}-b`, agent_id: id.agent });
    await store.createRun(a);
    await store.createRun(b);
    await store.updateRun(a.run_id, { status: 'streaming', content: 'par' });
    expect(await store.getRun(a.run_id)).toMatchObject({ status: 'streaming', content: 'par' });

    const final = output({ ...a, status: 'streaming' });
    expect(await store.finishRun(final)).toBe(true);
    expect(await store.finishRun(output(a, 'cancelled'))).toBe(false);
    expect(await store.getRun(a.run_id)).toStrictEqual(final);
    // A final run is not changed any more.
    await store.updateRun(a.run_id, { content: 'late' });
    expect((await store.getRun(a.run_id))!.content).toBe('done');

    const runIds = async (filter: Parameters<RunStore['listRuns']>[0]) =>
      (await store.listRuns(filter)).map((run) => run.run_id);
    expect(await runIds({ agentId: id.agent })).toStrictEqual([a.run_id, b.run_id]);
    expect(await runIds({ agentId: id.agent, status: 'completed' })).toStrictEqual([a.run_id]);
    expect(await runIds({ agentId: id.agent, status: 'pending' })).toStrictEqual([b.run_id]);
    expect(await runIds({ sessionId: `${id.session}-b` })).toStrictEqual([b.run_id]);
    expect(await runIds({ agentId: 'nobody' })).toStrictEqual([]);
  });

  it('tells where some runs are: their status, and the park they wait in while parked', async () => {
    const { store } = await open();
    const id = ids();
    const runs = [1, 2, 3, 4].map((n) =>
      record({ run_id: id.run(n), session_id: id.session, agent_id: id.agent }),
    );
    for (const run of runs) await store.createRun(run);
    const park = (seq: number) => ({ snapshot: {}, seq, until: now() + 60_000 });
    for (const run of runs.slice(0, 3)) await store.parkRun(run.run_id, { status: 'paused' }, [], park(2));
    // 1 stays parked; 2 is taken, streams again and is parked again; 3 is taken and cancelled; 4
    // never paused; 5 is unknown.
    expect(await store.claimParked(id.run(2))).toBeDefined();
    await store.updateRun(id.run(2), { status: 'streaming' });
    await store.parkRun(id.run(2), { status: 'paused' }, [], park(7));
    expect(await store.claimParked(id.run(3))).toBeDefined();
    await store.finishRun(output({ ...runs[2]!, status: 'paused' }, 'cancelled'));

    const all = [...runs.map((run) => run.run_id), id.run(5)];
    expect(await store.parkStates(all)).toStrictEqual(
      new Map([
        [id.run(1), { status: 'paused', parkedSeq: 2 }],
        [id.run(2), { status: 'paused', parkedSeq: 7 }],
        [id.run(3), { status: 'cancelled', parkedSeq: null }],
        [id.run(4), { status: 'pending', parkedSeq: null }],
      ]),
    );
    expect(await store.parkStates([])).toStrictEqual(new Map());
  });

  it('appends events in batches and reads them back after any seq, byte for byte', async () => {
    const { store } = await open();
    const id = ids();
    const run = record({ run_id: id.run(1), session_id: id.session, agent_id: id.agent });
    await store.createRun(run);
    const events = Array.from({ length: 250 }, (_, i) => content(run, i + 1, `dé"l\\ta ${i} 🙂`));
    // Batches handed over without waiting still land in seq order.
    await Promise.all([
      store.appendEvents(run.run_id, events.slice(0, 1)),
      store.appendEvents(run.run_id, events.slice(1, 100)),
      store.appendEvents(run.run_id, []),
      store.appendEvents(run.run_id, events.slice(100)),
    ]);
    const read = await store.readEvents(run.run_id);
    expect(JSON.stringify(read)).toBe(JSON.stringify(events));
    expect((await store.readEvents(run.run_id, 247)).map((e) => e.seq)).toStrictEqual([248, 249, 250]);
    expect(await store.readEvents(run.run_id, 250)).toStrictEqual([]);
    expect(await store.readEvents('no-such-run')).toStrictEqual([]);
  });

  // What PostgreSQL's JSON refuses in a run's text: kept as it is in memory, as U+FFFD in SQL; the
  // same escape written as text (a backslash, `u`, four digits) is text, kept everywhere. (A NUL is
  // refused as input on every store, before a store sees it: only a lone surrogate is one here.)
  it.each([
    ['a lone surrogate (half of a UTF-16 pair)', 'a\ud800b \\ud800 🙂 \udfff', /\p{Cs}/gu, true],
    ['NUL (a tool read a binary file)', 'PK\u0003\u0004\u0000\u0000 \\u0000 end', '\u0000', false],
  ] as const)(
    'keeps a run whose text holds %s to its end, as U+FFFD in SQL',
    async (_what, text, refused, input) => {
      const { store } = await open();
      const id = ids();
      const stored = [text, text.replaceAll(refused, '\ufffd')];
      const run = record({
        run_id: id.run(1),
        session_id: id.session,
        agent_id: id.agent,
        ...(input && { run_input: text }),
      });
      await store.createRun(run);
      await store.appendEvents(run.run_id, [content(run, 1, text)]);
      await store.updateRun(run.run_id, { status: 'streaming', content: text });
      expect(await store.finishRun({ ...output({ ...run, status: 'streaming' }), content: text })).toBe(true);

      const read = (await store.getRun(run.run_id))!;
      expect(read.status).toBe('completed');
      if (input) expect(stored).toContain(read.run_input);
      expect(stored).toContain(read.content);
      expect(read.content).toContain(/\\u[0-9a-f]{4}/.exec(text)![0]);
      expect(stored).toContain(((await store.readEvents(run.run_id))[0] as { content: string }).content);
    },
  );

  it('keeps a run whose session and user ids are as long as runstate takes, in 3-byte characters', async () => {
    const { store } = await open();
    const id = ids();
    const long = (prefix: string) => prefix + '中'.repeat(MAX_ID_LENGTH - prefix.length);
    const run = record({
      run_id: id.run(1),
      session_id: long(id.session),
      agent_id: id.agent,
      user_id: long('u'),
    });
    await store.createRun(run);
    expect(await store.getRun(run.run_id)).toMatchObject({
      session_id: run.session_id,
      user_id: run.user_id,
    });
  });

  /** `count` runs of one test, each in a session of its own, created. */
  async function createRuns(store: RunStore, count: number): Promise<RunRecord[]> {
    const id = ids();
    const runs = Array.from({ length: count }, (_, n) =>
      record({ run_id: id.run(n), session_id: `${id.session}-${n}`, agent_id: id.agent }),
    );
    for (const run of runs) await store.createRun(run);
    return runs;
  }

  const seqs = async (store: RunStore, run: RunRecord) =>
    (await store.readEvents(run.run_id)).map((event) => event.seq);

  it('keeps each run in order and gap-free when many runs append at once', async () => {
    const { store } = await open();
    const runs = await createRuns(store, 40);
    const events = runs.map((run) => Array.from({ length: 30 }, (_, i) => content(run, i + 1)));
    // Every run hands over three batches without waiting, the runs interleaved, as a thousand
    // streams' writers do in one turn.
    const written: Promise<void>[] = [];
    for (const [from, to] of [
      [0, 1],
      [1, 12],
      [12, 30],
    ] as const) {
      runs.forEach((run, n) => written.push(store.appendEvents(run.run_id, events[n]!.slice(from, to))));
    }
    await Promise.all(written);
    // Read-your-writes: once a batch resolved, every read sees it (and what came before it).
    for (const [n, run] of runs.entries())
      expect(JSON.stringify(await store.readEvents(run.run_id))).toBe(JSON.stringify(events[n]));

    // A run's next batch, handed over while another run's first is still in flight, comes after it.
    const [a, b] = runs;
    const next = store.appendEvents(a!.run_id, [content(a!, 31)]);
    const first = store.appendEvents(b!.run_id, [content(b!, 31), content(b!, 32)]);
    await next;
    expect(await seqs(store, a!)).toStrictEqual(Array.from({ length: 31 }, (_, i) => i + 1));
    await first;
    expect((await seqs(store, b!)).slice(-2)).toStrictEqual([31, 32]);
  });

  it('ignores events already stored when batches of many runs are sent again', async () => {
    const { store } = await open();
    const runs = await createRuns(store, 10);
    await Promise.all(
      runs.map((run) =>
        store.appendEvents(
          run.run_id,
          [1, 2, 3].map((s) => content(run, s)),
        ),
      ),
    );
    // Sent again after an error (the first copy did land), and the next batch overlapping it.
    await Promise.all(
      runs.flatMap((run) => [
        store.appendEvents(
          run.run_id,
          [1, 2, 3].map((s) => content(run, s, 'again')),
        ),
        store.appendEvents(
          run.run_id,
          [3, 4, 5].map((s) => content(run, s)),
        ),
      ]),
    );
    for (const run of runs) {
      const read = await store.readEvents(run.run_id);
      expect(read.map((event) => event.seq)).toStrictEqual([1, 2, 3, 4, 5]);
      expect(read.map((event) => (event as { content: string }).content)).toStrictEqual(
        [1, 2, 3, 4, 5].map((s) => `t${s}`),
      );
    }
  });

  it('writes the events of the other runs when one is deleted while they are handed over', async () => {
    const { store } = await open();
    const runs = await createRuns(store, 8);
    const [gone, ...kept] = runs;
    await Promise.all(runs.map((run) => store.appendEvents(run.run_id, [content(run, 1)])));
    // The run's session goes in the same turn as the batches of every run are handed over.
    const appended = runs.map((run) => store.appendEvents(run.run_id, [content(run, 2), content(run, 3)]));
    const deleted = store.deleteSession(gone!.session_id);
    await Promise.all([...appended, deleted]);
    expect(await deleted).toBe(true);
    expect(await store.readEvents(gone!.run_id)).toStrictEqual([]);
    for (const run of kept) expect(await seqs(store, run)).toStrictEqual([1, 2, 3]);
    // And once it is gone, its late batches are dropped quietly beside the others'.
    await Promise.all(runs.map((run) => store.appendEvents(run.run_id, [content(run, 4)])));
    expect(await store.readEvents(gone!.run_id)).toStrictEqual([]);
    for (const run of kept) expect(await seqs(store, run)).toStrictEqual([1, 2, 3, 4]);
  });

  it('writes the batches of many runs handed over in one turn with one INSERT', async ({ skip }) => {
    if (!backend.durable) skip();
    let inserts = 0;
    const counting = (db: SqlDatabase): SqlDatabase => ({
      query(text, params) {
        if (/INSERT INTO runstate_events/.test(text)) inserts++;
        return db.query(text, params);
      },
      transaction: (fn) => db.transaction(fn),
      close: () => db.close(),
    });
    const { store } = await open({ wrap: counting, eventGroupsInFlight: 1 });
    const runs = await createRuns(store, 50);
    await Promise.all(runs.map((run) => store.appendEvents(run.run_id, [content(run, 1), content(run, 2)])));
    expect(inserts).toBe(1);
    // One group in flight at most: what the runs hand over meanwhile waits, then goes as one.
    const first = Promise.all(runs.map((run) => store.appendEvents(run.run_id, [content(run, 3)])));
    const second = Promise.all(runs.map((run) => store.appendEvents(run.run_id, [content(run, 4)])));
    await Promise.all([first, second]);
    expect(inserts).toBe(3);
    for (const run of runs) expect(await seqs(store, run)).toStrictEqual([1, 2, 3, 4]);
  });

  it('keeps retention for many runs finishing at once with a few statements, not one each', async ({
    skip,
  }) => {
    if (!backend.durable) skip();
    let prunes = 0;
    const counting = (db: SqlDatabase): SqlDatabase => ({
      query(text, params) {
        if (/DELETE FROM runstate_runs/.test(text)) prunes++;
        return db.query(text, params);
      },
      transaction: (fn) => db.transaction(fn),
      close: () => db.close(),
    });
    const { store } = await open({ fresh: true, wrap: counting, retention: { maxFinishedRuns: 5 } });
    const runs = await createRuns(store, 30);
    clock += 1_000;
    expect(await Promise.all(runs.map((run) => store.finishRun(output(run))))).toStrictEqual(
      runs.map(() => true),
    );
    // A finished run waits for the next retention pass, which serves every run finished while the
    // previous pass ran: PGlite (one connection) makes two passes; PostgreSQL's pool finishes the
    // runs in waves, a pass each (8 measured), against one each before.
    expect(prunes).toBeLessThan(runs.length / 2);
    expect(await store.listRuns()).toHaveLength(5);
    expect((await store.listSessions()).length).toBe(5);
  });

  it('fails only the batch the database refuses, not the others of its group', async ({ skip }) => {
    if (!backend.durable) skip();
    const { store } = await open();
    const runs = await createRuns(store, 5);
    const [bad, ...good] = runs;
    const results = await Promise.allSettled(
      runs.map((run) =>
        store.appendEvents(
          run.run_id,
          run === bad ? [{ ...content(run, 1), seq: 'one' as unknown as number }] : [content(run, 1)],
        ),
      ),
    );
    expect(results.map((result) => result.status)).toStrictEqual([
      'rejected',
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'fulfilled',
    ]);
    expect(await store.readEvents(bad!.run_id)).toStrictEqual([]);
    for (const run of good) expect(await seqs(store, run)).toStrictEqual([1]);
  });

  it('lists sessions most recently used first, filtered by agent and user', async () => {
    const { store } = await open();
    const id = ids();
    const run = (n: number, session: string, user: string | null) =>
      record({ run_id: id.run(n), session_id: session, agent_id: id.agent, user_id: user });
    await store.createRun(run(1, `${id.session}-1`, 'ann'));
    await store.createRun(run(2, `${id.session}-2`, 'bob'));
    await store.createRun(run(3, `${id.session}-1`, 'ann'));
    const sessions = async (filter: Parameters<RunStore['listSessions']>[0]) =>
      (await store.listSessions(filter)).map((session) => session.session_id);
    expect(await sessions({ agentId: id.agent })).toStrictEqual([`${id.session}-1`, `${id.session}-2`]);
    expect(await sessions({ agentId: id.agent, userId: 'bob' })).toStrictEqual([`${id.session}-2`]);
    expect(await sessions({ agentId: 'nobody' })).toStrictEqual([]);
  });

  it('deletes a session with its runs and their events', async () => {
    const { store } = await open();
    const id = ids();
    const run = record({ run_id: id.run(1), session_id: id.session, agent_id: id.agent });
    await store.createRun(run);
    await store.appendEvents(run.run_id, [content(run, 1)]);
    expect(await store.deleteSession(id.session)).toBe(true);
    expect(await store.deleteSession(id.session)).toBe(false);
    expect(await store.getSession(id.session)).toBeUndefined();
    expect(await store.getRun(run.run_id)).toBeUndefined();
    expect(await store.readEvents(run.run_id)).toStrictEqual([]);
    // The run may still be streaming when its session goes: its last writes are dropped quietly.
    await store.appendEvents(run.run_id, [content(run, 2)]);
    expect(await store.finishRun(output(run))).toBe(false);
  });

  it('finds nothing for an id no store can hold (a NUL), as it finds nothing for an unknown one', async () => {
    const { store } = await open();
    const nul = 'a\0b';
    expect(await store.getRun(nul)).toBeUndefined();
    expect(await store.readEvents(nul)).toStrictEqual([]);
    expect(await store.getSession(nul)).toBeUndefined();
    expect(await store.sessionRuns(nul)).toStrictEqual([]);
    expect(await store.listRuns({ sessionId: nul })).toStrictEqual([]);
    expect(await store.listRuns({ agentId: nul })).toStrictEqual([]);
    expect(await store.listSessions({ userId: nul })).toStrictEqual([]);
    expect(await store.deleteSession(nul)).toBe(false);
    expect(await store.renameSession(nul, 'x')).toBeUndefined();
    expect(await store.claimParked(nul)).toBeUndefined();
    expect(await store.parkStates([nul])).toStrictEqual(new Map());
    await store.leases?.requestCancel?.(nul, 'api');
  });

  it('forgets finished runs past retention, and a session with its last run', async () => {
    const { store } = await open({ fresh: true, retention: { maxFinishedRuns: 2, maxAgeMs: 60_000 } });
    const id = ids();
    const runs = [1, 2, 3, 4].map((n) =>
      record({ run_id: id.run(n), session_id: id.session, agent_id: id.agent }),
    );
    const lone = record({ run_id: id.run(5), session_id: `${id.session}-lone`, agent_id: id.agent });
    for (const run of [lone, ...runs]) await store.createRun(run);
    for (const run of [lone, ...runs.slice(0, 3)]) {
      await store.appendEvents(run.run_id, [content(run, 1)]);
      clock += 1_000;
      await store.finishRun(output(run));
    }
    // Two finished runs kept: the older two went; the active one is never counted.
    for (const gone of [lone, runs[0]!]) {
      expect(await store.getRun(gone.run_id)).toBeUndefined();
      expect(await store.readEvents(gone.run_id)).toStrictEqual([]);
    }
    expect(await store.getSession(lone.session_id)).toBeUndefined();
    const kept = runs.slice(1).map((run) => run.run_id);
    expect((await store.listRuns({ agentId: id.agent })).map((run) => run.run_id)).toStrictEqual(kept);
    expect((await store.sessionRuns(id.session)).map((run) => run.run_id)).toStrictEqual(kept);
    expect((await store.getSession(id.session))!.run_ids).toStrictEqual(kept);

    // Past maxAgeMs, finished runs read as absent even before the next write deletes them.
    clock += 60_001;
    expect(await store.getRun(runs[1]!.run_id)).toBeUndefined();
    expect(await store.readEvents(runs[1]!.run_id)).toStrictEqual([]);
    expect((await store.getSession(id.session))!.run_ids).toStrictEqual([runs[3]!.run_id]);
    expect(await store.getRun(runs[3]!.run_id)).toMatchObject({ status: 'pending' });
  });

  it('makes a session it forgot by age anew, for any agent or user, as if it had never been', async () => {
    const { store } = await open({ fresh: true, retention: { maxAgeMs: 60_000 } });
    const id = ids();
    const old = (n: number, session: string) =>
      record({
        run_id: id.run(n),
        session_id: session,
        agent_id: id.agent,
        user_id: 'ann',
        run_input: 'old',
      });
    const sessions = [`${id.session}-a`, `${id.session}-b`];
    const olds = [old(1, sessions[0]!), old(2, sessions[1]!)];
    for (const run of olds) await store.createRun(run);
    for (const run of olds) await store.finishRun(output(run));
    clock += 60_001;
    expect(await store.getSession(sessions[0]!)).toBeUndefined();
    // Its id taken again: by the same agent for another user, by another agent. Neither is refused,
    // and neither gets the old session's name, creation time or user.
    const again = [
      record({
        run_id: id.run(3),
        session_id: sessions[0]!,
        agent_id: id.agent,
        user_id: 'bob',
        run_input: 'new',
      }),
      record({
        run_id: id.run(4),
        session_id: sessions[1]!,
        agent_id: 'another',
        user_id: null,
        run_input: 'new',
      }),
    ];
    for (const run of again) await store.createRun(run);
    for (const run of again) {
      expect(await store.getSession(run.session_id)).toStrictEqual({
        session_id: run.session_id,
        agent_id: run.agent_id,
        user_id: run.user_id,
        session_name: 'new',
        created_at: run.created_at,
        updated_at: run.created_at,
        run_ids: [run.run_id],
      });
      expect((await store.sessionRuns(run.session_id)).map((r) => r.run_id)).toStrictEqual([run.run_id]);
    }
    // And it is theirs now: the first agent is refused the second session, naming the field.
    await expect(
      store.createRun(record({ run_id: id.run(5), session_id: sessions[1]!, agent_id: id.agent })),
    ).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: `session ${sessions[1]} belongs to agent another, not ${id.agent}`,
      details: { field: 'session_id' },
    });
  });

  it.each([60_000, 0])(
    'takes one of two first runs of a session id started at once by two agents, new or forgotten (maxAgeMs %i)',
    async (maxAgeMs) => {
      const { store } = await open({ fresh: true, retention: { maxAgeMs } });
      const id = ids();
      const sessions = Array.from({ length: 20 }, (_, i) => `${id.session}-${i}`);
      // Half of them forgotten by age first.
      for (const [i, session] of sessions.slice(10).entries()) {
        const old = record({ run_id: id.run(100 + i), session_id: session, agent_id: id.agent });
        await store.createRun(old);
        await store.finishRun(output(old));
      }
      clock += 60_001;
      const pairs = await Promise.all(
        sessions.map((session, i) =>
          Promise.allSettled(
            (['first', 'second'] as const).map((agent_id, j) =>
              store.createRun(
                record({ run_id: id.run(2 * i + j), session_id: session, agent_id, user_id: agent_id }),
              ),
            ),
          ),
        ),
      );
      for (const [i, pair] of pairs.entries()) {
        const taken = pair.findIndex((outcome) => outcome.status === 'fulfilled');
        // One taken, the other refused as a run in another agent's session (not for any other cause).
        const refusals = pair.flatMap((outcome) =>
          outcome.status === 'rejected' ? [messageWithCause(outcome.reason)] : [],
        );
        expect(refusals, sessions[i]).toStrictEqual([
          expect.stringMatching(/^session \S+ belongs to agent (first|second), not (first|second)$/),
        ]);
        const winner = taken === 0 ? 'first' : 'second';
        expect(await store.getSession(sessions[i]!), sessions[i]).toMatchObject({
          agent_id: winner,
          user_id: winner,
          run_ids: [id.run(2 * i + taken)],
        });
      }
    },
  );

  it('takes a forgotten session for the runs of one agent started in it at once: all of them', async () => {
    const { store } = await open({ fresh: true, retention: { maxAgeMs: 60_000 } });
    const id = ids();
    const sessions = Array.from({ length: 10 }, (_, i) => `${id.session}-${i}`);
    for (const [i, session] of sessions.entries()) {
      const old = record({ run_id: id.run(100 + i), session_id: session, agent_id: 'old-agent' });
      await store.createRun(old);
      await store.finishRun(output(old));
    }
    clock += 60_001;
    // Both refused by the old agent's row at first; the one that waited for the row joins the
    // session the other made anew.
    await Promise.all(
      sessions.flatMap((session, i) =>
        [0, 1].map((j) =>
          store.createRun(record({ run_id: id.run(2 * i + j), session_id: session, agent_id: id.agent })),
        ),
      ),
    );
    for (const [i, session] of sessions.entries()) {
      const found = await store.getSession(session);
      expect(found?.agent_id, session).toBe(id.agent);
      expect([...found!.run_ids].sort(), session).toStrictEqual([id.run(2 * i), id.run(2 * i + 1)].sort());
    }
  });

  it('stands by a write whose retention fails after it: told, and done by the next write', async ({
    skip,
  }) => {
    if (!backend.durable) skip();
    let failing = true;
    const refusing = (db: SqlDatabase): SqlDatabase => ({
      query(text, params) {
        if (failing && /^\s*(WITH [\s\S]*)?DELETE FROM runstate_(runs|sessions)/.test(text))
          return Promise.reject(new Error('retention refused'));
        return db.query(text, params);
      },
      transaction: (fn) => db.transaction(fn),
      close: () => db.close(),
    });
    const { store } = await open({
      fresh: true,
      wrap: refusing,
      maxSessions: 1,
      retention: { maxFinishedRuns: 1 },
    });
    const told = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const id = ids();
      const runs = Array.from({ length: 6 }, (_, n) =>
        record({ run_id: id.run(n), session_id: `${id.session}-${n}`, agent_id: id.agent }),
      );
      // Recorded and finished, all of them, though every retention statement after them fails.
      await Promise.all(runs.map((run) => store.createRun(run)));
      expect(await Promise.all(runs.map((run) => store.finishRun(output(run))))).toStrictEqual(
        runs.map(() => true),
      );
      for (const run of runs) expect(await store.getRun(run.run_id)).toMatchObject({ status: 'completed' });
      const calls = told.mock.calls.filter(([message]) =>
        String(message).startsWith('runstate: retention failed'),
      );
      // Told, at most once per write (writes that shared a failed statement are told it once).
      expect(calls.length).toBeGreaterThan(0);
      expect(calls.length).toBeLessThanOrEqual(2 * runs.length);
      // The next write's retention does what was left.
      failing = false;
      const last = record({ run_id: id.run(9), session_id: `${id.session}-9`, agent_id: id.agent });
      await store.createRun(last);
      await store.finishRun(output(last));
      expect((await store.listRuns()).map((run) => run.run_id)).toStrictEqual([last.run_id]);
      expect((await store.listSessions()).map((session) => session.session_id)).toStrictEqual([
        last.session_id,
      ]);
    } finally {
      told.mockRestore();
    }
  });

  it('makes a forgotten session anew for a run whose refusal found its row gone before the lock', async ({
    skip,
  }) => {
    // A second connection deletes the row while the takeover waits to lock it: PostgreSQL's pool.
    if (backend.name !== 'PostgreSQL') skip();
    const id = ids();
    let outside: SqlDatabase | undefined;
    const deletingFirst = (db: SqlDatabase): SqlDatabase => {
      outside = db;
      return {
        query: (text, params) => db.query(text, params),
        transaction: (fn) =>
          db.transaction((tx) =>
            fn({
              async query(text, params) {
                if (/FOR UPDATE/.test(text))
                  await outside!.query('DELETE FROM runstate_sessions WHERE session_id = $1', [id.session]);
                return tx.query(text, params);
              },
            }),
          ),
        close: () => db.close(),
      };
    };
    const { store } = await open({ fresh: true, wrap: deletingFirst, retention: { maxAgeMs: 60_000 } });
    const old = record({ run_id: id.run(1), session_id: id.session, agent_id: 'old-agent', user_id: 'ann' });
    await store.createRun(old);
    await store.finishRun(output(old));
    clock += 60_001;
    const run = record({ run_id: id.run(2), session_id: id.session, agent_id: id.agent, run_input: 'new' });
    await store.createRun(run);
    expect(await store.getSession(id.session)).toMatchObject({
      agent_id: id.agent,
      user_id: null,
      session_name: 'new',
      run_ids: [run.run_id],
    });
  });

  it('keeps a session given a run while a new session pushes the store past maxSessions', async () => {
    const { store } = await open({ fresh: true, maxSessions: 1 });
    const id = ids();
    const accepted: string[] = [];
    const refused: string[] = [];
    for (let i = 0; i < 40; i++) {
      // An idle session (its run finished), used again while a new one is made: the new one evicts
      // the least recently used, which is the idle one unless its new run counts first.
      const idle = record({
        run_id: id.run(3 * i),
        session_id: `${id.session}-idle-${i}`,
        agent_id: id.agent,
      });
      await store.createRun(idle);
      await store.finishRun(output(idle));
      const again = record({ run_id: id.run(3 * i + 1), session_id: idle.session_id, agent_id: id.agent });
      const other = record({
        run_id: id.run(3 * i + 2),
        session_id: `${id.session}-new-${i}`,
        agent_id: id.agent,
      });
      const outcomes = await Promise.allSettled([store.createRun(again), store.createRun(other)]);
      for (const [j, outcome] of outcomes.entries())
        if (outcome.status === 'fulfilled') accepted.push([again, other][j]!.run_id);
        else refused.push(`${[again, other][j]!.run_id}: ${messageWithCause(outcome.reason)}`);
    }
    // Why, should one be refused (each is a run of its own agent's session, or a new session).
    expect(refused).toStrictEqual([]);
    // Every run accepted is kept: an active run is never forgotten, nor its session.
    const missing = [];
    for (const runId of accepted) if (!(await store.getRun(runId))) missing.push(runId);
    expect(missing).toStrictEqual([]);
    expect(accepted).toHaveLength(80);
  });

  it('keeps at most maxRunsPerSession finished runs of a session and maxSessions sessions', async () => {
    const { store } = await open({ fresh: true, maxRunsPerSession: 1, maxSessions: 2 });
    const id = ids();
    const a1 = record({ run_id: id.run(1), session_id: `${id.session}-a`, agent_id: id.agent });
    const a2 = record({ run_id: id.run(2), session_id: `${id.session}-a`, agent_id: id.agent });
    await store.createRun(a1);
    await store.createRun(a2);
    // Active runs are never forgotten, even past the limit.
    expect((await store.getSession(a1.session_id))!.run_ids).toStrictEqual([a1.run_id, a2.run_id]);
    await store.finishRun(output(a1));
    expect((await store.getSession(a1.session_id))!.run_ids).toStrictEqual([a2.run_id]);
    expect(await store.getRun(a1.run_id)).toBeUndefined();
    await store.finishRun(output(a2));
    expect((await store.getSession(a1.session_id))!.run_ids).toStrictEqual([a2.run_id]);

    // A third session pushes out the least recently used one without an active run.
    const b = record({ run_id: id.run(3), session_id: `${id.session}-b`, agent_id: id.agent });
    const c = record({ run_id: id.run(4), session_id: `${id.session}-c`, agent_id: id.agent });
    await store.createRun(b);
    await store.createRun(c);
    expect((await store.listSessions()).map((s) => s.session_id)).toStrictEqual([c.session_id, b.session_id]);
    expect(await store.getRun(a2.run_id)).toBeUndefined();
  });

  it('counts active runs and sessions within the limits alike in every store: the oldest finished go first', async () => {
    const { store } = await open({ fresh: true, maxRunsPerSession: 3, maxSessions: 2 });
    const id = ids();
    const session = (name: string) => `${id.session}-${name}`;
    let n = 0;
    const run = (name: string) =>
      record({ run_id: id.run(++n), session_id: session(name), agent_id: id.agent });
    // A session whose first run stays active (paused), then five runs that finish.
    const waiting = run('s');
    await store.createRun(waiting);
    const done: RunRecord[] = [];
    for (let i = 0; i < 5; i++) {
      const next = run('s');
      await store.createRun(next);
      await store.finishRun(output(next));
      done.push(next);
    }
    // Three runs a session, the active one counted: the two newest finished ones are kept.
    expect((await store.getSession(session('s')))!.run_ids).toStrictEqual([
      waiting.run_id,
      done[3]!.run_id,
      done[4]!.run_id,
    ]);
    // Two sessions, the active ones counted: an idle one goes as soon as a third is made.
    for (const name of ['t', 'u']) {
      const next = run(name);
      await store.createRun(next);
      await store.finishRun(output(next));
    }
    const kept = (await store.listSessions()).map((s) => s.session_id).sort();
    expect(kept).toStrictEqual([session('s'), session('u')].sort());
  });

  it('keeps runs, sessions and events across a restart', async ({ skip }) => {
    if (!backend.durable) skip();
    const opened = await open({ fresh: true });
    const store = opened.store;
    const id = ids();
    const run = record({ run_id: id.run(1), session_id: id.session, agent_id: id.agent });
    await store.createRun(run);
    await store.appendEvents(run.run_id, [content(run, 1), content(run, 2)]);
    await store.finishRun(output(run));
    await store.close();

    const again = await opened.reopen();
    afterTest.push(() => again.close());
    expect(await again.getRun(run.run_id)).toStrictEqual(output(run));
    expect((await again.readEvents(run.run_id)).map((event) => event.seq)).toStrictEqual([1, 2]);
    expect((await again.listSessions({ agentId: id.agent })).map((s) => s.session_id)).toStrictEqual([
      id.session,
    ]);
  });
});
