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

serveTasks(
  (task) => Promise.reject(new Error(`unknown task ${task.type}`)),
  () => server.close().then(() => storage.close()),
);
notifyParent({ type: 'ready', url: server.url });
