import { Agent } from '../agent.js';
import type { ChatModel } from '../model/chat-model.js';
import { OfflineModel } from '../model/offline-model.js';
import { OpenAIChat } from '../model/openai-chat.js';
import { createOrchestrator, type OrchestratorOptions } from '../runtime/create-orchestrator.js';
import type { AgentConfig, LimitsConfig, RunstateConfig } from './config-file.js';
import { DEMO_TOOLS } from './demo-tools.js';
import { loadToolsModule, pickTools, type ToolsModule } from './tools-module.js';

/** The agents `runstate serve` offers when the config declares none. */
export const DEMO_AGENTS: readonly AgentConfig[] = [
  {
    id: 'story-writer-agent',
    name: 'Story Writer Agent',
    description: 'Writes short stories on any theme.',
    instructions: [
      'You are a storyteller. Write a vivid story of about 400 words on the theme you are given.',
      'Give it a beginning, a turn and an ending.',
    ],
  },
  {
    id: 'essay-writer-agent',
    name: 'Essay Writer Agent',
    description: 'Explains a topic in a short, clear essay.',
    instructions: 'You write clear, well-structured short essays. Use plain words and concrete examples.',
  },
  {
    id: 'tool-demo-agent',
    name: 'Tool Demo Agent',
    description:
      'Calls tools: add (quick), slow_search (takes seconds: cancel it while it runs), publish_note (waits for a confirmation).',
    instructions: [
      'Use the tools when the user asks for them: add adds two numbers, slow_search searches slowly,',
      'publish_note publishes a note once a person confirms it. Then say what the tools returned.',
    ],
    tools: DEMO_TOOLS.map((tool) => tool.name),
  },
];

/** The demo agents take their tools from here. */
const DEMO_TOOLS_MODULE: ToolsModule = {
  source: "runstate's demo tools",
  exports: Object.fromEntries(DEMO_TOOLS.map((tool) => [tool.name, tool])),
};

/**
 * Builds the agents of a config (the demo agents when it has none), all on one orchestrator, as a
 * server wants: one concurrency limit, one shutdown. `orchestratorOptions` adds to the config's
 * (an `inspect` observer, for one). The tools the agents name come from the config's `toolsModule`,
 * loaded here. Rejects with `INVALID_INPUT` (a one-line message) when that module cannot be loaded
 * or has no tool of a name an agent gives.
 */
export async function createAgents(
  config: RunstateConfig = {},
  orchestratorOptions: OrchestratorOptions = {},
): Promise<Agent[]> {
  const agents = config.agents ?? DEMO_AGENTS;
  // Loaded whenever the config names it, even with no agent to take its tools: one that cannot be
  // loaded stops the start in every config alike.
  const loaded = config.toolsModule === undefined ? undefined : await loadToolsModule(config.toolsModule);
  const toolsModule = config.agents ? loaded : DEMO_TOOLS_MODULE;
  // Every name is checked before an orchestrator exists: a bad config starts nothing.
  const tools = agents.map((agent, index) =>
    agent.tools?.length && toolsModule ? pickTools(toolsModule, agent.tools, `agents.${index}.tools`) : [],
  );
  const orchestrator = createOrchestrator({
    maxConcurrentRuns: config.maxConcurrentRuns,
    limits: config.limits,
    ...orchestratorOptions,
  });
  return agents.map(
    (agent, index) =>
      new Agent({
        id: agent.id,
        name: agent.name,
        description: agent.description,
        instructions: agent.instructions,
        model: createModel(agent.model),
        // A run's limits replace the orchestrator's key by key: merge the retry policy here.
        limits: agent.limits && mergeLimits(config.limits, agent.limits),
        tools: tools[index],
        orchestrator,
      }),
  );
}

/** The agent's limits over the server's, field by field (the retry policy's fields too). */
function mergeLimits(server: LimitsConfig = {}, agent: LimitsConfig): LimitsConfig {
  const retry = server.retry || agent.retry ? { ...server.retry, ...agent.retry } : undefined;
  return { ...server, ...agent, ...(retry && { retry }) };
}

/** What a model at its own `baseURL` whose `apiKeyEnv` is unset sends: a bearer token that is no secret. */
const NO_KEY = 'not-needed';

/** Without a model: `gpt-5-mini`, which runs offline when no `OPENAI_API_KEY` is set. */
function createModel(model: AgentConfig['model']): ChatModel {
  if (!model) return new OpenAIChat({ id: 'gpt-5-mini' });
  if (model.provider === 'offline') {
    return new OfflineModel({ id: model.id, tokensPerSecond: model.tokensPerSecond });
  }
  const { provider: _provider, apiKeyEnv, ...options } = model;
  const ownKey = apiKeyEnv === undefined ? undefined : process.env[apiKeyEnv];
  // Its own key; or, at its own baseURL, a placeholder: never `OPENAI_API_KEY`, which is for OpenAI
  // (or `OPENAI_BASE_URL`). With neither, as without `apiKeyEnv` (OpenAI's key, or offline).
  const apiKey = ownKey || (apiKeyEnv !== undefined && options.baseURL ? NO_KEY : undefined);
  return new OpenAIChat(apiKey ? { ...options, apiKey } : options);
}
