/** The `runstate` command, run as a child process the way a user runs it. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createFakeOpenAIServer } from '../../src/testing/fake-openai-server.js';
import pg from 'pg';
import { cliEnv, ROOT, spawnCli } from '../support/cli-process.js';
import { createTempDir, createTestDatabase } from '../support/databases.js';
import { REDIS_URL, redisPrefix } from '../support/redis-server.js';
import { expectError, postRun } from '../support/app.js';
import { readSse } from '../support/sse.js';
import { eventually } from '../support/eventually.js';

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
    const run = spawnCli(['serve', '--config', file]);
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
    const run = spawnCli(['serve', '--config', file]);
    expect(await run.exit).toBe(2);
    expect(run.output().stderr).toMatch(/is not valid JSON/);
  });
});

describe('runstate serve', () => {
  it('refuses a RUNSTATE_SECURITY_KEY with surrounding whitespace, in one line, exit code 2', async () => {
    const run = spawnCli(['serve', '--port', '0'], { RUNSTATE_SECURITY_KEY: 's3cret\u00a0' });
    expect(await run.exit).toBe(2);
    const { stderr, stdout } = run.output();
    expect(stderr).toBe(
      'runstate: RUNSTATE_SECURITY_KEY starts or ends with whitespace (a space, line break or no-break space): no client can send it; remove it\n',
    );
    expect(stdout).not.toContain('listening');
  });

  it('takes its port from PORT when no --port is given, and names PORT when it is wrong', async () => {
    const run = spawnCli(['serve'], { PORT: 'seventy' });
    expect(await run.exit).toBe(2);
    expect(run.output().stderr).toMatch(/PORT/);
    expect(run.output().stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('refuses a blank --host (Node would listen on every interface), in one line, exit code 2', async () => {
    for (const host of ['', ' ']) {
      const run = spawnCli(['serve', '--port', '0', '--host', host]);
      expect(await run.exit).toBe(2);
      const { stderr, stdout } = run.output();
      expect(stderr).toBe(`runstate: --host must be a host name or address, got '${host}'\n`);
      expect(stdout).not.toContain('listening');
    }
  });

  // (A PGlite data dir made by the CLI: ~12 s on a busy 2-core machine, 20 s once with other tests.)
  it('keeps runs in --data-dir where DATABASE_URL and REDIS_URL are set: the flag decides the database, and PGlite takes no Redis', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-data-'));
    // Unreachable on purpose: taken, either would fail the start.
    const env = { DATABASE_URL: 'postgres://127.0.0.1:1/none', REDIS_URL: 'redis://127.0.0.1:1' };
    const run = spawnCli(['serve', '--port', '0', '--data-dir', join(dir, 'data')], env);
    await run.listening();
    expect(run.output().stdout).toContain(`runs kept in: PGlite`);
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    // Both from one source: refused, naming them.
    const both = spawnCli(['serve', '--port', '0'], {
      RUNSTATE_DATA_DIR: join(dir, 'data'),
      REDIS_URL: env.REDIS_URL,
    });
    expect(await both.exit).toBe(2);
    expect(both.output().stderr).toMatch(
      /^runstate: REDIS_URL needs a database URL, not RUNSTATE_DATA_DIR: /,
    );
  }, 60_000);

  it('refuses a data dir and a database URL of one source, naming those two whatever else is set, exit code 2', async () => {
    // Refused before the directory is made.
    const dir = join(tmpdir(), 'runstate-cli-never-opened');
    const env = { DATABASE_URL: 'postgres://127.0.0.1:1/none', REDIS_URL: 'redis://127.0.0.1:1' };
    for (const [args, extra, names] of [
      [
        [],
        { RUNSTATE_DATA_DIR: join(dir, 'data'), DATABASE_URL: env.DATABASE_URL },
        'RUNSTATE_DATA_DIR or DATABASE_URL',
      ],
      [[], { RUNSTATE_DATA_DIR: join(dir, 'data'), ...env }, 'RUNSTATE_DATA_DIR or DATABASE_URL'],
      [
        ['--data-dir', join(dir, 'data'), '--database-url', env.DATABASE_URL],
        {},
        '--data-dir or --database-url',
      ],
    ] as const) {
      const run = spawnCli(['serve', '--port', '0', ...args], extra);
      expect(await run.exit).toBe(2);
      expect(run.output().stderr).toBe(`runstate: set ${names}, not both: runs are kept in one database\n`);
    }
  }, 60_000);

  it(
    'says in one line that its port is taken, exit code 1, its storage let go (PGlite; PostgreSQL + Redis)',
    {
      timeout: 60_000,
    },
    async () => {
      const taken = createNetServer();
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
      const port = String((taken.address() as AddressInfo).port);
      const dir = await createTempDir('runstate-cli-port-');
      const database = await createTestDatabase();
      try {
        const storages: Record<string, string>[] = [
          { RUNSTATE_DATA_DIR: join(dir.path, 'data') },
          { DATABASE_URL: database.url, REDIS_URL, RUNSTATE_REDIS_PREFIX: redisPrefix() },
        ];
        for (const env of storages) {
          const run = spawnCli(['serve', '--port', port], env);
          expect(await run.exit).toBe(1);
          // Not followed by the lease keeper's or the cancel bus's complaints about a closed store.
          expect(run.output().stderr).toBe(
            `runstate: port ${port} on 127.0.0.1 is already in use (set --port or PORT)\n`,
          );
        }
        // The instance's lease was given back, not left to run out.
        const client = new pg.Client({ connectionString: database.url });
        await client.connect();
        const { rows } = await client.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM runstate_instances',
        );
        await client.end();
        expect(rows[0]!.n).toBe(0);
      } finally {
        taken.close();
        await database.drop();
        await dir.remove();
      }
    },
  );

  it('refuses a database or Redis URL that is none before connecting, naming the flag or variable, exit code 2', async () => {
    const cases: [string[], Record<string, string>, string][] = [
      [['--database-url', 'notaurl'], {}, '--database-url must be a postgres:// URL'],
      [[], { DATABASE_URL: 'garbage' }, 'DATABASE_URL must be a postgres:// URL'],
      // The scheme is right, the port is out of range: no URL either.
      [
        ['--database-url', 'postgres://u:pw@127.0.0.1:99999/db'],
        {},
        '--database-url must be a postgres:// URL',
      ],
      [
        ['--database-url', 'postgres://127.0.0.1:1/db', '--redis-url', 'garbage'],
        {},
        '--redis-url must be a redis:// URL',
      ],
      // A URL whose password node-redis cannot decode (a bad escape) is named too.
      [
        ['--database-url', 'postgres://127.0.0.1:1/db'],
        { REDIS_URL: 'redis://:%zz@127.0.0.1:6379' },
        'REDIS_URL must have a user name and password percent-encoded (a % only as %XX)',
      ],
    ];
    for (const [flags, env, message] of cases) {
      const run = spawnCli(['serve', '--port', '0', ...flags], env);
      expect(await run.exit).toBe(2);
      expect(run.output().stderr).toBe(`runstate: ${message}\n`);
    }
  });

  it('serves the demo agents, prints the URL and curl commands, and shuts down on SIGTERM with exit 0', async () => {
    const run = spawnCli(['serve', '--port', '0'], { PORT: '1' }); // the flag wins over PORT
    const url = await run.listening();
    expect(run.output().stdout).toContain(`curl -sN ${url}/agents/story-writer-agent/runs`);
    expect(run.output().stdout).toContain(`curl -X POST ${url}/agents/$(grep -om1 '"agent_id":`);
    expect(run.output().stdout).toContain(`inspector: ${url}/inspect`);
    expect(run.output().stdout).toContain(
      `curl -sN ${url}/agents/tool-demo-agent/runs -F 'message=slow search`,
    );

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
    const started = await events.next();
    expect(started?.event).toBe('RunStarted');
    const runId = (started?.data as { run_id: string }).run_id;
    run.child.kill('SIGTERM');
    const feedEnd = feed.text();
    const rest = await events.rest();
    expect(rest.at(-1)?.data).toMatchObject({ event: 'RunCancelled', reason: 'shutdown' });
    // The feed ends once it told the run's end: a page open on it shows the run cancelled.
    const told = (await feedEnd).split('\n\n').filter((frame) => frame.includes(runId));
    expect(told.at(-1)).toMatch(/"status":"cancelled"/);
    expect(await run.exit).toBe(0);
    expect(run.output().stderr).toContain('SIGTERM: shutting down (cancelling 1 active run)');
  });
});

describe("runstate serve's banner", () => {
  it('prints commands that work as printed: the cancel line cancels the tools run too', async () => {
    const run = spawnCli(['serve', '--port', '0']);
    await run.listening();
    const dir = await createTempDir('runstate-banner-');
    try {
      // The banner's commands, with its file in a directory of this test's own.
      const file = join(dir.path, 'run.sse');
      const commands = run
        .output()
        .stdout.split('\n')
        .filter((line) => line.startsWith('  curl '))
        .map((line) => line.trim().replaceAll('/tmp/runstate-run.sse', file));
      const tools = commands.find((command) => command.includes('tool-demo-agent'))!;
      const cancel = commands.find((command) => command.startsWith('curl -X POST'))!;
      const stream = spawn('sh', ['-c', tools]);
      const streamEnded = once(stream, 'close');
      let streamed = '';
      stream.stdout.setEncoding('utf8').on('data', (text: string) => (streamed += text));
      // (tee may write its output before its file: the cancel line reads the file.)
      await eventually(
        async () =>
          streamed.includes('"event":"ToolCallStarted"') &&
          (await readFile(file, 'utf8').catch(() => '')).includes('"run_id"'),
        { what: 'the tool to start' },
      );
      const cancelled = spawn('sh', ['-c', cancel]);
      let answer = '';
      cancelled.stdout.setEncoding('utf8').on('data', (text: string) => (answer += text));
      // 'close': its output read to the end too.
      await once(cancelled, 'close');
      expect(JSON.parse(answer)).toMatchObject({ status: 'cancelled' });
      await streamEnded;
      expect(streamed).toMatch(/"event":"RunCancelled"[^\n]*\n\n$/);
    } finally {
      run.child.kill('SIGTERM');
      await run.exit;
      await dir.remove();
    }
  });
});

describe('runstate serve with a paused run', () => {
  // A paused run outlives a durable store's process and is cancelled with the memory store: the
  // shutdown line says which, and counts it apart from the active runs it cancels.
  it.each([
    ['in memory', [], 'cancelling 0 active runs and 1 paused)'],
    ['on disk (PGlite)', ['--data-dir', 'DATA'], 'cancelling 0 active runs; 1 paused, kept in storage)'],
  ])(
    'says what becomes of it on SIGTERM, %s',
    async (_, extra, line) => {
      const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-paused-'));
      const args = extra.map((arg) => (arg === 'DATA' ? join(dir, 'data') : arg));
      const run = spawnCli(['serve', '--port', '0', ...args]);
      const url = await run.listening();
      const events = readSse(
        await postRun(`${url}/agents/tool-demo-agent`, { message: "publish note 'hi'" }),
      );
      let event = await events.next();
      while (event && event.event !== 'RunPaused') event = await events.next();
      expect(event?.event).toBe('RunPaused');
      run.child.kill('SIGTERM');
      const code = await run.exit;
      expect(run.output().stderr).toContain(`SIGTERM: shutting down (${line}`);
      expect(code).toBe(0);
    },
    60_000,
  );
});

describe('runstate serve signalled while it starts', () => {
  it('stops once started, as a running one does (exit 0), letting go of its data dir: no lock left', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-start-'));
    const data = join(dir, 'data');
    const run = spawnCli(['serve', '--port', '0', '--data-dir', data]);
    // The lock is taken as PGlite begins to open (seconds): the signal comes in the middle.
    await eventually(() => existsSync(join(data, 'runstate.lock')), { what: 'the data dir locked' });
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    expect(run.output().stderr).toContain('SIGTERM while starting: it stops once started');
    expect(run.output().stderr).toContain('SIGTERM: shutting down (cancelling 0 active runs)');
    expect(run.output().stdout).not.toContain('runstate listening on');
    expect(existsSync(join(data, 'runstate.lock'))).toBe(false);
  }, 60_000);
});

describe('runstate serve signalled as it begins to listen', () => {
  it('stops once started: the signal is not lost between the start and serving (exit 0)', async () => {
    // The process signals itself as its server calls listen, past the last await of the start:
    // the signal waits while the start's handlers give way to the running ones.
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-listen-'));
    const probe = join(dir, 'signal-at-listen.mjs');
    await writeFile(
      probe,
      [
        "import net from 'node:net';",
        'const listen = net.Server.prototype.listen;',
        'let sent = false;',
        'net.Server.prototype.listen = function (...args) {',
        "  if (!sent) { sent = true; process.kill(process.pid, 'SIGTERM'); }",
        '  return listen.apply(this, args);',
        '};',
      ].join('\n'),
    );
    const run = spawnCli(['serve', '--port', '0'], {}, [
      process.execPath,
      '--import',
      probe,
      '--import',
      'tsx',
      'src/cli.ts',
    ]);
    expect(await run.exit).toBe(0);
    expect(run.output().stderr).toContain('SIGTERM: shutting down (cancelling 0 active runs)');
  }, 60_000);
});

describe('npm start', () => {
  // npm runs the script through `sh -c`, and a shell that does not exec its command keeps a
  // SIGTERM for itself: the server never heard it. The script execs node, so the signal reaches it.
  it('stops gracefully on SIGTERM sent to npm: open streams end with RunCancelled(shutdown), exit 0', async () => {
    const run = spawnCli(['start'], { PORT: '0' }, ['npm']);
    const url = await run.listening();
    const events = readSse(
      await postRun(`${url}/agents/story-writer-agent`, { message: 'Write a long story' }),
    );
    expect((await events.next())?.event).toBe('RunStarted');
    run.child.kill('SIGTERM'); // npm's own process
    const rest = await events.rest();
    expect(rest.at(-1)?.data).toMatchObject({ event: 'RunCancelled', reason: 'shutdown' });
    expect(await run.exit).toBe(0);
    expect(run.output().stderr).toContain('SIGTERM: shutting down (cancelling 1 active run)');
  });
});

describe('the runstate command line', () => {
  it('prints its version with --version', async () => {
    const run = spawnCli(['--version']);
    expect(await run.exit).toBe(0);
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(run.output().stdout).toBe(`${version}\n`);
  });

  it('ends quietly when the reader of its help has gone (`runstate --help | head -1`), with no stack trace', async () => {
    const run = spawnCli(['--help']);
    // Closed before the command writes: its write fails with EPIPE.
    run.child.stdout.destroy();
    expect(await run.exit).toBe(0);
    expect(run.output().stderr).toBe('');
  });

  it('says that run needs a message, and which agent run uses by default', async () => {
    const run = spawnCli(['run']);
    expect(await run.exit).toBe(2);
    const { stderr } = run.output();
    expect(stderr).toMatch(/^runstate: run needs a message: runstate run "<message>"/);
    expect(stderr).toContain('first agent of the config file (story-writer-agent when it declares none)');
    // A blank message is none, as the HTTP API's 422 says.
    const blank = spawnCli(['run', '  ']);
    expect(await blank.exit).toBe(2);
    expect(blank.output().stderr).toMatch(/^runstate: run needs a message/);
  });

  it('refuses a flag of the other command, naming the flag and the command, exit code 2', async () => {
    const cases: [string[], string][] = [
      [['serve', '--agent', 'x'], '--agent does not apply to serve (it is an option of run)'],
      [['run', 'hi', '--data-dir', 'runs'], '--data-dir does not apply to run (it is an option of serve)'],
      [['run', 'hi', '-p', '7777'], '--port does not apply to run (it is an option of serve)'],
    ];
    for (const [args, message] of cases) {
      const run = spawnCli(args);
      expect(await run.exit).toBe(2);
      expect(run.output()).toEqual({ stdout: '', stderr: `runstate: ${message}\n` });
    }
  });

  it('refuses a blank data directory, from the flag or the environment, naming it, exit code 2', async () => {
    const cases: [string[], Record<string, string>, string][] = [
      [['serve', '--data-dir', ' '], {}, "--data-dir must name a directory, got ' '"],
      [['serve', '--data-dir', ''], {}, "--data-dir must name a directory, got ''"],
      [['serve'], { RUNSTATE_DATA_DIR: ' ' }, "RUNSTATE_DATA_DIR must name a directory, got ' '"],
    ];
    for (const [args, env, message] of cases) {
      const run = spawnCli([...args, '--port', '0'], env);
      expect(await run.exit).toBe(2);
      expect(run.output()).toEqual({ stdout: '', stderr: `runstate: ${message}\n` });
    }
  });

  it('names an offline model once in the banner, without the OpenAI hint it does not need', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-'));
    const file = join(dir, 'runstate.config.json');
    await writeFile(file, JSON.stringify({ agents: [{ name: 'Local', model: { provider: 'offline' } }] }));
    const run = spawnCli(['serve', '--port', '0', '--config', file]);
    await run.listening();
    expect(run.output().stdout).toContain('\n  model: offline\n');
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
  });

  it('names the server of a model on another OpenAI-compatible server in the banner, not OpenAI', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-'));
    const file = join(dir, 'runstate.config.json');
    // A key in the URL (some gateways take one in the query) is not printed.
    const local = {
      provider: 'openai',
      id: 'llama3.1',
      baseURL: 'http://user:s3cret@127.0.0.1:11434/v1?api-key=k3y',
    };
    await writeFile(
      file,
      JSON.stringify({
        agents: [
          { name: 'Local', model: local },
          { name: 'Cloud', model: { provider: 'openai', id: 'gpt-5-mini', apiKeyEnv: 'CLOUD_KEY' } },
          {
            name: 'Europe',
            model: {
              provider: 'openai',
              id: 'gpt-5',
              baseURL: 'https://eu.api.openai.com/v1',
              apiKeyEnv: 'CLOUD_KEY',
            },
          },
        ],
      }),
    );
    const run = spawnCli(['serve', '--port', '0', '--config', file], { CLOUD_KEY: 'sk-test' });
    await run.listening();
    expect(run.output().stdout).not.toMatch(/s3cret|k3y/);
    expect(run.output().stdout).toContain(
      '\n  model: llama3.1 (at http://127.0.0.1:11434/v1), gpt-5-mini (OpenAI), gpt-5 (OpenAI)\n',
    );
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
  });
});

describe('bin/runstate.js (what `npx runstate` runs)', () => {
  /**
   * A copy of the bin script next to a stub of the built CLI and/or of the sources, with the
   * repository's node_modules (tsx among them) unless `withoutTsx`.
   */
  async function binWith(files: Record<string, string>, { withoutTsx = false } = {}): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'runstate-bin-'));
    await mkdir(join(dir, 'bin'));
    for (const file of ['runstate.js', 'source-hooks.js']) {
      await copyFile(join(ROOT, 'bin', file), join(dir, 'bin', file));
    }
    await writeFile(join(dir, 'package.json'), files['package.json'] ?? '{ "type": "module" }');
    if (!withoutTsx) await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), text);
    }
    return join(dir, 'bin/runstate.js');
  }

  it('runs the TypeScript sources through tsx in a clone, where nothing built dist/', async () => {
    const bin = await binWith({
      'src/cli.ts': "const from: string = 'sources';\nconsole.log(from, process.argv[2]);\n",
    });
    const run = spawnCli(['--version'], {}, [process.execPath, bin]);
    expect(await run.exit).toBe(0);
    expect(run.output().stdout).toBe('sources --version\n');
  });

  it("resolves imports with the sources' condition there, as `import 'runstate'` in a tools module", async () => {
    // The package imports itself by name, as a tools module imports runstate: the sources, not dist/.
    const exports = { '.': { 'runstate-source': './src/index.ts', default: './dist/index.js' } };
    const bin = await binWith({
      'package.json': JSON.stringify({ name: 'self-named', type: 'module', exports }),
      'src/index.ts': "export const from: string = 'sources';\n",
      'src/cli.ts': "const { from } = await import('self-named');\nconsole.log(from);\n",
    });
    const run = spawnCli([], {}, [process.execPath, bin]);
    expect(await run.exit).toBe(0);
    expect(run.output().stdout).toBe('sources\n');
  });

  it('runs the sources in a clone where `npm run build` or `npm pack` left a dist/ behind', async () => {
    const bin = await binWith({
      'tsconfig.json': '{}',
      'dist/src/cli.js': "console.log('built', process.argv[2]);\n",
      'src/cli.ts': "const from: string = 'sources';\nconsole.log(from, process.argv[2]);\n",
    });
    const run = spawnCli(['--version'], {}, [process.execPath, bin]);
    expect(await run.exit).toBe(0);
    expect(run.output().stdout).toBe('sources --version\n');
  });

  it('runs the build in the published package (its sources but no tsconfig.json), even with tsx at hand', async () => {
    const bin = await binWith({
      'dist/src/cli.js': "console.log('built', process.argv[2]);\n",
      'src/cli.ts': "console.log('sources');\n",
    });
    const run = spawnCli(['--version'], {}, [process.execPath, bin]);
    expect(await run.exit).toBe(0);
    expect(run.output().stdout).toBe('built --version\n');
  });

  it('runs the build in a clone without tsx (installed without its devDependencies)', async () => {
    const files = {
      'tsconfig.json': '{}',
      'dist/src/cli.js': "console.log('built', process.argv[2]);\n",
      'src/cli.ts': "console.log('sources');\n",
    };
    const bin = await binWith(files, { withoutTsx: true });
    const run = spawnCli(['--version'], {}, [process.execPath, bin]);
    expect(await run.exit).toBe(0);
    expect(run.output().stdout).toBe('built --version\n');
  });

  it('is the package’s bin, and is published', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
      files: string[];
    };
    expect(pkg.bin).toEqual({ runstate: './bin/runstate.js' });
    expect(pkg.files).toContain('bin');
    // What tells a checkout, where the bin runs the sources, from the published package.
    expect(pkg.files).not.toContain('tsconfig.json');
  });
});
/** What `runstate run` says first on stderr when the agent's OpenAI model has no key and runs offline. */
const offlineNotice = (agent: string): string =>
  `runstate: no OPENAI_API_KEY (or OPENAI_BASE_URL) is set: ${agent} answers with the offline model, not OpenAI\n`;

