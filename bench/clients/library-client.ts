import { Agent, createOrchestrator, isTerminalEvent, OpenAIChat, type RunEvent } from '../../src/index.js';
import type { WorkloadName } from '../bench-config.js';
import type { BenchInspector } from '../inspectors.js';
import { monotonicNs } from '../worker-process.js';
import type { BenchClient, BenchClientOptions, RunOutcome } from './bench-client.js';

/**
 * runstate as a library: `agent.run(input, { stream: true })` with `OpenAIChat({ baseURL })`, one
 * agent per workload, all on one orchestrator (as the server has them). Cancel is `agent.cancelRun`.
 */
export function createLibraryClient(
  { upstreamURL, workloads }: BenchClientOptions,
  inspector?: BenchInspector,
): BenchClient {
  const orchestrator = createOrchestrator(inspector ? { inspect: inspector.inspect } : {});
  inspector?.attach?.(orchestrator);
  const agents = new Map<WorkloadName, Agent>();
  const agentFor = (workload: WorkloadName): Agent => {
    let agent = agents.get(workload);
    if (!agent) {
      const model = new OpenAIChat({ id: workloads[workload], baseURL: upstreamURL, apiKey: 'bench' });
      agent = new Agent({ name: `bench ${workload}`, model, orchestrator });
      agents.set(workload, agent);
    }
    return agent;
  };

  function statusOf(event: RunEvent | undefined): RunOutcome['status'] {
    return event && isTerminalEvent(event) ? event.status : 'failed';
  }
  function errorOf(event: RunEvent | undefined): string | undefined {
    if (!event || !isTerminalEvent(event)) return 'the run ended without a terminal event';
    return event.event === 'RunError' ? `${event.code}: ${event.content}` : undefined;
  }

  return {
    async run(workload, tag, onFirstChunk) {
      let content = '';
      let chunks = 0;
      let last: RunEvent | undefined;
      for await (const event of agentFor(workload).run(tag, { stream: true })) {
        last = event;
        if (event.event === 'RunContent') {
          content += event.content;
          if (++chunks === 1) onFirstChunk?.();
        }
      }
      return { status: statusOf(last), chunks, length: content.length, error: errorOf(last) };
    },
    async cancelAfterFirstChunk(workload, tag) {
      const agent = agentFor(workload);
      const stream = agent.run(tag, { stream: true });
      let cancelAt: bigint | undefined;
      let last: RunEvent | undefined;
      for await (const event of stream) {
        last = event;
        if (event.event === 'RunContent' && cancelAt === undefined) {
          cancelAt = monotonicNs();
          agent.cancelRun(stream.runId);
        }
      }
      const terminalAt = monotonicNs();
      if (cancelAt === undefined) throw new Error(`run ${tag} ended before its first chunk`);
      return { status: statusOf(last), cancelAt, terminalAt };
    },
    close: () => orchestrator.shutdown(),
  };
}
