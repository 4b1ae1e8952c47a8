/**
 * A database that is reachable but cannot serve: its role has no connection left (53300, as a server
 * at `max_connections` answers), the same outage as one out of reach. New runs and reads answer 503
 * STORE_UNAVAILABLE, never 500; the writes of the runs in flight wait and are all stored, gap-free
 * and with their end, once the database serves again (they were dropped, and the client told the
 * run was stored). PGlite's own refusals (a full disk: 53100) are classed the same way.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Agent } from '../../src/agent.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { openStorage } from '../../src/runtime/open-storage.js';
import { isUnavailableError } from '../../src/runtime/sql/sql-database.js';
import { createApp, startServer } from '../../src/server/index.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { expectError, postRun } from '../support/app.js';
import { createTestDatabase, POSTGRES_URL, type TestDatabase } from '../support/databases.js';
import { eventually } from '../support/eventually.js';

const role = `runstate_test_role_${randomBytes(6).toString('hex')}`;
let database: TestDatabase;
let roleUrl: string;

async function asPostgres(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  database = await createTestDatabase();
  const name = new URL(database.url).pathname.slice(1);
  // A role of its own (a superuser ignores connection limits) that owns the database, so it migrates it.
  await asPostgres(`CREATE ROLE ${role} LOGIN`);
  await asPostgres(`ALTER DATABASE ${name} OWNER TO ${role}`);
  const url = new URL(database.url);
  url.username = role;
  roleUrl = url.toString();
});
afterAll(async () => {
  await database.drop();
  await asPostgres(`DROP ROLE IF EXISTS ${role}`);
}, 30_000);

describe('a database that refuses connections (too many connections for its role)', () => {
  it('answers new runs 503, and stores the runs in flight whole once it serves again', async () => {
    const storage = await openStorage({ databaseUrl: roleUrl });
    const direct = await openStorage({ databaseUrl: database.url });
    const model = createFakeModel();
    const agent = new Agent({
      name: 'Writer',
      model,
      orchestrator: createOrchestrator({ store: storage.store }),
    });
    const server = await startServer(createApp({ agents: [agent], logger: { error: () => undefined } }), {
      port: 0,
      graceMs: 1_000,
    });
    try {
      const run = agent.run('Tell me a story', { stream: true });
      await run.recorded;
      const call = await model.nextCall();
      call.emit('Once');
      await eventually(async () => (await direct.store!.readEvents(run.runId)).length === 2, {
        what: 'the first delta stored',
      });
      // Every connection of the role ends, and no new one is let in.
      await asPostgres(`ALTER ROLE ${role} CONNECTION LIMIT 0`);
      await asPostgres(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${role}'`);
      call.emit(' upon');
      call.emit(' a time');
      call.end();
      const events = [];
      for await (const event of run) events.push(event);
      checkRunEvents(events, 'completed');
      await expectError(
        await postRun(`${server.url}/agents/writer`, { message: 'Another', stream: false }),
        503,
        'STORE_UNAVAILABLE',
      );

      await asPostgres(`ALTER ROLE ${role} CONNECTION LIMIT -1`);
      const record = await eventually(
        async () => {
          const found = await direct.store!.getRun(run.runId);
          return found?.finished_at ? found : undefined;
        },
        { what: 'the run stored once the database serves again' },
      );
      expect(record).toMatchObject({ status: 'completed', content: 'Once upon a time' });
      expect(JSON.stringify(await direct.store!.readEvents(run.runId))).toBe(JSON.stringify(events));
    } finally {
      await asPostgres(`ALTER ROLE ${role} CONNECTION LIMIT -1`);
      await server.close();
      await storage.close();
      await direct.close();
    }
  });
});

describe('the log of an instance whose database refuses connections', () => {
  it("names the database's reason, not only that it is unavailable", async () => {
    const storage = await openStorage({ databaseUrl: roleUrl });
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      await asPostgres(`ALTER ROLE ${role} CONNECTION LIMIT 0`);
      await asPostgres(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${role}'`);
      // Its first act is to take a lease, which needs a connection.
      const orchestrator = createOrchestrator({ store: storage.store });
      const line = await eventually(
        () =>
          logged.mock.calls.find(([message]) => String(message).startsWith('runstate: cannot take a lease')),
        { what: 'the lease refused' },
      );
      expect(line).toEqual([
        expect.stringMatching(
          /: the database at .+ is unavailable: too many connections for role "runstate_test_role_\w+"$/,
        ),
      ]);
      await orchestrator.shutdown();
    } finally {
      logged.mockRestore();
      await asPostgres(`ALTER ROLE ${role} CONNECTION LIMIT -1`);
      await storage.close();
    }
  });
});

describe('isUnavailableError', () => {
  it('takes a database out of a resource, shutting down, or gone for an outage; a wrong query for none', () => {
    for (const code of [
      '53100',
      '53200',
      '53300',
      '57P01',
      '57014',
      '58030',
      '58P01',
      '3D000',
      '40P01',
      '08006',
    ])
      expect(isUnavailableError({ code })).toBe(true);
    for (const code of ['42P01', '42501', '23505', '22P02', 'XX000', 'INVALID_INPUT'])
      expect(isUnavailableError({ code })).toBe(false);
    expect(isUnavailableError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isUnavailableError(undefined)).toBe(false);
  });
});
