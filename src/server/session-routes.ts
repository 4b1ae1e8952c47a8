import { Router } from 'express';
import type { SessionRecord } from '../runtime/storage.js';
import { checkDbId, type RouteContext } from './route-context.js';
import { listSessionsQuery, parseInput, sessionQuery } from './schemas.js';

/** Sessions listed per page unless `limit` says otherwise (AgentOS's default). */
const DEFAULT_PAGE_SIZE = 20;

/**
 * Sessions as AgentOS serves them: `GET /sessions` (paginated `{data, meta}`), `GET /sessions/:id`,
 * `GET /sessions/:id/runs` (the runs in progress included) and `DELETE /sessions/:id`.
 */
export function sessionRoutes(context: RouteContext): Router {
  const router = Router();
  const { agents } = context;

  router.get('/sessions', async (req, res) => {
    const query = parseInput(listSessionsQuery, req.query);
    checkDbId(context, query.db_id);
    // runstate runs agents only: teams and workflows have no sessions.
    const all: SessionRecord[] =
      query.type === 'agent'
        ? (
            await Promise.all(
              agents.orchestrators.map((orchestrator) =>
                orchestrator.listSessions({ agentId: query.component_id, userId: query.user_id }),
              ),
            )
          ).flat()
        : [];
    // Several orchestrators each list newest first: merge them (a stable sort keeps ties in order).
    all.sort((a, b) =>
      query.sort_order === 'desc' ? b.updated_at - a.updated_at : a.updated_at - b.updated_at,
    );
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    const page = query.page ?? 1;
    res.json({
      data: all.slice((page - 1) * limit, page * limit),
      meta: { page, limit, total_count: all.length, total_pages: Math.ceil(all.length / limit) },
    });
  });

  router.get('/sessions/:session_id', async (req, res) => {
    checkDbId(context, parseInput(sessionQuery, req.query).db_id);
    res.json((await agents.session(req.params.session_id)).session);
  });

  // The Agent UI asks for this while the session's first answer still streams: the run in
  // progress is part of the answer (an empty list would wipe the chat on screen).
  router.get('/sessions/:session_id/runs', async (req, res) => {
    checkDbId(context, parseInput(sessionQuery, req.query).db_id);
    const { orchestrator } = await agents.session(req.params.session_id);
    res.json(await orchestrator.sessionRuns(req.params.session_id));
  });

  router.delete('/sessions/:session_id', async (req, res) => {
    checkDbId(context, parseInput(sessionQuery, req.query).db_id);
    const { orchestrator } = await agents.session(req.params.session_id);
    await orchestrator.deleteSession(req.params.session_id);
    res.status(204).end();
  });

  return router;
}
