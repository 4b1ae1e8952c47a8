/**
 * A process that takes a data directory's lock on command, for tests of rivals in separate
 * processes: each line on stdin is `lock` or `unlock`, answered by one line on stdout (`won`,
 * `refused <code>`, `unlocked`). Run with `node --import tsx`.
 */
import { createInterface } from 'node:readline';
import { lockDataDir } from '../../src/runtime/sql/data-dir-lock.js';

const dir = process.argv[2]!;
let unlock: (() => Promise<void>) | undefined;
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'lock') {
    try {
      unlock = await lockDataDir(dir);
      console.log('won');
    } catch (error) {
      console.log(`refused ${(error as { code?: string }).code}`);
    }
  } else if (line === 'unlock') {
    await unlock?.();
    unlock = undefined;
    console.log('unlocked');
  }
}
