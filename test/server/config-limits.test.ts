/** Run limits from the config file: server-wide, per agent, validated. */
import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/server/config-file.js';
import { createAgents } from '../../src/server/create-agents.js';
import { createFakeOpenAIServer } from '../../src/testing/fake-openai-server.js';
import { listen, type Listening } from '../support/listen.js';

const servers: Listening[] = [];
afterEach(() => Promise.all(servers.splice(0).map((server) => server.close())));

/** A chat-completions server that answers 500 under `/fail`, and never answers under `/stall`. */
async function upstream(): Promise<{ base: string; requests: Map<string, number> }> {
  const requests = new Map<string, number>();
  const server = await listen((req, res) => {
    const route = req.url!.split('/')[1]!;
    requests.set(route, (requests.get(route) ?? 0) + 1);
    if (route === 'stall') return; // the idle timeout ends it
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'boom', type: 'server_error' } }));
  });
  servers.push(server);
  return { base: server.url, requests };
}

describe('run limits in the config file', () => {
  it('apply server-wide, and an agent’s own limits win field by field', async () => {
    const { base, requests } = await upstream();
    const model = (route: string) => ({ provider: 'openai', id: 'm', baseURL: `${base}/${route}/v1` });
    const config = parseConfig(
      JSON.stringify({
        limits: { retry: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0 } },
        agents: [
          { name: 'Server Limits', model: model('server') },
          { name: 'Own Retries', model: model('own'), limits: { retry: { maxAttempts: 3 } } },
          { name: 'Impatient', model: model('stall'), limits: { idleTimeoutMs: 50 } },
        ],
      }),
      'test.json',
    );
    const [serverLimits, ownRetries, impatient] = await createAgents(config);

    expect(await serverLimits!.run('hi')).toMatchObject({ status: 'failed' });
    expect(requests.get('server')).toBe(2);
    expect(await ownRetries!.run('hi')).toMatchObject({ status: 'failed' });
    expect(requests.get('own')).toBe(3);
    const timedOut = await impatient!.run('hi');
    expect(timedOut).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });
    await serverLimits!.orchestrator.shutdown();
  });

  it('take the tool, pause and history limits too: rounds, concurrent calls, the pause timeout, history runs', async () => {
    const limits = { maxToolRounds: 0, maxConcurrentTools: 2, pauseTimeoutMs: 4_000, maxHistoryRuns: 3 };
    const config = parseConfig(
      JSON.stringify({ limits, agents: [{ name: 'A', model: { provider: 'offline' } }] }),
      't.json',
    );
    expect(config.limits).toEqual(limits);
    const [agent] = await createAgents(config);
    await agent!.orchestrator.shutdown();
    expect(() =>
      parseConfig(
        JSON.stringify({
          limits: { maxToolRounds: -1, maxConcurrentTools: 0, pauseTimeoutMs: 0, maxHistoryRuns: 1.5 },
        }),
        't.json',
      ),
    ).toThrow(
      /limits\.maxToolRounds[\s\S]*limits\.maxConcurrentTools[\s\S]*limits\.pauseTimeoutMs[\s\S]*limits\.maxHistoryRuns/,
    );
  });

  it('refuses wrong values, naming each field', () => {
    const config = {
      limits: { idleTimeoutMs: 0, timeoutMs: -5, retry: { maxAttempts: 0, baseDelayMs: 'fast' } },
      agents: [{ name: 'A', limits: { idleTimeoutMs: 1.5, retries: 2 } }],
    };
    let message = '';
    try {
      parseConfig(JSON.stringify(config), 'runstate.config.json');
    } catch (error) {
      message = (error as Error).message;
    }
    const lines = message.split('\n');
    expect(lines[0]).toBe('invalid config file runstate.config.json:');
    for (const path of [
      'limits.idleTimeoutMs',
      'limits.timeoutMs',
      'limits.retry.maxAttempts',
      'limits.retry.baseDelayMs',
      'agents.0.limits.idleTimeoutMs',
      'agents.0.limits',
    ]) {
      expect(lines.some((line) => line.startsWith(`  ${path}: `))).toBe(true);
    }
    expect(message).toContain('Unrecognized key: "retries"');
    // One line per wrong field: a negative timeout fails one bound, not two.
    expect(lines.filter((line) => line.startsWith('  limits.timeoutMs: '))).toHaveLength(1);
  });

  it('refuses a retry base over its cap where the file has it: server-wide, an agent’s own, or one over the other', () => {
    const message = (config: object): string => {
      try {
        parseConfig(JSON.stringify(config), 'c.json');
      } catch (error) {
        return (error as Error).message;
      }
      return '';
    };
    // With another wrong field beside it: both are named.
    expect(message({ port: 'x', limits: { retry: { baseDelayMs: 200, maxDelayMs: 100 } } })).toMatch(
      /^invalid config file c\.json:\n[\s\S]* {2}port: [\s\S]* {2}limits\.retry\.baseDelayMs: must not be over maxDelayMs/,
    );
    expect(
      message({ agents: [{ name: 'A', limits: { retry: { baseDelayMs: 200, maxDelayMs: 100 } } }] }),
    ).toContain('  agents.0.limits.retry.baseDelayMs: must not be over maxDelayMs');
    const split = {
      limits: { retry: { maxDelayMs: 100 } },
      agents: [{ name: 'A' }, { name: 'B', limits: { retry: { baseDelayMs: 200 } } }],
    };
    expect(message(split)).toContain(
      "  agents.1.limits.retry.baseDelayMs: 200 is over the server's limits.retry.maxDelayMs (100)",
    );
    const other = {
      limits: { retry: { baseDelayMs: 200 } },
      agents: [{ name: 'A', limits: { retry: { maxDelayMs: 100 } } }],
    };
    expect(message(other)).toContain(
      "  agents.0.limits.retry.maxDelayMs: 100 is under the server's limits.retry.baseDelayMs (200)",
    );
    // A base over the default cap (8000) where no side sets one: server-wide, or an agent's.
    expect(message({ limits: { retry: { baseDelayMs: 20_000 } } })).toContain(
      '  limits.retry.baseDelayMs: 20000 is over the default maxDelayMs (8000)',
    );
    expect(message({ agents: [{ name: 'A', limits: { retry: { baseDelayMs: 9_000 } } }] })).toContain(
      '  agents.0.limits.retry.baseDelayMs: 9000 is over the default maxDelayMs (8000)',
    );
    // A cap alone is within any base: each delay is the cap.
    expect(message({ limits: { retry: { maxDelayMs: 100 } }, agents: [{ name: 'A' }] })).toBe('');
    // Fine when the merged policy is: the agent's cap over the server's base.
    expect(
      message({
        limits: { retry: { baseDelayMs: 200 } },
        agents: [{ name: 'A', limits: { retry: { maxDelayMs: 300 } } }],
      }),
    ).toBe('');
  });

  it('refuses a security key with surrounding whitespace', () => {
    expect(() => parseConfig(JSON.stringify({ securityKey: 'key\n' }), 'c.json')).toThrow(
      /securityKey: starts or ends with whitespace/,
    );
  });
});

