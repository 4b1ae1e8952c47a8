/**
 * When a run's model request goes out: in a later turn of the event loop than the one that started
 * the run (src/model/request-starts.ts), so that a burst of starts does not also hold the loop for
 * the work of all their requests.
 */
import OpenAI from 'openai';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { nodeHttpFetch } from '../src/model/node-http-fetch.js';
import { OpenAIChat } from '../src/model/openai-chat.js';
import { createOrchestrator } from '../src/runtime/index.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing/fake-openai-server.js';

let server: FakeOpenAIServer;
beforeEach(async () => {
  server = await createFakeOpenAIServer();
});
afterEach(async () => {
  vi.useRealTimers();
  await server.close();
});

/** An orchestrator whose model's requests are noted in `order` as they are sent. */
function setup(order: string[]) {
  const orchestrator = createOrchestrator();
  const client = new OpenAI({
    apiKey: 'test-key',
    baseURL: server.url,
    maxRetries: 0,
    fetch: (url: string | URL | Request, init?: RequestInit) => {
      order.push('request');
      return nodeHttpFetch(url, init);
    },
  });
  const model = new OpenAIChat({ id: 'gpt-5-mini', client });
  const start = () =>
    orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input: 'Tell a story' });
  return { orchestrator, start };
}

describe('a run’s model request', () => {
  it('goes out after the event loop has turned: a timer due when the runs started fires first', async () => {
    const order: string[] = [];
    const { orchestrator, start } = setup(order);
    setTimeout(() => order.push('timer'), 0);
    const runs = Array.from({ length: 5 }, () => start());
    // The timer (1 ms) is due before this turn ends: the next turn's timers phase runs it.
    const due = performance.now() + 2;
    while (performance.now() < due);
    const outputs = await Promise.all(runs.map((run) => run.result));
    expect(outputs.map((output) => output.status)).toEqual(Array<string>(5).fill('completed'));
    expect(order).toEqual(['timer', ...Array<string>(5).fill('request')]);
    expect(server.requests).toHaveLength(5);
    await orchestrator.shutdown();
  });

  it('is never sent for a run cancelled in the turn it started', async () => {
    const order: string[] = [];
    const { orchestrator, start } = setup(order);
    const cancelled = start();
    const kept = start();
    orchestrator.cancelRun(cancelled.runId);
    expect((await cancelled.result).status).toBe('cancelled');
    expect((await kept.result).status).toBe('completed');
    expect(order).toEqual(['request']);
    expect(server.requests).toHaveLength(1);
    await orchestrator.shutdown();
  });

  it('goes out while a test fakes every timer', async () => {
    vi.useFakeTimers();
    const order: string[] = [];
    const { orchestrator, start } = setup(order);
    const output = await start().result;
    expect(output.status).toBe('completed');
    expect(order).toEqual(['request']);
    vi.useRealTimers();
    await orchestrator.shutdown();
  });
});
