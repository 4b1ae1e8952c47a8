import { createActor, type Actor, type InspectionEvent, type Observer, type Snapshot } from 'xstate';
import {
  runMetrics,
  runStatusOf,
  type RunMachineInput,
  type runMachine,
} from '../../machines/run.machine.js';
import type {
  CancelReason,
  RunMachineOutput,
  RunStatus,
  ToolConfirmation,
} from '../../machines/run-types.js';
import type { RunToolEmitted } from '../../machines/run.machine.js';
import type { ChatMessage } from '../model/chat-model.js';
import { MemoryEventLog } from './event-log.js';
import { HeldChunk, type ModelCall } from './model-service.js';
import { ReasoningPhases, type OutputEventBody } from './reasoning-phases.js';
import {
  checkAfterSeq,
  isTerminalEvent,
  type ReasoningStep,
  type RunEvent,
  type RunOutput,
  type RunRecord,
} from './run-events.js';
import {
  activeRecord,
  outputRecord,
  terminalEvent,
  toWireEvent,
  type EventBody,
  type RunIdentity,
} from './run-projection.js';
import type { RunAround, RunNotice } from './storage.js';
import type { RunWriter } from './store-writer.js';
import { toolEvents } from './tool-events.js';
import { DEFAULT_MAX_CONCURRENT_TOOLS, type ToolRun } from './tool-runner.js';
import type { Tool } from '../tools/tool.js';

/** An inspection observer as xstate's `inspect` option takes it. */
export type InspectOption = Observer<InspectionEvent> | ((event: InspectionEvent) => void);

/**
 * What an `inspect` option must be, said when it is not: xstate would take anything else without a
 * word (it calls `inspect.next?.()`) and inspect nothing.
 */
export const INSPECT_EXPECTED =
  "an inspection observer: a function, or an object with a next method (such as @statelyai/inspect's " +
  "inspector.inspect); runstate's createInspector() is none: attach it, inspector.attach(orchestrator)";

/** Whether `value` is an inspection observer xstate calls: a function, or an object with `next`. */
export function isInspectOption(value: unknown): value is InspectOption {
  if (typeof value === 'function') return true;
  return (
    typeof value === 'object' && value !== null && typeof (value as { next?: unknown }).next === 'function'
  );
}

/**
 * `inspect` as one function that never throws: what it throws is reported on `console.error` (the
 * first time only, by `name`) and goes no further. Why: xstate calls an inspection observer without catching,
 * from `createActor`, `start` and `send`, so a throw came out of a run's start or its cancel and left
 * the run half made: registered and never ended, its model request running, `shutdown()` waiting
 * for it for good. An observer watches; it has no say in a run.
 */
export function catchingInspect(
  inspect: InspectOption,
  name = 'the inspect observer',
): (event: InspectionEvent) => void {
  const next = typeof inspect === 'function' ? inspect : (event: InspectionEvent) => inspect.next?.(event);
  let reported = false;
  return (event) => {
    try {
      next(event);
    } catch (error) {
      if (reported) return;
      reported = true;
      console.error(`runstate: ${name} threw; its further errors are not reported`, error);
    }
  };
}

