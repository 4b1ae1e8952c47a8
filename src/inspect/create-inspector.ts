import type { AnyStateMachine, StateValue } from 'xstate';
import { z } from 'zod';
import { clampDelay, runMachine } from '../../machines/run.machine.js';
import type { RunStatus } from '../../machines/run-types.js';
import { RunstateError } from '../errors.js';
import type { Orchestrator, SubscribeOptions } from '../runtime/create-orchestrator.js';
import { shortened } from '../runtime/detached-slice.js';
import { allowedHostNames, allowedHostsSchema } from '../server/foreign-requests.js';
import {
  checkOption,
  checkOptionNames,
  count,
  duration,
  positiveDuration,
  stateMachine,
} from '../runtime/run-limits.js';
import type { RunOutput, RunRecord } from '../runtime/run-events.js';
import type { RunListener, RunNotice } from '../runtime/storage.js';
import { createInspectorHandler, type InspectorHandler } from './create-inspector-handler.js';
import type { FeedMessage, InspectorLogEntry, RunProgress, RunSummary } from './feed-messages.js';
import { machineGraph, transitionLabel, type MachineGraph } from './machine-graph.js';

/** What the inspector needs from an orchestrator: its run notices, and cancel for its own route. */
export interface InspectedOrchestrator {
  subscribe(listener: RunListener, options?: SubscribeOptions): () => void;
  requestCancel: Orchestrator['requestCancel'];
}

/** Options of {@link createInspector}. Every field has a default. */
export interface InspectorOptions {
  /** The machine whose chart the page draws. Default: runstate's run machine. */
  machine?: AnyStateMachine | undefined;
  /** Chunk progress reaches the page at most this often; state changes go at once. Default 100. */
  flushIntervalMs?: number | undefined;
  /**
   * Finished runs the page lists (active runs are always listed); the oldest go first. Default 200.
   * With `maxLogEntries`, what bounds the inspector's memory.
   */
  maxFinishedRuns?: number | undefined;
  /** Log lines kept per run, the final line (how the run ended) always among them. Default 500. */
  maxLogEntries?: number | undefined;
  /**
   * Which route the page's cancel button calls: `agentos`, the server's
   * `POST /agents/:agent_id/runs/:run_id/cancel` (default); or `inspector`, the handler's own
   * `POST <mount>/runs/:run_id/cancel`, for apps without the AgentOS routes.
   */
  cancelRoute?: 'agentos' | 'inspector' | undefined;
  /**
   * With `cancelRoute: 'agentos'`, the absolute path the AgentOS routes start at: `'/'` when
   * `/agents` is at the root, `'/api'` when they are under `/api`. Default: mounted by `createApp`
   * (its `mount` option), that app's own root, wherever the page is; elsewhere the page's parent
   * (`/inspect` beside `/agents`).
   */
  apiBase?: string | undefined;
  /**
   * Path the handler strips when it is not mounted by a router (plain node:http): absolute, `/` for
   * the root; a trailing slash is dropped. Default `/inspect`.
   */
  basePath?: string | undefined;
  /**
   * On a plain node:http server of its own, host names (the `Host` header) it answers besides
   * `localhost` and IP addresses, as `createApp`'s `allowedHosts`: others get a 403, which stops a
   * web page from reading runs through a name it points at this server (DNS rebinding). `'*'` for
   * any. Mounted in an app, the app's own setting decides. Default: none.
   */
  allowedHosts?: readonly string[] | '*' | undefined;
  /** SSE comment sent this often to keep idle connections open through proxies. Default 15,000. */
  heartbeatMs?: number | undefined;
  now?: (() => number) | undefined;
}

/** Options of {@link Inspector.subscribe}. */
export interface FeedSubscriptionOptions {
  /** Also follow this run: its content and log (`detail`, then `append` messages). */
  runId?: string | undefined;
}

