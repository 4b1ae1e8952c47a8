/** Run limits from the config file: server-wide, per agent, validated. */
import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/server/config-file.js';
import { createAgents } from '../../src/server/create-agents.js';
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

  it('refuses a security key with surrounding whitespace', () => {
    expect(() => parseConfig(JSON.stringify({ securityKey: 'key\n' }), 'c.json')).toThrow(
      /securityKey: starts or ends with whitespace/,
    );
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
