/**
 * A paused run's snapshot is plain data: it goes through JSON (what a store keeps) unchanged, holds
 * no running child (the model service and the tool runner live in `streaming` only), and an actor
 * restored from it in a fresh machine carries on as the original would.
 */
import { describe, expect, it } from 'vitest';
import { createActor, fromCallback } from 'xstate';
import {
  runMachine,
  withRunClock,
  type ModelServiceInput,
  type RunMachineEvent,
} from '../machines/run.machine.js';
import type { ToolRunnerInput } from '../machines/run-types.js';
import { PUBLISH_CALL as publish } from './support/runs.js';

/** A machine whose model asks for `publish` on its first turn and answers once it has the result. */
function machineWith(now: () => number, ran: string[]) {
  return withRunClock(runMachine, { now, random: () => 0.5 }).provide({
    actors: {
      model: fromCallback<RunMachineEvent, ModelServiceInput>(({ input, sendBack }) => {
        if (input.transcript.length === 0)
          sendBack({ type: 'DONE', finishReason: 'tool_calls', toolCalls: [publish] });
        else {
          sendBack({ type: 'CHUNK', delta: 'Published.' });
          sendBack({ type: 'DONE', finishReason: 'stop' });
        }
      }),
      tools: fromCallback<RunMachineEvent, ToolRunnerInput>(({ input, sendBack }) => {
        for (const call of input.calls) {
          ran.push(call.id);
          sendBack({ type: 'TOOL_STARTED', toolCallId: call.id });
          sendBack({ type: 'TOOL_DONE', toolCallId: call.id, result: 'done', error: false });
        }
      }),
    },
  });
}

describe('a paused run snapshot', () => {
  it('survives JSON and restores into a fresh actor that continues to the end', () => {
    const ran: string[] = [];
    const first = createActor(
      machineWith(() => 1_000, ran),
      { input: { runId: 'r' } },
    ).start();
    first.send({ type: 'START' });
    expect(first.getSnapshot().value).toBe('paused');
    expect(Object.keys(first.getSnapshot().children)).toEqual([]);
    const persisted = first.getPersistedSnapshot();
    const stored: unknown = JSON.parse(JSON.stringify(persisted));
    expect(stored).toEqual(persisted);
    first.stop();

    // Another process: its own machine and clock, the same input.
    const restored = createActor(
      machineWith(() => 5_000, ran),
      {
        snapshot: stored as typeof persisted,
        input: { runId: 'r' },
      },
    ).start();
    expect(restored.getSnapshot().value).toBe('paused');
    restored.send({ type: 'CONTINUE', tools: [{ tool_call_id: 'c1', confirmed: true }] });
    expect(ran).toEqual(['c1']);
    const snapshot = restored.getSnapshot();
    expect(snapshot.status).toBe('done');
    expect(snapshot.output).toMatchObject({
      status: 'completed',
      content: 'Published.',
      tools: [{ tool_call_id: 'c1', status: 'completed', confirmed: true, result: 'done' }],
      // From the first start (the original clock) to the end (the restored one).
      metrics: { duration: 4 },
    });
  });
});
