/**
 * A fake OpenAI-compatible server for each test of a file (started before it, closed after it), and
 * agents whose model is an `OpenAIChat` on it, each with an orchestrator of its own.
 */
import { afterEach, beforeEach } from 'vitest';
import { Agent, createOrchestrator, OpenAIChat, type Tool } from '../../src/index.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../../src/testing/index.js';

/** Call at the top of a test file. */
export function useFakeOpenAIServer() {
  let current: FakeOpenAIServer | undefined;
  beforeEach(async () => {
    current = await createFakeOpenAIServer();
  });
  afterEach(async () => {
    await current?.close();
    current = undefined;
  });
  const server = (): FakeOpenAIServer => {
    if (!current) throw new Error('the fake OpenAI server runs only during a test');
    return current;
  };
  const model = () => new OpenAIChat({ id: 'fake', apiKey: 'test', baseURL: server().url });
  return {
    server,
    model,
    /** An agent on the server's model with `tools`. */
    agentWith: (tools: Tool[], name = 'A') =>
      new Agent({ name, model: model(), tools, orchestrator: createOrchestrator() }),
  };
}
