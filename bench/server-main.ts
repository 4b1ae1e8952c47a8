/**
 * The runstate HTTP server in a process of its own, for the benchmark's HTTP client:
 * `server-main.js <options JSON>`. One agent per workload, named after it (`burst`, `paced`, ...),
 * on one orchestrator, as `runstate serve` has them; in memory, or on the storage the options name
 * (`http-pg`: PostgreSQL and Redis shared with another instance).
 *
 * @packageDocumentation
 */
import { Agent, createOrchestrator, OpenAIChat, openStorage, type StorageOptions } from '../src/index.js';
import { createApp, startServer } from '../src/server/index.js';
import type { ClientOptions } from './clients.js';
import { notifyParent, serveTasks } from './processes.js';

const {
  upstreamURL,
  workloads,
  storage: storageOptions,
} = JSON.parse(process.argv[2] ?? '{}') as ClientOptions & {
  storage?: StorageOptions;
};
const storage = await openStorage(storageOptions);
const orchestrator = createOrchestrator({
  store: storage.store,
  cancelBus: storage.cancelBus,
  eventBus: storage.eventBus,
});
const agents = Object.entries(workloads).map(
  ([id, model]) =>
    new Agent({
      name: id,
      id,
      model: new OpenAIChat({ id: model, baseURL: upstreamURL, apiKey: 'bench' }),
      orchestrator,
    }),
);
const server = await startServer(createApp({ agents }), { port: 0, graceMs: 1_000 });
// The client's connections are opened before a batch, as a balancer's pool of kept-alive connections
// (see bench/clients.ts): a balancer keeps them longer than Node's default 5 s (and a server behind
// one is set to outlast the balancer's idle timeout). On a loaded machine the client may take more
// than 5 s to send its runs, and the server then closes connections a request is already on its way
// over: "other side closed", ECONNRESET.
server.server.keepAliveTimeout = 60_000;

serveTasks(
  (task) => Promise.reject(new Error(`unknown task ${task.type}`)),
  () => server.close().then(() => storage.close()),
);
notifyParent({ type: 'ready', url: server.url });
