// A user's code: what the README shows, with values that may be undefined (environment variables),
// as a project with `exactOptionalPropertyTypes` writes it. Only type-checked, never run.
import {
  Agent,
  createMemoryRunStore,
  createOrchestrator,
  OpenAIChat,
  RunEvent,
  type AgentRunOptions,
  type PausedRunOutput,
  type RunOutput,
} from 'runstate';
import { createApp, startServer, type RunstateApp } from 'runstate/server';

const env = process.env;
const port = env.PORT === undefined ? undefined : Number(env.PORT);

const orchestrator = createOrchestrator({
  maxConcurrentRuns: port,
  store: createMemoryRunStore({
    retention: { maxFinishedRuns: port, maxAgeMs: undefined },
    maxSessions: port,
  }),
  limits: { idleTimeoutMs: port, timeoutMs: undefined, retry: { maxAttempts: port } },
});

const agent = new Agent({
  name: 'StorytellerAgent',
  id: env.AGENT_ID,
  model: new OpenAIChat({ id: env.MODEL ?? 'gpt-5-mini', apiKey: env.API_KEY, baseURL: env.BASE_URL }),
  description: env.DESCRIPTION,
  instructions: env.INSTRUCTIONS,
  orchestrator,
});

export async function quickStart(): Promise<RunOutput | PausedRunOutput> {
  const stream = agent.run('Write a story', { stream: true, sessionId: env.SESSION_ID, userId: env.USER });
  setTimeout(() => agent.cancelRun(stream.runId), 2_000);
  for await (const chunk of stream) {
    if (chunk.event === RunEvent.runContent) process.stdout.write(chunk.content);
    if (chunk.event === RunEvent.runCancelled) console.log(`cancelled (${chunk.reason})`);
  }
  return agent.run('Now a haiku', { sessionId: env.SESSION_ID });
}

// `stream` as an option like the others: undefined, a boolean flag, or options passed on.
export async function runOptions(
  flag: boolean,
  options: AgentRunOptions,
): Promise<RunOutput | PausedRunOutput> {
  const output: RunOutput | PausedRunOutput = await agent.run('Hi', {
    stream: undefined,
    sessionId: env.SESSION_ID,
  });
  const either = agent.run('Hi', { stream: flag });
  void agent.run('Hi', options);
  return 'runId' in either ? either.result : output;
}

export async function serve(): Promise<void> {
  const runstate = createApp({ agents: [agent], securityKey: env.API_KEY, dbId: env.DB_ID });
  const server = await startServer(runstate, { port, host: env.HOST });
  console.log(server.url);
  process.once('SIGTERM', () => void server.close());
}

// `createApp().app` is express's app, typed, not `any`.
type IsAny<T> = 0 extends 1 & T ? true : false;
export const appIsTyped: IsAny<RunstateApp['app']> = false;
export const listen = (runstate: RunstateApp) => runstate.app.listen(0, '127.0.0.1');
