/**
 * Tools in the config file: `toolsModule` (resolved relative to the config file) exports tools made
 * with `tool()`, and each agent's `tools` names the ones it may call. A module that does not load,
 * a name it has no tool for, or an export that is no tool stops the start with one line, exit 2.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunEvent } from '../../src/index.js';
import { parseConfig } from '../../src/server/config-file.js';
import { createAgents } from '../../src/server/create-agents.js';
import { checkRunEvents } from '../../src/testing/index.js';
import { postRun } from '../support/app.js';
import { ROOT, spawnCli } from '../support/cli-process.js';
import { createTestDatabase } from '../support/databases.js';
import { REDIS_URL } from '../support/redis-server.js';
import { parseSse } from '../support/sse.js';

const dirs: string[] = [];
afterEach(() => Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true }))));

/** A config file and a tools module side by side in a new directory; returns the config's path. */
async function configWithModule(module: string, toolNames: string[], file = 'tools.mjs'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'runstate-tools-'));
  dirs.push(dir);
  await writeFile(join(dir, file), module);
  const config = { toolsModule: `./${file}`, agents: [{ name: 'Tool User', tools: toolNames }] };
  const path = join(dir, 'runstate.config.json');
  await writeFile(path, JSON.stringify(config));
  return path;
}

/** createAgents' refusal of a config, as the CLI would print it. */
async function refusal(path: string, text: string): Promise<string> {
  const error = await createAgents(parseConfig(text, path)).then(
    () => expect.fail('the config was accepted'),
    (error: unknown) => error as Error & { code?: string },
  );
  expect(error.code).toBe('INVALID_INPUT');
  expect(error.message).not.toContain('\n');
  return error.message;
}

