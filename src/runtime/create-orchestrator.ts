import { randomUUID } from 'node:crypto';
import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import { runMachine, runStatusOf, isFinalStatus, type RunMachineInput } from '../../machines/run.machine.js';
import type { CancelReason, RetryPolicy, RunMachineOutput, RunStatus } from '../../machines/run-types.js';
import { RunstateError } from '../errors.js';
import type { ChatMessage, ChatModel } from '../model/chat-model.js';
import { MemoryEventLog, type RunEventLog } from './event-log.js';
import { createModelService, type ModelCall } from './model-service.js';
import { ReasoningPhases } from './reasoning-phases.js';
import type { RunEvent, RunEventBase, RunOutput, RunRecord } from './run-events.js';
import { SessionStore, type SessionFilter, type SessionRecord } from './session-store.js';

/** Limits of a run; every field has a default (see `DEFAULT_RUN_LIMITS`). */
export interface RunLimits {
  /** A run with no chunk for this long fails with `RUN_TIMEOUT`. */
  idleTimeoutMs?: number;
  /** A run streaming for longer than this fails with `RUN_TIMEOUT`. */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
}

/** How long finished runs are kept (for `getRun`, replays and the HTTP API). */
export interface RetentionOptions {
  /** Finished runs kept at most; the oldest go first. Default 1,000. */
  maxFinishedRuns?: number;
  /** Finished runs older than this are forgotten. Default one hour. */
  maxAgeMs?: number;
}

/** Options of {@link createOrchestrator}. */
export interface OrchestratorOptions {
  /** Runs streaming at once; the others wait in `pending`. Default: no limit. */
  maxConcurrentRuns?: number;
  retention?: RetentionOptions;
  /** Limits of every run, unless a run sets its own. */
  limits?: RunLimits;
  /** Handed to every run actor: `@statelyai/inspect`'s `inspect`, or any inspection observer. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Most sessions kept (least recently used go first). Default 10,000. */
  maxSessions?: number;
  idGenerator?: () => string;
  now?: () => number;
  random?: () => number;
}

/** What a run is asked to do. */
export interface StartRunRequest {
  agentId: string;
  agentName: string;
  model: ChatModel;
  input: string;
  /** The system message: the agent's description and instructions. */
  instructions?: string | undefined;
  /** Runs of one session send the earlier turns to the model. A new session when absent. */
  sessionId?: string | undefined;
  userId?: string | undefined;
  limits?: RunLimits | undefined;
}

/** A started run. */
export interface RunHandle {
  readonly runId: string;
  readonly sessionId: string;
  /** Replays the run's events after `afterSeq`, then follows them to the terminal one. */
  events(afterSeq?: number): AsyncIterable<RunEvent>;
  /** Resolves when the run is final; never rejects. */
  readonly result: Promise<RunOutput>;
}

/** Filters of {@link Orchestrator.listRuns}. */
export interface RunFilter {
  agentId?: string | undefined;
  sessionId?: string | undefined;
  status?: RunStatus | undefined;
}

/** Owns the run actors of one process. Create it with {@link createOrchestrator}. */
export interface Orchestrator {
  /** Registers and starts a run (it waits in `pending` when every slot is taken). */
  startRun(request: StartRunRequest): RunHandle;
  /**
   * Cancels a run now: the machine moves to `cancelled` and the model request is aborted before
   * this returns. `true` when this call cancelled an active run; `false` for an unknown run or one
   * already final.
   */
  cancelRun(runId: string, reason?: CancelReason): boolean;
  getRun(runId: string): RunRecord | undefined;
  /** Runs in the order they were created. */
  listRuns(filter?: RunFilter): RunRecord[];
  /**
   * Replays a run's events after `afterSeq`, then follows them. Throws `RUN_NOT_FOUND` for an
   * unknown run, `INVALID_INPUT` for an `afterSeq` past the last event.
   */
  events(runId: string, afterSeq?: number): AsyncIterable<RunEvent>;
  /** Resolves with the run's output once it is final. Throws `RUN_NOT_FOUND` for an unknown run. */
  result(runId: string): Promise<RunOutput>;
  listSessions(filter?: SessionFilter): SessionRecord[];
  getSession(sessionId: string): SessionRecord | undefined;
  /** The runs of a session, oldest first (runs no longer retained are rebuilt from the session). */
  sessionRuns(sessionId: string): RunRecord[];
  /** Cancels the session's active runs (reason `api`) and forgets it and its runs. */
  deleteSession(sessionId: string): boolean;
  /** Runs held in the registry, active and retained. */
  readonly size: number;
  /** Active runs (pending or streaming). */
  readonly activeCount: number;
  /** Refuses new runs, cancels active ones with reason `shutdown`, resolves when all are final. */
  shutdown(): Promise<void>;
}

