import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Agent, OfflineModel, RunstateError, tool, type Tool } from '../../src/index.js';
import { runInNewContext } from 'node:vm';
import { MAX_TOOL_RESULT_CHARS, thrownText, toolResultText } from '../../src/tools/tool.js';

describe('tool()', () => {
  it('sends its parameters as JSON Schema, without the $schema key some servers refuse', () => {
    const add = tool({
      name: 'add',
      description: 'Adds two numbers',
      parameters: z.object({ a: z.number().describe('first'), b: z.number().default(0) }),
      execute: ({ a, b }) => a + b,
    });
    expect(add.definition).toEqual({
      name: 'add',
      description: 'Adds two numbers',
      parameters: {
        type: 'object',
        properties: { a: { type: 'number', description: 'first' }, b: { type: 'number', default: 0 } },
        required: ['a'],
      },
    });
  });

  it.each(['', 'has space', 'a'.repeat(65), 'dots.not.allowed'])('refuses the name %j', (name) => {
    expect(() => tool({ name, description: '', parameters: z.object({}), execute: () => 'x' })).toThrow(
      RunstateError,
    );
  });

  it('refuses a timeout that is not positive', () => {
    expect(() =>
      tool({ name: 't', description: '', parameters: z.object({}), execute: () => 'x', timeoutMs: 0 }),
    ).toThrow(/timeoutMs/);
    // A caller untyped: a string is not a number of milliseconds.
    const text = '100' as unknown as number;
    expect(() =>
      tool({ name: 't', description: '', parameters: z.object({}), execute: () => 'x', timeoutMs: text }),
    ).toThrow('timeoutMs of tool t must be a number of milliseconds > 0 (Infinity: no limit)');
  });
});

describe('toolResultText', () => {
  it('gives strings as they are and everything else as JSON', () => {
    expect(toolResultText('plain "text"')).toBe('plain "text"');
    expect(toolResultText({ temp: 21, unit: 'C' })).toBe('{"temp":21,"unit":"C"}');
    expect(toolResultText(42)).toBe('42');
    expect(toolResultText(null)).toBe('null');
    expect(toolResultText(undefined)).toBe('');
  });

  it('still gives JSON for what JSON cannot hold: a BigInt as its digits, a cycle cut where it loops', () => {
    const cycle: Record<string, unknown> = { name: 'loop', list: [] };
    cycle.self = cycle;
    (cycle.list as unknown[]).push(cycle, { again: cycle });
    expect(JSON.parse(toolResultText(cycle))).toEqual({
      name: 'loop',
      list: ['[Circular]', { again: '[Circular]' }],
      self: '[Circular]',
    });
    expect(toolResultText(10n)).toBe('10');
    expect(JSON.parse(toolResultText({ id: 12345678901234567890n, at: [1n] }))).toEqual({
      id: '12345678901234567890',
      at: ['1'],
    });
    // An object met twice, not inside itself, is no cycle.
    const shared = { n: 1 };
    expect(JSON.parse(toolResultText({ a: shared, b: [shared], c: 1n }))).toEqual({
      a: { n: 1 },
      b: [{ n: 1 }],
      c: '1',
    });
  });

  it('gives all of such a value, however long or deep (the size limit is what cuts a result)', () => {
    const value = {
      id: 1n,
      rows: Array.from({ length: 150 }, (_, i) => i),
      a: { b: { c: { d: { e: { secret: 42 } } } } },
      long: 'z'.repeat(20_000),
    };
    expect(JSON.parse(toolResultText(value))).toEqual({ ...value, id: '1' });
  });

  it('gives a function or a symbol as inspect names it, and a value whose toJSON throws as inspect prints it', () => {
    expect(toolResultText(function lookup() {})).toBe('[Function: lookup]');
    expect(toolResultText(Symbol('s'))).toBe('Symbol(s)');
    const odd = {
      n: 1n,
      toJSON: () => {
        throw new Error('no');
      },
    };
    expect(toolResultText(odd)).toMatch(/^\{ n: 1n, toJSON: \[Function: toJSON\] \}$/);
    // All of it, as JSON would have given it: inspect's defaults cut at 100 items, 10,000
    // characters and depth 2 (found by a reviewer after the JSON replacer came in).
    const large = {
      rows: Array.from({ length: 150 }, (_, i) => i),
      long: 'z'.repeat(20_000),
      a: { b: { c: { d: { e: { f: { secret: 42 } } } } } },
      get closed(): never {
        throw new Error('connection closed');
      },
    };
    const text = toolResultText(large);
    expect(text).toContain('secret: 42');
    expect(text).toContain(`'${'z'.repeat(20_000)}'`);
    expect(text).not.toMatch(/more items|more characters|\[Object\]/);
  });

  it('cuts such a value only where its text is over the size limit anyway', () => {
    const huge = {
      rows: Array.from({ length: MAX_TOOL_RESULT_CHARS }, () => 0),
      toJSON: () => {
        throw new Error('no');
      },
    };
    expect(toolResultText(huge).length).toBeGreaterThan(MAX_TOOL_RESULT_CHARS);
    const long = { text: 'z'.repeat(2 * MAX_TOOL_RESULT_CHARS), toJSON: huge.toJSON };
    expect(toolResultText(long).length).toBeGreaterThan(MAX_TOOL_RESULT_CHARS);
  });
});

