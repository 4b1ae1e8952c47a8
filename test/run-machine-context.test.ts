import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { runMachine } from '../machines/index.js';

describe('the run machine context', () => {
  // xstate's `assign` copies the context on every CHUNK; from 20 top-level fields V8 builds the copy
  // as a dictionary and it costs about ten times as much (docs/performance.md). Group new fields.
  it('has fewer than 20 top-level fields', () => {
    const actor = createActor(runMachine, { input: { runId: 'r' } });
    expect(Object.keys(actor.getSnapshot().context).length).toBeLessThan(20);
  });
});
