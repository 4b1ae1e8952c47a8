/**
 * A PGlite data directory that cannot be opened is refused in words an operator can act on, not in
 * PGlite's own (`Aborted(). Build with -sASSERTIONS for more info.`): its files damaged, or another
 * user's (a directory first used under sudo). One removed while open is an outage, not writes into
 * files that are gone.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, cp, readdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { openStorage } from '../../src/runtime/open-storage.js';
import { createTempDir } from '../support/databases.js';

const CHILD = fileURLToPath(new URL('../support/open-storage-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// A data directory runstate made and closed, copied for each test (made anew, each would take seconds).
let template: { path: string; remove(): Promise<void> };
beforeAll(async () => {
  template = await createTempDir('runstate-template-');
  await (await openStorage({ dataDir: template.path })).close();
});
afterAll(() => template.remove());

/** A copy of the template: a real PGlite directory to spoil. */
async function madeDataDir(): Promise<string> {
  const dir = await createTempDir('runstate-unopenable-');
  cleanups.push(() => dir.remove());
  await cp(template.path, dir.path, { recursive: true });
  return dir.path;
}

/** What opening `dataDir` answers in a process of `uid` (nobody, when the tests run as root). */
async function openAs(uid: number, dataDir: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir], { cwd: ROOT, uid, gid: uid });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
  await once(child, 'exit');
  return output.trim();
}

describe('a data directory that cannot be opened', () => {
  it('is refused as damaged when its control file is garbage, not with PGlite abort text', async () => {
    const dataDir = await madeDataDir();
    await writeFile(join(dataDir, 'global', 'pg_control'), Buffer.alloc(8192, 0x5a));
    const refusal = await openStorage({ dataDir }).then(
      () => expect.fail('opened'),
      (error: unknown) => error as Error & { code?: string },
    );
    expect(refusal.code).toBe('STORE_UNAVAILABLE');
    expect(refusal.message).toMatch(
      new RegExp(
        `^cannot open the data directory ${dataDir}: its files are damaged, or are not a PGlite data directory \\(PGlite stopped reading them: .+\\)$`,
      ),
    );
    expect(refusal.message).not.toContain('-sASSERTIONS');
    // Refused, the directory's lock is let go: mended, it opens.
    await expect(readdir(dataDir)).resolves.not.toContain('runstate.lock');
  });

  it('is refused when it holds other files and no database, and none is made among them (a mistyped --data-dir .)', async () => {
    const dir = await createTempDir('runstate-foreign-');
    cleanups.push(() => dir.remove());
    await writeFile(join(dir.path, 'notes.txt'), 'mine');
    const refusal = await openStorage({ dataDir: dir.path }).then(
      () => expect.fail('opened'),
      (error: unknown) => error as Error & { code?: string },
    );
    expect(refusal.code).toBe('STORE_UNAVAILABLE');
    expect(refusal.message).toBe(
      `the data directory ${dir.path} is not a PGlite directory: it holds notes.txt and no database (PG_VERSION); give a new or empty directory`,
    );
    expect(await readdir(dir.path)).toEqual(['notes.txt']);
    // What an empty directory may hold (a volume's lost+found, hidden files, a killed start's lock)
    // is no reason to refuse it.
    await rm(join(dir.path, 'notes.txt'));
    for (const name of ['lost+found', '.keep', 'runstate.lock', 'pg_hba.conf', 'pg_ident.conf'])
      await writeFile(join(dir.path, name), '');
    await (await openStorage({ dataDir: dir.path })).close();
    expect(await readdir(dir.path)).toContain('PG_VERSION');
  });

  it("names a file this user cannot read and write (a directory of another user's)", async () => {
    const dataDir = await madeDataDir();
    const expected = new RegExp(
      `^cannot open the data directory ${dataDir}: this user cannot read and write ${dataDir}/\\S+ \\(a directory first used by another user\\?\\)$`,
    );
    if (process.getuid?.() === 0) {
      // Root reads every file: the directory is opened as nobody, to whom its files are root's.
      await chmod(dataDir, 0o777);
      cleanups.push(async () => {
        await rm(join(dataDir, 'runstate.lock'), { force: true });
      });
      expect(await openAs(65534, dataDir)).toMatch(expected);
    } else {
      const [file] = (await readdir(dataDir)).filter((name) => name === 'PG_VERSION');
      await chmod(join(dataDir, file!), 0o000);
      await expect(openStorage({ dataDir })).rejects.toMatchObject({
        message: expect.stringMatching(expected) as unknown,
      });
    }
  });
});

describe('a data directory removed while open', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('is an outage from then on (STORE_UNAVAILABLE naming it), not runs answered as stored into files that are gone', async () => {
    const dataDir = await madeDataDir();
    vi.useFakeTimers({ toFake: ['Date'] });
    const storage = await openStorage({ dataDir });
    cleanups.push(() => storage.close());
    await expect(storage.store!.listRuns({})).resolves.toEqual([]);
    await rm(dataDir, { recursive: true });
    // Looked at by a query at most every 2 s.
    vi.advanceTimersByTime(2_000);
    await expect(storage.store!.listRuns({})).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
      message: `the data directory ${dataDir} was removed or replaced while in use (restart runstate)`,
    });
  });

  it('is not taken for removed when the app changes its working directory (a relative dataDir)', async () => {
    const dataDir = await madeDataDir();
    const before = process.cwd();
    process.chdir(dirname(dataDir));
    cleanups.push(() => Promise.resolve(process.chdir(before)));
    vi.useFakeTimers({ toFake: ['Date'] });
    const storage = await openStorage({ dataDir: `./${basename(dataDir)}` });
    cleanups.push(() => storage.close());
    process.chdir(ROOT); // where no such directory is
    vi.advanceTimersByTime(2_000);
    await expect(storage.store!.listRuns({})).resolves.toEqual([]);
  });
});
