/**
 * A PGlite data directory's lock, taken by rival processes at the same moment: exactly one gets it,
 * with no lock there and with a stale one (its process killed) to take over.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { lockDataDir } from '../../src/runtime/sql/data-dir-lock.js';
import { createTempDir } from '../support/databases.js';

const CHILD = fileURLToPath(new URL('../support/lock-data-dir-child.ts', import.meta.url));
// Three rivals, many rounds: the code before this test lost the race with no lock (an empty lock
// read as a gone process's) about once in a hundred rounds, with a stale one in most.
const RIVALS = 3;
const ROUNDS = 250;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A rival process on `dir`: `send` writes a command and resolves with its answer. */
function rival(dir: string): { send(command: string): Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir]);
  cleanups.push(async () => {
    child.stdin.end();
    if (child.exitCode === null) await once(child, 'exit');
  });
  const answers: AsyncIterator<string> = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    async send(command) {
      child.stdin.write(`${command}\n`);
      const answer = await answers.next();
      if (answer.done) throw new Error(`the rival exited: ${child.exitCode}`);
      return answer.value;
    },
  };
}

describe('the data directory lock', () => {
  it.each(['no lock', 'a stale lock'])(
    'is taken by exactly one of three processes asking at once, over %s',
    async (before) => {
      const dir = await createTempDir('runstate-lock-race-');
      cleanups.push(() => dir.remove());
      const lock = join(dir.path, 'runstate.lock');
      // The pid of a process that is gone, as a killed server leaves it.
      const gone = spawn(process.execPath, ['-e', '']);
      await once(gone, 'exit');
      const rivals = Array.from({ length: RIVALS }, () => rival(dir.path));
      for (let round = 0; round < ROUNDS; round++) {
        if (before === 'no lock') await rm(lock, { force: true });
        else await writeFile(lock, `${gone.pid} gone/${round}\n`);
        // Both told at once (the barrier): each takes the lock as soon as its line arrives.
        const answers = await Promise.all(rivals.map((r) => r.send('lock')));
        expect({ round, answers: answers.toSorted() }).toEqual({
          round,
          answers: [...Array<string>(RIVALS - 1).fill('refused STORE_UNAVAILABLE'), 'won'],
        });
        await Promise.all(rivals.map((r) => r.send('unlock')));
        // Let go by its holder, with nothing left behind (no claim, no file of a rival's).
        expect(await readdir(dir.path)).toEqual([]);
      }
    },
    60_000,
  );

  it("lets go of the lock only while it is this process's", async () => {
    const dir = await createTempDir('runstate-lock-taken-');
    cleanups.push(() => dir.remove());
    const lock = join(dir.path, 'runstate.lock');
    const unlock = await lockDataDir(dir.path);
    // Taken over meanwhile (this process judged gone): the new holder's lock stays.
    await writeFile(lock, '1 other\n');
    await unlock();
    expect(await readFile(lock, 'utf8')).toBe('1 other\n');
  });

  it('takes over a stale lock whose claim a killed process left', async () => {
    const dir = await createTempDir('runstate-lock-claim-');
    cleanups.push(() => dir.remove());
    const gone = spawn(process.execPath, ['-e', '']);
    await once(gone, 'exit');
    const stale = `${gone.pid} gone/1\n`;
    await writeFile(join(dir.path, 'runstate.lock'), stale);
    // Killed while it held the claim to take that lock over: its claim is stale too.
    const claim = `runstate.lock-${createHash('sha256').update(stale).digest('hex').slice(0, 16)}`;
    await writeFile(join(dir.path, claim), `${gone.pid} gone/2\nx\n`);
    const unlock = await lockDataDir(dir.path);
    expect(await readdir(dir.path)).toEqual(['runstate.lock']);
    await unlock();
    expect(await readdir(dir.path)).toEqual([]);
  });
});
