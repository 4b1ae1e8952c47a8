/**
 * runstate: a run orchestrator for LLM agents. Every run is an XState v5 actor
 * (`pending → streaming (⇄ paused) → completed | cancelled | failed`) whose cancel aborts the model request.
 *
 * What a user calls and the types they write, named one by one: a new export is a decision
 * (`test/public-api.test.ts` holds the list). The run machine is `runstate/machines`; the test kit
 * `runstate/testing`; the HTTP server `runstate/server`.
 *
 * @packageDocumentation
 */

// Agents and their models.
export {
  Agent,
  agentIdFromName,
  type AgentOptions,
  type AgentRunOptions,
  type ContinueRunOptions,
  type RunStream,
} from './agent.js';
export { OpenAIChat, type OpenAIChatOptions } from './model/openai-chat.js';
export { OfflineModel, type OfflineModelOptions } from './model/offline-model.js';
export type {
  ChatMessage,
  ChatModel,
  ChatRequest,
  ModelChunk,
  ModelStreamReceiver,
  ToolCallRequest,
  ToolDefinition,
} from './model/chat-model.js';
export {
  tool,
  type Tool,
  type ToolExecuteContext,
  type ToolOptions,
  type ToolParameters,
} from './tools/tool.js';

// Errors.
export { RunstateError, type RunstateErrorOptions } from './errors.js';

// The orchestrator and what it keeps its state behind.
export {
  createOrchestrator,
  type CancelRequestOptions,
  type ContinueRunRequest,
  type Orchestrator,
  type OrchestratorOptions,
  type RunHandle,
  type RunLimits,
  type StartRunRequest,
  type SubscribeOptions,
} from './runtime/create-orchestrator.js';
export {
  createMemoryRunStore,
  MEMORY_STORE_LIMITS,
  type MemoryRunStoreOptions,
  type RetentionOptions,
} from './runtime/memory-run-store.js';
export { createMemoryCancelBus } from './runtime/memory-cancel-bus.js';
export { openStorage, type Storage, type StorageOptions } from './runtime/open-storage.js';
export type { SqlStoreSettings } from './runtime/sql/create-sql-run-store.js';
export type { OrphanOutcome, RunLeases } from './runtime/run-leases.js';
export type { InspectOption } from './runtime/live-run.js';
export { createMemoryEventBus } from './runtime/memory-event-bus.js';
export type {
  CancelBus,
  EventBus,
  ParkedRun,
  ParkState,
  RunFilter,
  RunListener,
  RunAround,
  RunStep,
  RunNotice,
  RunPatch,
  RunStore,
  SessionFilter,
  SessionRecord,
} from './runtime/storage.js';

// Runs as the world sees them: events and records (wire objects).
export {
  isTerminalEvent,
  RunEvent,
  RunStatus,
  type ReasoningCompletedEvent,
  type ReasoningStartedEvent,
  type ReasoningStep,
  type RunCancelledEvent,
  type RunCompletedEvent,
  type RunContentEvent,
  type RunContinuedEvent,
  type RunErrorEvent,
  type RunEventBase,
  type RunExtraData,
  type PausedRunOutput,
  type RunOutput,
  type RunPausedEvent,
  type RunRecord,
  type RunRequirement,
  type RunStartedEvent,
  type RunTerminalEvent,
  type ToolCallCompletedEvent,
  type ToolCallErrorEvent,
  type ToolCallStartedEvent,
} from './runtime/run-events.js';
export type {
  CancelReason,
  ErrorCode,
  FinalRunStatus,
  RetryPolicy,
  RunErrorData,
  RunMetrics,
  TokenUsage,
  ToolCallMetrics,
  ToolCallStatus,
  ToolConfirmation,
  ToolExecution,
  TranscriptMessage,
} from '../machines/run-types.js';
export type { ToolAnswer } from './runtime/tool-answers.js';

// Inspection.
export {
  createInspector,
  type FeedSubscriptionOptions,
  type InspectedOrchestrator,
  type Inspector,
  type InspectorOptions,
} from './inspect/create-inspector.js';
export type { InspectorHandler } from './inspect/create-inspector-handler.js';
export { combineInspectors, type InspectorLike } from './inspect/combine-inspectors.js';
export type { MachineGraph, MachineGraphEdge, MachineGraphNode } from './inspect/machine-graph.js';
export type { FeedMessage, InspectorLogEntry, RunProgress, RunSummary } from './inspect/feed-messages.js';
