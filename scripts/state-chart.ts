/**
 * Prints the run machine as a Mermaid state diagram, drawn from the machine definition itself
 * (`machineGraph`, the walk the inspector page draws from: every state and every transition, with
 * its guard), so the chart in docs/architecture.md cannot drift from the code (a test compares them).
 *
 *   npx tsx scripts/state-chart.ts
 */
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine } from 'xstate';
import { runMachine } from '../machines/run.machine.js';
import { machineGraph, type MachineGraphEdge, type MachineGraphNode } from '../src/inspect/machine-graph.js';

/** Mermaid's id of a state: its path (`streaming_attempt`). */
const nameOf = (node: MachineGraphNode): string => node.path.join('_');

/**
 * What an edge's line says: its event, its guard, and for a transition with no target (it stays,
 * so what it does is all there is to it) its actions: `CHUNK / appendChunk, emitContent`.
 */
function edgeLabel(edge: MachineGraphEdge): string {
  const guard = edge.guard ? ` [${edge.guard}]` : '';
  const actions = edge.targetless && edge.actions.length > 0 ? ` / ${edge.actions.join(', ')}` : '';
  return `${edge.label}${guard}${actions}`;
}

/**
 * The path of the composite state whose block an edge is written in: the deepest one that holds
 * both its ends. Mermaid makes every state a block names its child, so an edge to a state outside
 * it (`streaming.attempt` → `failed`) must be written outside it.
 */
function blockOf(source: string[], target: string[]): string {
  let common = 0;
  while (common < source.length && common < target.length && source[common] === target[common]) common++;
  // A state is not inside its own block: an edge from or to it goes in its parent's.
  if (common === source.length || common === target.length) common--;
  return source.slice(0, Math.max(common, 0)).join('.');
}

/** The machine as Mermaid `stateDiagram-v2` source. */
export function stateChartMermaid(machine: AnyStateMachine): string {
  const graph = machineGraph(machine);
  const nodes = new Map<string, MachineGraphNode>();
  const index = (node: MachineGraphNode): void => {
    nodes.set(node.id, node);
    node.children.forEach(index);
  };
  index(graph.root);
  // The edges of each block, those between the same two states on one line: Mermaid draws two
  // lines between one pair (two self-loops above all) as one, and one label would be lost.
  const blocks = new Map<string, Map<string, { source: string; target: string; labels: string[] }>>();
  for (const edge of graph.edges) {
    const source = nodes.get(edge.source)!;
    const target = nodes.get(edge.target)!;
    const block = blockOf(source.path, target.path);
    const lines =
      blocks.get(block) ?? new Map<string, { source: string; target: string; labels: string[] }>();
    blocks.set(block, lines);
    const pair = `${nameOf(source)} --> ${nameOf(target)}`;
    const line = lines.get(pair) ?? { source: nameOf(source), target: nameOf(target), labels: [] };
    lines.set(pair, line);
    line.labels.push(edgeLabel(edge));
  }

  const lines = ['stateDiagram-v2'];
  const visit = (node: MachineGraphNode, indent: string): void => {
    const initial = node.initial === null ? undefined : nodes.get(node.initial);
    if (initial) lines.push(`${indent}[*] --> ${nameOf(initial)}`);
    for (const child of node.children) {
      // Nested ids are path-qualified; show the state's own key.
      if (child.path.length > 1) lines.push(`${indent}state "${child.key}" as ${nameOf(child)}`);
      if (child.children.length > 0) {
        lines.push(`${indent}state ${nameOf(child)} {`);
        visit(child, `${indent}  `);
        lines.push(`${indent}}`);
      } else if (child.type === 'final') {
        lines.push(`${indent}${nameOf(child)} --> [*]`);
      }
    }
    for (const { source, target, labels } of blocks.get(node.path.join('.'))?.values() ?? []) {
      lines.push(`${indent}${source} --> ${target}: ${labels.join('<br/>')}`);
    }
  };
  visit(graph.root, '  ');
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(stateChartMermaid(runMachine));
}
