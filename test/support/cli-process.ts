/**
 * The `runstate` command as a child process, the way a user runs it: `node --import tsx src/cli.ts`,
 * or any other command line (`npm start`).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { afterEach } from 'vitest';

export const ROOT = join(import.meta.dirname, '../..');

/** A child process, its output so far, and its exit code once it exits. */
export interface CliProcess {
  child: ChildProcessWithoutNullStreams;
  /** Resolves with the exit code (`null` when a signal killed it). */
  exit: Promise<number | null>;
  output(): { stdout: string; stderr: string };
  /** Resolves with the first match of `pattern` in stdout; rejects if the process exits first. */
  waitFor(pattern: RegExp, from?: 'stdout' | 'stderr'): Promise<RegExpExecArray>;
  /** Resolves with the URL of the banner's `runstate listening on <url>`; rejects if it exits first. */
  listening(): Promise<string>;
}

const running = new Set<ChildProcessWithoutNullStreams>();
afterEach(() => {
  // A test that failed half-way must not leave a server behind, nor what its child started (npm's
  // shell and server): each child leads its own process group.
  for (const child of running) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
});

/** The environment of a child: the demo agents offline, no key, no port, whatever this machine has set. */
export function cliEnv(extraEnv: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['OPENAI_API_KEY', 'OPENAI_BASE_URL', 'RUNSTATE_SECURITY_KEY', 'PORT']) delete env[name];
  return Object.assign(env, extraEnv);
}

/** Runs `command` (default: runstate's CLI from its sources) in the project's root. */
export function spawnCli(
  args: string[],
  extraEnv: Record<string, string> = {},
  command: [string, ...string[]] = [process.execPath, '--import', 'tsx', 'src/cli.ts'],
): CliProcess {
  const [file, ...prefix] = command;
  const child = spawn(file, [...prefix, ...args], { cwd: ROOT, env: cliEnv(extraEnv), detached: true });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const output = () => ({ stdout, stderr });
  /** Resolves with the first match of `pattern` in stdout (or stderr); rejects if the process exits first. */
  const waitFor = (pattern: RegExp, from: 'stdout' | 'stderr' = 'stdout') =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        const match = pattern.exec(from === 'stdout' ? stdout : stderr);
        if (match) resolve(match);
      };
      check();
      child[from].on('data', check);
      void exit.then((code) => reject(new Error(`exited ${code}: ${output().stderr}`)));
    });
  return {
    child,
    exit,
    output,
    waitFor,
    listening: async () => (await waitFor(/runstate listening on (http:\/\/\S+)/))[1]!,
  };
}