describe('server settings in the config file', () => {
  it('reads a file saved with a byte order mark (Notepad), and names what is wrong with one that is no JSON', () => {
    const config = parseConfig('\uFEFF{"port": 8123, "agents": [{"name": "A"}]}', 'bom.json');
    expect(config.port).toBe(8123);
    expect(() => parseConfig('\uFEFF{"port": ', 'bad.json')).toThrow(
      /^config file bad\.json is not valid JSON: /,
    );
    // Where, by line and column (Node 20 names only the offset): a trailing comma on line 3.
    expect(() => parseConfig('\uFEFF{\n  "port": 8123,\n  "host": "::",\n}', 'comma.json')).toThrow(
      /^config file comma\.json is not valid JSON: .*\(line 4, column 1\)$/,
    );
  });

  it('refuses a blank host: Node would listen on every interface', () => {
    for (const host of ['', '  ']) {
      expect(() => parseConfig(JSON.stringify({ host }), 'c.json')).toThrow(
        /\n {2}host: must be a host name or address, not blank$/,
      );
    }
    expect(parseConfig(JSON.stringify({ host: '0.0.0.0' }), 'c.json').host).toBe('0.0.0.0');
  });

  it('refuses database and Redis URLs that do not parse, once per field', () => {
    const config = { databaseUrl: 'postgres://u:pw@db:99999/runs', redisUrl: 'redis://[' };
    expect(() => parseConfig(JSON.stringify(config), 'c.json')).toThrow(
      'invalid config file c.json:\n  databaseUrl: must be a postgres:// URL\n  redisUrl: must be a redis:// URL',
    );
    // Told once, not also as credentials that do not decode.
    expect(() =>
      parseConfig(JSON.stringify({ databaseUrl: 'postgres://db/x', redisUrl: 'redis://[bad' }), 'c.json'),
    ).toThrow(/^invalid config file c\.json:\n {2}redisUrl: must be a redis:\/\/ URL$/);
    expect(() =>
      parseConfig(
        JSON.stringify({ databaseUrl: 'postgres://db/x', redisUrl: 'redis://:%zz@cache' }),
        'c.json',
      ),
    ).toThrow(
      /^invalid config file c\.json:\n {2}redisUrl: must have a user name and password percent-encoded/,
    );
    const good = { databaseUrl: 'postgresql://u:pw@db:5432/runs', redisUrl: 'rediss://cache:6380' };
    expect(parseConfig(JSON.stringify(good), 'c.json')).toMatchObject(good);
  });
});

