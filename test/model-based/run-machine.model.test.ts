/**
 * Model-based tests, layer 1: the run machine's actor. Every lifecycle path found in the machine's
 * own graph is replayed on a real actor, with a stub model service and a simulated clock, and the
 * machine must do at every step what the path says (state value, content, emitted deltas, model
 * requests started and stopped), then output what the path says. The path comes from the machine
 * itself, so each step and the end are also checked against an oracle written from the documented
 * rules (test/support/lifecycle-oracle.ts): a machine that breaks a rule fails here, whatever paths
 * it yields.
 */
import { describe, expect, it } from 'vitest';
import {
  createActor,
  fromCallback,
  matchesState,
  SimulatedClock,
  type AnyActorRef,
  type AnyEventObject,
  type InspectionEvent,
} from 'xstate';
import type { ToolRunnerInput } from '../../machines/run-types.js';
import {
  runMachine,
  withRunClock,
  type ModelServiceInput,
  type RunMachineEvent,
} from '../../machines/run.machine.js';
import { getLifecycleEvents, getLifecyclePaths, type LifecyclePath } from '../../src/testing/index.js';
import { lifecycleOracle, phaseOf } from '../support/lifecycle-oracle.js';
import { allStateNodes, MACHINE_ERRORS, RANDOM, transitionKey } from '../support/runs.js';

/**
 * Every simple path with tools that return, and every path of a tool that throws or times out in a
 * run whose next turn ends it at once (a throw or a timeout is a result like any other for the turn
 * after it: exploring that turn again for each would double the paths and show nothing new).
 */
const paths = uniqueByName([
  ...getLifecyclePaths({
    errors: MACHINE_ERRORS,
    random: RANDOM,
    serviceCrashes: true,
    toolOutcomes: ['result'],
  }),
  ...getLifecyclePaths({
    errors: MACHINE_ERRORS,
    random: RANDOM,
    serviceCrashes: true,
    turnAfterTools: 'final',
  }),
]);

function uniqueByName(all: LifecyclePath[]): LifecyclePath[] {
  return [...new Map(all.map((path) => [path.name, path])).values()];
}

interface StubCall {
  input: ModelServiceInput;
  sendBack: (event: RunMachineEvent) => void;
  stopped: boolean;
}

