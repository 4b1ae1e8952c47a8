import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const tsx = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url));
const env = { ...process.env, OPENAI_API_KEY: '', OPENAI_BASE_URL: '' };

function example(file: string, args: string[] = [], extraEnv: Record<string, string> = {}) {
  return run(tsx, ['--conditions=runstate-source', `examples/${file}`, ...args], {
    cwd: root,
    env: { ...env, ...extraEnv },
    timeout: 30_000,
  });
}

describe('examples (offline)', () => {
  it('agent_cancel_run cancels the streaming run and prints the cancelled result', async () => {
    const { stdout } = await example('agent_cancel_run.ts', ['--cancel-after', '0.5']);
    expect(stdout).toContain('Status: cancelled');
    expect(stdout).toContain('Was Cancelled: true');
    expect(stdout).toMatch(/Content Preview: \S/);
    expect(stdout).toContain('SUCCESS: Run was successfully cancelled!');
  });

  it('agent_run prints a completed run', async () => {
    const { stdout } = await example('agent_run.ts');
    expect(stdout).toContain('status:  completed');
  });

  it('cancel_with_timeout cancels at the deadline and keeps the partial content', async () => {
    const { stdout } = await example('cancel_with_timeout.ts', [], { DEADLINE_MS: '300' });
    expect(stdout).toContain('cancelRun → true');
    expect(stdout).toContain('status: cancelled (reason: code)');
  });

  it('session_two_turns sends the first turn with the second', async () => {
    const { stdout } = await example('session_two_turns.ts');
    expect(stdout).toContain('runs in the session: 2');
  });
});
