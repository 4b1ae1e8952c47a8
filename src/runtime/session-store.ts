import type { FinalRunStatus } from '../../machines/run-types.js';
import type { ChatMessage } from '../model/chat-model.js';
import type { RunOutput } from './run-events.js';

/** One finished exchange of a session, kept for the history sent with later runs. */
export interface SessionTurn {
  run_id: string;
  input: string;
  content: string;
  status: FinalRunStatus;
  /** The run's whole record, for when the registry no longer holds the run. */
  record?: RunOutput;
}

/** A session: the runs of one conversation. Wire object, as AgentOS names its fields. */
export interface SessionRecord {
  session_id: string;
  agent_id: string;
  user_id: string | null;
  /** The first user message, as Agno's Agent UI shows it in its sidebar. */
  session_name: string;
  /** Unix time in seconds. */
  created_at: number;
  updated_at: number;
  /** Every run of the session, oldest first, active ones included. */
  run_ids: string[];
}

/** Filters of {@link SessionStore.list}. */
export interface SessionFilter {
  agentId?: string | undefined;
  userId?: string | undefined;
}

interface Session extends SessionRecord {
  turns: SessionTurn[];
}

/** Limits that keep the store's memory bounded. */
export interface SessionStoreOptions {
  maxSessions?: number;
  now?: () => number;
}

/**
 * Sessions and their finished turns, in memory. Bounded: past `maxSessions`, the least recently used
 * session is forgotten.
 */
export class SessionStore {
  // A Map keeps insertion order; re-inserting on use makes its first key the least recently used.
  readonly #sessions = new Map<string, Session>();
  readonly #maxSessions: number;
  readonly #now: () => number;

  constructor(options: SessionStoreOptions = {}) {
    this.#maxSessions = options.maxSessions ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** The session, or `undefined`. */
  get(sessionId: string): SessionRecord | undefined {
    const session = this.#sessions.get(sessionId);
    return session && toRecord(session);
  }

  /** Adds a run to a session, creating the session on its first run. */
  addRun(
    sessionId: string,
    run: { runId: string; agentId: string; userId: string | null; input: string },
  ): void {
    const now = Math.floor(this.#now() / 1000);
    let session = this.#sessions.get(sessionId);
    if (session) {
      this.#sessions.delete(sessionId);
    } else {
      session = {
        session_id: sessionId,
        agent_id: run.agentId,
        user_id: run.userId,
        session_name: run.input.slice(0, 100),
        created_at: now,
        updated_at: now,
        run_ids: [],
        turns: [],
      };
    }
    session.run_ids.push(run.runId);
    session.updated_at = now;
    this.#sessions.set(sessionId, session);
    while (this.#sessions.size > this.#maxSessions) {
      const oldest = this.#sessions.keys().next().value as string;
      this.#sessions.delete(oldest);
    }
  }

  /** Records how a run of the session ended, for the history of later runs. */
  finishRun(sessionId: string, turn: SessionTurn): void {
    this.#sessions.get(sessionId)?.turns.push(turn);
  }

  /**
   * The conversation so far, as messages for the model: each finished turn with an answer (a
   * cancelled turn keeps its partial answer, as chat apps do; failed turns are left out).
   */
  history(sessionId: string): ChatMessage[] {
    const messages: ChatMessage[] = [];
    for (const turn of this.#sessions.get(sessionId)?.turns ?? []) {
      if (turn.status === 'failed' || turn.content === '') continue;
      messages.push({ role: 'user', content: turn.input }, { role: 'assistant', content: turn.content });
    }
    return messages;
  }

  /** Finished turns of a session (for runs the registry no longer holds). */
  turns(sessionId: string): readonly SessionTurn[] {
    return this.#sessions.get(sessionId)?.turns ?? [];
  }

  /** Sessions, most recently updated first. */
  list(filter: SessionFilter = {}): SessionRecord[] {
    const out: SessionRecord[] = [];
    for (const session of this.#sessions.values()) {
      if (filter.agentId !== undefined && session.agent_id !== filter.agentId) continue;
      if (filter.userId !== undefined && session.user_id !== filter.userId) continue;
      out.push(toRecord(session));
    }
    return out.reverse();
  }

  /** Forgets a session; `false` when there was none. */
  delete(sessionId: string): boolean {
    return this.#sessions.delete(sessionId);
  }
}

function toRecord(session: Session): SessionRecord {
  const { turns: _turns, ...record } = session;
  return { ...record, run_ids: [...record.run_ids] };
}
