import type { Agent } from '../agent.js';
import { RunstateError } from '../errors.js';
import type { Orchestrator } from '../runtime/create-orchestrator.js';
import type { RunRecord } from '../runtime/run-events.js';
import type { SessionRecord } from '../runtime/storage.js';

/**
 * The agents an app serves, by id, and the orchestrators behind them. Agents built for a server
 * usually share one orchestrator; several distinct ones work too (lists are merged, shutdown reaches
 * each once).
 */
export class AgentDirectory {
  readonly #agents = new Map<string, Agent>();
  /** Distinct orchestrators, in the order their first agent was given. */
  readonly orchestrators: readonly Orchestrator[];

  constructor(agents: readonly Agent[]) {
    for (const agent of agents) {
      if (this.#agents.has(agent.id)) {
        throw new RunstateError('INVALID_INPUT', `two agents have the id ${agent.id}`);
      }
      this.#agents.set(agent.id, agent);
    }
    this.orchestrators = [...new Set(agents.map((agent) => agent.orchestrator))];
  }

  /** Every agent, in the order given. */
  list(): Agent[] {
    return [...this.#agents.values()];
  }

  /** The agent; throws `AGENT_NOT_FOUND` (404). */
  get(agentId: string): Agent {
    const agent = this.#agents.get(agentId);
    if (!agent) throw new RunstateError('AGENT_NOT_FOUND', `agent ${agentId} not found`);
    return agent;
  }

  /** A run of this agent; throws `RUN_NOT_FOUND` (404) for an unknown run or another agent's. */
  async run(agent: Agent, runId: string): Promise<RunRecord> {
    const run = await agent.orchestrator.getRun(runId);
    if (run?.agent_id !== agent.id) {
      throw new RunstateError('RUN_NOT_FOUND', `run ${runId} of agent ${agent.id} not found`);
    }
    return run;
  }

  /** The session, and the orchestrator that holds it; with `userId`, only one of that user. */
  async findSession(
    sessionId: string,
    userId?: string,
  ): Promise<{ session: SessionRecord; orchestrator: Orchestrator } | undefined> {
    for (const orchestrator of this.orchestrators) {
      const session = await orchestrator.getSession(sessionId);
      if (session)
        return userId === undefined || session.user_id === userId ? { session, orchestrator } : undefined;
    }
    return undefined;
  }

  /** The session (with `userId`, only one of that user); throws `SESSION_NOT_FOUND` (404). */
  async session(
    sessionId: string,
    userId?: string,
  ): Promise<{ session: SessionRecord; orchestrator: Orchestrator }> {
    const found = await this.findSession(sessionId, userId);
    if (!found) throw new RunstateError('SESSION_NOT_FOUND', `session ${sessionId} not found`);
    return found;
  }
}
