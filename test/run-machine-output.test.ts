/**
 * What a run's final output keeps of its turns: time to first token counts to calls that came whole
 * with a turn's end, and a run that did not complete keeps no finish reason, and no error unless it
 * failed.
 */
import { describe, expect, it } from 'vitest';
import { createActor, fromCallback, toPromise } from 'xstate';
import {
  runMachine,
  withRunClock,
  type ModelServiceInput,
  type RunMachineEvent,
} from '../machines/run.machine.js';
import type { CheckedToolCall, ToolRunnerInput } from '../machines/run-types.js';

const call: CheckedToolCall = {
  id: 'c1',
  name: 'lookup',
  arguments: '{}',
  args: {},
  invalid: null,
  requiresConfirmation: false,
};

/** The clock the machine reads; tests move it. */
let now = 1_000;

/**
 * A model whose first turn asks for `call` with no streamed output (the calls come whole with the
 * end), and whose second answers `text`; a tool that finishes only when the test says so.
 */
function machine(finishTool: { done?: () => void }) {
  return withRunClock(runMachine, { now: () => now, random: () => 0.5 }).provide({
    actors: {
      model: fromCallback<RunMachineEvent, ModelServiceInput>(({ input, sendBack }) => {
        if (input.transcript.length === 0) {
          sendBack({ type: 'DONE', finishReason: 'tool_calls', toolCalls: [call] });
          return;
        }
        sendBack({ type: 'CHUNK', delta: 'text' });
        sendBack({ type: 'DONE', finishReason: 'stop' });
      }),
      tools: fromCallback<RunMachineEvent, ToolRunnerInput>(({ input, sendBack }) => {
        for (const { id } of input.calls) sendBack({ type: 'TOOL_STARTED', toolCallId: id });
        finishTool.done = () => {
          for (const { id } of input.calls)
            sendBack({ type: 'TOOL_DONE', toolCallId: id, result: 'found', error: false });
        };
      }),
    },
  });
}

describe("a run's final output", () => {
  it('counts time to first token to calls that came whole with the first turn, not to the text after the tool', async () => {
    now = 1_000;
    const tool: { done?: () => void } = {};
    const actor = createActor(machine(tool), { input: { runId: 'r' } }).start();
    now = 1_200;
    actor.send({ type: 'START' });
    // The calls came whole with the first turn's end, as the run started; then the tool took 3.3 s.
    now = 4_500;
    tool.done!();
    const output = await toPromise(actor);
    expect(output.status).toBe('completed');
    expect(output.metrics.time_to_first_token).toBe(0);
  });

  it('keeps no finish reason on a run cancelled after a turn that asked for tools', async () => {
    const tool: { done?: () => void } = {};
    const actor = createActor(machine(tool), { input: { runId: 'r' } }).start();
    actor.send({ type: 'START' });
    expect(actor.getSnapshot().context.finishReason).toBe('tool_calls');
    actor.send({ type: 'CANCEL', reason: 'code' });
    const output = await toPromise(actor);
    expect(output).toMatchObject({ status: 'cancelled', finishReason: null, error: null });
  });

  it('keeps no error on a run cancelled while it waited to retry a failed request', async () => {
    const retrying = withRunClock(runMachine, { now: () => now, random: () => 0.5 }).provide({
      actors: {
        model: fromCallback<RunMachineEvent, ModelServiceInput>(({ sendBack }) =>
          sendBack({
            type: 'ERROR',
            error: { code: 'MODEL_REQUEST_FAILED', message: '503', retryable: true, status: 503 },
          }),
        ),
      },
    });
    const actor = createActor(retrying, { input: { runId: 'r' } }).start();
    actor.send({ type: 'START' });
    expect(actor.getSnapshot().value).toEqual({ streaming: 'retrying' });
    actor.send({ type: 'CANCEL', reason: 'code' });
    const output = await toPromise(actor);
    expect(output).toMatchObject({ status: 'cancelled', error: null });
  });
});
