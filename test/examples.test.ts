import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

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

  it('agent_cancel_run refuses a delay that is not a number of seconds', async () => {
    for (const [args, extraEnv, shown] of [
      [
        [],
        { CANCEL_AFTER_SECONDS: 'abc' },
        "CANCEL_AFTER_SECONDS must be a number of seconds, 0 or more (got 'abc')",
      ],
      [['--cancel-after=-1'], {}, "--cancel-after must be a number of seconds, 0 or more (got '-1')"],
      [['--cancel-after', ' '], {}, "--cancel-after must be a number of seconds, 0 or more (got ' ')"],
      // Past Node's longest timer, which would fire at once.
      [
        [],
        { CANCEL_AFTER_SECONDS: '1e9' },
        "CANCEL_AFTER_SECONDS must be at most 2147483 seconds (got '1e9')",
      ],
    ] as const) {
      const failure = await example('agent_cancel_run.ts', [...args], extraEnv).then(
        () => expect.fail('the example accepted a bad delay'),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      expect(failure.code).toBe(2);
      expect(failure.stderr.trim()).toBe(shown);
      expect(failure.stdout).toBe(''); // no run started
    }
  });

  describe('agent_cancel_run against a model that ends first', () => {
    let upstream: FakeOpenAIServer;
    beforeAll(async () => {
      upstream = await createFakeOpenAIServer();
    });
    afterAll(() => upstream.close());
    const model = () => ({ OPENAI_API_KEY: 'test', OPENAI_BASE_URL: upstream.url });

    it('says the run failed (not that it completed), and exits 1', async () => {
      upstream.setDefault({ fault: 'status', status: 400, message: 'no such model' });
      const failure = await example('agent_cancel_run.ts', ['--cancel-after', '600'], model()).then(
        () => expect.fail('the example exited 0 for a failed run'),
        (error: { code: number; stdout: string }) => error,
      );
      expect(failure.code).toBe(1);
      expect(failure.stdout).toContain('Status: failed');
      expect(failure.stdout).toMatch(/Error: MODEL_REQUEST_FAILED: .*no such model/);
      expect(failure.stdout).toContain('FAILED: Run failed before cancellation');
      expect(failure.stdout).not.toContain('completed before cancellation');
      expect(failure.stdout).not.toContain('[CANCEL]'); // the 600 s timer stopped with the run
    });

    it('says the run completed before the cancel, without waiting for the timer', async () => {
      upstream.setDefault({ chunks: ['Once upon a time', ', the end.'] });
      const { stdout } = await example('agent_cancel_run.ts', ['--cancel-after', '600'], model());
      expect(stdout).toContain('Status: completed');
      expect(stdout).toContain('Content Preview: Once upon a time, the end....');
      expect(stdout).toContain('WARNING: Run completed before cancellation');
      expect(stdout).not.toContain('[CANCEL]');
    });
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

  it('cancel_with_timeout refuses a deadline that is no number of milliseconds (exit 2), starting no run', async () => {
    // 99999999999 is past Node's longest timer, which would fire at once; `Number` takes a blank
    // for 0 and hex for a number.
    for (const deadline of ['abc', '99999999999', ' ', '0x10']) {
      const failure = await example('cancel_with_timeout.ts', [], { DEADLINE_MS: deadline }).then(
        () => expect.fail('the example took a bad deadline'),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      expect(failure.code).toBe(2);
      expect(failure.stderr.trim()).toBe(
        `DEADLINE_MS must be milliseconds from 0 to 2147483647, got "${deadline}"`,
      );
      expect(failure.stdout).toBe('');
    }
  });

  it('inspect_run refuses an unknown flag, or a flag without its value, in one line (exit 2)', async () => {
    for (const [args, shown] of [
      [['--bogus'], "Unknown option '--bogus'"],
      [['--serve', '--port'], "Option '--port <value>' argument missing"],
      [['--port', '8000'], '--port needs --serve'],
    ] as const) {
      const failure = await example('inspect_run.ts', [...args]).then(
        () => expect.fail('the example took a bad flag'),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      expect(failure.code).toBe(2);
      expect(failure.stderr.trim()).toBe(shown);
      expect(failure.stdout).toBe('');
    }
  });

  it('tools_run calls a tool, cancels a slow one mid-call, and continues a paused run', async () => {
    const { stdout } = await example('tools_run.ts');
    expect(stdout).toContain('ToolCallCompleted  add → {"sum":5}');
    expect(stdout).toContain('slow_search started; cancelRun → true');
    expect(stdout).toContain("the tool's signal aborted: true");
    expect(stdout).toContain('recorded: slow_search cancelled');
    expect(stdout).toContain('paused             publish_note {"note":"the example ran"} waits');
    expect(stdout).toMatch(/continued {10}completed: ".*published \\"the example ran\\"/);
  });

  it('session_two_turns sends the first turn with the second', async () => {
    const { stdout } = await example('session_two_turns.ts');
    expect(stdout).toContain('runs in the session: 2');
  });
});
