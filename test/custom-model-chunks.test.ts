/**
 * A model written in JavaScript, held to no type: a delta's `null` content is no text, and a chunk
 * that is no `ModelChunk` fails the run naming it, rather than putting "undefined" into its answer.
 * The same whether the model's stream is pulled (`stream()`) or pushed (`streamTo()`).
 */
import { describe, expect, it } from 'vitest';
import { Agent } from '../src/agent.js';
import type { ChatModel, ModelChunk } from '../src/model/chat-model.js';

async function* toAsync<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield await Promise.resolve(item);
}

type Delivery = 'pulled' | 'pushed';

/** A model whose stream is `chunks` as they are (then an end, unless `end` is false). */
function modelYielding(delivery: Delivery, chunks: unknown[], { end = true } = {}): ChatModel {
  const all = (end ? [...chunks, { type: 'end', finishReason: 'stop' }] : chunks) as ModelChunk[];
  return {
    id: 'hand-made',
    provider: 'test',
    stream: () => toAsync(all),
    streamTo:
      delivery === 'pulled'
        ? undefined
        : (_request, receiver) =>
            setImmediate(() => {
              for (const chunk of all) receiver.chunk(chunk);
              receiver.close();
            }),
  };
}

async function runOnce(model: ChatModel) {
  const agent = new Agent({ name: 'Hand', model });
  try {
    return await agent.run('Hi');
  } finally {
    await agent.orchestrator.shutdown();
  }
}

describe.each<Delivery>(['pulled', 'pushed'])('a hand-made model, its stream %s', (delivery) => {
  it('takes a delta with null or no content as one without text', async () => {
    const chunks = [
      { type: 'delta', content: null },
      { type: 'delta', content: 'Hello' },
      { type: 'delta' },
      { type: 'delta', content: ' world', reasoning: null },
    ];
    expect(await runOnce(modelYielding(delivery, chunks))).toMatchObject({
      status: 'completed',
      content: 'Hello world',
    });
  });

  it("takes an end that names no finish reason as 'stop'", async () => {
    const model = modelYielding(delivery, [{ type: 'delta', content: 'Hi' }, { type: 'end' }], {
      end: false,
    });
    expect(await runOnce(model)).toMatchObject({ status: 'completed', finish_reason: 'stop' });
  });

  it('takes a token count that is no count as not reported (null), and usage that is no object as none', async () => {
    const usage = { input_tokens: 'a', output_tokens: -1, total_tokens: Number.NaN };
    const end = { type: 'end', finishReason: 'stop', usage };
    const output = await runOnce(
      modelYielding(delivery, [{ type: 'delta', content: 'x' }, end], { end: false }),
    );
    expect(output).toMatchObject({ status: 'completed', content: 'x' });
    expect(output.metrics).toMatchObject({ input_tokens: null, output_tokens: null, total_tokens: null });

    const kept = {
      type: 'end',
      finishReason: 'stop',
      usage: { input_tokens: 3, output_tokens: 2, total_tokens: 5 },
    };
    const counted = await runOnce(
      modelYielding(delivery, [{ type: 'delta', content: 'x' }, kept], { end: false }),
    );
    expect(counted.metrics).toMatchObject({ input_tokens: 3, output_tokens: 2, total_tokens: 5 });

    const noObject = { type: 'end', finishReason: 'stop', usage: 'lots' };
    const none = await runOnce(
      modelYielding(delivery, [{ type: 'delta', content: 'x' }, noObject], { end: false }),
    );
    expect(none).toMatchObject({ status: 'completed' });
    expect(none.metrics).toMatchObject({ input_tokens: null, output_tokens: null, total_tokens: null });
  });

  it.each([
    [{ type: 'nope' }, 'a chunk that is no delta or end'],
    [{ type: 'delta', content: 5 }, 'a delta whose content is number 5'],
    [{ type: 'delta', content: 'a', reasoning: {} }, 'a delta whose reasoning is {}'],
    ['Hello', 'a chunk that is no delta or end'],
    [undefined, 'a chunk that is no delta or end'],
    [
      { type: 'end', finishReason: 'tool_calls', toolCalls: 'nope' },
      'an end whose toolCalls are string nope',
    ],
  ])('fails the run, naming what came, on %j', async (chunk, named) => {
    const output = await runOnce(modelYielding(delivery, [{ type: 'delta', content: 'Hi' }, chunk]));
    expect(output).toMatchObject({ status: 'failed', error: { code: 'MODEL_REQUEST_FAILED' } });
    expect(output.error?.message).toContain(named);
    expect(output.content).toBe('Hi');
  });
});
