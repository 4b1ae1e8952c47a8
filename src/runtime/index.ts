export {
  createOrchestrator,
  type Orchestrator,
  type OrchestratorOptions,
  type StartRunRequest,
  type RunHandle,
  type RunLimits,
  type CancelRequestOptions,
  type SubscribeOptions,
  type ContinueRunRequest,
} from './create-orchestrator.js';
export {
  createMemoryRunStore,
  MEMORY_STORE_LIMITS,
  type MemoryRunStoreOptions,
  type RetentionOptions,
} from './memory-run-store.js';
export { createMemoryCancelBus } from './memory-cancel-bus.js';
export { createMemoryEventBus } from './memory-event-bus.js';
export type {
  RunStore,
  CancelBus,
  EventBus,
  RunNotice,
  RunListener,
  RunAround,
  RunStep,
  RunFilter,
  RunPatch,
  ParkedRun,
  ParkState,
  SessionFilter,
  SessionRecord,
} from './storage.js';
export { MemoryEventLog, type RunEventLog } from './event-log.js';
export { createModelService, type ModelCall } from './model-service.js';
export * from './run-events.js';
