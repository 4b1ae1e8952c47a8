import { afterEach, describe, expect, it, vi } from 'vitest';
import { createActor, createMachine, type InspectionEvent } from 'xstate';
import { Agent } from '../../src/agent.js';
import { combineInspectors, createInspector, type InspectorLike } from '../../src/inspect/index.js';
import { createOrchestrator, type OrchestratorOptions } from '../../src/runtime/create-orchestrator.js';

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

describe('an inspect option that is no inspection observer', () => {
  const EXPECTED =
    "inspect must be an inspection observer: a function, or an object with a next method (such as @statelyai/inspect's " +
    "inspector.inspect); runstate's createInspector() is none: attach it, inspector.attach(orchestrator)";

  it('is refused by createOrchestrator and by an Agent: runstate’s own inspector, an object with no next', () => {
    const builtIn = createInspector();
    for (const inspect of [builtIn, { error: () => {} }, 'console']) {
      const options = { inspect } as unknown as OrchestratorOptions;
      expect(() => createOrchestrator(options)).toThrow(
        expect.objectContaining({ code: 'INVALID_INPUT', message: EXPECTED }),
      );
      expect(() => new Agent({ name: 'Writer', ...options })).toThrow(
        expect.objectContaining({ code: 'INVALID_INPUT', message: EXPECTED }),
      );
    }
    // Functions and observers with next are taken.
    expect(() => createOrchestrator({ inspect: () => {} })).not.toThrow();
    expect(() => createOrchestrator({ inspect: { next: () => {} } })).not.toThrow();
  });

  it('is refused by combineInspectors, named by its place', () => {
    const builtIn = createInspector() as unknown as InspectorLike;
    expect(() => combineInspectors(() => {}, undefined, builtIn)).toThrow(
      expect.objectContaining({
        code: 'INVALID_INPUT',
        message:
          'combineInspectors: inspector #3 must be an inspection observer (a function, or an object with a next ' +
          "method) or an object with one as its inspect (@statelyai/inspect's inspectors); runstate's " +
          'createInspector() is none: attach it, inspector.attach(orchestrator)',
      }),
    );
    const noObserver = { inspect: {} } as unknown as InspectorLike;
    expect(() => combineInspectors(noObserver)).toThrow(/inspector #1 must be/);
  });
});
