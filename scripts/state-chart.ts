/**
 * Prints the run machine as a Mermaid state diagram, drawn from the machine definition itself, so
 * the chart in docs/architecture.md cannot drift from the code (a test compares them).
 *
 *   npx tsx scripts/state-chart.ts
 */
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine } from 'xstate';
import { runMachine } from '../machines/run.machine.js';
import { guardName } from '../src/inspect/machine-graph.js';

type Node = AnyStateMachine['root'];

/** `xstate.after.idleTimeout.run.streaming...` → `after idleTimeout`; other events keep their name. */
function label(eventType: string): string {
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (after) return `after ${after[1]}`;
  const crashed = /^xstate\.error\.actor\.(.+)$/.exec(eventType);
  if (crashed) return crashed[1] === 'tools' ? 'tool runner crashed' : 'model service crashed';
  // An eventless transition, taken as soon as its guard holds.
  if (eventType === '') return 'always';
  return eventType;
}

/** The machine as Mermaid `stateDiagram-v2` source. */
export function stateChartMermaid(machine: AnyStateMachine): string {
  const lines = ['stateDiagram-v2'];
  const name = (node: Node) => node.path.join('_') || node.key;
  const visit = (node: Node, indent: string) => {
    const children: Node[] = Object.values(node.states);
    if (node.initial) {
      const initial = node.initial.target[0] as Node | undefined;
      if (initial) lines.push(`${indent}[*] --> ${name(initial)}`);
    }
    for (const child of children) {
      // Nested ids are path-qualified; show the state's own key.
      if (child.path.length > 1) lines.push(`${indent}state "${child.key}" as ${name(child)}`);
      if (Object.keys(child.states).length > 0) {
        lines.push(`${indent}state ${name(child)} {`);
        visit(child, `${indent}  `);
        lines.push(`${indent}}`);
      } else if (child.type === 'final') {
        lines.push(`${indent}${name(child)} --> [*]`);
      }
    }
    for (const child of children) {
      for (const [eventType, transitions] of [...child.transitions, ['', child.always ?? []] as const]) {
        for (const transition of transitions) {
          const named = guardName(transition.guard);
          const guard = named ? ` [${named}]` : '';
          for (const target of transition.target ?? []) {
            lines.push(`${indent}${name(child)} --> ${name(target)}: ${label(eventType)}${guard}`);
          }
          // Targetless delayed transitions raise TIMEOUT: draw them as self-loops.
          if (!transition.target && eventType.startsWith('xstate.after')) {
            lines.push(`${indent}${name(child)} --> ${name(child)}: ${label(eventType)} / raise TIMEOUT`);
          }
        }
      }
    }
  };
  visit(machine.root, '  ');
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(stateChartMermaid(runMachine));
}
