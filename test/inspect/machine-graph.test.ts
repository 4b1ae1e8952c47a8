import { describe, expect, it } from 'vitest';
import { and, createMachine, not, or } from 'xstate';
import { runMachine } from '../../machines/run.machine.js';
import { machineGraph, transitionLabel, type MachineGraphNode } from '../../src/inspect/index.js';

function find(node: MachineGraphNode, id: string): MachineGraphNode | undefined {
  if (node.id === id) return node;
  for (const child of node.children) {
    const found = find(child, id);
    if (found) return found;
  }
  return undefined;
}

describe('machineGraph(runMachine)', () => {
  const graph = machineGraph(runMachine);

  it('has the six top-level states, the last three final, pending initial', () => {
    expect(graph.root.children.map((state) => [state.key, state.type])).toEqual([
      ['pending', 'atomic'],
      ['streaming', 'compound'],
      ['paused', 'atomic'],
      ['completed', 'final'],
      ['cancelled', 'final'],
      ['failed', 'final'],
    ]);
    expect(graph.root.initial).toBe('run.pending');
  });

  it('nests the streaming states, with their initial children and the invoked model service', () => {
    const streaming = find(graph.root, 'run.streaming')!;
    expect(streaming.initial).toBe('run.streaming.attempt');
    const attempt = find(graph.root, 'run.streaming.attempt')!;
    expect(attempt.path).toEqual(['streaming', 'attempt']);
    expect(attempt.invoke).toEqual(['model']);
    expect(attempt.initial).toBe('run.streaming.attempt.requesting');
    expect(attempt.children.map((child) => child.key)).toEqual(['requesting', 'receiving']);
  });

  it('lists the transitions with their event names, guards and targets', () => {
    const edges = graph.edges.map((edge) => `${edge.source} -${edge.label}-> ${edge.target}`);
    expect(edges).toEqual(
      expect.arrayContaining([
        'run.pending -START-> run.streaming',
        'run.pending -CANCEL-> run.cancelled',
        'run.streaming -CANCEL-> run.cancelled',
        'run.streaming -TIMEOUT-> run.failed',
        'run.streaming.attempt -DONE-> run.completed',
        'run.streaming.attempt -ERROR-> run.streaming.retrying',
        'run.streaming.attempt -error: model-> run.failed',
        'run.streaming.attempt.requesting -CHUNK-> run.streaming.attempt.receiving',
        'run.streaming.retrying -after retryDelay-> run.streaming.attempt',
      ]),
    );
    const retry = graph.edges.find((edge) => edge.target === 'run.streaming.retrying')!;
    expect(retry.guard).toBe('canRetry');
    // xstate's `not(...)` named with what it negates: the DONE edges differ by their guard.
    const done = graph.edges.filter(
      (edge) => edge.source === 'run.streaming.attempt' && edge.event === 'DONE',
    );
    expect(done.map((edge) => `${edge.guard ?? '(else)'} → ${edge.target}`)).toEqual([
      '!asksForTools → run.completed',
      '!roundsLeft → run.failed',
      'needsConfirmation → run.paused',
      '(else) → run.streaming.tools',
    ]);
    const chunk = graph.edges.find(
      (edge) => edge.source === 'run.streaming.attempt.receiving' && edge.event === 'CHUNK',
    )!;
    // A chunk while receiving touches no timer: a transition with no target.
    expect(chunk).toMatchObject({
      target: 'run.streaming.attempt.receiving',
      reenter: false,
      targetless: true,
      actions: ['appendChunk', 'emitContent'],
    });
  });

  it('keeps targetless delayed transitions (the page writes them inside their state), naming the event they raise', () => {
    const idle = graph.edges.filter((edge) => edge.label === 'after idleTimeout');
    expect(idle.map((edge) => edge.source)).toEqual([
      'run.streaming.attempt.requesting',
      'run.streaming.attempt.receiving',
      'run.streaming.attempt.receiving',
    ]);
    const [requesting, timedOut, rearmed] = idle;
    expect(requesting).toMatchObject({ targetless: true, guard: null, actions: ['raise TIMEOUT'] });
    expect(timedOut).toMatchObject({
      targetless: true,
      guard: 'silentSinceArmed',
      actions: ['raise TIMEOUT'],
    });
    // Newer chunks came: the timer is armed again from the last of them, by entering `receiving` again.
    expect(rearmed).toMatchObject({
      targetless: false,
      reenter: true,
      target: 'run.streaming.attempt.receiving',
      actions: ['armIdleTimer'],
    });
    const total = graph.edges.find((edge) => edge.label === 'after runTimeout')!;
    expect(total).toMatchObject({
      source: 'run.streaming',
      target: 'run.streaming',
      actions: ['raise TIMEOUT'],
    });
  });

  it('is plain JSON', () => {
    expect(JSON.parse(JSON.stringify(graph))).toEqual(graph);
  });

  it('follows any machine: eventless, parallel and delayed transitions', () => {
    const machine = createMachine({
      id: 'door',
      type: 'parallel',
      states: {
        lock: {
          initial: 'locked',
          states: { locked: { on: { UNLOCK: 'unlocked' } }, unlocked: { after: { 1000: 'locked' } } },
        },
        light: { initial: 'off', states: { off: { always: { target: 'on', guard: () => false } }, on: {} } },
      },
    });
    const door = machineGraph(machine);
    expect(door.root.type).toBe('parallel');
    expect(door.root.initial).toBeNull();
    expect(door.edges.map((edge) => edge.label)).toEqual(['UNLOCK', 'after 1000ms', 'always']);
  });
});

describe('guard names', () => {
  it('names combined guards with what they combine', () => {
    const machine = createMachine({
      initial: 'idle',
      states: {
        idle: { on: { GO: { target: 'gone', guard: and(['ready', not(or(['busy', 'locked']))]) } } },
        gone: {},
      },
    });
    expect(machineGraph(machine).edges.map((edge) => edge.guard)).toEqual(['ready && !(busy || locked)']);
  });
});

describe('transitionLabel', () => {
  it('names xstate’s internal events the way a person reads them', () => {
    expect(transitionLabel('CANCEL')).toBe('CANCEL');
    expect(transitionLabel('xstate.after.idleTimeout.run.streaming.attempt.requesting')).toBe(
      'after idleTimeout',
    );
    expect(transitionLabel('xstate.after.500.door.lock.unlocked')).toBe('after 500ms');
    expect(transitionLabel('xstate.error.actor.model')).toBe('error: model');
    expect(transitionLabel('xstate.done.actor.0.run.x')).toBe('done: 0.run.x');
    expect(transitionLabel('xstate.done.state.run.streaming')).toBe('done');
    expect(transitionLabel('')).toBe('always');
  });
});