describe('model options in the config file', () => {
  it('sends temperature, maxTokens (as maxTokensField) and extraBody to the model server', async () => {
    const fake = await createFakeOpenAIServer();
    try {
      fake.enqueue({ chunks: ['ok'] });
      fake.enqueue({ chunks: ['ok'] });
      const config = parseConfig(
        JSON.stringify({
          agents: [
            {
              name: 'Tuned',
              model: {
                provider: 'openai',
                id: 'm',
                baseURL: fake.url,
                temperature: 0.2,
                maxTokens: 64,
                extraBody: { top_p: 0.9, reasoning_effort: 'low' },
              },
            },
            {
              name: 'Completion Tokens',
              model: {
                provider: 'openai',
                id: 'm',
                baseURL: fake.url,
                maxTokens: 8,
                maxTokensField: 'max_completion_tokens',
              },
            },
          ],
        }),
        'test.json',
      );
      const [tuned, completionTokens] = await createAgents(config);
      expect(await tuned!.run('hi')).toMatchObject({ status: 'completed', content: 'ok' });
      const first = await fake.nextRequest();
      expect(first.body).toMatchObject({
        model: 'm',
        temperature: 0.2,
        max_tokens: 64,
        top_p: 0.9,
        reasoning_effort: 'low',
      });
      expect(await completionTokens!.run('hi')).toMatchObject({ status: 'completed' });
      const second = await fake.nextRequest();
      expect(second.body).toMatchObject({ max_completion_tokens: 8 });
      expect(second.body).not.toHaveProperty('max_tokens');
      await tuned!.orchestrator.shutdown();
    } finally {
      await fake.close();
    }
  });

  it('sends a model the key its apiKeyEnv names, or none when that is unset, never OPENAI_API_KEY; without it, OPENAI_API_KEY as the SDK does', async () => {
    const fake = await createFakeOpenAIServer();
    const saved = { openai: process.env.OPENAI_API_KEY, groq: process.env.RUNSTATE_TEST_GROQ_KEY };
    process.env.OPENAI_API_KEY = 'sk-openai-secret';
    process.env.RUNSTATE_TEST_GROQ_KEY = 'gsk-groq';
    delete process.env.RUNSTATE_TEST_UNSET_KEY;
    try {
      const model = (apiKeyEnv?: string) => ({ provider: 'openai', id: 'm', baseURL: fake.url, apiKeyEnv });
      const config = parseConfig(
        JSON.stringify({
          agents: [
            { name: 'Groq', model: model('RUNSTATE_TEST_GROQ_KEY') },
            { name: 'Local', model: model('RUNSTATE_TEST_UNSET_KEY') },
            { name: 'Default', model: model() },
          ],
        }),
        'test.json',
      );
      const agents = await createAgents(config);
      const sent: unknown[] = [];
      for (const agent of agents) {
        fake.enqueue({ chunks: ['ok'] });
        expect(await agent.run('hi')).toMatchObject({ status: 'completed' });
        sent.push((await fake.nextRequest()).headers.authorization);
      }
      expect(sent).toEqual(['Bearer gsk-groq', 'Bearer not-needed', 'Bearer sk-openai-secret']);
      await agents[0]!.orchestrator.shutdown();
    } finally {
      for (const [name, value] of [
        ['OPENAI_API_KEY', saved.openai],
        ['RUNSTATE_TEST_GROQ_KEY', saved.groq],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      await fake.close();
    }
    expect(() =>
      parseConfig(
        JSON.stringify({
          agents: [{ name: 'A', model: { ...{ provider: 'openai', id: 'm' }, apiKeyEnv: 'a-b' } }],
        }),
        'c.json',
      ),
    ).toThrow(/agents\.0\.model\.apiKeyEnv: must be the name of an environment variable/);
    // No baseURL and its variable unset: as without apiKeyEnv (here, with no OPENAI_API_KEY: offline).
    const openaiKey = process.env.OPENAI_API_KEY;
    delete process.env.OPENAI_API_KEY;
    try {
      const model = { provider: 'openai', id: 'm', apiKeyEnv: 'RUNSTATE_TEST_UNSET_KEY' };
      const [agent] = await createAgents(
        parseConfig(JSON.stringify({ agents: [{ name: 'A', model }] }), 'c.json'),
      );
      expect(agent!.model.provider).toBe('offline');
      await agent!.orchestrator.shutdown();
    } finally {
      if (openaiKey !== undefined) process.env.OPENAI_API_KEY = openaiKey;
    }
  });

  it('refuses wrong model options, naming each field', () => {
    const model = {
      provider: 'openai',
      id: 'm',
      temperature: 3,
      maxTokens: 0,
      maxTokensField: 'tokens',
      sendReasoning: 'no',
    };
    expect(() => parseConfig(JSON.stringify({ agents: [{ name: 'A', model }] }), 'c.json')).toThrow(
      /agents\.0\.model\.temperature: [\s\S]*agents\.0\.model\.maxTokens: [\s\S]*agents\.0\.model\.maxTokensField: [\s\S]*agents\.0\.model\.sendReasoning: /,
    );
    const strict = { provider: 'openai', id: 'm', sendReasoning: false };
    expect(() =>
      parseConfig(JSON.stringify({ agents: [{ name: 'A', model: strict }] }), 'c.json'),
    ).not.toThrow();
  });

  it('refuses a model server address that is no http(s) URL (a missing http:// makes `localhost:` its scheme)', () => {
    for (const baseURL of ['localhost:18399/v1', 'ftp://example.com/v1', 'nope']) {
      const model = { provider: 'openai', id: 'm', baseURL };
      expect(() => parseConfig(JSON.stringify({ agents: [{ name: 'A', model }] }), 'c.json')).toThrow(
        /agents\.0\.model\.baseURL: must be an http:\/\/ or https:\/\/ URL/,
      );
    }
    const model = { provider: 'openai', id: 'm', baseURL: 'https://example.com/v1' };
    expect(() => parseConfig(JSON.stringify({ agents: [{ name: 'A', model }] }), 'c.json')).not.toThrow();
  });
});

describe('the config file example of docs/http-api.md', () => {
  it('is a valid config file', async () => {
    const doc = await readFile(new URL('../../docs/http-api.md', import.meta.url), 'utf8');
    const example = /### The config file\s+```json\n([\s\S]*?)\n```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    const config = parseConfig(example!, 'docs/http-api.md');
    expect(config.agents?.at(-1)?.limits).toEqual({ idleTimeoutMs: 180000, retry: { maxAttempts: 1 } });
  });
});

describe('allowedHosts in the config file', () => {
  it("takes '*' or host names, and refuses a name with a port or a space, naming the field", () => {
    expect(parseConfig(JSON.stringify({ allowedHosts: ['api.example.com'] }), 't.json').allowedHosts).toEqual(
      ['api.example.com'],
    );
    expect(parseConfig(JSON.stringify({ allowedHosts: '*' }), 't.json').allowedHosts).toBe('*');
    expect(() => parseConfig(JSON.stringify({ allowedHosts: ['api.example.com:443'] }), 't.json')).toThrow(
      /allowedHosts\.0: must be a host name/,
    );
    expect(() => parseConfig(JSON.stringify({ allowedHosts: 'any' }), 't.json')).toThrow(
      /allowedHosts: must be '\*' or a list of host names/,
    );
  });
});
