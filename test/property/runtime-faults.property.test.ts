/**
 * Faults inside runstate itself: a run machine that throws (here: the injected clock breaks while
 * the machine computes a transition) must still end its run once, as `failed` with `INTERNAL`, and
 * abort the model through the run-level signal, since XState leaves the invoked children of a
 * machine that errors running (statelyai/xstate#5153). And the model service alone, as exported.
 */
import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, type AnyActorRef } from 'xstate';
import { runMachine } from '../../machines/run.machine.js';
import { createModelService, createOrchestrator, type RunEvent } from '../../src/runtime/index.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { actorTracker, FAKE_TIMERS, settle } from '../support/runs.js';
import { collect } from '../support/collect.js';

beforeEach(() => {
  vi.useFakeTimers({ ...FAKE_TIMERS, toFake: [...FAKE_TIMERS.toFake] });
});
afterEach(() => {
  vi.useRealTimers();
});

type BreakAt = 'first chunk' | 'end' | 'model error' | 'cancel' | 'idle timeout';

describe('a run machine that throws', () => {
  it('ends its run once, failed with INTERNAL, and aborts the model request', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<BreakAt>('first chunk', 'end', 'model error', 'cancel', 'idle timeout'),
        fc.array(fc.constantFrom('a', 'bc'), { maxLength: 3 }),
        async (breakAt, chunks) => {
          let broken = false;
          const clock = () => {
            if (broken) {
              broken = false;
              throw new Error('clock broke');
            }
            return Date.now();
          };
          const tracker = actorTracker();
          const orchestrator = createOrchestrator({
            now: clock,
            inspect: tracker.inspect,
            limits: { idleTimeoutMs: 100 },
          });
          const model = createFakeModel();
          const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi' });
          const call = await model.nextCall();
          // The machine reads the clock at the first chunk and when the run ends. Later chunks are
          // published by the orchestrator, whose own clock must not be the one that breaks: an error
          // thrown while publishing a chunk escapes XState (reported in docs/testing.md).
          const before = breakAt === 'first chunk' ? [] : chunks;
          for (const delta of before) call.emit(delta);
          await settle();
          broken = true;
          if (breakAt === 'first chunk') call.emit('x');
          else if (breakAt === 'end') call.end();
          else if (breakAt === 'cancel') expect(orchestrator.cancelRun(run.runId)).toBe(false);
          else if (breakAt === 'model error') call.fail(new Error('upstream went away'));
          else await vi.advanceTimersByTimeAsync(100);
          await settle();

          const output = await run.result;
          expect(output).toMatchObject({
            status: 'failed',
            content: before.join(''),
            error: { code: 'INTERNAL', message: 'clock broke', retryable: false },
          });
          const events: RunEvent[] = await collect(run.events());
          checkRunEvents(events, 'failed');
          expect(events.at(-1)).toMatchObject({
            event: 'RunError',
            code: 'INTERNAL',
            content: 'clock broke',
          });
          // A request the model had not ended is aborted anyway, and nothing is left behind.
          expect(call.signal.aborted).toBe(true);
          expect(call.settled).toBe(true);
          expect(getEventListeners(call.signal, 'abort')).toHaveLength(0);
          expect(orchestrator.activeCount).toBe(0);
          expect(orchestrator.cancelRun(run.runId)).toBe(false);
          expect(tracker.running().length).toBeLessThanOrEqual(1); // the model service xstate left running
          await orchestrator.shutdown();
        },
      ),
      { numRuns: 40, seed: 9_0909 },
    );
  });
});

describe('a clock that breaks while a chunk is published', () => {
  it('fails the run instead of escaping XState', async () => {
    let broken = false;
    const clock = () => {
      if (broken) {
        broken = false;
        throw new Error('clock broke');
      }
      return Date.now();
    };
    const orchestrator = createOrchestrator({ now: clock });
    const model = createFakeModel();
    const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi' });
    const call = await model.nextCall();
    call.emit('first');
    await settle();
    broken = true;
    call.emit('second');
    await settle();
    await vi.advanceTimersByTimeAsync(0);
    expect(await orchestrator.getRun(run.runId)).toMatchObject({
      status: 'failed',
      error: { code: 'INTERNAL', message: 'clock broke' },
    });
    expect(call.signal.aborted).toBe(true);
    await orchestrator.shutdown();
  });
});

describe('the model service', () => {
  it('fails the run when the run is not registered', () => {
    const machine = runMachine.provide({ actors: { model: createModelService(() => undefined) } });
    const actor = createActor(machine, { input: { runId: 'r9' } }).start();
    actor.send({ type: 'START' });
    expect(actor.getSnapshot().output).toMatchObject({
      status: 'failed',
      error: { code: 'INTERNAL', message: 'run r9 is not registered', retryable: false },
    });
  });

  it('makes no request for a run that has already ended, and streams normally otherwise', async () => {
    const model = createFakeModel();
    const ended = new AbortController();
    ended.abort();
    const signals = [ended.signal, new AbortController().signal];
    const machine = runMachine.provide({
      actors: {
        model: createModelService(() => ({
          model,
          messages: Promise.resolve([]),
          runSignal: signals.shift()!,
        })),
      },
    });
    const first = createActor(machine, { input: { runId: 'r1' } }).start();
    first.send({ type: 'START' });
    await settle();
    expect(model.calls).toHaveLength(0);
    first.stop();

    const second = createActor(machine, { input: { runId: 'r2' } }).start();
    second.send({ type: 'START' });
    const call = await model.nextCall();
    expect(call.signal.aborted).toBe(false);
    call.emit('');
    call.emit('ok');
    call.end();
    await settle();
    expect(second.getSnapshot().output).toMatchObject({ status: 'completed', content: 'ok' });
    expect((second.getSnapshot().children as Record<string, AnyActorRef | undefined>).model).toBeUndefined();
  });
});
