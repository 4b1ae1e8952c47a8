import { Router } from 'express';
import type { Agent } from '../agent.js';
import type { RouteContext } from './route-context.js';

/** An agent as AgentOS lists it: what Agno's Agent UI reads (`id`, `name`, `model.model`, `db_id`). */
export interface AgentJson {
  id: string;
  name: string;
  description: string | null;
  model: { name: string; model: string; provider: string };
  db_id: string;
}

/** `GET /health`, `GET /agents`, `GET /agents/:agent_id`, `GET /teams`. */
export function agentRoutes(context: RouteContext): Router {
  const router = Router();
  const toJson = (agent: Agent): AgentJson => ({
    id: agent.id,
    name: agent.name,
    description: agent.description ?? null,
    model: { name: agent.model.id, model: agent.model.id, provider: agent.model.provider },
    db_id: context.dbId,
  });

  router.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/agents', (_req, res) => {
    res.json(context.agents.list().map(toJson));
  });
  router.get('/agents/:agent_id', (req, res) => {
    res.json(toJson(context.agents.get(req.params.agent_id)));
  });
  // runstate has no teams; the Agent UI asks anyway and wants a plain array.
  router.get('/teams', (_req, res) => {
    res.json([]);
  });
  return router;
}