describe('tools named in the config file', () => {
  it('serves the agent of examples/config-tools with the tools it names, through npm start', async () => {
    const run = spawnCli(
      ['start', '--', '--port', '0', '--config', 'examples/config-tools/runstate.config.json'],
      {},
      ['npm'],
    );
    const url = await run.listening();
    const agents = (await (await fetch(`${url}/agents`)).json()) as Array<{ id: string }>;
    expect(agents.map((agent) => agent.id)).toEqual(['text-tools-agent']);

    const response = await postRun(`${url}/agents/text-tools-agent`, {
      message: 'word count and reverse text "one two three"',
    });
    const events = parseSse(await response.text()).map((message) => JSON.parse(message.data) as RunEvent);
    checkRunEvents(events, 'completed');
    const results = events.flatMap((e) =>
      e.event === 'ToolCallCompleted' ? [[e.tool.tool_name, e.tool.result]] : [],
    );
    expect(results).toEqual([
      ['word_count', '{"words":3}'],
      ['reverse_text', 'eerht owt eno'],
    ]);
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
  });

  it('loads a TypeScript module of a CommonJS project (what `npm init` makes) through a clone’s `npx runstate`', async () => {
    // The project of a user of this clone: runstate and zod installed (linked), its package.json
    // of type commonjs, and a copy of examples/config-tools.
    const dir = await mkdtemp(join(tmpdir(), 'runstate-cjs-'));
    dirs.push(dir);
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'my-app', type: 'commonjs' }));
    await mkdir(join(dir, 'node_modules'));
    await symlink(ROOT, join(dir, 'node_modules/runstate'));
    await symlink(join(ROOT, 'node_modules/zod'), join(dir, 'node_modules/zod'));
    for (const file of ['tools.ts', 'runstate.config.json']) {
      await copyFile(join(ROOT, 'examples/config-tools', file), join(dir, file));
    }
    const run = spawnCli(
      ['run', 'word count "one two three"', '--config', join(dir, 'runstate.config.json')],
      {},
      [process.execPath, join(ROOT, 'bin/runstate.js')],
    );
    expect(await run.exit).toBe(0);
    expect(run.output().stderr).toContain('[word_count] → {"words":3}');
  });

  it('refuses a tools module that does not load: one line, exit 2, no stack trace', async () => {
    const path = await configWithModule('export const broken = ;\n', ['broken']);
    const run = spawnCli(['serve', '--port', '0', '--config', path]);
    expect(await run.exit).toBe(2);
    const { stderr, stdout } = run.output();
    expect(stderr).toMatch(/^runstate: cannot load the tools module \S+tools\.mjs: .+\n$/);
    expect(stdout).not.toContain('listening');
  });

  it('refuses a tools module whose top-level await never settles: one line, exit 2 (Node would end the start with 0, silently)', async () => {
    const path = await configWithModule('await new Promise(() => {});\nexport const late = 1;\n', ['late']);
    const run = spawnCli(['serve', '--port', '0', '--config', path]);
    expect(await run.exit).toBe(2);
    const { stderr, stdout } = run.output();
    expect(stderr).toMatch(
      /^runstate: cannot load the tools module \S+tools\.mjs: its top-level await never settles \(nothing else was left to run\)\n$/,
    );
    expect(stdout).not.toContain('listening');
  });

  it('refuses a tools module whose top-level await never settles also with PostgreSQL and Redis open (their connections would keep the process alive)', async () => {
    const database = await createTestDatabase();
    try {
      const path = await configWithModule('await new Promise(() => {});\nexport const late = 1;\n', ['late']);
      const run = spawnCli([
        'serve',
        '--port',
        '0',
        '--config',
        path,
        '--database-url',
        database.url,
        '--redis-url',
        REDIS_URL,
      ]);
      expect(await run.exit).toBe(2);
      expect(run.output().stderr).toMatch(
        /^runstate: cannot load the tools module \S+: its top-level await never settles/,
      );
    } finally {
      await database.drop();
    }
  });

  it('refuses a TypeScript module with a syntax error in one line that says what and where (esbuild’s first error)', async () => {
    const path = await configWithModule('export const broken = ;\n', ['broken'], 'syntax.ts');
    const run = spawnCli(['serve', '--port', '0', '--config', path]);
    expect(await run.exit).toBe(2);
    const module = path.replace('runstate.config.json', 'syntax.ts');
    expect(run.output().stderr).toBe(
      `runstate: cannot load the tools module ${module}: Transform failed with 1 error: ${module}:1:22: ERROR: Unexpected ";"\n`,
    );
  });

  it('refuses a tools module that does not load also when the config declares no agents (the demo agents)', async () => {
    const path = await configWithModule('', []);
    const missing = JSON.stringify({ port: 0, toolsModule: './nope.ts' });
    expect(await refusal(path, missing)).toMatch(/^cannot load the tools module \S+nope\.ts: /);
    await writeFile(path, missing);
    const run = spawnCli(['serve', '--config', path]);
    expect(await run.exit).toBe(2);
    const { stderr, stdout } = run.output();
    expect(stderr).toMatch(/^runstate: cannot load the tools module \S+nope\.ts: .+\n$/);
    expect(stdout).not.toContain('listening');
  });

  it('names a tool by its name or by its export, takes arrays of tools, and refuses one tool named twice', async () => {
    const source = new URL('../../src/index.ts', import.meta.url).href;
    const zod = new URL('../../node_modules/zod/index.js', import.meta.url).href;
    const module = [
      `import { tool } from ${JSON.stringify(source)};`,
      `import { z } from ${JSON.stringify(zod)};`,
      `const make = (name) => tool({ name, description: name, parameters: z.object({}), execute: () => name });`,
      `export const greeter = make('greet');`,
      `export default [make('wave'), make('nod')];`,
    ].join('\n');
    const path = await configWithModule(module, ['greeter', 'nod']);
    const [agent] = await createAgents(parseConfig(await readFile(path, 'utf8'), path));
    expect(agent!.tools.map((tool) => tool.name)).toEqual(['greet', 'nod']);
    await agent!.orchestrator.shutdown();
    // Its name and its export's name are one tool: named twice, the model could not tell them apart.
    const twice = JSON.stringify({
      toolsModule: './tools.mjs',
      agents: [{ name: 'A', tools: ['greet', 'greeter'] }],
    });
    expect(await refusal(path, twice)).toBe("agents.0.tools: names the tool 'greet' twice");
  });

  it('takes an export that is an array of tools as all of them, and refuses a name two different tools of the module have', async () => {
    const source = new URL('../../src/index.ts', import.meta.url).href;
    const zod = new URL('../../node_modules/zod/index.js', import.meta.url).href;
    const module = [
      `import { tool } from ${JSON.stringify(source)};`,
      `import { z } from ${JSON.stringify(zod)};`,
      `const make = (name, said) => tool({ name, description: name, parameters: z.object({}), execute: () => said });`,
      `export const kit = [make('wave', 'hi'), make('nod', 'yes')];`,
      `export const first = make('dup', 'first');`,
      `export const second = make('dup', 'second');`,
      `export const again = first;`,
    ].join('\n');
    const path = await configWithModule(module, ['kit']);
    const [agent] = await createAgents(parseConfig(await readFile(path, 'utf8'), path));
    expect(agent!.tools.map((tool) => tool.name)).toEqual(['wave', 'nod']);
    await agent!.orchestrator.shutdown();
    // The model would be offered one of them, and the other could never run: which one, nobody said.
    const ambiguous = JSON.stringify({ toolsModule: './tools.mjs', agents: [{ name: 'A', tools: ['dup'] }] });
    expect(await refusal(path, ambiguous)).toBe(
      `agents.0.tools: ${path.replace('runstate.config.json', 'tools.mjs')} has two different tools named 'dup' (exports first and second): rename one`,
    );
    // Named by its export, it is that one: the agent has one tool of that name.
    await writeFile(
      path,
      JSON.stringify({ toolsModule: './tools.mjs', agents: [{ name: 'A', tools: ['second'] }] }),
    );
    const [byExport] = await createAgents(parseConfig(await readFile(path, 'utf8'), path));
    expect(byExport!.tools.map((tool) => tool.name)).toEqual(['dup']);
    expect(
      await byExport!.tools[0]!.execute(
        {},
        {
          signal: new AbortController().signal,
          toolCallId: 'call-1',
          runId: 'run-1',
          sessionId: 'session-1',
        },
      ),
    ).toBe('second');
    await byExport!.orchestrator.shutdown();
  });

  it('ends a start that fails, and a finished `runstate run`, though the tools module keeps the process alive (a timer, as a pool would)', async () => {
    const holding = [
      `import { tool } from ${JSON.stringify(new URL('../../src/index.ts', import.meta.url).href)};`,
      `import { z } from ${JSON.stringify(new URL('../../node_modules/zod/index.js', import.meta.url).href)};`,
      'setInterval(() => {}, 1_000);',
      "export const alpha = tool({ name: 'alpha', description: 'alpha', parameters: z.object({}), execute: () => 'alpha done' });",
    ].join('\n');
    const missing = spawnCli(['serve', '--port', '0', '--config', await configWithModule(holding, ['beta'])]);
    expect(await missing.exit).toBe(2);
    expect(missing.output().stderr).toMatch(
      /^runstate: agents\.0\.tools: no tool named 'beta' in \S+ \(its tools: alpha\)\n$/,
    );

    const path = await configWithModule(holding, ['alpha']);
    const taken = createNetServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = String((taken.address() as AddressInfo).port);
      const inUse = spawnCli(['serve', '--port', port, '--config', path]);
      expect(await inUse.exit).toBe(1);
      expect(inUse.output().stderr).toBe(
        `runstate: port ${port} on 127.0.0.1 is already in use (set --port or PORT)\n`,
      );
    } finally {
      taken.close();
    }

    const run = spawnCli(['run', 'a story in 3 words', '--config', path]);
    expect(await run.exit).toBe(0);
    expect(run.output().stdout.length).toBeGreaterThan(1);
  });

  it('refuses an unknown tool name, naming the tools the module has', async () => {
    const path = await configWithModule('export const helper = () => 1;\n', ['get_weather']);
    expect(await refusal(path, await readFile(path, 'utf8'))).toBe(
      `agents.0.tools: no tool named 'get_weather' in ${path.replace('runstate.config.json', 'tools.mjs')} (it exports no tools)`,
    );
  });

  it('refuses an export that is not a tool', async () => {
    const path = await configWithModule('export const helper = () => 1;\n', ['helper']);
    expect(await refusal(path, await readFile(path, 'utf8'))).toMatch(
      /^agents\.0\.tools: the export 'helper' of \S+tools\.mjs is not a tool or an array of tools \(make them with tool\(\) from runstate\)$/,
    );
  });

  it('refuses a module that is not there, and tools without a toolsModule', async () => {
    const path = await configWithModule('', ['x']);
    const missing = JSON.stringify({ toolsModule: './nope.js', agents: [{ name: 'A', tools: ['x'] }] });
    expect(await refusal(path, missing)).toMatch(/^cannot load the tools module \S+nope\.js: /);
    expect(() => parseConfig(JSON.stringify({ agents: [{ name: 'A', tools: ['x'] }] }), path)).toThrow(
      /agents\.0\.tools: names tools, but the config has no toolsModule/,
    );
  });
});

