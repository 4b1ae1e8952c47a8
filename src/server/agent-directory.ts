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
  /** The last start in each session id, settled (see {@link startInSession}). */
  readonly #starts = new Map<string, Promise<void>>();

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

  /**
   * Runs `start` (a check of session `sessionId` and the record of a run in it) once the starts in
   * that session before it have settled, when the agents have several orchestrators: each has a
   * store of its own, and two first runs of one session id started at once through two of them
   * would each make a session of that id. With one orchestrator its store decides (atomically), and
   * `start` runs at once.
   */
  startInSession<T>(sessionId: string, start: () => Promise<T>): Promise<T> {
    if (this.orchestrators.length < 2) return start();
    const started = (this.#starts.get(sessionId) ?? Promise.resolve()).then(start);
    const settled = started.then(ignore, ignore);
    this.#starts.set(sessionId, settled);
    void settled.then(() => {
      if (this.#starts.get(sessionId) === settled) this.#starts.delete(sessionId);
    });
    return started;
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

const ignore = (): void => undefined;
