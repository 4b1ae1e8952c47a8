/**
 * Inspection: pass-through for any xstate inspection observer (`@statelyai/inspect`) and the
 * built-in, offline inspector page. Framework-agnostic: the handler is a node:http handler.
 *
 * @packageDocumentation
 */
export {
  createInspector,
  type Inspector,
  type InspectorOptions,
  type InspectedOrchestrator,
  type FeedSubscriptionOptions,
} from './create-inspector.js';
export type { InspectorHandler } from './create-inspector-handler.js';
export { combineInspectors, type InspectorLike } from './combine-inspectors.js';
export {
  machineGraph,
  transitionLabel,
  type MachineGraph,
  type MachineGraphNode,
  type MachineGraphEdge,
} from './machine-graph.js';
export type { FeedMessage, RunSummary, RunProgress, InspectorLogEntry } from './feed-messages.js';
