import { Router } from 'express';
import type { Agent } from '../agent.js';
import { packageVersion } from '../package-version.js';
import type { RouteContext } from './route-context.js';

/** The id runstate's server gives itself where AgentOS gives its `os_id`. */
const OS_ID = 'runstate';

/** `GET /`: what AgentOS's home route (`get_api_info`) answers, for a client checking what it reached. */
export interface ApiInfoJson {
  name: string;
  description: string;
  id: string;
  version: string;
}

/** An agent as AgentOS lists it: what Agno's Agent UI reads (`id`, `name`, `model.model`, `db_id`). */
export interface AgentJson {
  id: string;
  name: string;
  description: string | null;
  model: { name: string; model: string; provider: string };
  db_id: string;
}

/**
 * AgentOS's configuration (`ConfigResponse`), as far as runstate has one: what Agno's
 * `AgentOSClient.get_config()` and `RemoteAgent` read (the agents, and the database their sessions
 * are in).
 */
export interface ConfigJson {
  os_id: string;
  name: string;
  os_database: string;
  databases: string[];
  session: { dbs: Array<{ db_id: string; domain_config: { display_name: string } }> };
  agents: Array<{
    id: string;
    name: string;
    description: string | null;
    db_id: string;
    model: { id: string; provider: string };
  }>;
  teams: never[];
  workflows: never[];
  interfaces: never[];
}

/** A model as AgentOS's `/models` and `/config` name it. */
export interface ModelJson {
  id: string;
  provider: string;
}

/** `GET /`, `GET /health`, `GET /config`, `GET /models`, `GET /agents`, `GET /agents/:agent_id`, `GET /teams`. */
export function agentRoutes(context: RouteContext): Router {
  const router = Router();
  const toJson = (agent: Agent): AgentJson => ({
    id: agent.id,
    name: agent.name,
    description: agent.description ?? null,
    model: { name: agent.model.id, model: agent.model.id, provider: agent.model.provider },
    db_id: context.dbId,
  });

  router.get('/', (_req, res) => {
    const info: ApiInfoJson = {
      name: 'runstate',
      description: 'A run orchestrator for LLM agents, with an AgentOS-compatible API',
      id: OS_ID,
      version: packageVersion(),
    };
    res.json(info);
  });
  // As AgentOS's: when this server was made, as an ISO date (a restart shows as a new one).
  const instantiatedAt = new Date().toISOString();
  router.get('/health', (_req, res) => {
    res.json({ status: 'ok', instantiated_at: instantiatedAt });
  });
  router.get('/config', (_req, res) => {
    const config: ConfigJson = {
      os_id: OS_ID,
      name: 'runstate',
      os_database: context.dbId,
      databases: [context.dbId],
      session: { dbs: [{ db_id: context.dbId, domain_config: { display_name: 'Sessions' } }] },
      // AgentOS's agent summary, whose model is `{id, provider}` (its `/agents` has more).
      agents: context.agents.list().map((agent) => ({
        id: agent.id,
        name: agent.name,
        description: agent.description ?? null,
        db_id: context.dbId,
        model: { id: agent.model.id, provider: agent.model.provider },
      })),
      teams: [],
      workflows: [],
      interfaces: [],
    };
    res.json(config);
  });
  // AgentOS's model list (`AgentOSClient.get_models()`): each model of the agents once, as `/config`
  // names them.
  router.get('/models', (_req, res) => {
    const models = new Map<string, ModelJson>();
    for (const { model } of context.agents.list()) {
      models.set(`${model.provider}\0${model.id}`, { id: model.id, provider: model.provider });
    }
    res.json([...models.values()]);
  });
  router.get('/agents', (_req, res) => {
    res.json(context.agents.list().map(toJson));
  });
  router.get('/agents/:agent_id', (req, res) => {
    res.json(toJson(context.agents.get(req.params.agent_id)));
  });
  // runstate has no teams or workflows; the Agent UI (and Agno's client) ask anyway and want a
  // plain array.
  for (const path of ['/teams', '/workflows']) {
    router.get(path, (_req, res) => {
      res.json([]);
    });
  }
  return router;
}