describe('runstate run', () => {
  it('says on stderr when the answer was cut (finish_reason length), and not when it is whole', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-'));
    const file = join(dir, 'runstate.config.json');
    const model = { provider: 'offline', tokensPerSecond: 100_000 };
    await writeFile(file, JSON.stringify({ agents: [{ name: 'Writer', model }] }));

    // Asked for no length, the offline model writes until its token limit cuts it, mid-sentence.
    const cut = spawnCli(['run', 'Write about the sea', '--config', file]);
    expect(await cut.exit).toBe(0);
    expect(cut.output().stdout.length).toBeGreaterThan(100);
    expect(cut.output().stderr).toBe(
      'runstate: the answer is incomplete: the model reached its token limit (finish_reason: length)\n',
    );

    const whole = spawnCli(['run', 'Write about the sea in 12 words', '--config', file]);
    expect(await whole.exit).toBe(0);
    expect(whole.output().stdout.trim().split(/\s+/)).toHaveLength(12);
    expect(whole.output().stderr).toBe('');
  });

  it("writes a reasoning model's reasoning to stderr as it comes, and only the answer to stdout", async () => {
    const upstream = await createFakeOpenAIServer();
    try {
      upstream.enqueue({ reasoning: { deltas: ['The user', ' greets me.'] }, chunks: ['Hello', '!'] });
      const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-'));
      const file = join(dir, 'runstate.config.json');
      const model = { provider: 'openai', id: 'thinker', baseURL: upstream.url, apiKeyEnv: 'NO_SUCH_KEY' };
      await writeFile(file, JSON.stringify({ agents: [{ name: 'Thinker', model }] }));
      const run = spawnCli(['run', 'hi', '--config', file]);
      expect(await run.exit).toBe(0);
      expect(run.output()).toEqual({ stdout: 'Hello!\n', stderr: 'The user greets me.\n' });
    } finally {
      await upstream.close();
    }
  });

  it('ends quietly (exit 0) when the reader of its stderr goes away while the model reasons, as `2>&1 | head` does', async () => {
    const upstream = await createFakeOpenAIServer();
    try {
      const thinking = Array.from({ length: 500 }, (_, i) => `step ${i}\n`);
      upstream.enqueue({ reasoning: { deltas: thinking, delayMs: 10 }, chunks: ['Hello'] });
      const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-'));
      const file = join(dir, 'runstate.config.json');
      const model = { provider: 'openai', id: 'thinker', baseURL: upstream.url, apiKeyEnv: 'NO_SUCH_KEY' };
      await writeFile(file, JSON.stringify({ agents: [{ name: 'Thinker', model }] }));
      const run = spawnCli(['run', 'hi', '--config', file]);
      await run.waitFor(/step 0/, 'stderr');
      run.child.stderr.destroy();
      expect(await run.exit).toBe(0);
      // The run was cancelled as a client that left: the upstream request was aborted.
      expect(run.output().stdout).not.toContain('Hello');
    } finally {
      await upstream.close();
    }
  });

  it('ends quietly (exit 0) when the reader of its output goes away, as `| head` does', async () => {
    // A slow model: the run still streams when the reader closes the pipe.
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cli-'));
    const file = join(dir, 'runstate.config.json');
    await writeFile(
      file,
      JSON.stringify({ agents: [{ name: 'Writer', model: { provider: 'offline', tokensPerSecond: 50 } }] }),
    );
    const cli = spawnCli(['run', 'Write a very long story', '--config', file]);
    await cli.waitFor(/\S/);
    cli.child.stdout.destroy();
    expect(await cli.exit).toBe(0);
    expect(cli.output().stderr).toBe('');
  });

  it.runIf(existsSync('/dev/full'))(
    'fails (exit 1), saying so, when its output cannot be written (a full disk), not as a reader that went away',
    async () => {
      const full = await open('/dev/full', 'w'); // every write fails with ENOSPC
      try {
        const child = spawn(
          process.execPath,
          ['--import', 'tsx', 'src/cli.ts', 'run', 'Write a story in 20 words'],
          {
            cwd: ROOT,
            env: cliEnv(),
            stdio: ['ignore', full.fd, 'pipe'],
          },
        );
        let stderr = '';
        child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
        const [code] = (await once(child, 'exit')) as [number | null];
        expect({ code, stderr }).toEqual({
          code: 1,
          stderr: `${offlineNotice('story-writer-agent')}runstate: cannot write to stdout: ENOSPC; the answer is lost\n`,
        });
      } finally {
        await full.close();
      }
    },
  );
});

