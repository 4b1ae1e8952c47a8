import { Router } from 'express';
import { RunstateError } from '../errors.js';
import type { SessionRecord } from '../runtime/storage.js';
import { runBodyParser } from './body-parsers.js';
import { malformedRequest } from './http-errors.js';
import { checkDbId, type RouteContext } from './route-context.js';
import {
  deleteSessionsBody,
  listSessionsQuery,
  parseBody,
  parseQuery,
  renameSessionBody,
  sessionQuery,
  sessionRunsQuery,
  updateSessionBody,
} from './schemas.js';
import type { z } from 'zod';

type SessionQuery = z.output<typeof sessionQuery>;

/** Sessions listed per page unless `limit` says otherwise (AgentOS's default). */
const DEFAULT_PAGE_SIZE = 20;

/** A session as AgentOS details it (`AgentSessionDetailSchema`): its id is also `agent_session_id`. */
export type SessionDetail = SessionRecord & { agent_session_id: string };

function sessionDetail(session: SessionRecord): SessionDetail {
  return { ...session, agent_session_id: session.session_id };
}

/**
 * Sessions as AgentOS serves them: `GET /sessions` (paginated `{data, meta}`), `GET /sessions/:id`,
 * its runs (the runs in progress included) and one of them, rename and update (its name), and
 * delete, one or several.
 */
export function sessionRoutes(context: RouteContext): Router {
  const router = Router();
  const { agents } = context;

  router.get('/sessions', async (req, res) => {
    const query = parseQuery(listSessionsQuery, req.query);
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
    const named = query.session_name?.toLowerCase();
    const found = named ? all.filter((session) => session.session_name.toLowerCase().includes(named)) : all;
    // Several orchestrators each list the last used first: merge them (a stable sort keeps ties,
    // sessions of the same second, in that order; reversed first for ascending, which is then
    // descending reversed).
    const key = query.sort_by;
    if (query.sort_order === 'asc') found.reverse();
    found.sort((a, b) => (query.sort_order === 'desc' ? b[key] - a[key] : a[key] - b[key]));
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    const page = query.page ?? 1;
    res.json({
      data: found.slice((page - 1) * limit, page * limit),
      meta: { page, limit, total_count: found.length, total_pages: Math.ceil(found.length / limit) },
    });
  });

  // AgentOS answers 204 whether or not there was such a session: a client (the Agent UI) that
  // deletes a session retention already forgot is not told it failed.
  router.delete('/sessions', runBodyParser(context.bodyLimit), async (req, res) => {
    const query = parseQuery(sessionQuery, req.query);
    checkDbId(context, query.db_id);
    const body = parseBody(deleteSessionsBody, req.body);
    if (body.session_ids.length !== body.session_types.length) {
      throw malformedRequest('session_ids and session_types must have the same length');
    }
    // As AgentOS's own stores do, by id alone: the types only pair with the ids.
    for (const sessionId of new Set(body.session_ids)) await deleteSession(sessionId, query.user_id);
    res.status(204).end();
  });

  router.get('/sessions/:session_id', async (req, res) => {
    const query = parseQuery(sessionQuery, req.query);
    checkDbId(context, query.db_id);
    res.json(sessionDetail((await session(req.params.session_id, query)).session));
  });

  // The Agent UI asks for this while the session's first answer still streams: the run in
  // progress is part of the answer (an empty list would wipe the chat on screen).
  router.get('/sessions/:session_id/runs', async (req, res) => {
    const query = parseQuery(sessionRunsQuery, req.query);
    checkDbId(context, query.db_id);
    const { orchestrator } = await session(req.params.session_id, query);
    const after = query.created_after ?? 0;
    const before = query.created_before ?? Infinity;
    await context.answerList(res, async () =>
      (await orchestrator.sessionRuns(req.params.session_id)).filter(
        (run) => run.created_at >= after && run.created_at <= before,
      ),
    );
  });

  router.get('/sessions/:session_id/runs/:run_id', async (req, res) => {
    const query = parseQuery(sessionQuery, req.query);
    checkDbId(context, query.db_id);
    const { session_id: sessionId, run_id: runId } = req.params;
    const { orchestrator } = await session(sessionId, query);
    const run = await orchestrator.getRun(runId);
    if (run?.session_id !== sessionId) {
      throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found in session ${sessionId}`);
    }
    res.json(run);
  });

  router.post('/sessions/:session_id/rename', runBodyParser(context.bodyLimit), async (req, res) => {
    const query = parseQuery(sessionQuery, req.query);
    checkDbId(context, query.db_id);
    const { session_name: name } = parseBody(renameSessionBody, req.body);
    // (Typed by the body parser's params, which name nothing.)
    res.json(await renameSession(req.params.session_id as string, name, query));
  });

  // AgentOS's update: runstate keeps a session's name only (the other fields are refused).
  router.patch('/sessions/:session_id', runBodyParser(context.bodyLimit), async (req, res) => {
    const query = parseQuery(sessionQuery, req.query);
    checkDbId(context, query.db_id);
    const { session_name: name } = parseBody(updateSessionBody, req.body);
    const sessionId = req.params.session_id as string;
    res.json(
      name == null
        ? sessionDetail((await session(sessionId, query)).session)
        : await renameSession(sessionId, name, query),
    );
  });

  router.delete('/sessions/:session_id', async (req, res) => {
    const query = parseQuery(sessionQuery, req.query);
    checkDbId(context, query.db_id);
    // A team or workflow session of that id: there is none to delete.
    if (query.type === 'agent') await deleteSession(req.params.session_id, query.user_id);
    res.status(204).end();
  });

  /** The session and its orchestrator: not found for another user's, or asked for as a team's or a workflow's. */
  async function session(sessionId: string, query: SessionQuery) {
    if (query.type !== 'agent') {
      throw new RunstateError('SESSION_NOT_FOUND', `${query.type} session ${sessionId} not found`);
    }
    return agents.session(sessionId, query.user_id);
  }

  /**
   * In every orchestrator that holds it (with stores of their own, two may). With `userId`, another
   * user's session is left alone (and the answer is the same 204).
   */
  async function deleteSession(sessionId: string, userId: string | undefined): Promise<void> {
    for (const orchestrator of agents.orchestrators) {
      // Without a user, straight to the orchestrator's delete, which waits for a first run of the
      // session still on its way into the store (a read first would miss that session).
      if (userId === undefined) await orchestrator.deleteSession(sessionId);
      else if ((await orchestrator.getSession(sessionId))?.user_id === userId) {
        await orchestrator.deleteSession(sessionId);
      }
    }
  }

  async function renameSession(sessionId: string, name: string, query: SessionQuery): Promise<SessionDetail> {
    const { orchestrator } = await session(sessionId, query);
    const renamed = await orchestrator.renameSession(sessionId, name);
    // Forgotten between the two reads (retention, a delete).
    if (!renamed) throw new RunstateError('SESSION_NOT_FOUND', `session ${sessionId} not found`);
    return sessionDetail(renamed);
  }

  return router;
}
