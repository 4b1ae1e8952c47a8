import type { AnyStateMachine } from 'xstate';

type StateNode = AnyStateMachine['root'];
type Transition = StateNode['always'] extends (infer T)[] | undefined ? T : never;

/** One state of a machine, with its nested states. Plain JSON. */
export interface MachineGraphNode {
  /** The xstate state node id, unique in the machine (`run.streaming.attempt`). */
  id: string;
  /** The state's own key (`attempt`); the machine id for the root. */
  key: string;
  /** Keys from the root (`['streaming', 'attempt']`); empty for the root. */
  path: string[];
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** Id of the initial child of a compound state, else `null`. */
  initial: string | null;
  /** Sources of the actors the state invokes (`['model']`). */
  invoke: string[];
  children: MachineGraphNode[];
}

/** One transition: from a state, on an event, to a state (to itself when it has no target). */
export interface MachineGraphEdge {
  /** Unique in the graph. */
  id: string;
  source: string;
  target: string;
  /** The event type as xstate names it (`CANCEL`, `xstate.after.idleTimeout.run.streaming...`). */
  event: string;
  /** What a person reads: `CANCEL`, `after idleTimeout`, `error: model`, `always`. */
  label: string;
  /** Name of the guard, when it has one. */
  guard: string | null;
  /** Names of the actions it runs. */
  actions: string[];
  /** True when the transition has no target: it runs actions and stays (the page writes it inside its state). */
  targetless: boolean;
  /** True when taking it exits and re-enters its target even if already active. */
  reenter: boolean;
}

/** A machine's states and transitions as JSON: what the inspector page lays out and draws. */
export interface MachineGraph {
  id: string;
  root: MachineGraphNode;
  edges: MachineGraphEdge[];
}

/** `xstate.after.idleTimeout.run.streaming` → `after idleTimeout`, `xstate.error.actor.model` → `error: model`. */
export function transitionLabel(eventType: string): string {
  if (eventType === '') return 'always';
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (after) return /^\d+$/.test(after[1]!) ? `after ${after[1]}ms` : `after ${after[1]}`;
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (actor) return `${actor[1]}: ${actor[2]}`;
  if (eventType.startsWith('xstate.done.state.')) return 'done';
  return eventType;
}

/** A readable name for a guard, action or actor source: its name, or `raise TIMEOUT` for a raise. */
function nameOf(value: unknown): string | null {
  if (typeof value === 'string') return value;
  return implementationName(value);
}

/**
 * A guard's name; xstate's `not`, `and` and `or` with the guards they combine (`!asksForTools`),
 * which tells apart the transitions of one event that differ by their guard.
 */
function guardName(guard: unknown): string | null {
  const combined = (guard as { guards?: unknown } | undefined)?.guards;
  if (typeof guard !== 'function' || !Array.isArray(combined)) return nameOf(guard);
  // An `and` or `or` inside another combination is bracketed.
  const operand = (part: unknown): string => {
    const name = guardName(part) ?? 'inline';
    return isBinary(part) ? `(${name})` : name;
  };
  if (guard.name === 'not') return `!${operand(combined[0])}`;
  if (guard.name === 'and') return combined.map(operand).join(' && ');
  if (guard.name === 'or') return combined.map(operand).join(' || ');
  return nameOf(guard);
}

function isBinary(guard: unknown): boolean {
  const combined = (guard as { guards?: unknown } | undefined)?.guards;
  return (
    typeof guard === 'function' && Array.isArray(combined) && combined.length > 1 && guard.name !== 'not'
  );
}

function implementationName(value: unknown): string | null {
  if (typeof value !== 'function' && (typeof value !== 'object' || value === null)) return null;
  const { type, event } = value as { type?: unknown; event?: unknown };
  if (type === 'xstate.raise') {
    const raised = (event as { type?: unknown } | undefined)?.type;
    return typeof raised === 'string' ? `raise ${raised}` : 'raise';
  }
  if (typeof type === 'string' && !type.startsWith('xstate.')) return type;
  return typeof value === 'function' ? value.name || 'inline' : null;
}

/**
 * Walks a machine definition into a {@link MachineGraph}: every state (nested ones as children),
 * its initial child, final states, invoked actors, and every transition with its event, guard and
 * target. Derived from the definition, so the chart follows the machine when it changes.
 *
 * @example
 * ```ts
 * const graph = machineGraph(runMachine);
 * graph.root.children.map((state) => state.key); // ['pending', 'streaming', 'paused', 'completed', ...]
 * graph.edges.find((edge) => edge.label === 'CANCEL');
 * ```
 */
export function machineGraph(machine: AnyStateMachine): MachineGraph {
  const edges: MachineGraphEdge[] = [];
  const implementations = machine.implementations.actions as Record<string, unknown>;
  // A named action that only raises an event reads better as what it does (`raise TIMEOUT`).
  const actionName = (action: unknown): string | null => {
    if (typeof action !== 'string') return nameOf(action);
    const raised = implementationName(implementations[action]);
    return raised?.startsWith('raise ') ? raised : action;
  };

  const addEdges = (node: StateNode, eventType: string, transitions: readonly Transition[]) => {
    transitions.forEach((transition, index) => {
      const actions = (transition.actions as readonly unknown[])
        .map(actionName)
        .filter((a): a is string => a !== null);
      const base = {
        source: node.id,
        event: eventType,
        label: transitionLabel(eventType),
        guard: guardName(transition.guard),
        actions,
        reenter: transition.reenter,
      };
      const targets = transition.target ?? [];
      if (targets.length === 0) {
        edges.push({ id: `${node.id}:${eventType}:${index}`, ...base, target: node.id, targetless: true });
      }
      targets.forEach((target, t) => {
        const id = `${node.id}:${eventType}:${index}${targets.length > 1 ? `:${t}` : ''}`;
        edges.push({ id, ...base, target: target.id, targetless: false });
      });
    });
  };

  const visit = (node: StateNode): MachineGraphNode => {
    for (const [eventType, transitions] of node.transitions) addEdges(node, eventType, transitions);
    if (node.always) addEdges(node, '', node.always);
    const children = Object.values(node.states as Record<string, StateNode>).map(visit);
    return {
      id: node.id,
      key: node.key,
      path: [...node.path],
      type: node.type,
      initial: node.initial?.target[0]?.id ?? null,
      invoke: node.invoke.map((definition) => nameOf(definition.src) ?? definition.id),
      children,
    };
  };

  const root = visit(machine.root);
  return { id: machine.id, root, edges };
}
