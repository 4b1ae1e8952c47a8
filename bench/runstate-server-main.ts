/**
 * The runstate HTTP server in a process of its own, for the HTTP client of the benchmark:
 * `runstate-server-main.ts <options JSON>` with `{ upstreamURL, workloads }`. One agent per workload
 * (`bench-stream`, `bench-cancel`, ...), all on one orchestrator, each on the fake upstream with the
 * workload's model name. Tells the parent its URL (`ready` notice) and answers `usage` tasks, so
 * that the parent can take the server's CPU time and memory around a measurement.
 *
 * @packageDocumentation
 */
import { Agent, createOrchestrator, OpenAIChat } from '../src/index.js';
import { createApp, startServer } from '../src/server/index.js';
import { agentIdOf, type WorkloadName, type Workloads } from './bench-config.js';
import { processUsage, type ClientTask } from './client-tasks.js';
import { notifyParent, serveTasks, type WorkerTask } from './worker-process.js';

const { upstreamURL, workloads } = JSON.parse(process.argv[2] ?? '{}') as {
  upstreamURL: string;
  workloads: Workloads;
};

const orchestrator = createOrchestrator();
const agents = (Object.entries(workloads) as [WorkloadName, string][]).map(
  ([workload, model]) =>
    new Agent({
      name: `bench ${workload}`,
      id: agentIdOf(workload),
      model: new OpenAIChat({ id: model, baseURL: upstreamURL, apiKey: 'bench' }),
      orchestrator,
    }),
);
const server = await startServer(createApp({ agents }), { port: 0, graceMs: 1_000 });

serveTasks(
  (task: WorkerTask) => {
    const usageTask = task as ClientTask;
    if (usageTask.type === 'usage') return Promise.resolve(processUsage(usageTask.gc));
    return Promise.reject(new Error(`unknown task ${task.type}`));
  },
  () => server.close(),
);
notifyParent({ type: 'ready', url: server.url });
