import type { ActorRefLike, AnyStateMachine, InspectionEvent, Observer, StateValue } from 'xstate';
import { runMachine } from '../../machines/run.machine.js';
import type { CancelReason, RunErrorData, RunStatus } from '../../machines/run-types.js';
import { RunstateError } from '../errors.js';
import type { Orchestrator } from '../runtime/create-orchestrator.js';
import { runAlreadyFinished } from '../server/http-errors.js';
import { createInspectorHandler, type InspectorHandler } from './create-inspector-handler.js';
import type { FeedMessage, InspectorLogEntry, RunProgress, RunSummary } from './feed-messages.js';
import { machineGraph, transitionLabel, type MachineGraph } from './machine-graph.js';

/** What the inspector needs from an orchestrator: run metadata, and cancel for its own route. */
export type InspectedOrchestrator = Pick<Orchestrator, 'getRun' | 'cancelRun'>;

/** Options of {@link createInspector}. Every field has a default. */
export interface InspectorOptions {
  /** The machine whose chart the page draws. Default: runstate's run machine. */
  machine?: AnyStateMachine;
  /** Chunk progress reaches the page at most this often; state changes go at once. Default 100. */
  flushIntervalMs?: number;
  /** Finished runs kept for the page (active runs are always kept); the oldest go first. Default 200. */
  maxFinishedRuns?: number;
  /** Log lines kept per run. Default 500. */
  maxLogEntries?: number;
  /**
   * Which route the page's cancel button calls: `agentos`, the server's
   * `POST /agents/:agent_id/runs/:run_id/cancel` (default); or `inspector`, the handler's own
   * `POST <mount>/runs/:run_id/cancel`, for apps without the AgentOS routes.
   */
  cancelRoute?: 'agentos' | 'inspector';
  /** Path the handler strips when it is not mounted by a router (plain node:http). Default `/inspect`. */
  basePath?: string;
  /** SSE comment sent this often to keep idle connections open through proxies. Default 15,000. */
  heartbeatMs?: number;
  now?: () => number;
}

/** Options of {@link Inspector.subscribe}. */
export interface FeedSubscriptionOptions {
  /** Also follow this run: its content and log (`detail`, then `append` messages). */
  runId?: string | undefined;
}

/** The built-in inspector. Create it with {@link createInspector}. */
export interface Inspector {
  /** The inspection observer: pass it as `createOrchestrator({ inspect })` (or combine it). */
  readonly inspect: Observer<InspectionEvent>;
  /** Gives the inspector run metadata (agent, input) and, for its own cancel route, cancel. Returns detach. */
  attach(orchestrator: InspectedOrchestrator): () => void;
  /**
   * Follows the feed. The listener gets a `snapshot` at once, then changes; messages are shared
   * between listeners and must not be mutated. Returns unsubscribe.
   */
  subscribe(listener: (message: FeedMessage) => void, options?: FeedSubscriptionOptions): () => void;
  /** The runs the inspector keeps, oldest first. */
  listRuns(): RunSummary[];
  /** The machine's chart as JSON (what `GET <mount>/graph.json` serves). */
  readonly graph: MachineGraph;
  /** Serves the page, its assets, `graph.json`, the SSE `feed` (node:http or express). */
  readonly handler: InspectorHandler;
  /** Ends every feed connection and timer. Observing goes on; new connections are refused. */
  close(): void;
}

/** The parts of a run actor's snapshot the inspector reads. */
interface RunLikeSnapshot {
  status: 'active' | 'done' | 'error' | 'stopped';
  value: StateValue;
  /** The active state nodes (xstate's `MachineSnapshot._nodes`): compared first, it is cheaper than the value. */
  _nodes?: readonly object[];
  error?: unknown;
  context?: {
    runId?: unknown;
    content?: string;
    chunkCount?: number;
    attempt?: number;
    cancelReason?: CancelReason | null;
    error?: RunErrorData | null;
  };
}

