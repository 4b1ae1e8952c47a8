import { Router, type RequestHandler, type Response } from 'express';
import type { Agent } from '../agent.js';
import { RunstateError } from '../errors.js';
import type { Orchestrator } from '../runtime/create-orchestrator.js';
import type { RunEvent } from '../runtime/run-events.js';
import { settleRun } from '../runtime/settle-run.js';
import { sessionOfAnother, userMayJoinSession } from '../runtime/storage.js';
import { runBodyParser } from './body-parsers.js';
import { invalidField, malformedRequest } from './http-errors.js';
import type { RouteContext } from './route-context.js';
import {
  continueRunBody,
  createRunBody,
  listRunsQuery,
  getRunQuery,
  parseBody,
  parseInput,
  parseQuery,
  resumeHeader,
  resumeQuery,
  resumeRunBody,
  type CreateRunBody,
} from './schemas.js';
import { indexedFrame, sendEventStream } from './sse.js';
import { atTurnEnd } from './turn-end.js';

/**
 * The runs of an agent: create (streamed, non-streamed or in the background), cancel, record, list,
 * and replay-and-follow of a run's events.
 */
export function runRoutes(context: RouteContext): Router {
  const router = Router();
  const { agents } = context;

  // The agent is looked up before the body is read: an unknown agent is a 404 whatever the body.
  const requireAgent: RequestHandler<{ agent_id: string }> = (req, _res, next) => {
    agents.get(req.params.agent_id);
    next();
  };

  router.post('/agents/:agent_id/runs', requireAgent, runBodyParser(context.bodyLimit), async (req, res) => {
    const agent = agents.get(req.params.agent_id);
    const input = parseBody(createRunBody, req.body);
    // With the other runs whose requests this turn read (see atTurnEnd).
    await atTurnEnd();
    await createRun(context, agent, input, res);
  });

  router.post('/agents/:agent_id/runs/:run_id/cancel', async (req, res) => {
    const agent = agents.get(req.params.agent_id);
    const { run_id: runId } = req.params;
    // 404 (unknown, another agent's) and 409 (ended otherwise) are decided, and thrown, there.
    const run = await agent.orchestrator.requestCancel(runId, 'api', { agentId: agent.id });
    res.json({ run_id: runId, status: run.status });
  });

  router.post(
    '/agents/:agent_id/runs/:run_id/continue',
    requireAgent,
    runBodyParser(context.bodyLimit),
    async (req, res) => {
      const agent = agents.get(req.params.agent_id);
      // (Typed by requireAgent's params, which name the agent only.)
      const runId = (req.params as unknown as { run_id: string }).run_id;
      // An unknown run is a 404 whatever the body, as an unknown agent is.
      const record = await agents.run(agent, runId);
      const input = parseBody(continueRunBody, req.body, withToolsParsed);
      if (input.session_id !== undefined && input.session_id !== record.session_id) {
        throw invalidField('session_id', `run ${runId} belongs to session ${record.session_id}`);
      }
      if (record.status !== 'paused') {
        throw new RunstateError('RUN_NOT_PAUSED', `run ${runId} is not paused: ${record.status}`, {
          details: { run_id: runId, status: record.status },
        });
      }
      // 409 (taken meanwhile, here or on another instance) and 422 (answers that do not fit) are
      // decided there. A client that goes away cancels the run, as from a run's (the continue has
      // no `on_disconnect`): from the stream, its iterator's end does it.
      const run = await agent.continueRun(runId, { tools: input.tools, stream: true });
      if (input.stream && input.background) {
        // AgentOS's resumable stream: the run goes on when the client goes away (read without the
        // stream's cancel on leaving), and each frame has its `event_index` for `/resume`.
        await sendEventStream(res, withoutCancelOnLeaving(run), {
          heartbeatMs: context.heartbeatMs,
          beforeEnd: () => run.result,
          frame: indexedFrame,
        });
        return;
      }
      if (input.stream) {
        await sendEventStream(res, run, { heartbeatMs: context.heartbeatMs, beforeEnd: () => run.result });
        return;
      }
      if (input.background) {
        // As a run started in the background: answered at once, the run goes on whatever the client
        // does (its stream is never read, so nothing cancels it on leaving).
        const { status } = await agents.run(agent, runId);
        res.status(202).json({ run_id: runId, session_id: record.session_id, status });
        return;
      }
      await sendSettled(res, agent.orchestrator, runId, run, () =>
        agent.orchestrator.cancelRun(runId, 'client_disconnect'),
      );
    },
  );

  router.get('/agents/:agent_id/runs/:run_id', async (req, res) => {
    const agent = agents.get(req.params.agent_id);
    const { session_id: sessionId } = parseQuery(getRunQuery, req.query);
    const { run_id: runId } = req.params;
    const run = await agents.run(agent, runId);
    if (sessionId !== undefined && run.session_id !== sessionId) {
      throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found in session ${sessionId}`);
    }
    res.json(run);
  });

  router.get('/agents/:agent_id/runs', async (req, res) => {
    const agent = agents.get(req.params.agent_id);
    const query = parseQuery(listRunsQuery, req.query);
    // As AgentOS: the runs of a session that is not this agent's (or none) are a 404, not `[]`.
    if (query.session_id !== undefined) {
      const session = await agent.orchestrator.getSession(query.session_id);
      if (session?.agent_id !== agent.id) {
        throw new RunstateError(
          'SESSION_NOT_FOUND',
          `session ${query.session_id} of agent ${agent.id} not found`,
        );
      }
    }
    await context.answerList(res, () =>
      agent.orchestrator.listRuns({ agentId: agent.id, sessionId: query.session_id, status: query.status }),
    );
  });

  // AgentOS's reconnect to a resumable stream: the events after `last_event_index` (`seq - 1`), then
  // the live ones to the end, each with its `event_index`. A reader going away does not cancel.
  router.post(
    '/agents/:agent_id/runs/:run_id/resume',
    requireAgent,
    runBodyParser(context.bodyLimit),
    async (req, res) => {
      const agent = agents.get(req.params.agent_id);
      const runId = (req.params as unknown as { run_id: string }).run_id;
      // No body at all is every field absent, as AgentOS's optional form fields are.
      const input = parseBody(resumeRunBody, req.body);
      const record = await agents.run(agent, runId);
      if (input.session_id !== undefined && record.session_id !== input.session_id) {
        throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found in session ${input.session_id}`);
      }
      let events;
      try {
        events = await agent.orchestrator.events(runId, input.last_event_index + 1);
      } catch (error) {
        // Told in event indexes, as the client counts (the orchestrator's message counts in `seq`).
        if (error instanceof RunstateError && error.code === 'INVALID_INPUT')
          throw invalidField(
            'last_event_index',
            `run ${runId} has no event of index ${input.last_event_index}`,
          );
        throw error;
      }
      await sendEventStream(res, events, {
        heartbeatMs: context.heartbeatMs,
        beforeEnd: () => agent.orchestrator.result(runId).catch(() => undefined),
        frame: indexedFrame,
      });
    },
  );

  router.get('/agents/:agent_id/runs/:run_id/events', async (req, res) => {
    const agent = agents.get(req.params.agent_id);
    const { run_id: runId } = req.params;
    const record = await agents.run(agent, runId);
    // The header wins: EventSource sends it on reconnect, while the URL (and its ?after=) stays the same.
    const header = parseInput(resumeHeader, { 'last-event-id': req.headers['last-event-id'] });
    const query = parseQuery(resumeQuery, req.query);
    const [field, after] =
      header['last-event-id'] === undefined
        ? ['after', query.after ?? 0]
        : ['last-event-id', header['last-event-id']];
    let events;
    try {
      events = await agent.orchestrator.events(runId, after);
    } catch (error) {
      if (error instanceof RunstateError && error.code === 'INVALID_INPUT')
        throw invalidField(field, error.message);
      throw error;
    }
    if (record.finished_at !== null) {
      // A final run read from its end on: nothing will ever come. 204 tells a browser's EventSource
      // to stop reconnecting; an empty stream (200) would have it reconnect, and get one, for good.
      const iterator = events[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done) {
        res.status(204).end();
        return;
      }
      events = prepended(first.value, iterator);
    }
    // A reader going away does not cancel the run: this endpoint only watches it.
    await sendEventStream(res, events, {
      heartbeatMs: context.heartbeatMs,
      beforeEnd: () => agent.orchestrator.result(runId).catch(() => undefined),
    });
  });

  return router;
}

