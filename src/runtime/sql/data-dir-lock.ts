import { createHash, randomUUID } from 'node:crypto';
import { link, mkdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { RunstateError } from '../../errors.js';

/** The file that says which process has a data directory open. */
export const LOCK_FILE = 'runstate.lock';

/** The data directories this process has open (by path): a pid alone cannot tell them apart. */
const openHere = new Set<string>();

/**
 * Takes a data directory for this process, or throws `STORE_UNAVAILABLE` naming the process that has
 * it: PGlite serves one process, and two writing the same files corrupt them (its own
 * `postmaster.pid` names no real process, so it stops nobody). A lock whose process is gone (killed,
 * crashed) is taken over, also when a new process has the old one's pid, as a server restarted in
 * a container has (often pid 1): the lock names its process by pid and, on Linux, by the boot and
 * the moment the process started. Resolves with the function that lets the directory go.
 *
 * Exclusive with nothing but the file system, so the same on Linux and macOS (and over NFS): the
 * lock's text is written to a file of this process's first and `link()`ed into place, which either
 * makes the whole lock or fails because one is there (a rival never reads a lock half written). A
 * lock judged stale is removed only by the rival that made the claim named after its text (see
 * {@link removeStale}): of two rivals taking over the same stale lock, one removes it and the other
 * finds the winner's lock, never removes it. Each lock's text is unique (a random id on its second
 * line), so "the lock still holds the text judged stale" means "it is still the stale one".
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await makeDirectory(dataDir).catch((error: NodeJS.ErrnoException) => {
    // A file on the way (ENOTDIR, EEXIST), no permission (EACCES), a read-only disk (EROFS): the
    // configuration's fault, named as such rather than as a bare errno with its stack.
    throw new RunstateError(
      'INVALID_INPUT',
      `the data directory ${dataDir} cannot be made: ${error.code ?? error.message}`,
      { cause: error },
    );
  });
  const lock = join(dataDir, LOCK_FILE);
  // The directory itself, whatever path names it (a symlink, `/proc/self/root/...`).
  const key = await realpath(dataDir);
  if (openHere.has(key)) {
    throw new RunstateError(
      'STORE_UNAVAILABLE',
      `the data directory ${dataDir} is open in this process already (process ${process.pid}): open ` +
        'its storage once, and give that to every orchestrator of the process',
    );
  }
  const own = await processIdentity(process.pid);
  const text = `${process.pid}${own ? ` ${own.started}` : ''}\n${randomUUID()}\n`;
  const mine = `${lock}.${randomUUID()}.tmp`;
  await writeFile(mine, text, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    throw cannotWrite(dataDir, error);
  });
  const lockOf = { dataDir, own, mine };
  try {
    for (;;) {
      if (await linked(mine, lock, dataDir)) break;
      const found = await readText(lock, dataDir);
      if (found === undefined) continue; // let go meanwhile
      await removeStale(lock, found, lockOf);
    }
  } finally {
    await rm(mine, { force: true });
  }
  openHere.add(key);
  return async () => {
    openHere.delete(key);
    // Only while it is this process's: one taken over (this process judged gone) is another's now.
    if ((await readText(lock, dataDir).catch(() => undefined)) === text) await rm(lock, { force: true });
  };
}

/**
 * Removes the lock (or claim) `path` if it still holds `stale`, or throws `STORE_UNAVAILABLE` when
 * `stale` names a process that runs. Rivals doing so at once are serialised by the claim
 * `<path>-<hash of stale>`, made by `link()` as the lock is: only its maker removes `path`, and only
 * if `path` still holds `stale` (whoever else could change it is gone, or needs this claim). A claim
 * left by a process killed while it held it is itself stale, and removed the same way.
 */
async function removeStale(
  path: string,
  stale: string,
  lockOf: { dataDir: string; own: { started: string } | undefined; mine: string },
): Promise<void> {
  const { dataDir, own, mine } = lockOf;
  const [pid = '', started] = stale.split('\n')[0]!.trim().split(' ');
  const holder = Number(pid);
  // A lock naming this process's pid is this process's own (the directory open here under another
  // path, or being opened twice at once) unless it says another process started then (a server
  // restarted with its old pid); where nothing tells them apart, it is taken for this process's own.
  const held =
    holder === process.pid ? own === undefined || started === own.started : await isRunning(holder, started);
  if (held) throw inUse(dataDir, holder);
  const claim = `${path}-${createHash('sha256').update(stale).digest('hex').slice(0, 16)}`;
  for (;;) {
    if (await linked(mine, claim, dataDir)) {
      try {
        if ((await readText(path, dataDir)) === stale) await rm(path, { force: true });
      } finally {
        await rm(claim, { force: true });
      }
      return;
    }
    const rival = await readText(claim, dataDir);
    // A live rival is taking the directory: it is in use (by the rival, or whoever beats it).
    if (rival !== undefined) await removeStale(claim, rival, lockOf);
  }
}

/** Makes `to` a link to `from`; `false` when `to` exists. */
async function linked(from: string, to: string, dataDir: string): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw cannotWrite(dataDir, error as NodeJS.ErrnoException);
  }
}

