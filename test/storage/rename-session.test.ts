/**
 * `renameSession` (AgentOS's `POST /sessions/{id}/rename` and `PATCH /sessions/{id}`) on every
 * backend: memory, PGlite (a data dir) and PostgreSQL (a database of this file on the local server).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import { createSqlRunStore } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import type { RunStore } from '../../src/runtime/storage.js';
import { createTempDir, createTestDatabase } from '../support/databases.js';
import { streamingRecord } from '../support/runs.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}, 60_000);

const backends: Array<{ name: string; open(): Promise<RunStore> }> = [
  { name: 'memory', open: () => Promise.resolve(createMemoryRunStore()) },
  {
    name: 'PGlite',
    async open() {
      const dir = await createTempDir();
      cleanups.push(() => dir.remove());
      return createSqlRunStore({ db: await openSqlDatabase({ dataDir: dir.path }) });
    },
  },
  {
    name: 'PostgreSQL',
    async open() {
      const database = await createTestDatabase();
      cleanups.push(() => database.drop());
      return createSqlRunStore({ db: await openSqlDatabase({ databaseUrl: database.url }) });
    },
  },
];

describe.each(backends)('renameSession: $name', (backend) => {
  it('renames a session for every later read, and answers undefined for an unknown one', async () => {
    const store = await backend.open();
    cleanups.push(() => store.close());
    const session = `session-${randomUUID()}`;
    await store.createRun(
      streamingRecord({ run_id: randomUUID(), session_id: session, run_input: 'First question' }),
    );
    const before = await store.getSession(session);
    expect(before?.session_name).toBe('First question');

    const renamed = await store.renameSession(session, 'Trip to Lisbon');
    expect(renamed).toStrictEqual({ ...before, session_name: 'Trip to Lisbon' });
    expect(await store.getSession(session)).toStrictEqual(renamed);
    expect((await store.listSessions()).find((s) => s.session_id === session)?.session_name).toBe(
      'Trip to Lisbon',
    );
    // A later run of the session keeps the name it was given.
    await store.createRun(streamingRecord({ run_id: randomUUID(), session_id: session, run_input: 'Next' }));
    expect((await store.getSession(session))?.session_name).toBe('Trip to Lisbon');

    expect(await store.renameSession(`session-${randomUUID()}`, 'Nothing')).toBeUndefined();
  });
});