interface RunView {
  readonly runId: string;
  readonly actor: ActorRefLike;
  readonly createdAt: number;
  snapshot: RunLikeSnapshot;
  value: StateValue | undefined;
  nodes: readonly object[] | undefined;
  finishedAt: number | null;
  meta: Pick<RunSummary, 'agent_id' | 'agent_name' | 'session_id' | 'run_input' | 'model'> | undefined;
  log: InspectorLogEntry[];
  /** `chunkCount` when the last `chunks` line was written. */
  chunksLogged: number;
  /** Content and log already sent to followers of this run. */
  contentSent: number;
  logSent: number;
  /** What the next flush sends about it: nothing, its progress (chunk counts), or its full summary. */
  dirty: 'no' | 'progress' | 'summary';
}

interface Subscriber {
  listener: (message: FeedMessage) => void;
  runId: string | undefined;
}

const CANCEL_URLS = {
  agentos: '../agents/{agent_id}/runs/{run_id}/cancel',
  inspector: 'runs/{run_id}/cancel',
} as const;

/** How often active runs are checked for a machine that threw, while a page watches. */
const SWEEP_MS = 1000;

const NO_META = { agent_id: null, agent_name: null, session_id: null, run_input: null, model: null };

/**
 * Creates the built-in inspector: an inspection observer that keeps a small view of every run
 * (state value, chunk count, log), a live feed of it, the machine's chart, and an HTTP handler for
 * the offline page at `/inspect`.
 *
 * The observer is called for every event of every run, so it only records: chunks are never sent
 * one by one but counted and flushed at most every `flushIntervalMs`, and with nobody watching it
 * does no more than keep the latest snapshot.
 *
 * @example
 * ```ts
 * const inspector = createInspector();
 * const orchestrator = createOrchestrator({ inspect: inspector.inspect });
 * inspector.attach(orchestrator);
 * app.use('/inspect', inspector.handler); // express; or call it from a node:http server
 * ```
 */
