import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StateValue } from 'xstate';
import { z } from 'zod';
import type { ToolExecution } from '../../machines/run-types.js';
import type { RunOutput } from '../runtime/run-events.js';
import { RunstateError } from '../errors.js';
import { checkOptionNames } from '../option-names.js';
import { checkMethods, checkOption } from '../runtime/run-limits.js';
import type { RunListener, RunNotice } from '../runtime/storage.js';
import { isToolName } from '../tools/tool.js';

/** Options of {@link createPrometheusMetrics}. */
export interface PrometheusMetricsOptions {
  /**
   * Where the metrics are registered. Default: a new registry of their own, never prom-client's
   * global one, so two apps (or tests) in one process do not collide.
   */
  registry?: Registry | undefined;
  /** Prepended to every metric name. Default `'runstate_'`. */
  prefix?: string | undefined;
  /** Upper bounds of the run duration histogram, in seconds: finite, > 0, strictly increasing. */
  durationBuckets?: number[] | undefined;
  /** Upper bounds of the time-to-first-token histogram, in seconds: finite, > 0, strictly increasing. */
  timeToFirstTokenBuckets?: number[] | undefined;
}

/** Prometheus metrics of runs, fed by the orchestrator's notices. */
export interface PrometheusMetrics {
  /** The registry to scrape: `await registry.metrics()` is the exposition text. */
  readonly registry: Registry;
  /** Subscribe it to an orchestrator: `orchestrator.subscribe(metrics.listener)`. */
  readonly listener: RunListener;
  /**
   * Adds a source of the open event streams gauge (an HTTP app counting its streams), read at each
   * scrape. Returns a function that removes it.
   */
  countEventStreams(count: () => number): () => void;
}

/** Default duration buckets: from a tenth of a second to ten minutes (the default run timeout). */
export const DEFAULT_DURATION_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** Default time-to-first-token buckets, in seconds. */
export const DEFAULT_TIME_TO_FIRST_TOKEN_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30];

const FINAL = new Set(['completed', 'cancelled', 'failed']);

const PROMETHEUS_METRICS_OPTIONS = ['registry', 'prefix', 'durationBuckets', 'timeToFirstTokenBuckets'];

/** What may begin a Prometheus metric name (empty too). */
const prefixSchema = z
  .string({ error: 'must be a string' })
  .regex(/^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/, "must be letters, digits, '_' or ':', not starting with a digit")
  .nullish();

/**
 * A histogram's upper bounds, in seconds: finite, > 0 (no duration is below 0, and one of exactly 0
 * is no measure), strictly increasing, as Prometheus's `le` labels must be. prom-client takes any
 * list and sorts none of it, so another one makes a histogram whose buckets are not cumulative, or
 * a scrape that Prometheus refuses.
 */
const bucketsSchema = z
  .array(z.number({ error: 'must hold finite numbers of seconds' }).positive('must hold numbers > 0'), {
    error: 'must be an array of seconds',
  })
  .refine(
    (buckets) => buckets.every((bound, i) => i === 0 || bound > buckets[i - 1]!),
    'must be strictly increasing',
  )
  .optional();

/** What is kept of an active run: only its labels. Dropped when the run finishes. */
interface ActiveRun {
  agent: string;
  state: string;
}

/**
 * Creates the Prometheus metrics of runs. Labels are bounded sets only (agent ids, machine states,
 * statuses, cancel reasons, the names of the agents' tools): never a run or a session id.
 *
 * @example
 * ```ts
 * const metrics = createPrometheusMetrics();
 * orchestrator.subscribe(metrics.listener);
 * // later: res.type(metrics.registry.contentType).send(await metrics.registry.metrics())
 * ```
 */
