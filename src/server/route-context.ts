import { RunstateError } from '../errors.js';
import type { AgentDirectory } from './agent-directory.js';
import type { BodyLimit } from './body-parsers.js';
import type { AnswerList } from './json-array.js';

/** What the routers share: the agents, and the app's settings. */
export interface RouteContext {
  readonly agents: AgentDirectory;
  /** The id clients pass back as `db_id` (Agno's Agent UI loads no session without one). */
  readonly dbId: string;
  readonly heartbeatMs: number;
  readonly bodyLimit: BodyLimit;
  /** Answers with a list, a bounded number at a time (a list's records are held until read). */
  readonly answerList: AnswerList;
}

/** Refuses a `db_id` that names another database, as AgentOS does (absent or empty is fine). */
export function checkDbId(context: RouteContext, dbId: string | undefined): void {
  if (dbId !== undefined && dbId !== context.dbId) {
    throw new RunstateError('NOT_FOUND', `database ${dbId} not found`);
  }
}