/** What {@link createLiveRun} needs. */
export interface LiveRunOptions {
  /** The run machine with its model service provided. */
  machine: typeof runMachine;
  identity: RunIdentity;
  /** The messages for the model: the instructions, the session's history (read from the store), the input. */
  messages: PromiseLike<ChatMessage[]>;
  limits: Pick<
    RunMachineInput,
    'idleTimeoutMs' | 'timeoutMs' | 'retry' | 'maxToolRounds' | 'pauseTimeoutMs'
  > & {
    maxConcurrentTools?: number | undefined;
  };
  /** The tools the model may call, by name. */
  tools: ReadonlyMap<string, Tool>;
  /** The run paused for a person (its concurrency slot can go to another run), or continued. */
  onPause: (run: LiveRun, paused: boolean) => void;
  /**
   * The run is paused and being parked in the store (`written` says whether it was), until `until`,
   * at its `RunPaused` of `seq`: once parked, the owner lets go of it ({@link LiveRun.detach}).
   */
  onPark: (run: LiveRun, written: Promise<boolean>, park: { until: number; seq: number }) => void;
  /**
   * A run parked earlier, taken back from the store: its actor starts from `snapshot`, its events
   * after `seq`, its reasoning phases after `reasoningSteps` (those of its record).
   */
  restored?:
    { snapshot: unknown; seq: number; reasoningSteps?: readonly ReasoningStep[] | undefined } | undefined;
  inspect: InspectOption | undefined;
  writer: RunWriter;
  /** True when somebody listens: no notice is built for nobody (one per chunk otherwise). */
  observed: () => boolean;
  /** Runs the run's model requests and tool calls within the subscribers' `around` (see `RunAround`). */
  around?: RunAround | undefined;
  /** Whether `state` notices name the machine event that caused them (else `unknown`). */
  captureCauses: boolean;
  notify: (notice: RunNotice) => void;
  /**
   * Called once, when the run became final (after its terminal event); `result` resolves when the
   * promise it returns does (the final record stored, or the store down: see `FinalWrite.settled`).
   * It must not reject.
   */
  onFinal: (run: LiveRun) => Promise<void>;
  /**
   * The time of wire events, and of the text held for the machine (`CHUNK.at`): the machine's own
   * clock (`withRunClock`) must be this one, as the orchestrator makes it.
   */
  now: () => number;
  /** Handles a lapse of this instance's lease the clock says has come (see `ModelCall.checkLease`). */
  checkLease?: (() => void) | undefined;
}

/** A run this process owns: its actor (the only writer of its state), its live event log, its writer. */
export interface LiveRun {
  readonly identity: RunIdentity;
  readonly actor: Actor<typeof runMachine>;
  /**
   * The events of the run since this process took it (all of them, unless it was restored from
   * the store: then those after {@link LiveRun.firstSeq}), what this process's followers read.
   */
  readonly log: MemoryEventLog;
  /** The `seq` before the first event in `log`: 0, or the `RunPaused` of a restored run. */
  readonly firstSeq: number;
  /** The `seq` of the run's last event. */
  lastSeq(): number;
  /** What the model service reads (looked up by run id). */
  readonly call: ModelCall;
  /** What the tool runner reads (looked up by run id). */
  readonly toolRun: ToolRun;
  readonly writer: RunWriter;
  /** Resolves when the run is final and its final record stored (or the store is down); never rejects. */
  readonly result: Promise<RunOutput>;
  /** The output once final, else `null`. */
  readonly output: RunOutput | null;
  /** Stopped at a lapse of the lease, its end not known yet (see {@link LiveRun.halt}). */
  readonly halted: boolean;
  status(): RunStatus;
  /** The record, with the content so far. */
  record(): RunRecord;
  /** Starts the actor (state `pending`) and appends `RunStarted`. */
  open(): void;
  /** Admitted: from `pending` to `streaming`. */
  start(): void;
  /**
   * Sends `CANCEL`. `true` when the machine took it (the run is `cancelled`), or will: sent from a
   * listener of this run while its machine handles one of its events, the cancel waits in the actor's
   * mailbox for that to end, and is answered by whether the machine can take it then.
   */
  cancel(reason: CancelReason): boolean;
  /**
   * Ends the run `failed` with `RUN_LOST` outside its machine, and stops its actor (so its model
   * request): this instance could not renew its lease, and another one may finalise the run.
   */
  lose(message: string): void;
  /**
   * Stops the run where it is (its model request and tools aborted, its actor stopped) without
   * ending it: this instance's lease lapsed, and its end is the one another instance stored, if
   * any ({@link LiveRun.endAs}), else `RUN_LOST` ({@link LiveRun.lose}). A cancel does nothing now.
   */
  halt(): void;
  /**
   * Ends a run with the terminal event another instance stored for it and its final record: what
   * its clients here see is what the store keeps. `false` (nothing done) when the event is not the
   * run's next one (its clients saw events the store does not hold).
   */
  endAs(record: RunOutput, event: RunEvent): boolean;
  /** Answers the paused calls (checked by the caller) and resumes the run. */
  continue(answers: readonly ToolConfirmation[]): void;
  /** The run's events after `afterSeq` (not before {@link LiveRun.firstSeq}), followed up to its next pause or its end. */
  follow(afterSeq?: number): AsyncIterable<RunEvent>;
  /** Starts the actor of a restored run, in `paused`: it appends nothing. */
  resume(): void;
  /**
   * Lets go of a parked run: its actor stops (nothing is written any more) and `result` resolves
   * with `elsewhere`, the output wherever it ends.
   */
  detach(elsewhere: Promise<RunOutput>): void;
}