/** Runs a path on an actor and checks every step. Returns the transitions and states the actor went through. */
function replayOnActor(path: LifecyclePath) {
  const oracle = lifecycleOracle(path.steps, path.limits);
  const clock = new SimulatedClock();
  const calls: StubCall[] = [];
  const model = fromCallback<RunMachineEvent, ModelServiceInput>(({ input, sendBack, receive }) => {
    const call: StubCall = { input, sendBack, stopped: false };
    calls.push(call);
    receive((event) => {
      // How a test makes the service itself throw, after it started.
      if ((event as AnyEventObject).type === 'CRASH') throw new Error('model service crashed');
    });
    return () => {
      call.stopped = true;
    };
  });
  const toolRunners: {
    input: ToolRunnerInput;
    sendBack: (event: RunMachineEvent) => void;
    stopped: boolean;
  }[] = [];
  const tools = fromCallback<RunMachineEvent, ToolRunnerInput>(({ input, sendBack, receive }) => {
    const runner = { input, sendBack, stopped: false };
    toolRunners.push(runner);
    receive((event) => {
      if ((event as AnyEventObject).type === 'CRASH') throw new Error('tool runner crashed');
    });
    return () => {
      runner.stopped = true;
    };
  });
  const transitions = new Set<string>();
  const stateIds = new Set<string>();
  const inspect = (event: InspectionEvent) => {
    if (event.type !== '@xstate.microstep' || event.actorRef !== actor) return;
    for (const transition of event._transitions) transitions.add(transitionKey(transition));
  };
  const machine = withRunClock(runMachine, { now: () => clock.now(), random: RANDOM });
  const actor = createActor(machine.provide({ actors: { model, tools } }), {
    input: { runId: 'run', ...path.limits },
    clock,
    inspect,
  });
  const emitted: string[] = [];
  actor.on('content', ({ delta }) => emitted.push(delta));
  const errors: unknown[] = [];
  actor.subscribe({ error: (error) => errors.push(error) });
  actor.start();
  const visit = () => {
    for (const node of actor.getSnapshot()._nodes) stateIds.add(node.id);
  };
  visit();
  expect(actor.getSnapshot().value).toBe('pending');

  for (const [index, step] of path.steps.entries()) {
    const at = `step ${index + 1} (${step.action.type})`;
    const current = calls.at(-1);
    const runner = toolRunners.at(-1);
    const runnerStoppedBefore = runner?.stopped ?? true;
    const callsBefore = calls.length;
    emitted.length = 0;
    const { action } = step;
    switch (action.type) {
      case 'start':
        actor.send({ type: 'START' });
        break;
      case 'cancel':
        actor.send({ type: 'CANCEL', reason: action.reason });
        break;
      case 'chunk':
        current!.sendBack({ type: 'CHUNK', delta: action.delta });
        break;
      case 'end':
        current!.sendBack({ type: 'DONE', finishReason: action.finishReason, usage: action.usage });
        break;
      case 'callTools':
        // The path's own DONE, with its tool calls (as the model service checked them).
        current!.sendBack(step.event as RunMachineEvent);
        break;
      case 'toolStarted':
        runner!.sendBack({ type: 'TOOL_STARTED', toolCallId: action.toolCallId });
        break;
      case 'toolDone':
      case 'toolThrew':
        runner!.sendBack({
          type: 'TOOL_DONE',
          toolCallId: action.toolCallId,
          result: action.result,
          error: action.type === 'toolThrew',
        });
        break;
      case 'toolTimeout': {
        // The runtime's timer, not the machine's: no machine timer fires meanwhile.
        const before = actor.getSnapshot();
        clock.increment(action.ms);
        expect(actor.getSnapshot(), `${at}: a timer fired`).toBe(before);
        runner!.sendBack({
          type: 'TOOL_DONE',
          toolCallId: action.toolCallId,
          result: action.result,
          error: true,
        });
        break;
      }
      case 'continue':
        actor.send({ type: 'CONTINUE', tools: action.tools });
        break;
      case 'error':
        current!.sendBack({ type: 'ERROR', error: action.error });
        break;
      case 'crash': {
        // `xstate.error.actor.<id>`: the model service's or the tool runner's.
        const id = step.event.type.slice('xstate.error.actor.'.length);
        (actor.getSnapshot().children[id] as AnyActorRef).send({ type: 'CRASH' });
        break;
      }
      case 'wait': {
        // Not a millisecond early: the timer must not fire before its time.
        const before = actor.getSnapshot();
        clock.increment(action.ms - 1);
        expect(actor.getSnapshot(), `${at}: a timer fired early`).toBe(before);
        clock.increment(1);
        break;
      }
    }
    visit();
    const snapshot = actor.getSnapshot();
    // What the rules say, whatever the path says.
    expect(phaseOf(snapshot.value), `${at}: the oracle's phase`).toBe(oracle.steps[index]!.phase);
    expect(calls.length, `${at}: the oracle's model requests`).toBe(oracle.steps[index]!.attempts);
    expect(snapshot.value, at).toEqual(step.value);
    expect(snapshot.context.content, at).toBe(step.content);
    expect(emitted, at).toEqual(step.emitted);
    expect(calls.length - callsBefore, `${at}: model requests`).toBe(step.requestsModel ? 1 : 0);
    if (step.requestsModel)
      expect(calls.at(-1)!.input).toEqual({
        runId: 'run',
        attempt: snapshot.context.attempt,
        transcript: snapshot.context.transcript,
      });
    if (action.type === 'toolStarted')
      expect(runner!.input.calls.map((call) => call.id)).toContain(action.toolCallId);
    const toolEnded = action.type === 'toolDone' || action.type === 'toolThrew';
    if (runner && !runnerStoppedBefore && action.type !== 'crash' && !toolEnded) {
      // The tool runner is stopped, its calls aborted, exactly when the step says so.
      expect(runner.stopped, `${at}: tools aborted`).toBe(step.abortsTools);
    }
    if (current && action.type !== 'crash') {
      // The service is stopped exactly when the run leaves the attempt that invoked it.
      const leftAttempt =
        step.status !== 'streaming' ||
        matchesState({ streaming: 'tools' }, step.value) ||
        step.requestsModel ||
        matchesState({ streaming: 'retrying' }, step.value);
      expect(current.stopped, `${at}: model service stopped`).toBe(leftAttempt);
    }
  }

  const snapshot = actor.getSnapshot();
  expect(snapshot.status).toBe('done');
  expect(snapshot.output).toEqual(path.output);
  expect(snapshot.context.attempt).toBe(path.modelRequests);
  const { end } = oracle;
  const output = snapshot.output!;
  expect(output.status, 'the oracle').toBe(end.status);
  expect(output.content, 'the oracle').toBe(end.content);
  if (end.error === null) expect(output.error, 'the oracle').toBeNull();
  else expect(output.error, 'the oracle').toMatchObject(end.error);
  expect(output.cancelReason, 'the oracle').toBe(end.cancelReason);
  expect(output.finishReason, 'the oracle').toBe(end.finishReason);
  expect(output.attempts, 'the oracle').toBe(end.attempts);
  expect(output.metrics, 'the oracle').toMatchObject({ ...end.usage, duration: end.duration });
  expect(
    output.tools.map(({ tool_call_id, status, result }) => ({ tool_call_id, status, result })),
    'the oracle',
  ).toEqual(end.tools);
  expect(snapshot.context.times.endedAt, 'the oracle').toBe(end.endedAt);
  // A repeated cancel, and anything else, is refused once final.
  expect(snapshot.can({ type: 'CANCEL', reason: 'api' })).toBe(false);
  expect(errors).toEqual([]);
  return { transitions, stateIds };
}

