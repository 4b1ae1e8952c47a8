/** The built-in inspector on a plain node:http server, with an AgentOS-like cancel route. */
import { Agent } from '../../src/agent.js';
import type { ChatModel } from '../../src/model/chat-model.js';
import type { Tool } from '../../src/tools/tool.js';
import type { RunstateError } from '../../src/errors.js';
import { OfflineModel } from '../../src/model/offline-model.js';
import { createOrchestrator, type Orchestrator } from '../../src/runtime/create-orchestrator.js';
import { createInspector, type Inspector, type InspectorOptions } from '../../src/inspect/index.js';
import { errorBody, httpStatusOf } from '../../src/server/http-errors.js';
import { listen } from './listen.js';

export interface InspectorServer {
  /** Base URL, without a trailing slash; the page is at `${url}/inspect/`. */
  url: string;
  inspector: Inspector;
  orchestrator: Orchestrator;
  agent: Agent;
  /** Drops every open connection (the page's feed), the runs going on: a network that failed. */
  dropConnections(): void;
  close(): Promise<void>;
}

/**
 * What the lead's server will do, in a few lines of node:http: the inspector's handler at
 * `/inspect`, and the AgentOS cancel route calling `orchestrator.requestCancel(runId, 'api')`.
 */
export async function startInspectorServer(
  options: {
    model?: ChatModel;
    tools?: Tool[];
    inspector?: InspectorOptions;
    idGenerator?: () => string;
  } = {},
): Promise<InspectorServer> {
  const inspector = createInspector(options.inspector);
  const orchestrator = createOrchestrator({ idGenerator: options.idGenerator });
  inspector.attach(orchestrator);
  const agent = new Agent({
    name: 'StorytellerAgent',
    model: options.model ?? new OfflineModel({ tokensPerSecond: 20 }),
    tools: options.tools,
    orchestrator,
  });

  const server = await listen((req, res) => {
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
  return {
    url: server.url,
    inspector,
    orchestrator,
    agent,
    dropConnections: () => server.server.closeAllConnections(),
    async close() {
      inspector.close();
      await orchestrator.shutdown();
      await server.close();
    },
  };
}
