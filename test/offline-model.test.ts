import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ChatMessage, ModelChunk } from '../src/model/chat-model.js';
import { OfflineModel, type OfflineModelOptions } from '../src/model/offline-model.js';
import { collect } from './support/collect.js';

const DRAGON = 'Write a very long story about a dragon who learns to code';
const user = (content: string): ChatMessage[] => [{ role: 'user', content }];

/** Reads a whole stream (unpaced unless the options say otherwise). */
async function readAll(
  messages: ChatMessage[],
  options: OfflineModelOptions = {},
  signal = new AbortController().signal,
) {
  const model = new OfflineModel({ tokensPerSecond: Infinity, ...options });
  const chunks = await collect(model.stream({ messages, signal }));
  const deltas = chunks.flatMap((chunk) => (chunk.type === 'delta' ? [chunk.content] : []));
  return { chunks, deltas, text: deltas.join(''), end: chunks.at(-1) };
}

/** Starts reading a stream in the background, so a test can move fake time and watch it arrive. */
function consume(model: OfflineModel, messages: ChatMessage[], signal: AbortSignal) {
  const state = { deltas: [] as string[], ended: false, done: false };
  const finished = (async () => {
    for await (const chunk of model.stream({ messages, signal })) {
      if (chunk.type === 'delta') state.deltas.push(chunk.content);
      else state.ended = true;
    }
    state.done = true;
  })();
  return { state, finished };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('OfflineModel', () => {
  it('names itself offline, takes its id from the options and rejects a pace or length that would hang', () => {
    expect(new OfflineModel()).toMatchObject({ id: 'offline', provider: 'offline' });
    expect(new OfflineModel({ id: 'offline-test' }).id).toBe('offline-test');
    expect(() => new OfflineModel({ tokensPerSecond: 0 })).toThrow(/tokensPerSecond/);
    // A token slower than a timer holds would come at once.
    expect(() => new OfflineModel({ tokensPerSecond: 1e-300 })).toThrow(
      /tokensPerSecond must be at least 0.001/,
    );
    expect(() => new OfflineModel({ maxTokens: Infinity })).toThrow(/maxTokens/);
  });

  it('gives the same text for the same seed and messages, and another text for another prompt or seed', async () => {
    const first = await readAll(user(DRAGON));
    const again = await readAll(user(DRAGON));
    expect(again.chunks).toEqual(first.chunks);
    expect((await readAll(user('Write a very long story about a cat who learns to sing'))).text).not.toBe(
      first.text,
    );
    expect((await readAll(user(DRAGON), { seed: 2 })).text).not.toBe(first.text);
  });

  it('writes readable sentences about the subject of the prompt', async () => {
    const story = await readAll(user('Write a story about a dragon who learns to code, in 120 words'));
    expect(story.text).toContain('dragon');
    expect(story.text).toContain('code');
    const essay = await readAll(user('Explain how HTTP caching works in 80 words'));
    expect(essay.text).toContain('HTTP');
    expect(essay.text).toContain('caching');
    for (const { text } of [story, essay]) {
      const sentences = text.split(/(?<=[.!?])\s+/);
      expect(sentences.length).toBeGreaterThan(3);
      for (const sentence of sentences) expect(sentence).toMatch(/^["\p{Lu}].*[.!?]$/u);
    }
  });

  it('takes no over-long "word" for a subject: the answer stays about the size it would be', async () => {
    const long = 'x'.repeat(100_000);
    for (const prompt of [`Tell me about ${long} and tides`, `${long} ${long}`]) {
      const { text } = await readAll(user(prompt));
      expect(text).not.toContain('x'.repeat(41));
      expect(text.length).toBeLessThan(20_000);
    }
  });

  it('answers a prompt of 200,000 distinct words without a pause: only its first topics are looked for', async () => {
    // The words were once gathered into a list searched for each new word: minutes for this prompt.
    const words = Array.from({ length: 200_000 }, (_, i) => `word${i.toString(36)}`);
    const { text, end } = await readAll(user(`Tell me about ${words.join(' ')}`));
    expect(text).toContain('word0');
    expect(end).toMatchObject({ type: 'end' });
  });

  it('streams one word per delta, joined into clean text, then exactly one end with the usage', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You are a storyteller.' },
      { role: 'user', content: DRAGON },
    ];
    const { chunks, deltas, text, end } = await readAll(messages);
    expect(deltas[0]).toMatch(/^\S+$/);
    for (const delta of deltas.slice(1)) expect(delta).toMatch(/^(?: |\n\n)\S+$/);
    expect(text).not.toMatch(/ {2}|^\s|\s$/);
    expect(chunks.filter((chunk) => chunk.type === 'end')).toHaveLength(1);
    expect(end).toEqual({
      type: 'end',
      finishReason: 'length', // the default 400 tokens cut a very long story short
      usage: { input_tokens: 16, output_tokens: 400, total_tokens: 416 },
    });
  });

  it('writes exactly the number of words the prompt asks for, ending on a whole sentence', async () => {
    const { deltas, text, end } = await readAll(user('Describe a lighthouse in 50 words'));
    expect(deltas).toHaveLength(50);
    expect(text.split(/\s+/)).toHaveLength(50);
    expect(text).toMatch(/[.!?]$/);
    expect(end).toMatchObject({ finishReason: 'stop', usage: { output_tokens: 50 } });
  });

  it('meets every requested length from 1 to 80 words exactly, with a closed last sentence', async () => {
    for (let words = 1; words <= 80; words++) {
      const { deltas, text } = await readAll(user(`Tell me about the sea in ${words} words`));
      expect(deltas, text).toHaveLength(words);
      expect(text).toMatch(/[.!?]$/);
    }
  });

  it('lets a requested word count override maxTokens, up to 5000 words', async () => {
    expect((await readAll(user('A story about rain in 100 words'), { maxTokens: 10 })).deltas).toHaveLength(
      100,
    );
    expect((await readAll(user('A story about rain in 900000 words'))).deltas).toHaveLength(5000);
  });

  it('stops at maxTokens with finishReason length', async () => {
    const { deltas, end } = await readAll(user(DRAGON), { maxTokens: 25 });
    expect(deltas).toHaveLength(25);
    expect(end).toMatchObject({ type: 'end', finishReason: 'length', usage: { output_tokens: 25 } });
  });

  it('paces tokens at tokensPerSecond against the start time, without drift', async () => {
    vi.useFakeTimers();
    const controller = new AbortController();
    const { state, finished } = consume(new OfflineModel(), user(DRAGON), controller.signal);
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.deltas.length).toBeGreaterThanOrEqual(29);
    expect(state.deltas.length).toBeLessThanOrEqual(31);
    for (let i = 0; i < 90; i++) await vi.advanceTimersByTimeAsync(100);
    expect(state.deltas.length).toBeGreaterThanOrEqual(299);
    expect(state.deltas.length).toBeLessThanOrEqual(301);
    await vi.advanceTimersByTimeAsync(5000);
    await finished;
    expect(state).toMatchObject({ ended: true, done: true });
    expect(state.deltas).toHaveLength(400);
  });

  it('yields nothing when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const { chunks } = await readAll(user(DRAGON), { tokensPerSecond: 30 }, controller.signal);
    expect(chunks).toEqual([]);
  });

  it('ends quietly and at once when aborted during a wait, leaving no listener on the signal', async () => {
    vi.useFakeTimers();
    const controller = new AbortController();
    const { state, finished } = consume(new OfflineModel(), user(DRAGON), controller.signal);
    await vi.advanceTimersByTimeAsync(500);
    controller.abort();
    await vi.advanceTimersByTimeAsync(0); // settles promises without moving the clock
    expect(state).toMatchObject({ done: true, ended: false });
    expect(state.deltas.length).toBeGreaterThanOrEqual(15);
    expect(state.deltas.length).toBeLessThanOrEqual(16);
    await expect(finished).resolves.toBeUndefined();
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('ends quietly after the token during which the signal was aborted', async () => {
    const controller = new AbortController();
    const model = new OfflineModel({ tokensPerSecond: Infinity });
    const chunks: ModelChunk[] = [];
    for await (const chunk of model.stream({ messages: user(DRAGON), signal: controller.signal })) {
      chunks.push(chunk);
      if (chunks.length === 10) controller.abort();
    }
    expect(chunks).toHaveLength(10);
    expect(chunks.every((chunk) => chunk.type === 'delta')).toBe(true);
  });

  it('leaves no listener on the signal after a paced stream completes', async () => {
    const controller = new AbortController();
    const { end } = await readAll(user(DRAGON), { tokensPerSecond: 2000, maxTokens: 20 }, controller.signal);
    expect(end?.type).toBe('end');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('refers back to the earlier topic when the history has an assistant turn', async () => {
    const history: ChatMessage[] = [
      { role: 'user', content: 'Tell me a story about a lighthouse keeper' },
      { role: 'assistant', content: 'This is the story of a lighthouse keeper.' },
      { role: 'user', content: 'Continue, in 40 words' },
    ];
    const followUp = await readAll(history);
    expect(followUp.text).toMatch(/^Building on what we said earlier about a lighthouse keeper\b/);
    expect(followUp.text).toContain('lighthouse');
    expect(followUp.deltas).toHaveLength(40);
    const fresh = await readAll(user('Tell me a story about a lighthouse keeper'));
    expect(fresh.text).not.toContain('earlier');
  });

  it('streams 10,000 unpaced tokens while letting other callbacks run in between', async () => {
    let deltasWhenImmediateRan = -1;
    let count = 0;
    setImmediate(() => {
      deltasWhenImmediateRan = count;
    });
    const model = new OfflineModel({ tokensPerSecond: Infinity, maxTokens: 10_000 });
    let end: ModelChunk | undefined;
    for await (const chunk of model.stream({
      messages: user(DRAGON),
      signal: new AbortController().signal,
    })) {
      if (chunk.type === 'delta') count++;
      else end = chunk;
    }
    expect(count).toBe(10_000);
    expect(end).toMatchObject({ finishReason: 'length', usage: { output_tokens: 10_000 } });
    expect(deltasWhenImmediateRan).toBeGreaterThanOrEqual(0);
    expect(deltasWhenImmediateRan).toBeLessThanOrEqual(64);
  });

  it('lets a cancel from a timer end an unpaced stream', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 0);
    const { deltas, end } = await readAll(user(DRAGON), { maxTokens: 10_000 }, controller.signal);
    expect(deltas.length).toBeLessThan(10_000);
    expect(end?.type).toBe('delta');
  });
});