describe('runstate run with tools', () => {
  it('shows the tool calls on stderr and asks on the terminal before a call that needs a confirmation', async () => {
    const run = spawnCli(['run', "add 2 and 3, then publish note 'hello'", '--agent', 'tool-demo-agent']);
    run.child.stdin.end('y\n'); // read once the run pauses
    expect(await run.exit).toBe(0);
    const { stdout, stderr } = run.output();
    // No key: the command says first that the offline model answers (it calls the tools named).
    expect(stderr.startsWith(offlineNotice('tool-demo-agent'))).toBe(true);
    // The turn pauses before any of its calls runs; then both run.
    expect(stderr.slice(offlineNotice('tool-demo-agent').length)).toMatch(
      /^Run publish_note \{"note":"hello"\}\? \[y\/N\] y\n\[/,
    );
    expect(stderr).toContain('[add] {"a":2,"b":3}\n');
    expect(stderr).toContain('[add] → {"sum":5}\n');
    expect(stderr).toContain('[publish_note] → published the note "hello"\n');
    expect(stdout).toContain('publish_note returned: published the note "hello"');
  });

  it('cancels the paused run when nobody answers (stdin ends), exit 130', async () => {
    const run = spawnCli(['run', "publish note 'hello'", '--agent', 'tool-demo-agent']);
    run.child.stdin.end();
    expect(await run.exit).toBe(130);
    expect(run.output().stderr).toMatch(/runstate: no answer: run \S+ cancelled\n$/);
  });
});