export function createPrometheusMetrics(options: PrometheusMetricsOptions = {}): PrometheusMetrics {
  // A misspelt `regsitry` would register the metrics where nobody scrapes them.
  checkOptionNames(options, PROMETHEUS_METRICS_OPTIONS, 'createPrometheusMetrics');
  if (options.registry != null)
    checkMethods(
      options.registry,
      ['registerMetric', 'metrics', 'getSingleMetric'],
      'registry',
      'a prom-client Registry',
    );
  const registry = options.registry ?? new Registry();
  const prefix = checkOption(prefixSchema, options.prefix, 'prefix') ?? 'runstate_';
  const durationBuckets = checkOption(bucketsSchema, options.durationBuckets, 'durationBuckets');
  const timeToFirstTokenBuckets = checkOption(
    bucketsSchema,
    options.timeToFirstTokenBuckets,
    'timeToFirstTokenBuckets',
  );
  const registers = [registry];
  // prom-client's own refusal names one metric, not why: two sets of these in one registry.
  if (registry.getSingleMetric(`${prefix}runs_started_total`)) {
    throw new RunstateError(
      'INVALID_INPUT',
      `createPrometheusMetrics: the registry has runstate's metrics with the prefix '${prefix}' already: ` +
        'create them once and subscribe their listener to every orchestrator, or give another prefix',
    );
  }

  const started = new Counter({
    name: `${prefix}runs_started_total`,
    help: 'Runs created, by agent.',
    labelNames: ['agent'] as const,
    registers,
  });
  const finished = new Counter({
    name: `${prefix}runs_finished_total`,
    help: 'Runs ended, by agent and final status (completed, cancelled, failed).',
    labelNames: ['agent', 'status'] as const,
    registers,
  });
  const active = new Gauge({
    name: `${prefix}runs_active`,
    help: "Runs not yet final, by the run machine's state (pending, streaming.attempt.receiving...).",
    labelNames: ['state'] as const,
    registers,
  });
  const duration = new Histogram({
    name: `${prefix}run_duration_seconds`,
    help: 'Duration of finished runs, from the first model request (or creation) to the end.',
    labelNames: ['agent', 'status'] as const,
    buckets: durationBuckets ?? DEFAULT_DURATION_BUCKETS,
    registers,
  });
  const timeToFirstToken = new Histogram({
    name: `${prefix}time_to_first_token_seconds`,
    help: "From the first model request to the first output (reasoning, content or a tool call's arguments, or the calls themselves), for runs that had output.",
    labelNames: ['agent'] as const,
    buckets: timeToFirstTokenBuckets ?? DEFAULT_TIME_TO_FIRST_TOKEN_BUCKETS,
    registers,
  });
  const tokens = new Counter({
    name: `${prefix}tokens_total`,
    help: 'Tokens of finished runs as the model server reported them, by agent and type (input, output).',
    labelNames: ['agent', 'type'] as const,
    registers,
  });
  const cancels = new Counter({
    name: `${prefix}run_cancels_total`,
    help: 'Cancelled runs, by agent and reason (api, code, client_disconnect, shutdown).',
    labelNames: ['agent', 'reason'] as const,
    registers,
  });
  const retries = new Counter({
    name: `${prefix}model_retries_total`,
    help: 'Model requests retried after a failure before the first chunk, by agent.',
    labelNames: ['agent'] as const,
    registers,
  });
  const toolCalls = new Counter({
    name: `${prefix}tool_calls_total`,
    help: 'Tool calls, by agent, tool and how they ended (completed, failed, rejected, cancelled).',
    labelNames: ['agent', 'tool', 'status'] as const,
    registers,
  });
  const streamSources = new Set<() => number>();
  new Gauge({
    name: `${prefix}event_streams_open`,
    help: 'Server-sent event streams open (run streams and replays).',
    registers,
    collect() {
      let open = 0;
      for (const count of streamSources) open += count();
      this.set(open);
    },
  });

  const runs = new Map<string, ActiveRun>();
  /**
   * The `tool` label values of each agent: the names of its tools (calls that ran), and at most
   * MAX_TOOL_LABELS names of calls that never ran.
   */
  const toolLabels = new Map<string, { tools: Set<string>; guessed: Set<string> }>();
  /**
   * A tool's name as a label. The model names the tool it calls, and a name the agent has no tool
   * for is the model's (so a user's prompt's) to choose: past MAX_TOOL_LABELS names per agent of
   * calls that never ran, further ones share `_other`, so that no prompt makes series without bound.
   * A call that ran, or asked for a confirmation, is of one of the agent's tools, whose names the
   * code bounds: always its own. (A call of one that failed its arguments' check cannot be told
   * from a call of an unknown name.) A name no tool can have (see `isToolName`) is `_other` at once.
   */
  function toolLabel(agent: string, tool: ToolExecution): string {
    const name = tool.tool_name;
    // No tool has it (50 KB of a prompt's text, say): not a label value, however few there are.
    if (!isToolName(name)) return OTHER_TOOLS;
    let labels = toolLabels.get(agent);
    if (!labels) toolLabels.set(agent, (labels = { tools: new Set(), guessed: new Set() }));
    if (labels.tools.has(name) || labels.guessed.has(name)) return name;
    // Ran, or asked a person first: only a tool of the agent's does either.
    if (tool.metrics !== null || tool.requires_confirmation) {
      labels.tools.add(name);
      return name;
    }
    if (labels.guessed.size >= MAX_TOOL_LABELS) return OTHER_TOOLS;
    labels.guessed.add(name);
    return name;
  }

  function onFinished(run: RunOutput): void {
    const entry = runs.get(run.run_id);
    if (entry) {
      active.dec({ state: entry.state });
      runs.delete(run.run_id);
    }
    const agent = run.agent_id;
    finished.inc({ agent, status: run.status });
    duration.observe({ agent, status: run.status }, run.metrics.duration);
    if (run.metrics.time_to_first_token !== null) {
      timeToFirstToken.observe({ agent }, run.metrics.time_to_first_token);
    }
    if (run.metrics.input_tokens) tokens.inc({ agent, type: 'input' }, run.metrics.input_tokens);
    if (run.metrics.output_tokens) tokens.inc({ agent, type: 'output' }, run.metrics.output_tokens);
    if (run.status === 'cancelled') cancels.inc({ agent, reason: run.cancel_reason ?? 'unknown' });
    // A call still open when its run ended (running, queued, awaiting a confirmation) is closed
    // `cancelled` with no ToolCallCompleted of its own: the final output is where it shows, once.
    for (const tool of run.tools) {
      if (tool.status === 'cancelled') {
        toolCalls.inc({ agent, tool: toolLabel(agent, tool), status: 'cancelled' });
      }
    }
  }

  const listener: RunListener = (notice: RunNotice) => {
    switch (notice.type) {
      case 'created': {
        const agent = notice.run.agent_id;
        started.inc({ agent });
        const state = notice.run.status;
        runs.set(notice.run.run_id, { agent, state });
        active.inc({ state });
        return;
      }
      case 'state': {
        const entry = runs.get(notice.runId);
        if (!entry) return;
        // A final state: the run leaves the gauge now, its 'finished' notice counts it.
        const state = FINAL.has(notice.status) ? undefined : stateLabel(notice.value);
        if (state === entry.state) return;
        active.dec({ state: entry.state });
        if (state === undefined) {
          runs.delete(notice.runId);
          return;
        }
        active.inc({ state });
        // Counted when the retried request starts: a run cancelled while it waits retried nothing.
        if (entry.state.endsWith('retrying') && state.startsWith('streaming.attempt'))
          retries.inc({ agent: entry.agent });
        entry.state = state;
        return;
      }
      case 'finished':
        onFinished(notice.run);
        return;
      case 'taken': {
        // Paused elsewhere (or before a restart), continued here: active here, started where it started.
        const { run } = notice;
        if (runs.has(run.run_id)) return;
        runs.set(run.run_id, { agent: run.agent_id, state: run.status });
        active.inc({ state: run.status });
        return;
      }
      case 'left': {
        // Paused here, taken by another instance: its gauge and its end are counted there.
        const entry = runs.get(notice.runId);
        if (!entry) return;
        active.dec({ state: entry.state });
        runs.delete(notice.runId);
        return;
      }
      case 'event': {
        // Content is not counted here: tokens come from the model's usage, once per run.
        if (notice.event.event !== 'ToolCallCompleted') return;
        const agent = runs.get(notice.runId)?.agent ?? notice.event.agent_id;
        const { tool } = notice.event;
        toolCalls.inc({ agent, tool: toolLabel(agent, tool), status: tool.status });
        return;
      }
    }
  };

  return {
    registry,
    listener,
    countEventStreams(count) {
      streamSources.add(count);
      return () => streamSources.delete(count);
    },
  };
}

/** Distinct `tool` label values per agent; the calls of further names are counted as `_other`. */
export const MAX_TOOL_LABELS = 100;
const OTHER_TOOLS = '_other';

/**
 * The active state as one dotted path (`streaming.attempt.receiving`): a bounded set of labels.
 *
 * @example
 * ```ts
 * orchestrator.subscribe((notice) => {
 *   if (notice.type === 'state') console.log(stateLabel(notice.value)); // 'streaming.attempt.receiving'
 * });
 * ```
 */
export function stateLabel(value: StateValue): string {
  if (typeof value === 'string') return value;
  const [key, child] = Object.entries(value)[0] ?? ['unknown', undefined];
  return child === undefined || (typeof child === 'object' && Object.keys(child).length === 0)
    ? key
    : `${key}.${stateLabel(child)}`;
}
