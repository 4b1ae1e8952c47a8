/**
 * The inspector behind createApp's bearer auth: its static shell (page, script, style, elkjs, the
 * chart) is open, so a browser can load it; run data (runs, feed, cancel) needs the token.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent.js';
import { OfflineModel } from '../../src/model/offline-model.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { createApp, type RunstateApp } from '../../src/server/index.js';
import { createInspector, type Inspector, type InspectorOptions } from '../../src/inspect/index.js';
import { listen } from '../support/listen.js';

const KEY = 'inspector-test-key';
const AUTH = { authorization: `Bearer ${KEY}` };
const LONG_STORY = 'Write a very long story about a lighthouse keeper who learns to sail, in 3000 words';

interface Target {
  url: string;
  agent: Agent;
  close(): Promise<void>;
}

async function start(inspectorOptions: InspectorOptions = {}): Promise<Target> {
  const inspector: Inspector = createInspector(inspectorOptions);
  const orchestrator = createOrchestrator();
  inspector.attach(orchestrator);
  const agent = new Agent({
    name: 'StorytellerAgent',
    model: new OfflineModel({ tokensPerSecond: 20 }),
    orchestrator,
  });
  const runstate: RunstateApp = createApp({
    agents: [agent],
    securityKey: KEY,
    mount: { '/inspect': inspector.handler },
  });
  const server = await listen(runstate.app);
  return {
    url: server.url,
    agent,
    async close() {
      inspector.close();
      await runstate.shutdown();
      await server.close();
    },
  };
}

/** Opens the feed, reads its status and headers, and closes it. */
async function feedStatus(url: string, headers: Record<string, string> = {}): Promise<[number, string]> {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  const type = response.headers.get('content-type') ?? '';
  controller.abort();
  await response.body?.cancel().catch(() => {});
  return [response.status, type];
}

describe('the inspector mounted in createApp with a security key', () => {
  let target: Target;
  beforeEach(async () => {
    target = await start();
  });
  afterEach(async () => {
    await target.close();
  });

  it('serves its static shell without a token, same-origin CSP kept', async () => {
    const mount = await fetch(`${target.url}/inspect`, { redirect: 'manual' });
    expect(mount.status).toBe(302);
    expect(mount.headers.get('location')).toBe('/inspect/');

    const page = await fetch(`${target.url}/inspect/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(await page.text()).toContain('id="auth"');

    for (const file of ['inspector.js', 'inspector.css', 'vendor/elk.bundled.js', 'graph.json']) {
      const response = await fetch(`${target.url}/inspect/${file}`);
      expect(response.status, file).toBe(200);
      await response.arrayBuffer();
    }
    const graph = (await (await fetch(`${target.url}/inspect/graph.json`)).json()) as { id: string };
    expect(graph.id).toBe('run');
  });

  it('keeps runs.json, the feed and cancel behind the token', async () => {
    const runs = await fetch(`${target.url}/inspect/runs.json`);
    expect(runs.status).toBe(401);
    expect(runs.headers.get('www-authenticate')).toBe('Bearer');
    expect(await runs.json()).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(await feedStatus(`${target.url}/inspect/feed`)).toEqual([401, expect.stringContaining('json')]);
    const wrong = { authorization: 'Bearer not-the-key' };
    expect(await feedStatus(`${target.url}/inspect/feed`, wrong)).toEqual([401, expect.any(String)]);
    expect((await fetch(`${target.url}/inspect/runs.json`, { headers: wrong })).status).toBe(401);

    const run = target.agent.run(LONG_STORY, { stream: true });
    const cancelUrl = `${target.url}/agents/${target.agent.id}/runs/${run.runId}/cancel`;
    expect((await fetch(cancelUrl, { method: 'POST' })).status).toBe(401);

    const listed = await fetch(`${target.url}/inspect/runs.json`, { headers: AUTH });
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { run_id: string }[]).map((summary) => summary.run_id)).toContain(
      run.runId,
    );
    expect(await feedStatus(`${target.url}/inspect/feed?run=${run.runId}`, AUTH)).toEqual([
      200,
      expect.stringContaining('text/event-stream'),
    ]);
    const cancelled = await fetch(cancelUrl, { method: 'POST', headers: AUTH });
    expect(cancelled.status).toBe(200);
    expect(await cancelled.json()).toMatchObject({ run_id: run.runId, status: 'cancelled' });
    expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
  });

  it('opens exact paths only: other spellings and unknown files need the token', async () => {
    for (const path of [
      '/inspect/runs.json',
      '/inspect//runs.json',
      '/INSPECT/runs.json',
      '/inspect/graph.json/x',
      '/inspect/%72uns.json',
      '/inspect/vendor/',
      '/agents',
    ]) {
      expect((await fetch(`${target.url}${path}`)).status, path).toBe(401);
    }
    expect((await fetch(`${target.url}/health`)).status).toBe(200);
  });
});

describe('the inspector with its own cancel route, with a security key', () => {
  it('needs the token for POST <mount>/runs/:run_id/cancel', async () => {
    const target = await start({ cancelRoute: 'inspector' });
    try {
      const run = target.agent.run(LONG_STORY, { stream: true });
      const url = `${target.url}/inspect/runs/${run.runId}/cancel`;
      expect((await fetch(url, { method: 'POST' })).status).toBe(401);
      const response = await fetch(url, { method: 'POST', headers: AUTH });
      expect(response.status).toBe(200);
      expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    } finally {
      await target.close();
    }
  });
});
