/**
 * runstate: a run orchestrator for LLM agents. Every run is an XState v5 actor
 * (`pending → streaming → completed | cancelled | failed`) whose cancel aborts the model request.
 *
 * @packageDocumentation
 */
export { Agent, agentIdFromName, type AgentOptions, type AgentRunOptions, type RunStream } from './agent.js';
export { RunstateError, toRunErrorData, type RunstateErrorOptions } from './errors.js';
export type {
  ChatMessage,
  ChatModel,
  ChatRequest,
  ModelChunk,
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
export { OpenAIChat, type OpenAIChatOptions } from './model/openai-chat.js';
export { OfflineModel, type OfflineModelOptions } from './model/offline-model.js';
export * from './runtime/index.js';
export * from './inspect/index.js';
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
} from '../machines/run-types.js';