/** The text of `path`; `undefined` when there is none. */
async function readText(path: string, dataDir: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw cannotWrite(dataDir, error as NodeJS.ErrnoException);
  }
}

function inUse(dataDir: string, holder: number): RunstateError {
  return new RunstateError(
    'STORE_UNAVAILABLE',
    `the data directory ${dataDir} is in use by process ${holder}: PGlite serves one process ` +
      `(share runs between processes through PostgreSQL; if no such process runs runstate, remove ` +
      `${join(dataDir, LOCK_FILE)})`,
  );
}

/**
 * A directory that exists but where the lock cannot be written (no permission, a read-only disk, a
 * file system without hard links): the configuration's fault, as one that cannot be made.
 */
function cannotWrite(dataDir: string, error: NodeJS.ErrnoException): RunstateError {
  return new RunstateError(
    'INVALID_INPUT',
    `the data directory ${dataDir} cannot be written: ${error.code ?? error.message}`,
    { cause: error },
  );
}

/**
 * Makes `path` and its missing parents, one level at a time. Node 20's `mkdir({ recursive: true })`
 * loops for ever, busy, under a directory that answers ENOENT to a child made in it (`/proc`); this
 * throws that ENOENT.
 */
async function makeDirectory(path: string): Promise<void> {
  try {
    await mkdir(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if ((await stat(path)).isDirectory()) return;
      throw error;
    }
    const parent = dirname(path);
    if (code !== 'ENOENT' || parent === path) throw error;
    await makeDirectory(parent);
    // Once: a directory that answers ENOENT again fails here (made meanwhile by another process: fine).
    await mkdir(path).catch((again: NodeJS.ErrnoException) => {
      if (again.code !== 'EEXIST') throw again;
    });
  }
}

/**
 * Whether `pid` runs and is the process that wrote `started` (when the lock has it and the system
 * can tell: Linux's /proc). A zombie does not run.
 */
async function isRunning(pid: number, started: string | undefined): Promise<boolean> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it runs, as another user.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const identity = await processIdentity(pid);
  if (!identity) return true;
  return !identity.zombie && (started === undefined || started === identity.started);
}

/**
 * On Linux, what tells a process from a later one given its pid: the boot's id and the process's
 * start time in clock ticks since the boot (`/proc/<pid>/stat`, field 22); whether it is a zombie
 * (field 3). `undefined` elsewhere.
 */
async function processIdentity(pid: number): Promise<{ started: string; zombie: boolean } | undefined> {
  try {
    const [stat, boot] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile('/proc/sys/kernel/random/boot_id', 'utf8'),
    ]);
    // After the command's name (in parentheses, which may hold spaces): field 3 onwards.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = fields[19];
    if (ticks === undefined) return undefined;
    return { started: `${boot.trim()}/${ticks}`, zombie: fields[0] === 'Z' };
  } catch {
    return undefined;
  }
}
