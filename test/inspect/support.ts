import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent.js';
import type { ChatModel } from '../../src/model/chat-model.js';
import type { RunstateError } from '../../src/errors.js';
import { OfflineModel } from '../../src/model/offline-model.js';
import { createOrchestrator, type Orchestrator } from '../../src/runtime/create-orchestrator.js';
import { createInspector, type Inspector, type InspectorOptions } from '../../src/inspect/index.js';
import { errorBody, httpStatusOf } from '../../src/server/http-errors.js';

/** Debian's chromium, driven by playwright-core (which never downloads a browser here). */
export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** A fresh chromium profile directory, removed by the returned function. */
export function tempProfile(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'runstate-chromium-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface InspectorServer {
  /** Base URL, without a trailing slash; the page is at `${url}/inspect/`. */
  url: string;
  inspector: Inspector;
  orchestrator: Orchestrator;
  agent: Agent;
  close(): Promise<void>;
}

/**
 * What the lead's server will do, in a few lines of node:http: the inspector's handler at
 * `/inspect`, and the AgentOS cancel route calling `orchestrator.requestCancel(runId, 'api')`.
 */
export async function startInspectorServer(
  options: { model?: ChatModel; inspector?: InspectorOptions } = {},
): Promise<InspectorServer> {
  const inspector = createInspector(options.inspector);
  const orchestrator = createOrchestrator();
  inspector.attach(orchestrator);
  const agent = new Agent({
    name: 'StorytellerAgent',
    model: options.model ?? new OfflineModel({ tokensPerSecond: 20 }),
    orchestrator,
  });

  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const cancel = /^\/agents\/([^/]+)\/runs\/([^/]+)\/cancel$/.exec(path);
    if (req.method === 'POST' && cancel) {
      const [agentId, runId] = [decodeURIComponent(cancel[1]!), decodeURIComponent(cancel[2]!)];
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      // The orchestrator decides the answer; the server's error map turns a refusal into HTTP.
      orchestrator.requestCancel(runId, 'api', { agentId }).then(
        (run) => json(200, { run_id: runId, status: run.status }),
        (error: RunstateError) => json(httpStatusOf(error), errorBody(error)),
      );
      return;
    }
    inspector.handler(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    inspector,
    orchestrator,
    agent,
    async close() {
      inspector.close();
      await orchestrator.shutdown();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