/** The built-in inspector. Create it with {@link createInspector}. */
export interface Inspector {
  /**
   * Shows the runs of `orchestrator` (from its notices) and cancels through it. Returns detach.
   * Runs already going are shown from their state and content at the call (their log starts there).
   * An orchestrator attached again is followed once; its runs are dropped at its last detach.
   */
  attach(orchestrator: InspectedOrchestrator): () => void;
  /**
   * Follows the feed. The listener gets a `snapshot` at once, then changes; messages are shared
   * between listeners and must not be mutated. Returns unsubscribe.
   */
  subscribe(listener: (message: FeedMessage) => void, options?: FeedSubscriptionOptions): () => void;
  /** The runs the page lists, oldest first. */
  listRuns(): RunSummary[];
  /** The machine's chart as JSON (what `GET <mount>/graph.json` serves). */
  readonly graph: MachineGraph;
  /** Serves the page, its assets, `graph.json`, the SSE `feed` (node:http or express). */
  readonly handler: InspectorHandler;
  /**
   * Sends what changed since the last flush, then ends every feed connection and timer. Runs are
   * still followed; new connections are refused.
   */
  close(): void;
}

/** What the page shows of one run: built from the orchestrator's notices only. */
interface RunView {
  readonly runId: string;
  readonly orchestrator: InspectedOrchestrator;
  readonly meta: Pick<RunSummary, 'agent_id' | 'agent_name' | 'session_id' | 'run_input' | 'model'>;
  readonly createdAt: number;
  value: StateValue;
  status: RunStatus;
  chunks: number;
  /** The content so far; the run's own (shared) string once it is final. */
  content: string;
  attempt: number;
  finishedAt: number | null;
  output: RunOutput | null;
  log: InspectorLogEntry[];
  /** `chunks` when the last `chunks` line was written. */
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

/** The AgentOS cancel route, under where those routes start. */
const AGENTOS_CANCEL = 'agents/{agent_id}/runs/{run_id}/cancel';

/** The options of {@link createInspector}, by name: another is refused (see `checkOptionNames`). */
const INSPECTOR_OPTIONS = [
  'machine',
  'basePath',
  'apiBase',
  'flushIntervalMs',
  'maxFinishedRuns',
  'maxLogEntries',
  'cancelRoute',
  'allowedHosts',
  'heartbeatMs',
  'now',
] as const satisfies readonly (keyof InspectorOptions)[];

/** What {@link createInspector}'s options may be. */
const inspectorOptionsSchema = z.looseObject({
  // An xstate machine (its definition is walked for the chart), not anything else.
  machine: stateMachine<AnyStateMachine>(
    'must be an xstate machine (createMachine, setup().createMachine)',
  ).optional(),
  // Absolute, or nothing would ever match it; `''` is the root, as `/` is.
  basePath: z
    .string({ error: 'must be a path such as /inspect' })
    .regex(/^(\/.*)?$/, 'must be an absolute path such as /inspect, or / for the root')
    .optional(),
  apiBase: z
    .string({ error: 'must be a path such as /' })
    .startsWith('/', 'must be an absolute path, such as / or /api')
    .optional(),
  flushIntervalMs: duration.optional(),
  maxFinishedRuns: count(0).optional(),
  maxLogEntries: count(1).optional(),
  cancelRoute: z.enum(['agentos', 'inspector']).optional(),
  allowedHosts: allowedHostsSchema.optional(),
  heartbeatMs: positiveDuration.optional(),
  now: z
    .custom<() => number>((now) => typeof now === 'function', 'must be a function that returns milliseconds')
    .optional(),
});

/**
 * Creates the built-in inspector: a small view of the runs of the orchestrators it is attached to
 * (state value, chunk count, log), a live feed of it, the machine's chart, and an HTTP handler for
 * the offline page at `/inspect`.
 *
 * It learns everything from `orchestrator.subscribe` (created, state changes, events, finished) and
 * cancels through `orchestrator.requestCancel`: the orchestrator decides what a run is and how a
 * cancel is answered. Chunks are never sent one by one but counted and flushed at most every
 * `flushIntervalMs`. Its memory is bounded: active runs, `maxFinishedRuns` finished ones, at most
 * `maxLogEntries` log lines each.
 *
 * @example
 * ```ts
 * const inspector = createInspector();
 * inspector.attach(orchestrator);
 * app.use('/inspect', inspector.handler); // express; or call it from a node:http server
 * ```
 */
export function createInspector(options: InspectorOptions = {}): Inspector {
  // A misspelt name would be ignored (`cancelroute`: the page's Cancel button calls a route that
  // may not exist), and a wrong number misbehave quietly later (a heartbeat of 0 pings every turn).
  checkOptionNames(options, INSPECTOR_OPTIONS, 'createInspector');
  checkOption(inspectorOptionsSchema, options, 'options');
  if (options.apiBase !== undefined && options.cancelRoute === 'inspector') {
    // Set for nothing, it would say the page cancels through routes it never calls.
    throw new RunstateError(
      'INVALID_INPUT',
      "options.apiBase: apiBase is where the AgentOS routes are: it means nothing with cancelRoute: 'inspector'",
    );
  }
  const {
    machine = runMachine,
    flushIntervalMs = 100,
    maxFinishedRuns = 200,
    maxLogEntries = 500,
    cancelRoute = 'agentos',
    apiBase,
    basePath: basePathOption = '/inspect',
    allowedHosts = [],
    heartbeatMs = 15_000,
    now = Date.now,
  } = options;
  // Without its trailing slash: `/inspect/` is `/inspect` (the page is `<basePath>/`), `/` the root.
  const basePath = basePathOption.replace(/\/+$/, '');
  const graph = machineGraph(machine);

  /**
   * The cancel button's URL template, relative to the page unless absolute: the inspector's own
   * route, or the AgentOS one under `apiBase`, else under `appRoot` (where `createApp`, which
   * mounted the page, has its routes), else beside the page's mount.
   */
  function cancelUrl(appRoot: string | undefined): string {
    if (cancelRoute === 'inspector') return 'runs/{run_id}/cancel';
    const root = apiBase ?? appRoot;
    return root === undefined ? `../${AGENTOS_CANCEL}` : `${root.replace(/\/+$/, '')}/${AGENTOS_CANCEL}`;
  }
  /** Each attached orchestrator: one subscription, however many times it was attached. */
  const orchestrators = new Map<InspectedOrchestrator, { attached: number; unsubscribe: () => void }>();
  const runs = new Map<string, RunView>(); // oldest first
  const finished = new Set<RunView>(); // oldest first, for eviction
  const subscribers = new Set<Subscriber>();
  const following = new Map<string, number>(); // run id → subscribers following it
  let dirty: RunView[] = [];
  let removed: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let immediate: ReturnType<typeof setImmediate> | undefined;

  function onNotice(orchestrator: InspectedOrchestrator, notice: RunNotice): void {
    if (notice.type === 'created' || notice.type === 'taken') return register(orchestrator, notice.run);
    const view = runs.get(notice.type === 'finished' ? notice.run.run_id : notice.runId);
    if (!view || view.finishedAt !== null) return;
    switch (notice.type) {
      case 'state': {
        const type = notice.event.type;
        // A run parked here and taken back (to be continued or cancelled) starts again in the state
        // it was logged in: a new actor's first state, not a new one of the run.
        const again = type === 'xstate.init' && view.log.length > 0;
        if (again && valueText(notice.value) === valueText(view.value)) return;
        // A CHUNK's text is in the RunContent lines: its line names the change it made (the first
        // output of a request: a tool call's has no RunContent line of its own).
        if (type === 'CHUNK') log(view, 'event', 'CHUNK');
        else if (type !== 'xstate.init' && type !== 'unknown') {
          log(view, 'event', transitionLabel(type), detailOf(notice.event));
        }
        view.value = notice.value;
        view.status = notice.status;
        const text = valueText(notice.value);
        if (text === 'streaming.attempt.requesting') view.attempt++;
        log(view, 'state', text);
        return touch(view, true);
      }
      case 'event':
        if (notice.event.event !== 'RunContent') return;
        view.chunks++;
        view.content += notice.event.content;
        return touch(view, false);
      case 'finished':
        return finish(view, notice.run);
      case 'left':
        return drop(view);
    }
  }

  /**
   * A run this inspector cannot follow further: paused here and taken by another instance, or of an
   * orchestrator detached.
   */
  function drop(view: RunView): void {
    runs.delete(view.runId);
    if (subscribers.size === 0) return;
    removed.push(view.runId);
    immediate ??= setImmediate(flush).unref();
  }

  function register(orchestrator: InspectedOrchestrator, record: RunRecord): void {
    const input = record.run_input;
    const view: RunView = {
      runId: record.run_id,
      orchestrator,
      meta: {
        agent_id: record.agent_id,
        agent_name: record.agent_name,
        session_id: record.session_id,
        run_input: shownInput(input),
        model: record.model,
      },
      createdAt: createdAtOf(record, now()),
      value: record.status,
      status: record.status,
      // Counted from here: a run already going at `attach` has streamed an unknown number.
      chunks: 0,
      // The content so far: empty for a run just created, not for one already going at `attach`.
      content: record.content,
      // Past `pending`, a run made its first request at least.
      attempt: record.status === 'pending' ? 0 : 1,
      finishedAt: null,
      output: null,
      log: [],
      chunksLogged: 0,
      contentSent: 0,
      logSent: 0,
      dirty: 'no',
    };
    const previous = runs.get(view.runId);
    if (previous) finished.delete(previous);
    runs.delete(view.runId);
    runs.set(view.runId, view);
    touch(view, true);
  }

  function finish(view: RunView, output: RunOutput): void {
    view.finishedAt = now();
    view.output = output;
    view.status = output.status;
    // The run's own string: the inspector keeps no copy of a finished run's content.
    view.content = output.content;
    let text: string = output.status;
    if (output.cancel_reason) text = `${output.status} (reason: ${output.cancel_reason})`;
    else if (output.error) text = `${output.status}: ${output.error.code} ${output.error.message}`;
    log(view, 'end', text);
    touch(view, true);
    finished.add(view);
    for (const oldest of finished) {
      if (finished.size <= maxFinishedRuns) break;
      finished.delete(oldest);
      runs.delete(oldest.runId);
      if (subscribers.size > 0) removed.push(oldest.runId);
    }
  }

  /**
   * Appends a line (after a `RunContent ×n` line for the chunks since the last one), at most
   * `maxLogEntries` in all: the last place is kept for the run's final line, and a line that does
   * not fit with its `RunContent ×n` line is left out with it.
   */
  function log(view: RunView, kind: InspectorLogEntry['kind'], text: string, detail?: string): void {
    const entries = view.log;
    const room = maxLogEntries - entries.length - (kind === 'end' ? 0 : 1);
    const chunks = view.chunks > view.chunksLogged ? 1 : 0;
    if (room < 1 + chunks && (kind !== 'end' || room < 1)) return;
    const at = now();
    if (chunks === 1 && room >= 2) {
      entries.push({ at, kind: 'chunks', text: `RunContent ×${view.chunks - view.chunksLogged}` });
      view.chunksLogged = view.chunks;
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
      timer = setTimeout(flush, clampDelay(flushIntervalMs)).unref();
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
    const content = view.content;
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
      console.error('runstate inspector: a feed listener threw and was removed', error);
    }
  }

  function summaryOf(view: RunView): RunSummary {
    const error = view.output?.error ?? null;
    return {
      run_id: view.runId,
      ...view.meta,
      status: view.status,
      value: view.value,
      chunks: view.chunks,
      content_length: view.content.length,
      attempt: view.attempt,
      created_at: view.createdAt,
      finished_at: view.finishedAt,
      cancel_reason: view.output?.cancel_reason ?? null,
      error: error && { code: error.code, message: error.message },
    };
  }

  function progressOf(view: RunView): RunProgress {
    return { run_id: view.runId, chunks: view.chunks, content_length: view.content.length };
  }

  function subscribe(listener: (message: FeedMessage) => void, subscription: FeedSubscriptionOptions = {}) {
    // Else it would fail at its first message, or follow every run for a misspelt `runId`.
    if (typeof listener !== 'function')
      throw new RunstateError('INVALID_INPUT', 'inspector.subscribe takes a listener function');
    checkOptionNames(subscription, ['runId'], 'inspector.subscribe');
    if (subscription.runId !== undefined && typeof subscription.runId !== 'string')
      throw new RunstateError('INVALID_INPUT', 'inspector.subscribe: runId must be a string');
    const subscriber: Subscriber = { listener, runId: subscription.runId };
    subscribers.add(subscriber);
    deliver(subscriber, { type: 'snapshot', runs: listRuns(), cancel_url: cancelUrl(undefined) });
    const runId = subscription.runId;
    if (runId !== undefined) {
      const view = runs.get(runId);
      const followers = following.get(runId) ?? 0;
      following.set(runId, followers + 1);
      if (view && followers === 0) {
        // Nobody followed it: start the increments from what it has now.
        view.contentSent = view.content.length;
        view.logSent = view.log.length;
      }
      deliver(subscriber, {
        type: 'detail',
        run_id: runId,
        found: view !== undefined,
        content: view?.content.slice(0, view.contentSent) ?? '',
        log: view?.log.slice(0, view.logSent) ?? [],
      });
    }
    return () => {
      if (!subscribers.delete(subscriber)) return;
      if (runId === undefined) return;
      const followers = (following.get(runId) ?? 1) - 1;
      if (followers > 0) following.set(runId, followers);
      else following.delete(runId);
    };
  }

  function listRuns(): RunSummary[] {
    return Array.from(runs.values(), summaryOf);
  }

  /**
   * Cancels through the orchestrator that owns the run: its answer is the route's 200 body, its
   * refusal (`RUN_NOT_FOUND`, `RUN_ALREADY_FINISHED`) the route's error, as on the AgentOS route.
   */
  async function cancel(runId: string): Promise<{ run_id: string; status: string }> {
    const known = runs.get(runId)?.orchestrator;
    for (const orchestrator of known ? [known] : orchestrators.keys()) {
      try {
        const run = await orchestrator.requestCancel(runId, 'api');
        return { run_id: runId, status: run.status };
      } catch (error) {
        if (!(error instanceof RunstateError && error.code === 'RUN_NOT_FOUND')) throw error;
      }
    }
    throw new RunstateError('RUN_NOT_FOUND', `run ${runId} not found`);
  }

  const http = createInspectorHandler({
    graph,
    subscribe,
    listRuns,
    cancel: cancelRoute === 'inspector' ? cancel : undefined,
    cancelUrl,
    hosts: allowedHostNames(allowedHosts),
    basePath,
    heartbeatMs,
  });

  return {
    attach(orchestrator) {
      // Attached again (the agents of one server share an orchestrator): a second subscription
      // would count every chunk and log every change twice.
      const subscription = orchestrators.get(orchestrator) ?? {
        attached: 0,
        // `current`: the runs already going are shown too, from their state now.
        unsubscribe: orchestrator.subscribe((notice) => onNotice(orchestrator, notice), { current: true }),
      };
      subscription.attached++;
      orchestrators.set(orchestrator, subscription);
      let detached = false;
      return () => {
        if (detached) return;
        detached = true;
        // Still attached by another call: its runs stay followed.
        if (--subscription.attached > 0) return;
        subscription.unsubscribe();
        orchestrators.delete(orchestrator);
        // Its runs are not followed any more: a page drops them rather than show them still going.
        for (const view of [...runs.values()]) {
          if (view.orchestrator !== orchestrator) continue;
          finished.delete(view);
          drop(view);
        }
      };
    },
    subscribe,
    listRuns,
    graph,
    handler: http.handler,
    close() {
      // What changed since the last flush first (the runs a shutdown just cancelled): a page sees
      // their end before its feed ends.
      flush();
      http.close();
      clearTimeout(timer);
      clearImmediate(immediate);
      timer = undefined;
      immediate = undefined;
      subscribers.clear();
      following.clear();
    },
  };
}

/**
 * When a run was created, in milliseconds: now for a run just created (its record says the second
 * only), its record's second for one already going at `attach` (created before now's second).
 */
function createdAtOf(record: RunRecord, now: number): number {
  const second = record.created_at * 1000;
  return now - second < 1000 ? now : second;
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

/** A run's input as the page lists it: at most 200 characters, the last an ellipsis when it was cut. */
function shownInput(input: string): string {
  if (shortened(input, 200).length === input.length) return input;
  return `${shortened(input, 199)}…`;
}
