/**
 * The backoff of a retry doubles per retry of the model turn it retries: the requests of the turns
 * before it (the tool rounds) are no retries.
 */
import { describe, expect, it } from 'vitest';
import { createActor, fromCallback } from 'xstate';
import {
  runMachine,
  withRunClock,
  type ModelServiceInput,
  type RunMachineEvent,
} from '../machines/run.machine.js';
import type { CheckedToolCall, ToolRunnerInput } from '../machines/run-types.js';

const lookup = (id: string): CheckedToolCall => ({
  id,
  name: 'lookup',
  arguments: '{}',
  args: {},
  invalid: null,
  requiresConfirmation: false,
});

/** A model that asks for a tool in each of its first `rounds` turns, then fails, retryably. */
function machineWith(rounds: number) {
  return withRunClock(runMachine, { now: () => 1_000, random: () => 0.5 }).provide({
    actors: {
      model: fromCallback<RunMachineEvent, ModelServiceInput>(({ input, sendBack }) => {
        const turn = input.transcript.filter((message) => message.role === 'tool').length;
        if (turn < rounds)
          sendBack({ type: 'DONE', finishReason: 'tool_calls', toolCalls: [lookup(`c${turn}`)] });
        else {
          sendBack({
            type: 'ERROR',
            error: { code: 'MODEL_REQUEST_FAILED', message: '500', retryable: true, status: 500 },
          });
        }
      }),
      tools: fromCallback<RunMachineEvent, ToolRunnerInput>(({ input, sendBack }) => {
        for (const call of input.calls) {
          sendBack({ type: 'TOOL_STARTED', toolCallId: call.id });
          sendBack({ type: 'TOOL_DONE', toolCallId: call.id, result: 'found', error: false });
        }
      }),
    },
  });
}

describe('the retry backoff', () => {
  it.each([0, 1, 4])('is the base delay for the first retry of a turn after %i tool rounds', (rounds) => {
    const actor = createActor(machineWith(rounds), {
      input: { runId: 'r', retry: { maxAttempts: 3, baseDelayMs: 200, maxDelayMs: 60_000 } },
    }).start();
    actor.send({ type: 'START' });
    const { value, context } = actor.getSnapshot();
    expect(value).toEqual({ streaming: 'retrying' });
    expect(context.attempt).toBe(rounds + 1);
    // Equal jitter with a random of 0.5: three quarters of the backoff, 200 ms.
    expect(context.retryDelayMs).toBe(150);
    actor.stop();
  });
});
