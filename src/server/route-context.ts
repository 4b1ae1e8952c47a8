import { RunstateError } from '../errors.js';
import type { AgentDirectory } from './agent-directory.js';
import type { BodyLimit } from './body-parsers.js';

/** What the routers share: the agents, and the app's settings. */
export interface RouteContext {
  readonly agents: AgentDirectory;
  /** The id clients pass back as `db_id` (Agno's Agent UI loads no session without one). */
  readonly dbId: string;
  readonly heartbeatMs: number;
  readonly bodyLimit: BodyLimit;
}

/** Refuses a `db_id` that names another database, as AgentOS does (absent or empty is fine). */
export function checkDbId(context: RouteContext, dbId: string | undefined): void {
  if (dbId !== undefined && dbId !== context.dbId) {
    throw new RunstateError('NOT_FOUND', `database ${dbId} not found`);
  }
}
