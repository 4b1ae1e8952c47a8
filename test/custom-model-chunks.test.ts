/**
 * A model written in JavaScript, held to no type: a delta's `null` content is no text, and a chunk
 * that is no `ModelChunk` fails the run naming it, rather than putting "undefined" into its answer.
 */
import { describe, expect, it } from 'vitest';
import { Agent } from '../src/agent.js';
import type { ChatModel, ModelChunk } from '../src/model/chat-model.js';

async function* toAsync<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield await Promise.resolve(item);
}

/** A model that yields `chunks` as they are, then ends. */
function modelYielding(chunks: unknown[]): ChatModel {
  return {
    id: 'hand-made',
    provider: 'test',
    stream: () => toAsync([...(chunks as ModelChunk[]), { type: 'end', finishReason: 'stop' }]),
  };
}

describe('a hand-made model', () => {
  it('takes a delta with null or no content as one without text', async () => {
    const chunks = [
      { type: 'delta', content: null },
      { type: 'delta', content: 'Hello' },
      { type: 'delta' },
      { type: 'delta', content: ' world', reasoning: null },
    ];
    const agent = new Agent({ name: 'Hand', model: modelYielding(chunks) });
    try {
      expect(await agent.run('Hi')).toMatchObject({ status: 'completed', content: 'Hello world' });
    } finally {
      await agent.orchestrator.shutdown();
    }
  });

  it("takes an end that names no finish reason as 'stop'", async () => {
    const model: ChatModel = {
      id: 'hand-made',
      provider: 'test',
      stream: () => toAsync([{ type: 'delta', content: 'Hi' }, { type: 'end' } as ModelChunk]),
    };
    const agent = new Agent({ name: 'Hand', model });
    try {
      expect(await agent.run('Hi')).toMatchObject({ status: 'completed', finish_reason: 'stop' });
    } finally {
      await agent.orchestrator.shutdown();
    }
  });

  it.each([
    [{ type: 'nope' }, 'a chunk that is no delta or end'],
    [{ type: 'delta', content: 5 }, 'a delta whose content is number 5'],
    [{ type: 'delta', content: 'a', reasoning: {} }, 'a delta whose reasoning is {}'],
    ['Hello', 'a chunk that is no delta or end'],
  ])('fails the run, naming what came, on %j', async (chunk, named) => {
    const agent = new Agent({
      name: 'Hand',
      model: modelYielding([{ type: 'delta', content: 'Hi' }, chunk]),
    });
    try {
      const output = await agent.run('Hi');
      expect(output).toMatchObject({ status: 'failed', error: { code: 'MODEL_REQUEST_FAILED' } });
      expect(output.error?.message).toContain(named);
    } finally {
      await agent.orchestrator.shutdown();
    }
  });
});
