/**
 * The schema's migrations on a database an older runstate left: stored data is brought to what
 * this version reads (PostgreSQL).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { openStorage } from '../../src/index.js';
import { MIGRATIONS, migrate } from '../../src/runtime/sql/migrate.js';
import { poolDatabase } from '../../src/runtime/sql/sql-database.js';
import { createTestDatabase, POSTGRES_URL } from '../support/databases.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A database at schema `version`, as the runstate of that version left it. */
async function databaseAt(version: number) {
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  const pool = new pg.Pool({ connectionString: database.url });
  const db = poolDatabase(pool);
  cleanups.push(() => db.close());
  await db.query(`CREATE TABLE runstate_migrations (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  for (const migration of MIGRATIONS.filter((m) => m.version <= version)) {
    for (const statement of migration.statements) await db.query(statement);
    await db.query('INSERT INTO runstate_migrations (version, name) VALUES ($1, $2)', [
      migration.version,
      migration.name,
    ]);
  }
  return db;
}

/** A run `runId` of session `s1`, its record empty: what stored events need to belong to. */
async function storeRun(db: Awaited<ReturnType<typeof databaseAt>>, runId: string): Promise<void> {
  await db.query(
    `INSERT INTO runstate_sessions (session_id, agent_id, session_name, created_at, updated_at)
     VALUES ('s1', 'writer', 'x', 1, 1)`,
  );
  await db.query(
    `INSERT INTO runstate_runs (run_id, session_id, agent_id, status, record) VALUES ($1, 's1', 'writer', 'completed', '{}')`,
    [runId],
  );
}

describe('migration 3', () => {
  it("rewrites a stored RunStarted's run_input as Agno's RunInput, its keys in their order", async () => {
    const db = await databaseAt(2);
    await storeRun(db, 'r1');
    const input = 'Say "hi" \\ then "bye"\n';
    const started = {
      event: 'RunStarted',
      run_id: 'r1',
      seq: 1,
      model: 'm',
      run_input: input,
      created_at: 1,
    };
    const content = { event: 'RunContent', run_id: 'r1', seq: 2, content: '"run_input":"not this"' };
    for (const event of [started, content]) {
      await db.query('INSERT INTO runstate_events (run_id, seq, event) VALUES ($1, $2, $3)', [
        'r1',
        event.seq,
        JSON.stringify(event),
      ]);
    }

    expect(await migrate(db)).toEqual([3, 4, 5]);
    const { rows } = await db.query<{ event: string }>(
      'SELECT event::text AS event FROM runstate_events ORDER BY seq',
    );
    expect(rows.map((row) => row.event)).toEqual([
      JSON.stringify({ ...started, run_input: { input_content: input } }),
      JSON.stringify(content),
    ]);
    // Once only: a second start changes nothing.
    expect(await migrate(db)).toEqual([]);
  });
});

describe('migration 5', () => {
  it("gives a stored ReasoningCompleted Agno's content (ReasoningSteps), its keys in their order", async () => {
    const db = await databaseAt(4);
    await storeRun(db, 'r1');
    const steps = {
      reasoning_steps: [{ title: 'Say "hi"', reasoning: 'Say "hi" \\ then\n"reasoning_content":' }],
    };
    const base = { run_id: 'r1', agent_name: '"reasoning_content":', created_at: 1 };
    const completed = {
      event: 'ReasoningCompleted',
      ...base,
      seq: 2,
      reasoning_content: steps.reasoning_steps[0]!.reasoning,
      extra_data: steps,
    };
    const content = { event: 'RunContent', ...base, seq: 3, content: 'Hi' };
    for (const event of [completed, content]) {
      await db.query('INSERT INTO runstate_events (run_id, seq, event) VALUES ($1, $2, $3)', [
        'r1',
        event.seq,
        JSON.stringify(event),
      ]);
    }

    expect(await migrate(db)).toEqual([5]);
    const { rows } = await db.query<{ event: string }>(
      'SELECT event::text AS event FROM runstate_events ORDER BY seq',
    );
    const { reasoning_content, extra_data, ...head } = completed;
    expect(rows.map((row) => row.event)).toEqual([
      JSON.stringify({
        ...head,
        content: steps,
        content_type: 'ReasoningSteps',
        reasoning_content,
        extra_data,
      }),
      JSON.stringify(content),
    ]);
    expect(await migrate(db)).toEqual([]);
  });
});

describe('a role that may not create tables', () => {
  /**
   * A login role with the rights to read and write runstate's tables but not to make any (least
   * privilege), on a database of its own; `url` connects as that role.
   */
  async function leastPrivilegeRole() {
    const role = `runstate_test_role_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Pool({ connectionString: POSTGRES_URL });
    await admin.query(`CREATE ROLE ${role} LOGIN`);
    cleanups.push(async () => {
      await admin.query(`DROP ROLE IF EXISTS ${role}`);
      await admin.end();
    });
    const database = await createTestDatabase();
    cleanups.push(() => database.drop());
    const owner = new pg.Pool({ connectionString: database.url });
    cleanups.push(() => owner.end());
    // PostgreSQL 15's default; older servers let every role create in `public`.
    await owner.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
    const url = new URL(database.url);
    url.username = role;
    return { role, owner, url: url.toString(), where: url.host + url.pathname };
  }

  it('starts on a schema another role made and brought up to date', async () => {
    const { role, owner, url } = await leastPrivilegeRole();
    await migrate(poolDatabase(owner));
    await owner.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
    await owner.query(`GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${role}`);

    const storage = await openStorage({ databaseUrl: url });
    try {
      expect(await storage.store!.listRuns()).toEqual([]);
    } finally {
      await storage.close();
    }
  });

  it('is refused a migration with a message naming the migration and the server', async () => {
    const { url, where } = await leastPrivilegeRole();
    await expect(openStorage({ databaseUrl: url })).rejects.toMatchObject({
      name: 'RunstateError',
      code: 'STORE_UNAVAILABLE',
      message:
        `cannot migrate the schema of PostgreSQL at ${where} (creating runstate_migrations): ` +
        'permission denied for schema public (the role needs CREATE on the schema for this: see ' +
        'docs/deployment.md)',
    });
  });
});
