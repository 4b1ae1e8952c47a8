/**
 * When a run's model request goes out: in a later turn of the event loop than the one that started
 * the run (src/model/request-starts.ts), so that a burst of starts does not also hold the loop for
 * the work of all their requests.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
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

/** A model whose requests are noted in `order` as they are sent (`note` says what to note). */
function noting(order: string[], note: () => string = () => 'request'): OpenAIChat {
  const client = new OpenAI({
    apiKey: 'test-key',
    baseURL: server.url,
    maxRetries: 0,
    fetch: (url: string | URL | Request, init?: RequestInit) => {
      order.push(note());
      return nodeHttpFetch(url, init);
    },
  });
  return new OpenAIChat({ id: 'gpt-5-mini', client });
}

/** An orchestrator whose model's requests are noted in `order` as they are sent. */
function setup(order: string[], note?: () => string) {
  const orchestrator = createOrchestrator();
  const model = noting(order, note);
  const start = (input = 'Tell a story') =>
    orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input });
  return { orchestrator, start };
}

/** Holds the event loop for `ms`, so that a timer set before is due when the turn ends. */
function holdLoop(ms: number): void {
  const due = performance.now() + ms;
  while (performance.now() < due);
}

describe('a run’s model request', () => {
  it('goes out after the event loop has turned: a timer due when the runs started fires first', async () => {
    const order: string[] = [];
    const { orchestrator, start } = setup(order);
    setTimeout(() => order.push('timer'), 0);
    const runs = Array.from({ length: 5 }, () => start());
    // The timer (1 ms) is due before this turn ends: the next turn's timers phase runs it.
    holdLoop(2);
    const outputs = await Promise.all(runs.map((run) => run.result));
    expect(outputs.map((output) => output.status)).toEqual(Array<string>(5).fill('completed'));
    expect(order).toEqual(['timer', ...Array<string>(5).fill('request')]);
    expect(server.requests).toHaveLength(5);
    await orchestrator.shutdown();
  });

  it('asked for while an earlier one waits goes out a turn later too, not with it', async () => {
    const order: string[] = [];
    const model = noting(order);
    const closed: Promise<void>[] = [];
    const stream = () =>
      closed.push(
        new Promise<void>((resolve) =>
          model.streamTo(
            { messages: [{ role: 'user', content: 'hi' }], signal: new AbortController().signal },
            { chunk: () => undefined, close: () => resolve() },
          ),
        ),
      );
    // One request asked for in a turn's timers phase, five more in the next turn's, with a timer
    // due before that turn ends: the five go out after it, the one before.
    await new Promise<void>((started) =>
      setTimeout(() => {
        order.push('one');
        stream();
        setTimeout(() => {
          order.push('five');
          setTimeout(() => order.push('timer'), 0);
          for (let i = 0; i < 5; i++) stream();
          holdLoop(2);
          started();
        }, 0);
        holdLoop(2);
      }, 0),
    );
    await Promise.all(closed);
    expect(order).toEqual(['one', 'five', 'request', 'timer', ...Array<string>(5).fill('request')]);
  });

  it('runs in the async context of the run that asked for it', async () => {
    const tenant = new AsyncLocalStorage<string>();
    const sentFor: string[] = [];
    const { orchestrator, start } = setup(sentFor, () => tenant.getStore() ?? 'none');
    const names = ['alice', 'bob', 'carol'];
    const runs = names.map((name) => tenant.run(name, () => start(name)));
    await Promise.all(runs.map((run) => run.result));
    expect(sentFor).toEqual(names);
    const lastMessage = (body: { messages?: unknown }) =>
      (body.messages as { content: string }[]).at(-1)?.content;
    expect(server.requests.map((request) => lastMessage(request.body))).toEqual(names);
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
