import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, get, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { runMachine } from '../../machines/run.machine.js';
import { createFakeModel } from '../../src/testing/fake-model.js';
import { Agent } from '../../src/agent.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { createApp } from '../../src/server/index.js';
import {
  createInspector,
  machineGraph,
  type FeedMessage,
  type InspectorOptions,
  type RunSummary,
} from '../../src/inspect/index.js';
import { ROOT, spawnCli } from '../support/cli-process.js';
import { startInspectorServer, type InspectorServer } from '../support/inspector-server.js';
import { listen } from '../support/listen.js';
import { rawRequest } from '../support/app.js';
import { collect } from '../support/collect.js';
import { confirmingTool } from '../support/confirming-tool.js';

let server: InspectorServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Reads an SSE response as feed messages; `next(test)` waits for the next matching one. */
function readFeed(response: Response) {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const queue: FeedMessage[] = [];
  let buffer = '';
  let ended = false;
  async function pull(): Promise<boolean> {
    const { value, done } = await reader.read();
    if (done) {
      ended = true;
      return false;
    }
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.+)$/m.exec(frame)?.[1];
      const data = /^data: (.+)$/m.exec(frame)?.[1];
      if (event && data) {
        const message = JSON.parse(data) as FeedMessage;
        expect(message.type).toBe(event);
        queue.push(message);
      }
    }
    return true;
  }
  return {
    async next(test: (message: FeedMessage) => boolean = () => true): Promise<FeedMessage> {
      for (;;) {
        const index = queue.findIndex(test);
        if (index >= 0) return queue.splice(0, index + 1).at(-1)!;
        queue.length = 0;
        if (!(await pull())) throw new Error('the feed ended');
      }
    },
    async ended(): Promise<boolean> {
      while (await pull());
      return ended;
    },
    cancel: () => reader.cancel(),
  };
}

