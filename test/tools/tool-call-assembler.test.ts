import { describe, expect, it } from 'vitest';
import { ToolCallAssembler, type ToolCallDelta } from '../../src/model/tool-call-assembler.js';

function assemble(deltas: ToolCallDelta[]) {
  let made = 0;
  const assembler = new ToolCallAssembler(() => `made_${++made}`);
  for (const delta of deltas) assembler.add(delta);
  return assembler.calls().map(({ id, function: f }) => ({ id, name: f.name, arguments: f.arguments }));
}

describe('ToolCallAssembler', () => {
  it('joins arguments split over many deltas (OpenAI: id and name once, then pieces by index)', () => {
    expect(
      assemble([
        { index: 0, id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '' } },
        { index: 0, function: { arguments: '{"ci' } },
        { index: 0, function: { arguments: 'ty":"Par' } },
        { index: 0, function: { arguments: 'is"}' } },
      ]),
    ).toEqual([{ id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}' }]);
  });

  it('keeps two calls of one turn apart by index, even when their pieces interleave', () => {
    expect(
      assemble([
        { index: 0, id: 'call_a', function: { name: 'add', arguments: '{"a":' } },
        { index: 1, id: 'call_b', function: { name: 'sub', arguments: '{"a":' } },
        { index: 0, function: { arguments: '1}' } },
        { index: 1, function: { arguments: '2}' } },
      ]),
    ).toEqual([
      { id: 'call_a', name: 'add', arguments: '{"a":1}' },
      { id: 'call_b', name: 'sub', arguments: '{"a":2}' },
    ]);
  });

  it('tells calls apart by id when a server gives every call index 0', () => {
    expect(
      assemble([
        { index: 0, id: 'call_a', function: { name: 'add', arguments: '{"a":' } },
        { index: 0, function: { arguments: '1}' } },
        { index: 0, id: 'call_b', function: { name: 'add', arguments: '{"a":' } },
        { index: 0, id: 'call_b', function: { arguments: '2}' } },
      ]),
    ).toEqual([
      { id: 'call_a', name: 'add', arguments: '{"a":1}' },
      { id: 'call_b', name: 'add', arguments: '{"a":2}' },
    ]);
  });

  it('makes up ids when none come, and starts a new call on a new name or after complete arguments', () => {
    expect(
      assemble([
        { index: 0, function: { name: 'add', arguments: '{"a":1}' } },
        { index: 0, function: { name: 'add', arguments: '{"a":2}' } },
        { index: 0, function: { name: 'now', arguments: '' } },
        { index: 0, function: { name: 'add', arguments: '{"a":' } },
        // A server that repeats the name on every piece: still one call.
        { index: 0, function: { name: 'add', arguments: '3}' } },
      ]),
    ).toEqual([
      { id: 'made_1', name: 'add', arguments: '{"a":1}' },
      { id: 'made_2', name: 'add', arguments: '{"a":2}' },
      { id: 'made_3', name: 'now', arguments: '' },
      { id: 'made_4', name: 'add', arguments: '{"a":3}' },
    ]);
  });

  it('treats an empty id as none and a missing index as 0', () => {
    expect(
      assemble([
        { id: '', function: { name: 'add', arguments: '{"a"' } },
        { id: null, function: { arguments: ':1}' } },
      ]),
    ).toEqual([{ id: 'made_1', name: 'add', arguments: '{"a":1}' }]);
  });

  it('makes ids that differ from call to call by default', () => {
    const assembler = new ToolCallAssembler();
    assembler.add({ index: 0, function: { name: 'a', arguments: '{}' } });
    assembler.add({ index: 1, function: { name: 'b', arguments: '{}' } });
    const [first, second] = assembler.calls();
    expect(first?.id).toMatch(/^call_[0-9a-f]{24}$/);
    expect(second?.id).not.toBe(first?.id);
  });

  it('keeps calls at two indexes apart when they share an id, and gives the second one its own', () => {
    expect(
      assemble([
        { index: 0, id: 'call_0', function: { name: 'add', arguments: '{"a":1}' } },
        { index: 1, id: 'call_0', function: { name: 'add', arguments: '{"a":2}' } },
      ]),
    ).toEqual([
      { id: 'call_0', name: 'add', arguments: '{"a":1}' },
      { id: 'made_1', name: 'add', arguments: '{"a":2}' },
    ]);
  });

  it('joins the deltas of one call that all repeat its id', () => {
    expect(
      assemble([
        { index: 0, id: 'r', function: { name: 'add', arguments: '{"a"' } },
        { index: 0, id: 'r', function: { name: 'add', arguments: ':7}' } },
      ]),
    ).toEqual([{ id: 'r', name: 'add', arguments: '{"a":7}' }]);
  });

  it('joins the deltas of one call that repeat its id and name, empty arguments first', () => {
    expect(
      assemble([
        { index: 0, id: 'r', function: { name: 'add', arguments: '' } },
        { index: 0, id: 'r', function: { name: 'add', arguments: '' } },
        { index: 0, id: 'r', function: { name: 'add', arguments: '{"a":7}' } },
      ]),
    ).toEqual([{ id: 'r', name: 'add', arguments: '{"a":7}' }]);
  });

  it('takes a name with arguments after complete ones, under the same id and index, for another call', () => {
    // A server that numbers ids per response and gives every call index 0: `call_0` twice.
    expect(
      assemble([
        { index: 0, id: 'call_0', function: { name: 'add', arguments: '{"a":1,"b":1}' } },
        { index: 0, id: 'call_0', function: { name: 'add', arguments: '{"a":2,"b":2}' } },
        { index: 0, id: 'call_0', function: { name: 'add', arguments: '' } },
      ]),
    ).toEqual([
      { id: 'call_0', name: 'add', arguments: '{"a":1,"b":1}' },
      { id: 'made_1', name: 'add', arguments: '{"a":2,"b":2}' },
    ]);
  });

  it('takes another name after complete arguments, under the same id, for another call (OpenAI: name, then arguments)', () => {
    expect(
      assemble([
        { index: 0, id: 'call_0', function: { name: 'add', arguments: '' } },
        { index: 0, function: { arguments: '{"a":1,"b":1}' } },
        { index: 0, id: 'call_0', function: { name: 'mul', arguments: '' } },
        { index: 0, function: { arguments: '{"a":2,"b":2}' } },
      ]),
    ).toEqual([
      { id: 'call_0', name: 'add', arguments: '{"a":1,"b":1}' },
      { id: 'made_1', name: 'mul', arguments: '{"a":2,"b":2}' },
    ]);
  });

  it('takes two calls of a tool without parameters, with no ids and no arguments, for two calls', () => {
    expect(
      assemble([{ function: { name: 'now', arguments: '' } }, { function: { name: 'now', arguments: '' } }]),
    ).toEqual([
      { id: 'made_1', name: 'now', arguments: '' },
      { id: 'made_2', name: 'now', arguments: '' },
    ]);
  });

  it("takes an id that comes after a call's first delta as that call's, not as another call", () => {
    expect(
      assemble([
        { index: 0, function: { name: 'add', arguments: '{"a":1' } },
        { index: 0, id: 'call_late', type: 'function' },
        { index: 0, function: { arguments: '}' } },
      ]),
    ).toEqual([{ id: 'call_late', name: 'add', arguments: '{"a":1}' }]);
  });

  it('keeps a made-up id when the late one is already another call of the turn', () => {
    expect(
      assemble([
        { index: 0, id: 'call_a', function: { name: 'add', arguments: '{}' } },
        { index: 1, function: { name: 'sub', arguments: '{' } },
        { index: 1, id: 'call_a', function: { arguments: '}' } },
      ]),
    ).toEqual([
      { id: 'call_a', name: 'add', arguments: '{}' },
      { id: 'made_1', name: 'sub', arguments: '{}' },
    ]);
  });

  it("keeps what a server sends beside a call (Gemini's extra_content), and adds none to the others", () => {
    const assembler = new ToolCallAssembler();
    const signature = { google: { thought_signature: 'sig' } };
    assembler.add({ id: 'a', function: { name: 'add', arguments: '{}' }, extra_content: signature });
    assembler.add({
      index: 1,
      id: 'b',
      function: { name: 'sub', arguments: '{}' },
      extra_content: 'not an object',
    });
    expect(assembler.calls()).toEqual([
      { id: 'a', type: 'function', function: { name: 'add', arguments: '{}' }, extra_content: signature },
      { id: 'b', type: 'function', function: { name: 'sub', arguments: '{}' } },
    ]);
  });

  it('orders calls by index when a server streams a later index first', () => {
    expect(
      assemble([
        { index: 1, id: 'call_b', function: { name: 'sub', arguments: '{}' } },
        { index: 0, id: 'call_a', function: { name: 'add', arguments: '{}' } },
      ]),
    ).toEqual([
      { id: 'call_a', name: 'add', arguments: '{}' },
      { id: 'call_b', name: 'sub', arguments: '{}' },
    ]);
  });
});
