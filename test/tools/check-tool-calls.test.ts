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
  it('passes valid calls with their parsed arguments (empty ones as `{}`, also as sent back), and marks those a person must confirm', async () => {
    expect(await checkToolCalls([call('add', '{"a":1,"b":2}'), call('publish', '', 'c2')], tools)).toEqual([
      {
        id: 'c1',
        name: 'add',
        arguments: '{"a":1,"b":2}',
        args: { a: 1, b: 2 },
        invalid: null,
        requiresConfirmation: false,
      },
      { id: 'c2', name: 'publish', arguments: '{}', args: {}, invalid: null, requiresConfirmation: true },
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
  ])('never lets %s run: the reason goes to the model', async (_, request, reason) => {
    const [checked] = await checkToolCalls([request], tools);
    expect(checked?.invalid).toMatch(reason);
    expect(checked?.requiresConfirmation).toBe(false);
  });

  it('does not ask a person to confirm a call that cannot run anyway', async () => {
    const [checked] = await checkToolCalls([call('publish', 'nope')], tools);
    expect(checked).toMatchObject({
      requiresConfirmation: false,
      invalid: expect.stringMatching(/JSON/) as unknown,
    });
  });

  it('takes a schema that throws for a mismatch, with the thrown message', async () => {
    const url = tool({
      name: 'url',
      description: 'u',
      parameters: z.object({ url: z.string().transform((s) => new URL(s)) }),
      execute: ({ url }) => url.href,
    });
    const checked = await checkToolCalls([call('url', '{"url":"nope"}')], new Map([['url', url]]));
    expect(checked).toMatchObject([
      {
        invalid: expect.stringMatching(
          /^Error: the arguments do not match the parameters of url:\n.*Invalid URL/,
        ) as unknown,
      },
    ]);
  });

  it('checks async schemas: a refinement, one that rejects (a mismatch, no unhandled rejection), a transform', async () => {
    const rejected: unknown[] = [];
    const onRejection = (reason: unknown) => rejected.push(reason);
    process.on('unhandledRejection', onRejection);
    try {
      const refined = tool({
        name: 'refined',
        description: 'r',
        parameters: z.object({
          n: z.number().refine(async (n) => Promise.resolve(n > 0), 'must be positive'),
        }),
        execute: ({ n }) => n,
      });
      const lookup = tool({
        name: 'lookup',
        description: 'l',
        parameters: z.object({ u: z.string().refine(() => Promise.reject(new Error('lookup failed'))) }),
        execute: ({ u }) => u,
      });
      const scaled = tool({
        name: 'scaled',
        description: 's',
        parameters: z.object({ n: z.string().transform(async (s) => Promise.resolve(Number(s) * 100)) }),
        execute: ({ n }) => n,
      });
      const checked = await checkToolCalls(
        [
          call('refined', '{"n":1}'),
          call('refined', '{"n":-1}', 'c2'),
          call('lookup', '{"u":"x"}', 'c3'),
          call('scaled', '{"n":"2"}', 'c4'),
          call('add', '{"a":1,"b":2}', 'c5'),
        ],
        new Map<string, Tool>([
          ['refined', refined],
          ['lookup', lookup],
          ['scaled', scaled],
          ['add', add],
        ]),
      );
      expect(checked.map((c) => c.invalid)).toEqual([
        null,
        expect.stringMatching(/do not match the parameters of refined:[\s\S]*must be positive/),
        expect.stringMatching(/do not match the parameters of lookup:\nlookup failed/),
        null,
        null,
      ]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(rejected).toEqual([]);
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });
});