interface RunEntry {
  readonly runId: string;
  readonly agentId: string;
  readonly agentName: string;
  readonly sessionId: string;
  readonly userId: string | null;
  readonly input: string;
  readonly model: ChatModel;
  readonly createdAt: number;
  readonly call: ModelCall;
  readonly controller: AbortController;
  readonly log: RunEventLog;
  readonly reasoning: ReasoningPhases;
  readonly actor: Actor<typeof runMachine>;
  readonly result: Promise<RunOutput>;
  resolve: (output: RunOutput) => void;
  started: boolean;
  output: RunOutput | null;
  /** When the run became final, in milliseconds (the record's `finished_at` is in whole seconds). */
  finishedAt: number;
}

const DEFAULT_RETENTION = { maxFinishedRuns: 1_000, maxAgeMs: 60 * 60_000 };

/**
 * Creates the orchestrator: the registry of run actors, their event logs, sessions, the concurrency
 * limit, retention and shutdown.
 *
 * @example
 * ```ts
 * const orchestrator = createOrchestrator({ maxConcurrentRuns: 100 });
 * const run = orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input: 'Hi' });
 * for await (const event of run.events()) console.log(event.event);
 * orchestrator.cancelRun(run.runId, 'code');
 * ```
 */
export function createOrchestrator(options: OrchestratorOptions = {}): Orchestrator {
  const {
    maxConcurrentRuns = Infinity,
    limits: defaultLimits = {},
    inspect,
    idGenerator = randomUUID,
    now = Date.now,
    random = Math.random,
  } = options;
  const retention = { ...DEFAULT_RETENTION, ...options.retention };
  const runs = new Map<string, RunEntry>();
  const finished: RunEntry[] = []; // oldest first, for retention
  const waiting: RunEntry[] = []; // pending runs, first in first out
  const sessions = new SessionStore({ maxSessions: options.maxSessions, now });
  let streamingCount = 0;
  let closing = false;

  const machine = runMachine.provide({
    actors: { model: createModelService((runId) => runs.get(runId)?.call) },
  });

  const seconds = (ms: number) => Math.floor(ms / 1000);

  function append(entry: RunEntry, event: EventBody): void {
    // `event` first: a stable, readable key order on the wire.
    const base = {
      event: event.event,
      run_id: entry.runId,
      agent_id: entry.agentId,
      agent_name: entry.agentName,
      session_id: entry.sessionId,
      created_at: seconds(now()),
      seq: entry.log.size + 1,
    };
    entry.log.append(Object.assign<typeof base, EventBody>(base, event));
  }

  function statusOf(entry: RunEntry): RunStatus {
    return entry.output?.status ?? runStatusOf(entry.actor.getSnapshot());
  }

  function recordOf(entry: RunEntry): RunRecord {
    if (entry.output) return entry.output;
    const snapshot = entry.actor.getSnapshot();
    return {
      ...baseRecord(entry),
      status: runStatusOf(snapshot),
      content: snapshot.context.content,
      reasoning_content: snapshot.context.reasoning,
      ...extraDataOf(entry),
      finish_reason: null,
      metrics: null,
      error: null,
      cancel_reason: null,
      finished_at: null,
    };
  }

  function baseRecord(entry: RunEntry) {
    return {
      run_id: entry.runId,
      agent_id: entry.agentId,
      agent_name: entry.agentName,
      session_id: entry.sessionId,
      user_id: entry.userId,
      run_input: entry.input,
      model: entry.model.id,
      model_provider: entry.model.provider,
      created_at: seconds(entry.createdAt),
    };
  }

  function extraDataOf(entry: RunEntry): Pick<RunRecord, 'extra_data'> {
    const extraData = entry.reasoning.extraData();
    return extraData ? { extra_data: extraData } : {};
  }

  function finish(entry: RunEntry, output: RunMachineOutput): void {
    if (entry.output) return;
    const finishedAt = now();
    // A run that ends while the model reasons closes the phase before its terminal event.
    const reasoningCompleted = entry.reasoning.close();
    if (reasoningCompleted) append(entry, reasoningCompleted);
    const extraData = extraDataOf(entry);
    const record: RunOutput = {
      ...baseRecord(entry),
      status: output.status,
      content: output.content,
      reasoning_content: output.reasoningContent,
      ...extraData,
      finish_reason: output.finishReason,
      metrics: output.metrics,
      error: output.error,
      cancel_reason: output.cancelReason,
      finished_at: seconds(finishedAt),
    };
    entry.output = record;
    entry.finishedAt = finishedAt;
    append(entry, { ...terminalEvent(output), ...extraData });
    entry.log.close();
    // Stops a model service that xstate left running (a machine that errors keeps its children).
    entry.controller.abort();
    sessions.finishRun(entry.sessionId, {
      run_id: entry.runId,
      input: entry.input,
      content: output.content,
      status: output.status,
      record,
    });
    // Only registered runs are retained: a run forgotten by deleteSession must not push others out.
    if (runs.get(entry.runId) === entry) finished.push(entry);
    if (entry.started) streamingCount--;
    else removeFrom(waiting, entry);
    entry.resolve(record);
    evictFinished();
    startWaiting();
  }

  function startWaiting(): void {
    // While shutting down, a freed slot must not start a run that is about to be cancelled.
    while (!closing && streamingCount < maxConcurrentRuns && waiting.length > 0) {
      const entry = waiting.shift()!;
      begin(entry);
    }
  }

  function begin(entry: RunEntry): void {
    entry.started = true;
    streamingCount++;
    entry.actor.send({ type: 'START' });
  }

  function evictFinished(): void {
    const cutoff = now() - retention.maxAgeMs;
    while (finished.length > 0) {
      const oldest = finished[0]!;
      const tooMany = finished.length > retention.maxFinishedRuns;
      if (!tooMany && oldest.finishedAt >= cutoff) break;
      finished.shift();
      runs.delete(oldest.runId);
    }
  }

  function requireRun(runId: string): RunEntry {
    evictFinished();
    const entry = runs.get(runId);
    if (!entry) throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found`);
    return entry;
  }

  function startRun(request: StartRunRequest): RunHandle {
    if (closing) throw new RunstateError('SHUTTING_DOWN', 'the orchestrator is shutting down');
    evictFinished();
    const runId = idGenerator();
    if (runs.has(runId)) throw new RunstateError('INVALID_INPUT', `run id ${runId} is already in use`);
    const sessionId = request.sessionId || idGenerator();
    const existing = sessions.get(sessionId);
    if (existing && existing.agent_id !== request.agentId) {
      throw new RunstateError(
        'INVALID_INPUT',
        `session ${sessionId} belongs to agent ${existing.agent_id}, not ${request.agentId}`,
      );
    }
    const messages: ChatMessage[] = [];
    if (request.instructions) messages.push({ role: 'system', content: request.instructions });
    messages.push(...sessions.history(sessionId), { role: 'user', content: request.input });

    const controller = new AbortController();
    const limits = { ...defaultLimits, ...request.limits };
    const input: RunMachineInput = {
      runId,
      idleTimeoutMs: limits.idleTimeoutMs,
      timeoutMs: limits.timeoutMs,
      retry: limits.retry,
      now,
      random,
    };
    const actor = createActor(machine, { input, inspect });
    let resolve!: (output: RunOutput) => void;
    const result = new Promise<RunOutput>((r) => (resolve = r));
    const entry: RunEntry = {
      runId,
      agentId: request.agentId,
      agentName: request.agentName,
      sessionId,
      userId: request.userId ?? null,
      input: request.input,
      model: request.model,
      createdAt: now(),
      call: { model: request.model, messages, runSignal: controller.signal },
      controller,
      log: new MemoryEventLog(),
      reasoning: new ReasoningPhases(),
      actor,
      result,
      resolve,
      started: false,
      output: null,
      finishedAt: 0,
    };
    runs.set(runId, entry);
    sessions.addRun(sessionId, {
      runId,
      agentId: request.agentId,
      userId: entry.userId,
      input: request.input,
    });

    actor.on('content', ({ delta, reasoning }) => {
      try {
        // Content outside a reasoning phase, the common case, is one event with no array.
        if (!reasoning && !entry.reasoning.open) append(entry, { event: 'RunContent', content: delta });
        else for (const event of entry.reasoning.project(delta, reasoning)) append(entry, event);
      } catch (error) {
        // A throw here would escape xstate's emit and crash the process: fail the run instead.
        actor.send({
          type: 'ERROR',
          error: {
            code: 'INTERNAL',
            message: error instanceof Error ? error.message : String(error),
            retryable: false,
          },
        });
      }
    });
    actor.subscribe({
      complete: () => finish(entry, actor.getSnapshot().output!),
      // A machine that throws is a bug of ours; the run still ends, once, as failed.
      error: (error) => finish(entry, crashOutput(entry, error)),
    });
    actor.start();
    append(entry, {
      event: 'RunStarted',
      model: request.model.id,
      model_provider: request.model.provider,
      run_input: request.input,
    });
    if (streamingCount < maxConcurrentRuns) begin(entry);
    else waiting.push(entry);

    return {
      runId,
      sessionId,
      events: (afterSeq) => entry.log.follow(afterSeq),
      result,
    };
  }

  function crashOutput(entry: RunEntry, error: unknown): RunMachineOutput {
    const context = entry.actor.getSnapshot().context;
    return {
      status: 'failed',
      content: context.content,
      reasoningContent: context.reasoning,
      error: {
        code: 'INTERNAL',
        message: error instanceof Error ? error.message : String(error),
        retryable: false,
      },
      cancelReason: null,
      finishReason: null,
      attempts: context.attempt,
      metrics: {
        input_tokens: null,
        output_tokens: null,
        total_tokens: null,
        time_to_first_token: null,
        duration: (now() - (context.startedAt ?? context.createdAt)) / 1000,
      },
    };
  }

  function cancelRun(runId: string, reason: CancelReason = 'code'): boolean {
    const entry = runs.get(runId);
    if (!entry || isFinalStatus(statusOf(entry))) return false;
    entry.actor.send({ type: 'CANCEL', reason });
    return entry.output?.status === 'cancelled';
  }

  return {
    startRun,
    cancelRun,
    getRun(runId) {
      evictFinished();
      const entry = runs.get(runId);
      return entry && recordOf(entry);
    },
    listRuns(filter = {}) {
      evictFinished();
      const out: RunRecord[] = [];
      for (const entry of runs.values()) {
        if (filter.agentId !== undefined && entry.agentId !== filter.agentId) continue;
        if (filter.sessionId !== undefined && entry.sessionId !== filter.sessionId) continue;
        if (filter.status !== undefined && statusOf(entry) !== filter.status) continue;
        out.push(recordOf(entry));
      }
      return out;
    },
    events(runId, afterSeq) {
      const log = requireRun(runId).log;
      // Past the last event, a reader would silently skip the events still to come.
      if (afterSeq !== undefined && afterSeq > log.size) {
        throw new RunstateError(
          'INVALID_INPUT',
          `run ${runId} has no event ${afterSeq} yet (its last is ${log.size})`,
        );
      }
      return log.follow(afterSeq);
    },
    result(runId) {
      return requireRun(runId).result;
    },
    listSessions: (filter) => sessions.list(filter),
    getSession: (sessionId) => sessions.get(sessionId),
    sessionRuns(sessionId) {
      const session = sessions.get(sessionId);
      if (!session) return [];
      const turns = new Map(sessions.turns(sessionId).map((turn) => [turn.run_id, turn]));
      const out: RunRecord[] = [];
      for (const runId of session.run_ids) {
        const entry = runs.get(runId);
        if (entry) {
          out.push(recordOf(entry));
          continue;
        }
        const record = turns.get(runId)?.record;
        if (record) out.push(record);
      }
      return out;
    },
    deleteSession(sessionId) {
      const session = sessions.get(sessionId);
      if (!session) return false;
      // Forget the runs first, then cancel the active ones: their terminal events still reach
      // their subscribers, but they no longer count against retention.
      const entries = session.run_ids.flatMap((runId) => runs.get(runId) ?? []);
      for (const entry of entries) {
        runs.delete(entry.runId);
        removeFrom(finished, entry);
      }
      for (const entry of entries) if (!entry.output) entry.actor.send({ type: 'CANCEL', reason: 'api' });
      sessions.delete(sessionId);
      return true;
    },
    get size() {
      return runs.size;
    },
    get activeCount() {
      return runs.size - finished.length;
    },
    async shutdown() {
      closing = true;
      const active = [...runs.values()].filter((entry) => !entry.output);
      for (const entry of active) cancelRun(entry.runId, 'shutdown');
      await Promise.all(active.map((entry) => entry.result));
    },
  };
}

/** An event without the fields the orchestrator fills in. */
type EventBody = RunEvent extends infer E
  ? E extends RunEvent
    ? Omit<E, keyof RunEventBase>
    : never
  : never;

function terminalEvent(output: RunMachineOutput): EventBody {
  switch (output.status) {
    case 'completed':
      return {
        event: 'RunCompleted',
        content: output.content,
        reasoning_content: output.reasoningContent,
        // `completed` is reached only through DONE, which carries the finish reason.
        finish_reason: output.finishReason ?? 'stop',
        status: 'completed',
        metrics: output.metrics,
      };
    case 'cancelled':
      return {
        event: 'RunCancelled',
        content: output.content,
        reason: output.cancelReason ?? 'code',
        status: 'cancelled',
      };
    case 'failed': {
      const code = output.error?.code ?? 'INTERNAL';
      return {
        event: 'RunError',
        content: output.error?.message ?? 'the run failed',
        code,
        error_type: code,
        status: 'failed',
      };
    }
  }
}

function removeFrom<T>(list: T[], item: T): void {
  const index = list.indexOf(item);
  if (index >= 0) list.splice(index, 1);
}