/**
 * The events of a run's stream, read without its cancel on leaving: an iterator with no `return`,
 * so a reader that stops early leaves the run going (its iterator, parked between two events, holds
 * nothing and is collected).
 */
function withoutCancelOnLeaving(events: AsyncIterable<RunEvent>): AsyncIterable<RunEvent> {
  return {
    [Symbol.asyncIterator]() {
      const iterator = events[Symbol.asyncIterator]();
      return { next: () => iterator.next() };
    },
  };
}

/**
 * The events of `rest`, after `first` (taken from it already). Its `return` always reaches `rest`:
 * a generator's (`yield first; yield* rest`) would not while it stood at `first`, and a reader that
 * stopped there (`first` a final run's terminal event) left `rest`, a follower of the store, with
 * its bus subscription for good.
 */
function prepended(first: RunEvent, rest: AsyncIterator<RunEvent>): AsyncIterable<RunEvent> {
  let given = false;
  const iterator: AsyncIterator<RunEvent> = {
    next() {
      if (given) return rest.next();
      given = true;
      return Promise.resolve({ value: first, done: false });
    },
    async return(): Promise<IteratorResult<RunEvent>> {
      await rest.return?.();
      return { value: undefined, done: true };
    },
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

async function createRun(
  context: RouteContext,
  agent: Agent,
  input: CreateRunBody,
  res: Response,
): Promise<void> {
  const start = async () => {
    // `stream: true` only to get the run's id at once; the events are read from the orchestrator,
    // whose log does not cancel the run when a reader stops (on_disconnect decides that).
    const run = agent.run(input.message, {
      stream: true,
      sessionId: input.session_id,
      userId: input.user_id,
    });
    // The store's refusal (a session another agent took meanwhile, a store that is down) is the answer.
    await run.recorded;
    return run;
  };
  const { session_id: sessionId } = input;
  const run = !sessionId
    ? await start()
    : await context.agents.startInSession(sessionId, async () => {
        // Checked across every orchestrator: another one would silently start a second session of that id.
        const session = (await context.agents.findSession(sessionId))?.session;
        if (
          session &&
          (session.agent_id !== agent.id || !userMayJoinSession(session.user_id, input.user_id))
        ) {
          throw sessionOfAnother(sessionId, session.agent_id, agent.id);
        }
        return start();
      });
  const orchestrator = agent.orchestrator;

  const stream = input.stream ?? !input.background;
  if (input.background && stream) {
    // AgentOS's resumable stream: the run goes on when the client goes away, whatever
    // `on_disconnect` says, and each frame has its `event_index` for `/resume`.
    await sendEventStream(res, await orchestrator.events(run.runId), {
      heartbeatMs: context.heartbeatMs,
      beforeEnd: () => run.result,
      frame: indexedFrame,
    });
    return;
  }
  if (input.background) {
    res.status(202).json({ run_id: run.runId, session_id: run.sessionId, status: 'pending' });
    return;
  }
  const cancelOnDisconnect =
    input.on_disconnect === 'cancel'
      ? () => orchestrator.cancelRun(run.runId, 'client_disconnect')
      : undefined;

  if (stream) {
    await sendEventStream(res, await orchestrator.events(run.runId), {
      heartbeatMs: context.heartbeatMs,
      onClientGone: cancelOnDisconnect,
      beforeEnd: () => run.result,
    });
    return;
  }
  await sendSettled(res, orchestrator, run.runId, await orchestrator.events(run.runId), cancelOnDisconnect);
}

/**
 * Answers with the run's output once it ends, or the paused run (with the calls that wait) when it
 * pauses. `onClientGone` runs once if the client goes away before the answer, also if it went while
 * the route was still on its way here (the run started or resumed meanwhile).
 */
async function sendSettled(
  res: Response,
  orchestrator: Orchestrator,
  runId: string,
  events: AsyncIterable<RunEvent>,
  onClientGone: (() => void) | undefined,
): Promise<void> {
  if (onClientGone) {
    const gone = () => {
      if (!res.writableFinished) onClientGone();
    };
    if (res.closed) gone();
    else res.once('close', gone);
  }
  const output = await settleRun(orchestrator, runId, events);
  if (!res.destroyed) res.json(output);
}

/**
 * Agno's form sends `tools` as a JSON string: one that is not JSON at all is a 400 naming the parse
 * error (as Agno answers it), before the schema checks the answers' shape (a 422).
 */
function withToolsParsed(body: unknown): unknown {
  const fields = (body ?? {}) as Record<string, unknown>;
  if (typeof fields.tools !== 'string') return fields;
  try {
    return { ...fields, tools: JSON.parse(fields.tools) as unknown };
  } catch (error) {
    throw malformedRequest(`tools: not valid JSON (${(error as Error).message})`, error);
  }
}
