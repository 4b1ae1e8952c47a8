/**
 * DRAFT of the storage interfaces as agreed in the brief, until `structure` lands
 * `src/runtime/storage.ts`; replaced by it on rebase.
 */
import type { CancelReason } from '../../machines/run-types.js';
import type { RunFilter } from './create-orchestrator.js';
import type { RunEvent, RunOutput, RunRecord } from './run-events.js';
import type { SessionFilter, SessionRecord } from './session-store.js';

export type { RunFilter, SessionFilter, SessionRecord };

/** Run records, sessions (with their runs) and event logs. */
export interface RunStore {
  createRun(run: RunRecord): Promise<void>;
  updateRun(runId: string, patch: Partial<RunRecord> & Record<string, unknown>): Promise<void>;
  finishRun(record: RunOutput): Promise<boolean>;
  getRun(runId: string): Promise<RunRecord | undefined>;
  listRuns(filter?: RunFilter): Promise<RunRecord[]>;
  appendEvents(runId: string, events: readonly RunEvent[]): Promise<void>;
  readEvents(runId: string, afterSeq?: number): Promise<RunEvent[]>;
  getSession(sessionId: string): Promise<SessionRecord | undefined>;
  listSessions(filter?: SessionFilter): Promise<SessionRecord[]>;
  sessionRuns(sessionId: string): Promise<RunRecord[]>;
  deleteSession(sessionId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** A cancel reaches the instance that owns the run. */
export interface CancelBus {
  publish(runId: string, reason: CancelReason): Promise<void>;
  subscribe(listener: (runId: string, reason: CancelReason) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** Live events of a run to followers on any instance. */
export interface EventBus {
  publish(runId: string, events: readonly RunEvent[]): void;
  subscribe(runId: string, listener: (events: readonly RunEvent[]) => void): Promise<() => void>;
  close(): Promise<void>;
}
