import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));

describe('examples/inspect_run.ts (offline)', () => {
  it('inspects an agent with the built-in inspector and @statelyai/inspect together, without the network', async () => {
    const { stdout } = await run(tsx, ['--conditions=runstate-source', 'examples/inspect_run.ts'], {
      cwd: root,
      env: { ...process.env, OPENAI_API_KEY: '', OPENAI_BASE_URL: '' },
      timeout: 30_000,
    });
    // Tokens that fall due in the same timer tick reach the machine as one chunk: count words instead.
    expect(stdout).toMatch(/completed +\d+ chunks/);
    expect(stdout).toContain('Completed run: completed, 17 words');
    expect(stdout).toMatch(/cancelled +\d+ chunks/);
    expect(stdout).toContain('state: streaming.attempt.receiving');
    expect(stdout).toContain('end: cancelled (reason: code)');
    expect(stdout).toMatch(
      /@statelyai\/inspect received \(offline adapter\): @xstate\.actor ×\d+, @xstate\.event ×\d+/,
    );
  });

  it('refuses a --serve port that is no port number in one line (exit 2), not a stack trace', async () => {
    const failure = await run(
      tsx,
      ['--conditions=runstate-source', 'examples/inspect_run.ts', '--serve', '--port', 'abc'],
      { cwd: root, env: { ...process.env, OPENAI_API_KEY: '', OPENAI_BASE_URL: '' }, timeout: 30_000 },
    ).then(
      () => expect.fail('the example took a bad port'),
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure.code).toBe(2);
    expect(failure.stderr.trim()).toBe('--port must be a port number (0 to 65535), got "abc"');
  });
});
