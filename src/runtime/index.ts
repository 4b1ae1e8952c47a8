export {
  createOrchestrator,
  type Orchestrator,
  type OrchestratorOptions,
  type StartRunRequest,
  type RunHandle,
  type RunFilter,
  type RunLimits,
  type RetentionOptions,
} from './create-orchestrator.js';
export { MemoryEventLog, type RunEventLog } from './event-log.js';
export { SessionStore, type SessionRecord, type SessionTurn, type SessionFilter } from './session-store.js';
export { createModelService, type ModelCall } from './model-service.js';
export * from './run-events.js';