/** The reason of every run's end-of-run abort: one object (an abort without one builds a DOMException with a stack). */
const RUN_ENDED = new DOMException('the run ended', 'AbortError');

/**
 * Creates a run actor and projects it: its state changes and wire events become notices, log
 * entries and store writes; its end becomes exactly one terminal event and the output.
 */
export function createLiveRun(options: LiveRunOptions): LiveRun {
  const { identity, writer, observed, notify, now } = options;
  const runId = identity.runId;
  const controller = new AbortController();
  // The machine event being handled, for the `state` notice it causes: xstate's snapshots do not say,
  // its inspection does. Inspection costs every chunk a few objects, so it is turned on only for a
  // run started while a listener wants causes (or that is inspected anyway).
  let cause: { type: string } = { type: options.captureCauses ? 'xstate.init' : 'unknown' };
  const user = options.inspect;
  const userNext = typeof user === 'function' ? user : user?.next?.bind(user);
  const inspect = (event: InspectionEvent): void => {
    if (event.type === '@xstate.event' && event.actorRef.sessionId === event.rootId) cause = event.event;
    userNext?.(event);
  };
  const { maxConcurrentTools, ...limits } = options.limits;
  // The text of the run's events that the machine has not been sent yet (see `ContentSink`): it goes
  // to the machine before anything else does, a cancel or a timer of the run (a timeout reads the
  // content), so the machine's output holds every delta of the run's events.
  const held = new HeldChunk();
  const sendHeld = (): void => {
    const chunk = held.take();
    if (chunk) actor.send(chunk);
  };
  const actor = createActor(options.machine, {
    input: { runId, ...limits },
    clock: {
      setTimeout: (fire: () => void, ms: number) =>
        setTimeout(() => {
          // A timer of the run (a timeout, a retry's delay) that comes after the lease's end: the
          // run ends as the lapse ends it (halted, then its stored end or RUN_LOST), not by what the
          // timer would do.
          options.checkLease?.();
          if (output || halted) return;
          sendHeld();
          fire();
        }, ms),
      clearTimeout: (timer: ReturnType<typeof setTimeout>) => clearTimeout(timer),
    },
    // A restored run's snapshot was stored by this runstate's machine (`getPersistedSnapshot`).
    ...(options.restored && { snapshot: options.restored.snapshot as Snapshot<unknown> }),
    inspect: options.captureCauses ? inspect : user,
  });
  const firstSeq = options.restored?.seq ?? 0;
  const log = new MemoryEventLog(firstSeq);
  let resolve!: (output: RunOutput) => void;
  const result = new Promise<RunOutput>((r) => (resolve = r));
  let output: RunOutput | null = null;
  const reasoning = new ReasoningPhases(options.restored?.reasoningSteps);
  let nodes: readonly object[] | undefined;
  /** Whether `open()` (or `resume()`) started the actor; a cancel asked for before waits for it. */
  let opened = false;
  /** Stopped at a lapse of the lease, its end not known yet (see `LiveRun.halt`). */
  let halted = false;
  let cancelledBeforeOpen: CancelReason | undefined;
  /** The events of one read are being appended, and a cancel asked for meanwhile (see `appendAll`). */
  let appending = false;
  let cancelledWhileAppending: CancelReason | undefined;
  /** The model request the last state notice was in: a request may follow another in one step. */
  let attempt = 0;
  let status: RunStatus | undefined;
  /** When the run last paused: a paused run's metrics end there, so its record holds still while it waits. */
  let pausedAt: number | undefined;

  // The RunPaused of a park in flight: stored with the park, in the log once the park is. It holds its
  // seq: an event of the run before then (its end: the pause ran out, the lease was lost) comes after it.
  let parkedEvent: RunEvent | undefined;
  function logParked(): void {
    const event = parkedEvent;
    if (!event) return;
    parkedEvent = undefined;
    log.append(event);
    if (observed()) notify({ type: 'event', runId, event });
  }

  function append(body: EventBody): void {
    logParked();
    const event: RunEvent = toWireEvent(identity, body, firstSeq + log.size + 1, now());
    log.append(event);
    writer.append(event);
    if (observed()) notify({ type: 'event', runId, event });
  }

  function finish(machineOutput: RunMachineOutput): void {
    if (output) return;
    // The content grew as a rope, a node per delta (32 bytes each): the output and the terminal event
    // keep it, in the store for as long as the run is retained. Reading a character flattens it in
    // place into one string, and its nodes go.
    machineOutput.content.charCodeAt(0);
    machineOutput.reasoningContent.charCodeAt(0);
    // A run that ends while the model reasons closes the phase before its terminal event.
    const reasoningCompleted = reasoning.close();
    if (reasoningCompleted) append(reasoningCompleted);
    const extraData = reasoning.extraData();
    const record = outputRecord(identity, machineOutput, extraData, now());
    output = record;
    (run as { output: RunOutput | null }).output = record;
    const extra: Pick<RunRecord, 'reasoning_steps' | 'extra_data'> = extraData
      ? { reasoning_steps: extraData.reasoning_steps, extra_data: extraData }
      : {};
    append({ ...terminalEvent(machineOutput), ...extra });
    log.close();
    // Stops a model service that xstate left running (a machine that errors keeps its children).
    controller.abort(RUN_ENDED);
    notify({ type: 'finished', run: record });
    void options.onFinal(run).then(() => resolve(record));
  }

  function crashOutput(error: unknown): RunMachineOutput {
    const context = actor.getSnapshot().context;
    return {
      status: 'failed',
      content: context.content + held.delta,
      reasoningContent: context.reasoning + held.reasoning,
      error: {
        code: 'INTERNAL',
        message: error instanceof Error ? error.message : String(error),
        retryable: false,
      },
      cancelReason: null,
      finishReason: null,
      attempts: context.attempt,
      tools: context.tools,
      transcript: context.transcript,
      // Its time to first token when it had output; its usage unknown: it ended wherever it was,
      // perhaps within a request whose usage never came.
      metrics: { ...runMetrics(context, now()), input_tokens: null, output_tokens: null, total_tokens: null },
    };
  }

  // The text of each read of the model's stream, handed over by the model service in the tick it came.
  const content = (delta: string, thought: string): void => {
    try {
      // Held before the events have it: a reader of the events that cancels the run in this call
      // finds it held, and the machine's output has it as the events do.
      held.add(delta, thought, now());
      // Content outside a reasoning phase, the common case, is one event with no array.
      if (!thought && !reasoning.open) append({ event: 'RunContent', content: delta });
      else appendAll(reasoning.project(delta, thought));
    } catch (error) {
      // A throw here (the clock, a reader) would escape the model's stream and crash the process:
      // fail the run instead.
      sendHeld();
      actor.send({
        type: 'ERROR',
        error: {
          code: 'INTERNAL',
          message: error instanceof Error ? error.message : String(error),
          retryable: false,
        },
      });
    }
  };
  /**
   * Appends the events one read made (a reasoning phase's start or end beside its delta) as one: a
   * reader that cancels the run at one of them has it cancelled after the last, so that the events
   * hold what the machine was handed (see `cancel`), each phase whole.
   */
  function appendAll(events: OutputEventBody[]): void {
    let reason: CancelReason | undefined;
    appending = true;
    try {
      for (const event of events) append(event);
    } finally {
      // Taken whatever happened: a throw fails the run (see `content`), and nothing waits for later.
      appending = false;
      reason = cancelledWhileAppending;
      cancelledWhileAppending = undefined;
    }
    if (reason) run.cancel(reason);
  }
  // The model's turn ended (its tool calls, a pause or the run's end come next): so does its reasoning.
  const endTurn = (): void => {
    const completed = reasoning.close();
    if (completed) append(completed);
  };
  // The RunPaused of a pause being parked: written with the park, appended here once it is stored, so
  // that whoever sees it (here or on another instance) can continue the run at once.
  let pausedEvent: RunEvent | undefined;
  const onTool = (emitted: RunToolEmitted): void => {
    if (emitted.type === 'paused') pausedAt = now();
    for (const body of toolEvents(emitted)) {
      if (body.event === 'RunPaused') pausedEvent = toWireEvent(identity, body, run.lastSeq() + 1, now());
      else append(body);
    }
    if (emitted.type === 'paused') options.onPause(run, true);
    if (emitted.type === 'continued') options.onPause(run, false);
  };
  actor.on('tool_started', onTool);
  actor.on('tool_completed', onTool);
  actor.on('paused', onTool);
  actor.on('continued', onTool);
  const subscription = actor.subscribe({
    next(snapshot) {
      // A chunk re-enters `receiving`: comparing the active state nodes (a few pointers) skips it.
      // Not a new request in the same nodes: a turn whose tool calls all failed their checks goes
      // from `requesting` through the tools to the next `requesting` in one step.
      const next = (snapshot as unknown as { _nodes?: readonly object[] })._nodes;
      const nextAttempt = snapshot.context.attempt;
      if (next && nodes && nextAttempt === attempt && sameNodes(nodes, next)) return;
      nodes = next;
      attempt = nextAttempt;
      const current = runStatusOf(snapshot);
      if (observed()) {
        const { usage, turn } = snapshot.context;
        // The failed attempt's error while it waits to retry, the run's once failed; no other state
        // has one (a run cancelled while it waited to retry keeps none, as its output).
        const error =
          current === 'failed' || snapshot.matches({ streaming: 'retrying' }) ? snapshot.context.error : null;
        notify({
          type: 'state',
          runId,
          value: snapshot.value,
          status: current,
          event: cause,
          error,
          usage,
          requestUsage: turn.usage,
        });
      }
      const changed = status !== undefined && current !== status;
      status = current;
      if (changed && current === 'streaming') writer.update({ status: current });
      // Its RunPaused is queued: it goes to the store with the snapshot, in one write.
      if (changed && current === 'paused') {
        const { run_id: _runId, ...record } = run.record();
        const until = now() + snapshot.context.limits.pauseTimeoutMs;
        const event = pausedEvent!;
        pausedEvent = undefined;
        parkedEvent = event;
        const written = writer.park(
          record,
          { snapshot: actor.getPersistedSnapshot(), seq: event.seq, until },
          event,
        );
        void written.then(logParked);
        options.onPark(run, written, { until, seq: event.seq });
      }
    },
    complete: () => finish(actor.getSnapshot().output!),
    // A machine that throws is a bug of ours; the run still ends, once, as failed.
    error: (error) => finish(crashOutput(error)),
  });

  // The end of a reader's stream: the terminal event, or a RunPaused that came while it followed
  // (however soon the run went on: the stream a person read up to the pause ends there, whenever it
  // gets there), or a replayed RunPaused that is still the run's latest (a run that went on since is
  // read through). As a follower on another instance ends its stream (`followStoredRun`).
  const endsStream =
    (followedFrom: number) =>
    (event: RunEvent): boolean =>
      isTerminalEvent(event) ||
      (event.event === 'RunPaused' &&
        (event.seq > followedFrom || (run.status() === 'paused' && run.lastSeq() === event.seq)));

  // No accessor in this literal (`output` is a field set by `finish`): V8 makes an object literal
  // with a getter a dictionary, 1.6 KB per run instead of 0.2 KB.
  const run: LiveRun = {
    identity,
    actor,
    log,
    firstSeq,
    lastSeq: () => firstSeq + log.size,
    writer,
    result,
    call: {
      model: identity.model,
      messages: options.messages,
      tools: options.tools,
      runSignal: controller.signal,
      idleTimeoutMs: limits.idleTimeoutMs,
      sink: { content, activity: () => held.touch(now()), held, endTurn },
      checkLease: options.checkLease,
      around: options.around,
    },
    toolRun: {
      tools: options.tools,
      sessionId: identity.sessionId,
      maxConcurrentTools: maxConcurrentTools ?? DEFAULT_MAX_CONCURRENT_TOOLS,
      runSignal: controller.signal,
      checkLease: options.checkLease,
      around: options.around,
    },
    output: null,
    halted: false,
    status: () => output?.status ?? runStatusOf(actor.getSnapshot()),
    record() {
      if (output) return output;
      const snapshot = actor.getSnapshot();
      const { context } = snapshot;
      const current = runStatusOf(snapshot);
      return activeRecord(identity, current, {
        // A paused run is a result (of a non-streamed run): its metrics up to the pause.
        metrics: current === 'paused' ? runMetrics(context, pausedAt ?? now()) : null,
        content: context.content + held.delta,
        reasoning: context.reasoning + held.reasoning,
        extraData: reasoning.extraData(),
        tools: context.tools,
        transcript: context.transcript,
      });
    },
    open() {
      actor.start();
      append({
        event: 'RunStarted',
        model: identity.model.id,
        model_provider: identity.model.provider,
        run_input: { input_content: identity.input },
      });
      opened = true;
      if (cancelledBeforeOpen) run.cancel(cancelledBeforeOpen);
    },
    start() {
      actor.send({ type: 'START' });
    },
    cancel(reason) {
      // A final run's actor is stopped: xstate would warn of an event sent to it, and it is a no-op.
      if (output || halted) return false;
      // From a listener of the run's `created` notice: taken once the run is open, after RunStarted.
      if (!opened) {
        cancelledBeforeOpen ??= reason;
        return true;
      }
      if (appending) {
        cancelledWhileAppending ??= reason;
        return true;
      }
      sendHeld();
      const cancel = { type: 'CANCEL', reason } as const;
      actor.send(cancel);
      if (run.status() === 'cancelled') return true;
      // Not taken at once: queued behind the event being handled (see `LiveRun.cancel`), or refused.
      const snapshot = actor.getSnapshot();
      return !output && snapshot.status === 'active' && snapshot.can(cancel);
    },
    lose(message) {
      if (output) return;
      finish({ ...crashOutput(message), error: { code: 'RUN_LOST', message, retryable: true } });
      actor.stop();
    },
    halt() {
      if (output || halted) return;
      halted = true;
      (run as { halted: boolean }).halted = true;
      // Its end comes from outside the machine now: the machine's own would be a second one.
      subscription.unsubscribe();
      actor.stop();
      controller.abort(RUN_ENDED);
    },
    endAs(record, event) {
      // (A pause whose park is in flight holds the next seq: such a run ends RUN_LOST.)
      if (output || parkedEvent || event.seq !== run.lastSeq() + 1) return false;
      output = record;
      (run as { output: RunOutput | null }).output = record;
      // Stored already, by the instance that wrote it: for the clients here only.
      log.append(event);
      log.close();
      controller.abort(RUN_ENDED);
      if (observed()) notify({ type: 'event', runId, event });
      notify({ type: 'finished', run: record });
      void options.onFinal(run).then(() => resolve(record));
      return true;
    },
    continue(answers) {
      actor.send({ type: 'CONTINUE', tools: [...answers] });
    },
    follow(afterSeq = firstSeq) {
      checkAfterSeq(afterSeq);
      // A stream of a paused run ends at its RunPaused, as Agno's does; a continue streams on.
      return log.follow(Math.max(0, afterSeq - firstSeq), endsStream(run.lastSeq()));
    },
    resume() {
      actor.start();
      opened = true;
      if (cancelledBeforeOpen) run.cancel(cancelledBeforeOpen);
    },
    detach(elsewhere) {
      subscription.unsubscribe();
      actor.stop();
      log.close();
      void elsewhere.then(resolve);
    },
  };
  return run;
}

function sameNodes(a: readonly object[], b: readonly object[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