describe('runstate run with tools that ask first', () => {
  const askingTools = [
    `import { tool } from ${JSON.stringify(new URL('../../src/index.ts', import.meta.url).href)};`,
    `import { z } from ${JSON.stringify(new URL('../../node_modules/zod/index.js', import.meta.url).href)};`,
    'const asking = (name) =>',
    "  tool({ name, description: name, parameters: z.object({}), requiresConfirmation: true, execute: () => name + ' done' });",
    "export const alpha = asking('alpha');",
    "export const beta = asking('beta');",
  ].join('\n');
  async function askingConfig(limits?: Record<string, number>): Promise<string> {
    const path = await configWithModule(askingTools, ['alpha', 'beta']);
    const config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    await writeFile(path, JSON.stringify({ ...config, ...(limits && { limits }) }));
    return path;
  }

  it('takes answers piped in before their questions, one line each', async () => {
    const run = spawnCli(['run', 'call alpha then beta', '--config', await askingConfig()]);
    // Both lines come in one read, before the first question is asked.
    run.child.stdin.end('y\nn\n');
    expect(await run.exit).toBe(0);
    const { stdout, stderr } = run.output();
    expect(stderr).toContain('Run alpha {}? [y/N] y\n');
    expect(stderr).toContain('Run beta {}? [y/N] n\n');
    expect(stderr).toContain('[alpha] → alpha done');
    expect(stdout).toContain('alpha returned: alpha done');
    expect(stdout).toContain('beta returned: The user rejected this call.');
  });

  it('says the run failed when its pause runs out while the question waits, and does not wait on', async () => {
    const run = spawnCli(['run', 'call alpha', '--config', await askingConfig({ pauseTimeoutMs: 200 })]);
    // stdin stays open: nobody answers, and nobody closes it.
    expect(await run.exit).toBe(1);
    expect(run.output().stderr).toMatch(/runstate: run \S+ failed: RUN_TIMEOUT: /);
  });

  it('is cancelled by SIGINT at the question when stdin is no terminal', async () => {
    const run = spawnCli(['run', 'call alpha', '--config', await askingConfig()]);
    await run.waitFor(/Run alpha \{\}\? \[y\/N\] $/, 'stderr');
    run.child.kill('SIGINT');
    expect(await run.exit).toBe(130);
    expect(run.output().stderr).toMatch(/runstate: run \S+ cancelled\n$/);
  });
});
