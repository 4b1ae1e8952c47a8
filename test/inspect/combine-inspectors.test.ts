import { afterEach, describe, expect, it, vi } from 'vitest';
import { createActor, createMachine, type InspectionEvent } from 'xstate';
import { combineInspectors } from '../../src/inspect/index.js';

const toggle = createMachine({
  id: 'toggle',
  initial: 'off',
  states: { off: { on: { FLIP: 'on' } }, on: {} },
});

afterEach(() => vi.restoreAllMocks());

describe('combineInspectors', () => {
  it('hands every inspection event to functions, observers and objects with an inspect observer', () => {
    const seen: string[][] = [[], [], []];
    const inspect = combineInspectors(
      (event) => seen[0]!.push(event.type),
      { next: (event: InspectionEvent) => seen[1]!.push(event.type) },
      undefined,
      { inspect: { next: (event: InspectionEvent) => seen[2]!.push(event.type) } },
    );
    const actor = createActor(toggle, { inspect }).start();
    actor.send({ type: 'FLIP' });
    expect(seen[0]).toContain('@xstate.snapshot');
    expect(seen[1]).toEqual(seen[0]);
    expect(seen[2]).toEqual(seen[0]);
  });

  it('keeps the actor and the other inspectors going when one throws, and reports it once', () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    const seen: string[] = [];
    const inspect = combineInspectors(
      () => {
        throw new Error('broken inspector');
      },
      (event) => seen.push(event.type),
    );
    const actor = createActor(toggle, { inspect }).start();
    actor.send({ type: 'FLIP' });
    expect(actor.getSnapshot().value).toBe('on');
    expect(seen.filter((type) => type === '@xstate.snapshot')).toHaveLength(2);
    expect(error).toHaveBeenCalledTimes(1);
    expect(String(error.mock.calls[0]![0])).toContain('inspector #1 threw');
  });

  it('names a throwing inspector by its place among the arguments, an undefined one counted', () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    const inspect = combineInspectors(undefined, () => {
      throw new Error('broken inspector');
    });
    createActor(toggle, { inspect }).start();
    expect(String(error.mock.calls[0]![0])).toContain('inspector #2 threw');
  });
});
