/**
 * `timeoutMs` limits the time a run streams across its continues: a pause does not count, and a
 * continue does not give the run the whole limit again.
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

describe('the run timeout', () => {
  it('counts the time streamed before a pause, not the pause', () => {
    let now = 1_000;
    let answer: ((event: RunMachineEvent) => void) | undefined;
    const machine = withRunClock(runMachine, { now: () => now, random: () => 0.5 }).provide({
      actors: {
        // Answers when the test says: each request's `sendBack`.
        model: fromCallback<RunMachineEvent, ModelServiceInput>(({ sendBack }) => {
          answer = sendBack;
        }),
        tools: fromCallback<RunMachineEvent, ToolRunnerInput>(() => undefined),
      },
    });
    // The timers the actor arms, by delay: the run's is the only one under a minute here.
    const timers: { ms: number; fire: () => void; cleared: boolean }[] = [];
    const clock = {
      setTimeout: (fire: () => void, ms: number) => timers.push({ ms, fire, cleared: false }) - 1,
      clearTimeout: (id: number) => void (timers[id]!.cleared = true),
    };
    const runTimers = () => timers.filter((timer) => timer.ms < 60_000);
    const actor = createActor(machine, {
      input: { runId: 'r', timeoutMs: 1_000, idleTimeoutMs: 600_000, pauseTimeoutMs: 3_600_000 },
      clock,
    }).start();
    actor.send({ type: 'START' });
    expect(runTimers().map((timer) => timer.ms)).toEqual([1_000]);

    // 300 ms of streaming, then the model asks for a call that waits for a person: 5 s paused.
    now += 300;
    answer!({ type: 'DONE', finishReason: 'tool_calls', toolCalls: [publish] });
    expect(actor.getSnapshot().value).toBe('paused');
    expect(runTimers()[0]!.cleared).toBe(true);
    now += 5_000;
    actor.send({ type: 'CONTINUE', tools: [{ tool_call_id: 'c1', confirmed: true }] });

    // What is left of the limit: 700 ms, not 1,000 again; when it runs out, the run fails.
    const [, left] = runTimers();
    expect(left).toMatchObject({ ms: 700, cleared: false });
    now += 700;
    left!.fire();
    expect(actor.getSnapshot().value).toBe('failed');
    expect(actor.getSnapshot().output).toMatchObject({ error: { code: 'RUN_TIMEOUT' } });
    actor.stop();
  });
});