export function createInspector(options: InspectorOptions = {}): Inspector {
  const {
    machine = runMachine,
    flushIntervalMs = 100,
    maxFinishedRuns = 200,
    maxLogEntries = 500,
    cancelRoute = 'agentos',
    basePath = '/inspect',
    heartbeatMs = 15_000,
    now = Date.now,
  } = options;
  const graph = machineGraph(machine);
  const orchestrators = new Set<InspectedOrchestrator>();
  // Root actors → their view; `null` for actors that are not runs. Weak: actors come and go.
  const views = new WeakMap<object, RunView | null>();
  const runs = new Map<string, RunView>(); // oldest first
  const finished: RunView[] = []; // oldest first, for eviction
  const subscribers = new Set<Subscriber>();
  const following = new Map<string, number>(); // run id → subscribers following it
  let dirty: RunView[] = [];
  let removed: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let immediate: ReturnType<typeof setImmediate> | undefined;
  // Bursts of events come from one run: skip the WeakMap lookup for the same actor.
  let sweeper: ReturnType<typeof setInterval> | undefined;
  const stopSweeping = () => {
    clearInterval(sweeper);
    sweeper = undefined;
  };
  let lastActor: object | undefined;
  let lastView: RunView | null = null;

  function next(event: InspectionEvent): void {
    // Only the run actor itself (the root) matters; its invoked model service is a child.
    if (event.actorRef.sessionId !== event.rootId) return;
    if (event.type === '@xstate.snapshot')
      onSnapshot(event.actorRef, event.snapshot as unknown as RunLikeSnapshot);
    else if (event.type === '@xstate.event' && event.event.type !== 'CHUNK')
      onEvent(event.actorRef, event.event);
  }

  function viewOf(actor: ActorRefLike, snapshot: RunLikeSnapshot | undefined): RunView | null {
    if (actor === lastActor) return lastView;
    let view = views.get(actor);
    if (view === undefined) {
      if (!snapshot) return null; // not seen yet: wait for its first snapshot
      const runId = snapshot.context?.runId;
      view = typeof runId === 'string' ? register(runId, actor, snapshot) : null;
      views.set(actor, view);
    }
    lastActor = actor;
    lastView = view;
    return view;
  }

  function register(runId: string, actor: ActorRefLike, snapshot: RunLikeSnapshot): RunView {
    const view: RunView = {
      runId,
      actor,
      createdAt: now(),
      snapshot,
      value: undefined,
      nodes: undefined,
      finishedAt: null,
      meta: undefined,
      log: [],
      chunksLogged: 0,
      contentSent: 0,
      logSent: 0,
      dirty: 'no',
    };
    runs.delete(runId);
    runs.set(runId, view);
    return view;
  }

  function onSnapshot(actor: ActorRefLike, snapshot: RunLikeSnapshot): void {
    const view = viewOf(actor, snapshot);
    if (!view || view.finishedAt !== null) return;
    view.snapshot = snapshot;
    const changed = !sameState(view, snapshot);
    if (changed) {
      view.value = snapshot.value;
      view.nodes = snapshot._nodes;
      log(view, 'state', valueText(snapshot.value));
    }
    const final = snapshot.status !== 'active';
    if (final) finish(view, snapshot);
    touch(view, changed || final);
  }

  function onEvent(actor: ActorRefLike, event: { type: string }): void {
    const view = viewOf(actor, undefined);
    if (!view || view.finishedAt !== null) return;
    log(view, 'event', transitionLabel(event.type), detailOf(event));
    touch(view, false);
  }

  function finish(view: RunView, snapshot: RunLikeSnapshot): void {
    view.finishedAt = now();
    const context = snapshot.context ?? {};
    const status = statusOf(snapshot.value);
    let text: string = status;
    if (snapshot.status === 'error')
      text = `failed: the machine threw in ${status} (${String(snapshot.error)})`;
    else if (context.cancelReason) text = `${status} (reason: ${context.cancelReason})`;
    else if (context.error && status === 'failed')
      text = `${status}: ${context.error.code} ${context.error.message}`;
    log(view, 'end', text);
    finished.push(view);
    while (finished.length > maxFinishedRuns) {
      const oldest = finished.shift()!;
      if (runs.get(oldest.runId) === oldest) runs.delete(oldest.runId);
      if (subscribers.size > 0) removed.push(oldest.runId);
    }
  }

  function log(view: RunView, kind: InspectorLogEntry['kind'], text: string, detail?: string): void {
    const entries = view.log;
    if (entries.length >= maxLogEntries && kind !== 'end') return;
    const at = now();
    const chunks = view.snapshot.context?.chunkCount ?? 0;
    if (chunks > view.chunksLogged) {
      const count = chunks - view.chunksLogged;
      entries.push({ at, kind: 'chunks', text: `CHUNK ×${count}` });
      view.chunksLogged = chunks;
    }
    entries.push(detail === undefined ? { at, kind, text } : { at, kind, text, detail });
  }

  /**
   * Marks a run as changed for the next flush: a state change at once, with its full summary;
   * progress (chunks) within the interval, as counts only.
   */
  function touch(view: RunView, urgent: boolean): void {
    if (subscribers.size === 0) return;
    if (view.dirty === 'no') dirty.push(view);
    if (urgent) view.dirty = 'summary';
    else if (view.dirty === 'no') view.dirty = 'progress';
    if (urgent) {
      immediate ??= setImmediate(flush).unref();
    } else if (timer === undefined && immediate === undefined) {
      timer = setTimeout(flush, flushIntervalMs).unref();
    }
  }

  function flush(): void {
    clearTimeout(timer);
    clearImmediate(immediate);
    timer = undefined;
    immediate = undefined;
    const changed = dirty;
    dirty = [];
    if (changed.length > 0) {
      // Log lines first: a page reads the event that caused a state change before the change.
      for (const view of changed) if (following.has(view.runId)) sendAppend(view);
      const summaries: RunSummary[] = [];
      const progress: RunProgress[] = [];
      for (const view of changed) {
        if (view.dirty === 'summary') summaries.push(summaryOf(view));
        else progress.push(progressOf(view));
        view.dirty = 'no';
      }
      if (summaries.length > 0) broadcast({ type: 'runs', runs: summaries }, undefined);
      if (progress.length > 0) broadcast({ type: 'progress', runs: progress }, undefined);
    }
    if (removed.length > 0) {
      const runIds = removed;
      removed = [];
      broadcast({ type: 'removed', run_ids: runIds }, undefined);
    }
  }

  function sendAppend(view: RunView): void {
    const content = view.snapshot.context?.content ?? '';
    if (content.length === view.contentSent && view.log.length === view.logSent) return;
    const message: FeedMessage = {
      type: 'append',
      run_id: view.runId,
      offset: view.contentSent,
      content: content.slice(view.contentSent),
      log: view.log.slice(view.logSent),
    };
    view.contentSent = content.length;
    view.logSent = view.log.length;
    broadcast(message, view.runId);
  }

  /** Sends to every subscriber (`runId` undefined) or to those following `runId`. */
  function broadcast(message: FeedMessage, runId: string | undefined): void {
    for (const subscriber of subscribers) {
      if (runId === undefined || subscriber.runId === runId) deliver(subscriber, message);
    }
  }

  function deliver(subscriber: Subscriber, message: FeedMessage): void {
    try {
      subscriber.listener(message);
    } catch (error) {
      // A broken listener must not stop the others, nor throw inside a timer.
      subscribers.delete(subscriber);
      if (subscribers.size === 0) stopSweeping();
      console.error('runstate inspector: a feed listener threw and was removed', error);
    }
  }

  function summaryOf(view: RunView): RunSummary {
    view.meta ??= metaOf(view.runId);
    const snapshot = view.snapshot;
    const context = snapshot.context ?? {};
    const error = context.error ?? null;
    const value = view.value ?? snapshot.value;
    return {
      run_id: view.runId,
      ...(view.meta ?? NO_META),
      // A machine that threw stays in its last state; the run failed (the orchestrator says so too).
      status: snapshot.status === 'error' ? 'failed' : statusOf(value),
      value,
      chunks: context.chunkCount ?? 0,
      content_length: context.content?.length ?? 0,
      attempt: context.attempt ?? 0,
      created_at: view.createdAt,
      finished_at: view.finishedAt,
      cancel_reason: context.cancelReason ?? null,
      error:
        snapshot.status === 'error'
          ? { code: 'INTERNAL', message: String(snapshot.error) }
          : error && { code: error.code, message: error.message },
    };
  }

  function progressOf(view: RunView): RunProgress {
    const context = view.snapshot.context;
    return {
      run_id: view.runId,
      chunks: context?.chunkCount ?? 0,
      content_length: context?.content?.length ?? 0,
    };
  }

  function metaOf(runId: string): RunView['meta'] {
    for (const orchestrator of orchestrators) {
      const record = orchestrator.getRun(runId);
      if (!record) continue;
      return {
        agent_id: record.agent_id,
        agent_name: record.agent_name,
        session_id: record.session_id,
        run_input: record.run_input.length > 200 ? `${record.run_input.slice(0, 199)}…` : record.run_input,
        model: record.model,
      };
    }
    return undefined;
  }

  function subscribe(listener: (message: FeedMessage) => void, subscription: FeedSubscriptionOptions = {}) {
    const subscriber: Subscriber = { listener, runId: subscription.runId };
    subscribers.add(subscriber);
    sweeper ??= setInterval(sweep, SWEEP_MS).unref();
    deliver(subscriber, { type: 'snapshot', runs: listRuns(), cancel_url: CANCEL_URLS[cancelRoute] });
    const runId = subscription.runId;
    if (runId !== undefined) {
      const view = runs.get(runId);
      const followers = following.get(runId) ?? 0;
      following.set(runId, followers + 1);
      if (view && followers === 0) {
        // Nobody followed it: start the increments from what it has now.
        view.contentSent = view.snapshot.context?.content?.length ?? 0;
        view.logSent = view.log.length;
      }
      deliver(subscriber, {
        type: 'detail',
        run_id: runId,
        found: view !== undefined,
        content: view?.snapshot.context?.content?.slice(0, view.contentSent) ?? '',
        log: view?.log.slice(0, view.logSent) ?? [],
      });
    }
    return () => {
      if (!subscribers.delete(subscriber)) return;
      if (subscribers.size === 0) stopSweeping();
      if (runId === undefined) return;
      const followers = (following.get(runId) ?? 1) - 1;
      if (followers > 0) following.set(runId, followers);
      else following.delete(runId);
    };
  }

  function listRuns(): RunSummary[] {
    sweep();
    return Array.from(runs.values(), summaryOf);
  }

  /**
   * xstate sends no inspection event when a machine throws (its snapshot turns to `error` quietly),
   * so the active runs are looked at now and then while somebody watches: a property read each.
   */
  function sweep(): void {
    for (const view of runs.values()) {
      if (view.finishedAt !== null) continue;
      const snapshot = view.actor.getSnapshot() as RunLikeSnapshot;
      if (snapshot.status !== 'active') onSnapshot(view.actor, snapshot);
    }
  }

  function cancel(runId: string): object {
    for (const orchestrator of orchestrators) {
      if (!orchestrator.getRun(runId)) continue;
      const cancelled = orchestrator.cancelRun(runId, 'api');
      const status = orchestrator.getRun(runId)?.status;
      if (cancelled || status === 'cancelled') return { run_id: runId, status: 'cancelled' };
      throw runAlreadyFinished(runId, status ?? 'failed');
    }
    throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found`);
  }

  const http = createInspectorHandler({
    graph,
    subscribe,
    listRuns,
    cancel: cancelRoute === 'inspector' ? cancel : undefined,
    basePath,
    heartbeatMs,
  });

  return {
    inspect: {
      next(event) {
        try {
          next(event);
        } catch (error) {
          // xstate does not catch observer errors: a bug here must never break a run.
          console.error('runstate inspector: failed to record an inspection event', error);
        }
      },
    },
    attach(orchestrator) {
      orchestrators.add(orchestrator);
      return () => orchestrators.delete(orchestrator);
    },
    subscribe,
    listRuns,
    graph,
    handler: http.handler,
    close() {
      http.close();
      clearTimeout(timer);
      clearImmediate(immediate);
      timer = undefined;
      immediate = undefined;
      stopSweeping();
      subscribers.clear();
      following.clear();
    },
  };
}

function statusOf(value: StateValue): RunStatus {
  return (typeof value === 'string' ? value : Object.keys(value)[0]) as RunStatus;
}

/**
 * True when the snapshot is in the states the view last saw. Called for every snapshot of every run
 * (each chunk makes one), so it compares the active state nodes by identity when it can (a few
 * pointer comparisons), and the state values, without allocating, when it cannot.
 */
function sameState(view: RunView, snapshot: RunLikeSnapshot): boolean {
  if (view.value === undefined) return false;
  const before = view.nodes;
  const after = snapshot._nodes;
  if (before && after) {
    if (before.length !== after.length) return false;
    for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) return false;
    return true;
  }
  return sameValue(view.value, snapshot.value);
}

function sameValue(a: StateValue, b: StateValue): boolean {
  if (a === b) return true;
  if (typeof a === 'string' || typeof b === 'string') return false;
  for (const key in a) {
    const left = a[key];
    const right = b[key];
    if (left === undefined || right === undefined || !sameValue(left, right)) return false;
  }
  for (const key in b) if (!(key in a)) return false;
  return true;
}

/** `{ streaming: { attempt: 'receiving' } }` → `streaming.attempt.receiving`. */
function valueText(value: StateValue): string {
  if (typeof value === 'string') return value;
  return Object.entries(value)
    .map(([key, child]) =>
      child === undefined || (typeof child === 'object' && Object.keys(child).length === 0)
        ? key
        : `${key}.${valueText(child)}`,
    )
    .join(', ');
}

/** An event's fields but `type`, as short JSON; `undefined` when it has none. */
function detailOf(event: { type: string }): string | undefined {
  const { type: _type, ...rest } = event as Record<string, unknown>;
  if (Object.keys(rest).length === 0) return undefined;
  try {
    const text = JSON.stringify(rest, (_key, value: unknown) =>
      value instanceof Error ? { name: value.name, message: value.message } : value,
    );
    return text.length > 500 ? `${text.slice(0, 499)}…` : text;
  } catch {
    return undefined;
  }
}
