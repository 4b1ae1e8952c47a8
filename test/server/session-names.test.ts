/**
 * A session's name, as `GET /sessions` lists it, over the memory store and a SQL store (PGlite): the
 * start of its first message, trimmed, 100 characters at most, never cut inside a surrogate pair or a
 * grapheme cluster.
 */
import { describe, expect, it } from 'vitest';
import type { RunStore } from '../../src/runtime/storage.js';
import { createSqlRunStore } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import { createTempDir } from '../support/databases.js';
import { postRun, serve, twoAgents } from '../support/app.js';

/** The names of the sessions that `messages` start, one session each, on an app over `store`. */
async function sessionNames(store: RunStore | undefined, messages: string[]): Promise<string[]> {
  const server = await serve({ agents: twoAgents(undefined, { store }) });
  const story = `${server.url}/agents/story-writer-agent`;
  try {
    for (const [i, message] of messages.entries()) {
      const started = await postRun(story, { message, session_id: `s${i}`, background: true });
      expect(started.status).toBe(202);
    }
    const page = (await (await fetch(`${server.url}/sessions`)).json()) as {
      data: Array<{ session_id: string; session_name: string }>;
    };
    const names = new Map(page.data.map((session) => [session.session_id, session.session_name]));
    return messages.map((_, i) => names.get(`s${i}`)!);
  } finally {
    await server.close();
  }
}

const family = '👨\u200d👩\u200d👧'; // 5 code points, one character on screen
const messages = [
  `a${'🐉'.repeat(100)}`,
  'x'.repeat(150),
  `${'🐉'.repeat(99)}b🐉`,
  'Tell me a story',
  `${'x'.repeat(98)}${family} and more`,
  `${'x'.repeat(99)}🇫🇷`,
  `${'x'.repeat(99)}e\u0301tude`,
  `${'\n'.repeat(120)}  Tell me a story\t\n`,
  `\n${'x'.repeat(101)}`,
];
// At most 100 code points each, cut between two characters as shown: the dragon after 99 of them is
// whole, never its first half alone; a family, a flag or an accented letter that would pass the
// 100th code point is left out whole. The blank space around a message is no part of its name (a
// name of 100 newlines would show nothing in the Agent UI's list, and match no search).
const expected = [
  `a${'🐉'.repeat(99)}`,
  'x'.repeat(100),
  `${'🐉'.repeat(99)}b`,
  'Tell me a story',
  'x'.repeat(98),
  'x'.repeat(99),
  'x'.repeat(99),
  'Tell me a story',
  'x'.repeat(100),
];

describe('session names', () => {
  it('are the first 100 characters of the first message, never half an emoji or a cluster: memory store', async () => {
    expect(await sessionNames(undefined, messages)).toEqual(expected);
  });

  it('are the same in a SQL store (PGlite)', async () => {
    const dir = await createTempDir();
    const store = createSqlRunStore({ db: await openSqlDatabase({ dataDir: dir.path }) });
    try {
      expect(await sessionNames(store, messages)).toEqual(expected);
    } finally {
      await store.close();
      await dir.remove();
    }
  });
});