describe('thrownText', () => {
  it("says what a tool threw, whatever it is: an error's message, or its class when it has none", () => {
    expect(thrownText(new RangeError('out of range'))).toBe('out of range');
    expect(thrownText(new TypeError())).toBe('TypeError');
    // An error made in another realm (a `vm` context) is an error all the same.
    expect(thrownText(runInNewContext('new Error("from a sandbox")'))).toBe('from a sandbox');
  });

  it("gives a plain object's message (and code), or the object as inspect prints it", () => {
    expect(thrownText({ message: 'quota exceeded', code: 429 })).toBe('quota exceeded (code 429)');
    expect(thrownText({ message: 'no way' })).toBe('no way');
    expect(thrownText({ status: 'bad' })).toBe("{ status: 'bad' }");
    expect(thrownText('plain text')).toBe('plain text');
    expect(thrownText(undefined)).toBe('undefined');
  });
});

describe('tool() and new Agent({ tools }) given what their types refuse', () => {
  it('refuses parameters that are not a zod object schema, and tools that are not an array of tools', () => {
    const untyped = (value: unknown) => value as z.ZodObject;
    for (const parameters of [z.string(), undefined, { type: 'object', properties: {} }]) {
      expect(() =>
        tool({ name: 't', description: '', parameters: untyped(parameters), execute: () => 'x' }),
      ).toThrow('parameters of tool t must be a zod object schema (z.object({...}))');
    }
    const ok = tool({ name: 't', description: '', parameters: z.object({}), execute: () => 'x' });
    for (const tools of [ok, [{ name: 'x' }], [ok, null]]) {
      expect(() => new Agent({ name: 'A', model: new OfflineModel(), tools: tools as Tool[] })).toThrow(
        'tools of agent a must be an array of tools made with tool()',
      );
    }
    expect(new Agent({ name: 'A', model: new OfflineModel(), tools: [ok] }).tools).toEqual([ok]);
  });

  it('refuses a name that is not a string (a JavaScript tools module), and no options at all', () => {
    const make = (name: unknown) => () =>
      tool({ name: name as string, description: '', parameters: z.object({}), execute: () => 'x' });
    expect(make(undefined)).toThrow("tool name undefined must be 1 to 64 letters, digits, '_' or '-'");
    expect(make(123)).toThrow("tool name 123 must be 1 to 64 letters, digits, '_' or '-'");
    expect(make(null)).toThrow("tool name null must be 1 to 64 letters, digits, '_' or '-'");
    expect(make('a b')).toThrow("tool name 'a b' must be 1 to 64 letters, digits, '_' or '-'");
    expect(() => tool(undefined as never)).toThrow(/^tool\(\) needs its options/);
  });
});
