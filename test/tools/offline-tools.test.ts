import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { OfflineModel, tool, type ChatMessage, type ToolDefinition } from '../../src/index.js';
import { collect } from '../support/collect.js';

const definitions: ToolDefinition[] = [
  tool({
    name: 'add_numbers',
    description: 'Adds',
    parameters: z.object({ a: z.number(), b: z.number() }),
    execute: ({ a, b }) => a + b,
  }).definition,
  tool({
    name: 'slow_search',
    description: 'Searches slowly',
    parameters: z.object({
      query: z.string(),
      depth: z.enum(['shallow', 'deep']),
      seconds: z.number().default(3),
      fresh: z.boolean().optional(),
    }),
    execute: () => 'found',
  }).definition,
];

/** The whole unpaced stream of the offline model with `tools`. */
function streamOf(messages: ChatMessage[], tools: ToolDefinition[] = definitions) {
  const model = new OfflineModel({ tokensPerSecond: Infinity });
  return collect(model.stream({ messages, tools, signal: new AbortController().signal }));
}

describe('the offline model with tools', () => {
  it('calls every tool the user names, in the order named, with arguments read from the message', async () => {
    const chunks = await streamOf([
      { role: 'user', content: 'Please run a deep Slow Search for "red foxes", then add numbers 2 and 40' },
    ]);
    expect(chunks).toEqual([
      // The calls' arguments streamed (output, for time to first token), then the calls.
      { type: 'delta', content: '', toolCall: true },
      {
        type: 'end',
        finishReason: 'tool_calls',
        usage: expect.any(Object) as unknown,
        toolCalls: [
          {
            id: 'call_offline_1_0',
            type: 'function',
            function: {
              name: 'slow_search',
              arguments: JSON.stringify({ query: 'red foxes', depth: 'deep', seconds: 2, fresh: true }),
            },
          },
          {
            id: 'call_offline_1_1',
            type: 'function',
            function: { name: 'add_numbers', arguments: JSON.stringify({ a: 2, b: 40 }) },
          },
        ],
      },
    ]);
  });

  it('takes no form of a tool name for a string argument: joined, hyphenated or spaced', async () => {
    const fetchPage = tool({
      name: 'fetch_page',
      description: 'Fetches',
      parameters: z.object({ url: z.string() }),
      execute: () => 'page',
    }).definition;
    for (const [message, url] of [
      ['fetch_page now', 'now'],
      ['fetch page now', 'now'],
      ['fetchpage now', 'now'],
      ['Fetch-Page now', 'now'],
      ['fetch-page', 'url'],
    ]) {
      const end = (await streamOf([{ role: 'user', content: message! }], [fetchPage])).at(-1);
      expect(end, message).toMatchObject({
        toolCalls: [{ function: { name: 'fetch_page', arguments: JSON.stringify({ url }) } }],
      });
    }
  });

  it('writes text when no tool is named, or when no tools are offered', async () => {
    for (const chunks of [
      await streamOf([{ role: 'user', content: 'A story about numbers' }]),
      await streamOf([{ role: 'user', content: 'add_numbers 1 and 2' }], []),
    ]) {
      expect(chunks.at(-1)).toMatchObject({ type: 'end', finishReason: 'length' });
      expect(chunks.length).toBeGreaterThan(1);
    }
  });

  it('answers with what each call returned once the results are in', async () => {
    const chunks = await streamOf([
      { role: 'user', content: 'add_numbers 2 and 3' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'add_numbers', arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: '5' },
    ]);
    const text = chunks.flatMap((c) => (c.type === 'delta' ? [c.content] : [])).join('');
    expect(text).toBe('add_numbers returned: 5\n\nThat is what the tools said.');
    expect(chunks.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
  });
});