describe('the inspector handler on node:http', () => {
  it('redirects /inspect to /inspect/ so the page’s relative URLs resolve under it', async () => {
    server = await startInspectorServer();
    const response = await fetch(`${server.url}/inspect?x=1`, { redirect: 'manual' });
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe('/inspect/?x=1');
  });

  it('serves the page, its script and style, with a same-origin-only CSP and no external URL', async () => {
    server = await startInspectorServer();
    const page = await fetch(`${server.url}/inspect/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain('<script src="vendor/elk.bundled.js"');
    for (const [path, type] of [
      ['inspector.js', 'text/javascript; charset=utf-8'],
      ['inspector.css', 'text/css; charset=utf-8'],
    ] as const) {
      const response = await fetch(`${server.url}/inspect/${path}`);
      expect(response.headers.get('content-type')).toBe(type);
      const text = await response.text();
      // The SVG namespace is an identifier, not a request.
      expect(text.replaceAll('http://www.w3.org/2000/svg', '')).not.toMatch(/\bhttps?:\/\//);
    }
    expect(html).not.toMatch(/\bhttps?:\/\//);
  });

  it('serves elkjs’s browser bundle from the installed package, gzipped when accepted', async () => {
    server = await startInspectorServer();
    const original = readFileSync(new URL('../../node_modules/elkjs/lib/elk.bundled.js', import.meta.url));
    const plain = await fetch(`${server.url}/inspect/vendor/elk.bundled.js`, {
      headers: { 'accept-encoding': 'identity' },
    });
    expect(plain.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(Buffer.from(await plain.arrayBuffer()).equals(original)).toBe(true);

    const { url } = server;
    // fetch would decode it: read the raw bytes.
    const gzipped = await new Promise<IncomingMessage>((resolve) => {
      get(`${url}/inspect/vendor/elk.bundled.js`, { headers: { 'accept-encoding': 'gzip' } }, resolve);
    });
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    const chunks: Buffer[] = [];
    for await (const chunk of gzipped) chunks.push(chunk as Buffer);
    expect(gunzipSync(Buffer.concat(chunks)).equals(original)).toBe(true);
  });

  it('serves the run machine’s graph as JSON', async () => {
    server = await startInspectorServer();
    const response = await fetch(`${server.url}/inspect/graph.json`);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await response.json()).toEqual(machineGraph(runMachine));
  });

  it('streams the feed over SSE: a new run appears, its cancel through the AgentOS route shows', async () => {
    server = await startInspectorServer({ model: createFakeModel() });
    const response = await fetch(`${server.url}/inspect/feed`);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const feed = readFeed(response);
    expect(await feed.next()).toMatchObject({ type: 'snapshot', runs: [] });

    const run = server.agent.run('Tell me a story', { stream: true });
    const seen = await feed.next((m) => m.type === 'runs' && m.runs.some((r) => r.run_id === run.runId));
    expect(seen).toMatchObject({ runs: [{ agent_id: 'storytelleragent', status: 'streaming' }] });

    const cancel = await fetch(`${server.url}/agents/storytelleragent/runs/${run.runId}/cancel`, {
      method: 'POST',
    });
    expect(await cancel.json()).toEqual({ run_id: run.runId, status: 'cancelled' });
    const cancelled = await feed.next((m) => m.type === 'runs' && m.runs[0]!.status === 'cancelled');
    expect(cancelled).toMatchObject({ runs: [{ value: 'cancelled', cancel_reason: 'api' }] });
    await feed.cancel();
  });

  it('follows one run with ?run=', async () => {
    server = await startInspectorServer({ model: createFakeModel() });
    const run = server.agent.run('hi', { stream: true });
    const feed = readFeed(await fetch(`${server.url}/inspect/feed?run=${run.runId}`));
    expect(await feed.next((m) => m.type === 'detail')).toMatchObject({ run_id: run.runId, found: true });
    server.orchestrator.cancelRun(run.runId, 'api');
    const end = await feed.next((m) => m.type === 'append' && m.log.some((entry) => entry.kind === 'end'));
    expect(end).toMatchObject({ run_id: run.runId });
    await feed.cancel();
  });

  it('refuses a ?run= it cannot decode, or sent twice, as the API refuses a query parameter', async () => {
    server = await startInspectorServer();
    const undecodable = await fetch(`${server.url}/inspect/feed?run=%FF`);
    expect(undecodable.status).toBe(400);
    expect(await undecodable.json()).toEqual({
      detail: 'run: cannot be decoded (a percent-escape that is malformed or not UTF-8)',
      code: 'INVALID_INPUT',
      field: 'run',
    });
    const twice = await fetch(`${server.url}/inspect/feed?run=a&run=b`);
    expect(twice.status).toBe(422);
    expect(await twice.json()).toMatchObject({
      field: 'run',
      detail: 'run: must be sent once (it was sent 2 times)',
    });
  });

  it('answers a HEAD of the feed with its headers only, and ends it at once', async () => {
    server = await startInspectorServer();
    // With `Connection: close`, the answer is read until the server ends it.
    const head = await rawRequest(`${server.url}/inspect/feed`, 'HEAD /inspect/feed HTTP/1.1');
    expect(head.status).toBe(200);
    expect(head.headers).toMatch(/^content-type: text\/event-stream$/im);
    expect(head.body).toBe('');
  });

  it('ends open feeds on close(), and refuses new ones', async () => {
    server = await startInspectorServer();
    const feed = readFeed(await fetch(`${server.url}/inspect/feed`));
    await feed.next();
    server.inspector.close();
    expect(await feed.ended()).toBe(true);
    const refused = await fetch(`${server.url}/inspect/feed`);
    expect(refused.status).toBe(503);
  });

  it('answers 404 JSON for what it does not serve, and hands it to next() when mounted with one', async () => {
    server = await startInspectorServer();
    const response = await fetch(`${server.url}/inspect/nope`);
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ detail: 'GET /inspect/nope not found', code: 'NOT_FOUND' });
    const doubled = await fetch(`${server.url}/inspect//x`);
    expect([doubled.status, await doubled.json()]).toEqual([
      404,
      { detail: 'GET /inspect//x not found', code: 'NOT_FOUND' },
    ]);
    // The AgentOS route is the default: the handler has no cancel route of its own.
    const cancel = await fetch(`${server.url}/inspect/runs/x/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(404);
    // A path it serves, asked with another method: 405 with what it answers.
    for (const [method, path] of [
      ['POST', '/inspect/graph.json'],
      ['DELETE', '/inspect/runs.json'],
      ['PUT', '/inspect/'],
      ['PUT', '/inspect'],
      ['POST', '/inspect/feed'],
      ['PATCH', '/inspect/inspector.js'],
    ] as const) {
      const refused = await fetch(`${server.url}${path}`, { method, redirect: 'manual' });
      expect(
        [refused.status, refused.headers.get('allow'), await refused.json()],
        `${method} ${path}`,
      ).toEqual([
        405,
        'GET, HEAD',
        { detail: `no route for ${method} ${path}: it answers GET, HEAD`, code: 'NOT_FOUND' },
      ]);
    }

    const { handler } = server.inspector;
    const passed: string[] = [];
    const outer = await listen((req: IncomingMessage, res: ServerResponse) => {
      // What a router does when it mounts the handler at /inspect: strips the prefix, keeps originalUrl.
      Object.assign(req, { originalUrl: req.url, url: req.url!.slice('/inspect'.length) || '/' });
      handler(req, res, (error?: unknown) => {
        passed.push(error === undefined ? req.url! : `error: ${(error as Error).message}`);
        res.end('next');
      });
    });
    const base = outer.url;
    expect(await (await fetch(`${base}/inspect/other`)).text()).toBe('next');
    expect(passed).toEqual(['/other']);
    // A path that begins `//` once the mount is stripped is a path, not a URL with no host (a 400).
    expect(await (await fetch(`${base}/inspect//`)).text()).toBe('next');
    expect(passed).toEqual(['/other', '//']);
    const redirect = await fetch(`${base}/inspect`, { redirect: 'manual' });
    expect(redirect.headers.get('location')).toBe('/inspect/');
    expect((await fetch(`${base}/inspect/graph.json`)).status).toBe(200);
    // Mounted in an app (a `next`), the app's settings decide the host: no check of its own.
    const named = await new Promise<string>((resolve, reject) => {
      get(`${base}/inspect/runs.json`, { headers: { host: 'app.example' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(`${res.statusCode} ${body}`));
      }).on('error', reject);
    });
    expect(named).toBe('200 []');
    await outer.close();
  });
});

describe('the inspector’s own cancel route (cancelRoute: "inspector")', () => {
  it('cancels an active run (200), says so again (200), refuses a finished one (409), 404 for unknown', async () => {
    const model = createFakeModel();
    server = await startInspectorServer({ model, inspector: { cancelRoute: 'inspector' } });
    const cancel = (runId: string) =>
      fetch(`${server!.url}/inspect/runs/${runId}/cancel`, { method: 'POST' });

    const active = server.agent.run('one', { stream: true });
    const first = await cancel(active.runId);
    expect([first.status, await first.json()]).toEqual([200, { run_id: active.runId, status: 'cancelled' }]);
    expect(await server.orchestrator.getRun(active.runId)).toMatchObject({
      status: 'cancelled',
      cancel_reason: 'api',
    });
    expect((await cancel(active.runId)).status).toBe(200);

    const done = server.agent.run('two', { stream: true });
    (await model.nextCall()).end(); // the first call was cancelled above
    (await model.nextCall()).end();
    await done.result;
    const refused = await cancel(done.runId);
    // The same answer as the server's AgentOS route: the orchestrator decides it, the error map says it.
    expect([refused.status, await refused.json()]).toEqual([
      409,
      {
        detail: `run ${done.runId} already finished: completed`,
        code: 'RUN_ALREADY_FINISHED',
        run_id: done.runId,
        status: 'completed',
      },
    ]);
    const unknown = await cancel('unknown');
    expect([unknown.status, await unknown.json()]).toEqual([
      404,
      { detail: 'run unknown not found', code: 'RUN_NOT_FOUND' },
    ]);

    // A run id that is no valid percent-encoding: a 400, and the plain node:http server lives on.
    const malformed = await cancel('%ZZ');
    expect([malformed.status, await malformed.json()]).toEqual([
      400,
      { detail: 'the run id is not valid percent-encoding', code: 'INVALID_INPUT' },
    ]);
    expect((await fetch(`${server.url}/inspect/graph.json`)).status).toBe(200);
    // Read instead of posted: 405, the route answers POST only.
    const read = await fetch(`${server.url}/inspect/runs/${active.runId}/cancel`);
    expect([read.status, read.headers.get('allow')]).toEqual([405, 'POST']);
  });

  it('cancels a paused run (200), as the AgentOS route does: its waiting call ends cancelled', async () => {
    const publish = confirmingTool();
    const model = createFakeModel({ onCall: (call) => call.callTools([{ id: 'call_p', name: 'publish' }]) });
    server = await startInspectorServer({ model, inspector: { cancelRoute: 'inspector' } });
    const run = server.orchestrator.startRun({
      agentId: 'publisher',
      agentName: 'Publisher',
      model,
      input: 'publish it',
      tools: [publish],
    });
    // Its events end at RunPaused: the run waits for a person.
    expect((await collect(run.events())).at(-1)?.event).toBe('RunPaused');
    expect(server.inspector.listRuns().find((summary) => summary.run_id === run.runId)?.status).toBe(
      'paused',
    );

    const answer = await fetch(`${server.url}/inspect/runs/${run.runId}/cancel`, { method: 'POST' });
    expect([answer.status, await answer.json()]).toEqual([200, { run_id: run.runId, status: 'cancelled' }]);
    const output = await server.orchestrator.result(run.runId);
    expect(output).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    expect(output.tools.map((call) => call.status)).toEqual(['cancelled']);
  });

  it('answers 400 to a request target that is no URL (fetch cannot send one: a raw socket does)', async () => {
    const inspector = createInspector();
    const plain = await listen((req, res) => inspector.handler(req, res));
    const answer = await rawRequest(plain.url, 'GET http://[ HTTP/1.1');
    expect(answer.status).toBe(400);
    expect(answer.body).toContain(
      '{"detail":"the request target is not a valid URL","code":"INVALID_INPUT"}',
    );
    expect((await fetch(`${plain.url}/inspect/graph.json`)).status).toBe(200); // still serving
    inspector.close();
    await plain.close();
  });
});

describe('the inspector on a server of its own, and pages of other sites', () => {
  it('answers localhost and IP addresses only, and cancels from its own pages only (403 otherwise)', async () => {
    const model = createFakeModel();
    server = await startInspectorServer({ model, inspector: { cancelRoute: 'inspector' } });
    const port = new URL(server.url).port;
    const runs = (host: string) =>
      new Promise<number>((resolve, reject) => {
        get(`${server!.url}/inspect/runs.json`, { headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        }).on('error', reject);
      });
    // A page whose name was made to point here (DNS rebinding) reads no runs.
    expect(await runs(`evil.example:${port}`)).toBe(403);
    expect(await runs(`localhost:${port}`)).toBe(200);
    expect(await runs(`127.0.0.1:${port}`)).toBe(200);

    const active = server.agent.run('one', { stream: true });
    const cancel = (origin: string) =>
      fetch(`${server!.url}/inspect/runs/${active.runId}/cancel`, { method: 'POST', headers: { origin } });
    const foreign = await cancel('http://evil.example');
    expect([foreign.status, await foreign.json()]).toEqual([
      403,
      {
        detail:
          "a POST from a page of http://evil.example is refused: only this server's own pages may (mount the inspector in createApp to allow others with cors)",
        code: 'FORBIDDEN',
      },
    ]);
    expect(await server.orchestrator.getRun(active.runId)).toMatchObject({ status: 'streaming' });
    // Its own page's cancel button.
    expect((await cancel(server.url)).status).toBe(200);
  });
});

describe('the inspector on a server of its own, reached by a name (allowedHosts)', () => {
  /** Status and body of `GET /inspect/runs.json` sent with `Host: <host>`. */
  const runsAs = (url: string, host: string) =>
    new Promise<string>((resolve, reject) => {
      get(`${url}/inspect/runs.json`, { headers: { host } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(`${res.statusCode} ${body}`));
      }).on('error', reject);
    });

  it('answers the names it is given, and tells a refused one what it can be told', async () => {
    server = await startInspectorServer({ inspector: { allowedHosts: ['DevBox.lan'] } });
    expect(await runsAs(server.url, 'devbox.lan:7778')).toBe('200 []');
    expect(await runsAs(server.url, '127.0.0.1')).toBe('200 []');
    expect(JSON.parse((await runsAs(server.url, 'evil.example')).slice(4))).toEqual({
      detail:
        'this server does not answer to the host "evil.example": a web page could read runs through a ' +
        "name that points here (DNS rebinding). Add it to createInspector's allowedHosts",
      code: 'FORBIDDEN',
    });
  });

  it("answers any name with '*', and refuses a list that is not of host names", async () => {
    server = await startInspectorServer({ inspector: { allowedHosts: '*' } });
    expect(await runsAs(server.url, 'evil.example')).toBe('200 []');
    expect(() => createInspector({ allowedHosts: ['devbox.lan:7778'] })).toThrow(
      expect.objectContaining({
        code: 'INVALID_INPUT',
        message: 'options.allowedHosts.0: must be a host name, without a port',
      }),
    );
  });
});

describe('the feed with a fast reader and a snapshot larger than the socket buffer', () => {
  // A server in a child process: the bug this guards against froze the whole event loop, which in
  // this process would have frozen the test too.
  it('sends one snapshot, and the server keeps answering /health and SIGTERM', async () => {
    const cli = spawnCli(['serve', '--port', '0']);
    const url = await cli.listening();
    const agent = `${url}/agents/story-writer-agent`;
    const post = (message: string) =>
      fetch(`${agent}/runs`, { method: 'POST', body: new URLSearchParams({ message, stream: 'false' }) });
    // 100 runs listed: the snapshot is about 40 KB, more than a socket's 16 KB buffer.
    for (let i = 0; i < 10; i++) {
      await Promise.all(
        Array.from({ length: 10 }, (_, j) => post(`run ${i * 10 + j} in 2 words`).then((r) => r.json())),
      );
    }

    // A raw socket read as fast as it comes: frames counted, only the unfinished one kept.
    const { hostname, port } = new URL(url);
    const socket = connect(Number(port), hostname);
    socket.write(`GET /inspect/feed HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
    let rest = '';
    const counts = new Map<string, number>();
    const seen: string[] = [];
    let wake: (() => void) | undefined;
    socket.on('data', (chunk: Buffer) => {
      rest += chunk.toString('latin1');
      let end: number;
      while ((end = rest.indexOf('\n\n')) >= 0) {
        const frame = rest.slice(0, end);
        rest = rest.slice(end + 2);
        const type = /^event: (\w+)$/m.exec(frame)?.[1];
        if (!type) continue;
        counts.set(type, (counts.get(type) ?? 0) + 1);
        if (type === 'runs') seen.push(frame);
        wake?.();
      }
    });
    const until = async (test: () => boolean) => {
      while (!test()) await new Promise<void>((resolve) => (wake = resolve));
    };
    await until(() => counts.get('snapshot') === 1);

    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    // One more run: its `runs` message comes after anything the feed sent before, a second snapshot included.
    const last = (await (await post('the last run in 2 words')).json()) as { run_id: string };
    await until(() => seen.some((frame) => frame.includes(last.run_id)));
    expect(counts.get('snapshot')).toBe(1);

    cli.child.kill('SIGTERM');
    expect(await cli.exit).toBe(0);
    socket.destroy();
  });
});

describe('the quick start of docs/inspector.md', () => {
  it('serves the page on 127.0.0.1 with a run on it', async () => {
    const doc = await readFile(join(ROOT, 'docs/inspector.md'), 'utf8');
    const code = /## Quick start\s+```ts\n([\s\S]*?)\n```/.exec(doc)?.[1];
    expect(code).toContain(".listen(7778, '127.0.0.1',");
    // A free port instead of 7778; the file inside the package, so that `runstate` resolves to it.
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    await mkdir(join(ROOT, '.scratch'), { recursive: true }); // ignored by git and the linters
    const dir = await mkdtemp(join(ROOT, '.scratch', 'inspector-quickstart-'));
    try {
      const file = join(dir, 'quickstart.ts');
      await writeFile(file, code!.replaceAll('7778', String(port)));
      const quickstart = spawnCli([], {}, [
        process.execPath,
        '--import',
        'tsx',
        '--conditions=runstate-source',
        file,
      ]);
      const [, url] = (await quickstart.waitFor(/open (http:\/\/127\.0\.0\.1:\d+\/inspect\/)/)) as string[];
      const runs = (await (await fetch(`${url}runs.json`)).json()) as RunSummary[];
      expect(runs).toHaveLength(1);
      expect(runs[0]).toMatchObject({
        agent_name: 'StorytellerAgent',
        run_input: 'Write a story about a lighthouse keeper',
      });
      quickstart.child.kill('SIGTERM');
      await quickstart.exit;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the cancel URL the page is given, wherever it is mounted', () => {
  /** The `cancel_url` of the first snapshot of the feed at `url`. */
  async function cancelUrlOf(url: string): Promise<string> {
    const response = await fetch(url);
    expect(response.status).toBe(200);
    const feed = readFeed(response);
    const snapshot = await feed.next();
    await feed.cancel();
    return snapshot.type === 'snapshot' ? snapshot.cancel_url : `not a snapshot: ${snapshot.type}`;
  }

  /** createApp's app with the inspector at `mountPath`, itself mounted at `appPath` of an outer app. */
  async function startApp(mountPath: string, appPath = '', inspectorOptions: InspectorOptions = {}) {
    const inspector = createInspector(inspectorOptions);
    const orchestrator = createOrchestrator();
    inspector.attach(orchestrator);
    const agent = new Agent({ name: 'Writer', model: createFakeModel(), orchestrator });
    const runstate = createApp({ agents: [agent], mount: { [mountPath]: inspector.handler } });
    const outer = express();
    outer.use(appPath || '/', runstate.app);
    const listening = await listen(appPath ? outer : runstate.app);
    return {
      url: listening.url,
      async close() {
        inspector.close();
        await runstate.shutdown();
        await listening.close();
      },
    };
  }

  it('mounted by createApp at any depth: the AgentOS route under that app’s own root', async () => {
    for (const [mountPath, appPath, expected] of [
      ['/inspect', '', '/agents/{agent_id}/runs/{run_id}/cancel'],
      ['/debug/inspect', '', '/agents/{agent_id}/runs/{run_id}/cancel'],
      ['/debug/inspect', '/api', '/api/agents/{agent_id}/runs/{run_id}/cancel'],
    ] as const) {
      const app = await startApp(mountPath, appPath);
      try {
        expect(await cancelUrlOf(`${app.url}${appPath}${mountPath}/feed`), `${appPath}${mountPath}`).toBe(
          expected,
        );
        // The route it names is the app's: a cancel of an unknown run is its answer, not "no route".
        const cancel = await fetch(
          `${app.url}${expected.replace('{agent_id}', 'writer').replace('{run_id}', 'x')}`,
          {
            method: 'POST',
          },
        );
        expect(await cancel.text(), `${appPath}${mountPath}`).toContain('run x of agent writer not found');
      } finally {
        await app.close();
      }
    }
  });

  it('with apiBase: the AgentOS route under it, by createApp or a plain node:http server', async () => {
    const app = await startApp('/debug/inspect', '', { apiBase: '/elsewhere/' });
    try {
      expect(await cancelUrlOf(`${app.url}/debug/inspect/feed`)).toBe(
        '/elsewhere/agents/{agent_id}/runs/{run_id}/cancel',
      );
    } finally {
      await app.close();
    }
    server = await startInspectorServer({ inspector: { apiBase: '/' } });
    expect(await cancelUrlOf(`${server.url}/inspect/feed`)).toBe('/agents/{agent_id}/runs/{run_id}/cancel');
  });

  it('on a plain node:http server with no apiBase: beside the page’s mount, as before', async () => {
    server = await startInspectorServer();
    expect(await cancelUrlOf(`${server.url}/inspect/feed`)).toBe('../agents/{agent_id}/runs/{run_id}/cancel');
  });

  it('refuses an apiBase that is no absolute path, or that the inspector’s own cancel route would ignore', () => {
    expect(() => createInspector({ apiBase: 'api' })).toThrow(
      expect.objectContaining({
        code: 'INVALID_INPUT',
        message: 'options.apiBase: must be an absolute path, such as / or /api',
      }),
    );
    expect(() => createInspector({ apiBase: '/', cancelRoute: 'inspector' })).toThrow(
      expect.objectContaining({
        code: 'INVALID_INPUT',
        message:
          "options.apiBase: apiBase is where the AgentOS routes are: it means nothing with cancelRoute: 'inspector'",
      }),
    );
  });
});

describe('basePath, as it may be written', () => {
  /** The status (and redirect) of each path on a node:http server of the inspector alone. */
  async function statuses(basePath: string, paths: readonly string[]): Promise<string[]> {
    const inspector = createInspector({ basePath });
    const plain = await listen((req, res) => inspector.handler(req, res));
    try {
      return await Promise.all(
        paths.map(async (path) => {
          const response = await fetch(`${plain.url}${path}`, { redirect: 'manual' });
          await response.body?.cancel();
          const location = response.headers.get('location');
          return `${path} ${response.status}${location ? ` → ${location}` : ''}`;
        }),
      );
    } finally {
      inspector.close();
      await plain.close();
    }
  }

  it('serves the page at the root with basePath "/", and a GET is never answered 405', async () => {
    expect(await statuses('/', ['/', '/inspector.js', '/graph.json', '/runs.json'])).toEqual([
      '/ 200',
      '/inspector.js 200',
      '/graph.json 200',
      '/runs.json 200',
    ]);
  });

  it('reads a trailing slash as none: basePath "/inspect/" is "/inspect"', async () => {
    expect(
      await statuses('/inspect/', ['/inspect', '/inspect/', '/inspect/inspector.js', '/inspect/runs.json']),
    ).toEqual([
      '/inspect 302 → /inspect/',
      '/inspect/ 200',
      '/inspect/inspector.js 200',
      '/inspect/runs.json 200',
    ]);
  });

  it('refuses a relative basePath, which no request path could ever match', () => {
    expect(() => createInspector({ basePath: 'inspect' })).toThrow(
      expect.objectContaining({
        code: 'INVALID_INPUT',
        message: 'options.basePath: must be an absolute path such as /inspect, or / for the root',
      }),
    );
  });

  it('is not stripped again under a router that stripped its mount: /inspect/inspect/ is no second page', async () => {
    const inspector = createInspector();
    const orchestrator = createOrchestrator();
    inspector.attach(orchestrator);
    const agent = new Agent({ name: 'Writer', model: createFakeModel(), orchestrator });
    const runstate = createApp({ agents: [agent], mount: { '/inspect': inspector.handler } });
    const app = await listen(runstate.app);
    try {
      expect((await fetch(`${app.url}/inspect/`)).status).toBe(200);
      const second = await fetch(`${app.url}/inspect/inspect/`);
      expect([second.status, await second.json()]).toEqual([
        404,
        { detail: 'no route for GET /inspect/inspect/', code: 'NOT_FOUND' },
      ]);
    } finally {
      inspector.close();
      await runstate.shutdown();
      await app.close();
    }
  });
});