describe('run machine: every lifecycle path on an actor', () => {
  it.each(paths.map((path) => [path.name, path] as const))('%s', (_name, path) => {
    replayOnActor(path);
  });
});

describe('the test model covers the machine, no more and no less', () => {
  const nodes = allStateNodes(runMachine.root);

  it('visits every state node and takes every transition of the machine', () => {
    const taken = new Set<string>();
    const visited = new Set<string>();
    for (const path of paths) {
      const { transitions, stateIds } = replayOnActor(path);
      for (const key of transitions) taken.add(key);
      for (const id of stateIds) visited.add(id);
    }
    const all = nodes.flatMap((node) =>
      [...node.transitions.values(), node.always ?? []].flat().map(transitionKey),
    );
    expect(all.length).toBeGreaterThan(0);
    expect([...taken].sort()).toEqual([...new Set(all)].sort());
    expect([...visited].sort()).toEqual(nodes.map((node) => node.id).sort());
  });

  it('sends exactly the events the machine accepts from outside', () => {
    const accepted = new Set(nodes.flatMap((node) => [...node.transitions.keys()]));
    const sent = new Set(paths.flatMap((path) => path.steps.map((step) => step.event.type)));
    // TIMEOUT is raised by the machine's own timers (the `xstate.after.*` events the paths wait for).
    expect([...sent].sort()).toEqual([...accepted].filter((type) => type !== 'TIMEOUT').sort());
    expect([...accepted].filter((type) => !type.startsWith('xstate.')).sort()).toEqual([
      'CANCEL',
      'CHUNK',
      'CONTINUE',
      'DONE',
      'ERROR',
      'START',
      'TIMEOUT',
      'TOOL_DONE',
      'TOOL_STARTED',
    ]);
  });

  it('reaches each final state, and cancels from every non-final state with every reason', () => {
    expect(new Set(paths.map((path) => path.status))).toEqual(new Set(['completed', 'cancelled', 'failed']));
    const cancelledFrom = new Set<string>();
    for (const path of paths) {
      const last = path.steps.at(-1)!;
      if (last.action.type !== 'cancel') continue;
      const before = path.steps.at(-2)?.value ?? 'pending';
      cancelledFrom.add(`${JSON.stringify(before)} ${last.action.reason}`);
    }
    const states = [
      '"pending"',
      ...['requesting', 'receiving'].map((s) => JSON.stringify({ streaming: { attempt: s } })),
    ];
    states.push(
      JSON.stringify({ streaming: 'retrying' }),
      JSON.stringify({ streaming: 'tools' }),
      '"paused"',
    );
    for (const state of states) {
      for (const reason of ['api', 'code', 'client_disconnect', 'shutdown'])
        expect(cancelledFrom).toContain(`${state} ${reason}`);
    }
  });

  it('names the limit in the way when limits keep a timer from firing first', () => {
    // The idle timeout cannot end a run whose total limit comes first.
    expect(() =>
      getLifecyclePaths({
        tools: false,
        cancelReasons: ['code'],
        limits: { idleTimeoutMs: 5000, timeoutMs: 3000 },
      }),
    ).toThrow(/runTimeout \(timeoutMs\) would fire before it; make that limit longer than idleTimeoutMs/);
  });

  it("reaches TOOL_ROUNDS_EXCEEDED with turnAfterTools 'final' whatever maxToolRounds is, its later rounds in one line", () => {
    const exceeded = (maxToolRounds: number) =>
      getLifecyclePaths({
        turnAfterTools: 'final',
        cancelReasons: ['code'],
        limits: { maxToolRounds },
      }).filter((path) => path.output.error?.code === 'TOOL_ROUNDS_EXCEEDED');
    const once = exceeded(1);
    expect(once.length).toBeGreaterThan(0);
    for (const maxToolRounds of [2, 5]) {
      const paths = exceeded(maxToolRounds);
      // As many as with one round: each way the first round can end, then one line of rounds.
      expect(paths).toHaveLength(once.length);
      for (const path of paths) {
        const asks = path.steps.filter(
          (step) => step.event.type === 'DONE' && (step.event as { toolCalls?: unknown[] }).toolCalls?.length,
        );
        expect(asks).toHaveLength(maxToolRounds + 1);
      }
    }
  });

  it('takes a delay the machine was given with provide as a number as the limit of its timer, the paths those of that limit', () => {
    // An orchestrator runs runstate's machine under the path's limits: the idle timer re-armed for
    // what is left since the last chunk, the run timer shortened so that a path's timeout fires first.
    const cases = [
      { delays: { idleTimeout: 200 }, limits: { idleTimeoutMs: 200 } },
      { delays: { idleTimeout: 500 }, limits: { idleTimeoutMs: 500 } },
      { delays: { runTimeout: 2_000 }, limits: { timeoutMs: 2_000 } },
      { delays: { pauseTimeout: 3_000 }, limits: { pauseTimeoutMs: 3_000 } },
    ];
    const shape = (paths: ReturnType<typeof getLifecyclePaths>) =>
      paths.map((path) => ({ name: path.name, steps: path.steps, limits: path.limits, status: path.status }));
    for (const { delays, limits } of cases) {
      const tools = 'pauseTimeout' in delays;
      const options = { cancelReasons: ['code' as const], tools };
      const given = getLifecyclePaths({ ...options, machine: runMachine.provide({ delays }) });
      expect(given.length).toBeGreaterThan(0);
      expect(shape(given)).toEqual(shape(getLifecyclePaths({ ...options, limits })));
    }
    // The idle timer's waits: the number, or what is left of it after a chunk, never more.
    const idleWaits = getLifecyclePaths({
      machine: runMachine.provide({ delays: { idleTimeout: 200 } }),
      cancelReasons: ['code'],
      tools: false,
    }).flatMap((path) =>
      path.steps.flatMap((step) =>
        step.action.type === 'wait' && String(step.event.type).includes('idleTimeout')
          ? [step.action.ms]
          : [],
      ),
    );
    expect(idleWaits).toContain(200);
    expect(Math.max(...idleWaits)).toBe(200);
  });

  it('finds the same paths as xstate/graph getSimplePaths', async () => {
    const { getSimplePaths } = await import('xstate/graph');
    // With tools that throw and time out, each followed by a turn that ends the run (fewer paths).
    const options = { turnAfterTools: 'final' } as const;
    const defaults = getLifecyclePaths(options);
    // The same traversal, with the same event variants, through xstate's own simple-path search.
    const byEvents = new Map(defaults.map((path) => [JSON.stringify(path.steps.map((s) => s.event)), path]));
    const simple = getSimplePaths(withRunClock(runMachine, { now: () => 0, random: () => 0.5 }), {
      input: { runId: 'run', ...defaults[0]!.limits },
      events: getLifecycleEvents(options),
      toState: (snapshot) => snapshot.status === 'done',
    });
    // Less the paths no clock plays: the idle timer re-armed for nothing left (both chunks came when
    // it was armed) is due at once, so no other timer can fire before it.
    const playable = simple.filter(({ steps }) =>
      steps.every(
        (step, i) =>
          i < 2 ||
          !steps[i - 1]!.event.type.includes('.idleTimeout.') ||
          steps[i - 1]!.state.status === 'done' ||
          !step.event.type.startsWith('xstate.after.') ||
          step.event.type === steps[i - 1]!.event.type,
      ),
    );
    expect(simple.length - playable.length).toBeGreaterThan(0);
    const keys = playable.map((path) => JSON.stringify(path.steps.slice(1).map((s) => s.event)));
    expect(keys.sort()).toEqual([...byEvents.keys()].sort());
  });
});
