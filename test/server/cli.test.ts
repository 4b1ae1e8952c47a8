/** The `runstate` command, run as a child process the way a user runs it. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectError, postRun, readSse } from './helpers.js';

const ROOT = join(import.meta.dirname, '../..');

function cli(args: string[], extraEnv: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  const env = { ...process.env };
  // The demo agents must run offline, whatever the machine running the tests has set.
  for (const name of ['OPENAI_API_KEY', 'OPENAI_BASE_URL', 'RUNSTATE_SECURITY_KEY', 'PORT']) delete env[name];
  Object.assign(env, extraEnv);
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: ROOT, env });
}

/** Collects a child's output and resolves with its exit code. */
function finished(child: ChildProcessWithoutNullStreams) {
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { exit, output: () => ({ stdout, stderr }) };
}

describe('runstate serve --config', () => {
  it('rejects a wrong config file with the path of each failing field, exit code 2, no stack trace', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-'));
    const file = join(dir, 'runstate.config.json');
    const config = {
      port: 'seventy',
      agents: [
        { name: 'Writer', model: { provider: 'anthropic', id: 'x' } },
        { name: 'Other', colour: 'red' },
      ],
    };
    await writeFile(file, JSON.stringify(config));
    const run = finished(cli(['serve', '--config', file]));
    expect(await run.exit).toBe(2);
    const { stderr } = run.output();
    expect(stderr).toContain(`invalid config file ${file}`);
    expect(stderr).toContain('  port: ');
    expect(stderr).toContain('  agents.0.model.provider: ');
    expect(stderr).toContain('  agents.1: Unrecognized key: "colour"');
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it('rejects a file that is not JSON, with exit code 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-'));
    const file = join(dir, 'broken.json');
    await writeFile(file, '{ "port": ');
    const run = finished(cli(['serve', '--config', file]));
    expect(await run.exit).toBe(2);
    expect(run.output().stderr).toMatch(/is not valid JSON/);
  });
});

describe('runstate serve', () => {
  it('takes its port from PORT when no --port is given, and names PORT when it is wrong', async () => {
    const run = finished(cli(['serve'], { PORT: 'seventy' }));
    expect(await run.exit).toBe(2);
    expect(run.output().stderr).toMatch(/PORT/);
    expect(run.output().stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('serves the demo agents, prints the URL and curl commands, and shuts down on SIGTERM with exit 0', async () => {
    const child = cli(['serve', '--port', '0'], { PORT: '1' }); // the flag wins over PORT
    const run = finished(child);
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', () => {
        const match = /runstate listening on (http:\/\/\S+)/.exec(run.output().stdout);
        if (match) resolve(match[1]!);
      });
      void run.exit.then((code) => reject(new Error(`exited ${code}: ${run.output().stderr}`)));
    });
    expect(run.output().stdout).toContain(`curl -sN ${url}/agents/story-writer-agent/runs`);
    expect(run.output().stdout).toContain(`curl -X POST ${url}/agents/story-writer-agent/runs/$(`);
    expect(run.output().stdout).toContain(`inspector: ${url}/inspect`);

    const agents = (await (await fetch(`${url}/agents`)).json()) as Array<{ id: string; name: string }>;
    expect(agents).toContainEqual(
      expect.objectContaining({ id: 'story-writer-agent', name: 'Story Writer Agent' }),
    );
    const seed = await fetch(`${url}/agents/story-writer-agent/runs/123/cancel`, { method: 'POST' });
    await expectError(seed, 404, 'RUN_NOT_FOUND');

    const page = await fetch(`${url}/inspect/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    await page.arrayBuffer();
    // An open inspector feed must not hold the shutdown back.
    const feed = await fetch(`${url}/inspect/feed`);
    expect(feed.status).toBe(200);

    const events = readSse(
      await postRun(`${url}/agents/story-writer-agent`, { message: 'Write a long story' }),
    );
    expect((await events.next())?.event).toBe('RunStarted');
    child.kill('SIGTERM');
    const feedEnd = feed.text();
    const rest = await events.rest();
    expect(rest.at(-1)?.data).toMatchObject({ event: 'RunCancelled', reason: 'shutdown' });
    await feedEnd;
    expect(await run.exit).toBe(0);
    expect(run.output().stderr).toContain('SIGTERM: shutting down (cancelling 1 active run)');
  });
});
