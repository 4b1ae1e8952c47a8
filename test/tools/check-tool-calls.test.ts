import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { tool, type Tool } from '../../src/index.js';
import { checkToolCalls } from '../../src/runtime/check-tool-calls.js';

const add = tool({
  name: 'add',
  description: 'Adds',
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => a + b,
});
const publish = tool({
  name: 'publish',
  description: 'Publishes',
  parameters: z.object({}),
  execute: () => 'ok',
  requiresConfirmation: true,
});
const tools = new Map<string, Tool>([
  ['add', add],
  ['publish', publish],
]);
const call = (name: string, args: string, id = 'c1') => ({
  id,
  type: 'function' as const,
  function: { name, arguments: args },
});

describe('checkToolCalls', () => {
  it('passes valid calls with their parsed arguments, and marks those a person must confirm', () => {
    expect(checkToolCalls([call('add', '{"a":1,"b":2}'), call('publish', '', 'c2')], tools)).toEqual([
      {
        id: 'c1',
        name: 'add',
        arguments: '{"a":1,"b":2}',
        args: { a: 1, b: 2 },
        invalid: null,
        requiresConfirmation: false,
      },
      { id: 'c2', name: 'publish', arguments: '', args: {}, invalid: null, requiresConfirmation: true },
    ]);
  });

  it.each([
    ['an unknown tool', call('mul', '{}'), /no tool named 'mul' \(tools: add, publish\)/],
    ['arguments that are not JSON', call('add', '{"a":1,'), /not valid JSON/],
    ['arguments that are not an object', call('add', '[1,2]'), /not a JSON object/],
    [
      'a schema mismatch',
      call('add', '{"a":"one","b":2}'),
      /do not match the parameters of add:[\s\S]*expected number[\s\S]*→ at a/,
    ],
  ])('never lets %s run: the reason goes to the model', (_, request, reason) => {
    const [checked] = checkToolCalls([request], tools);
    expect(checked?.invalid).toMatch(reason);
    expect(checked?.requiresConfirmation).toBe(false);
  });

  it('does not ask a person to confirm a call that cannot run anyway', () => {
    const [checked] = checkToolCalls([call('publish', 'nope')], tools);
    expect(checked).toMatchObject({
      requiresConfirmation: false,
      invalid: expect.stringMatching(/JSON/) as unknown,
    });
  });
});
