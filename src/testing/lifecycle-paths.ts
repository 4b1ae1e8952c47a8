import {
  getNextTransitions,
  initialTransition,
  transition,
  type ActorLogic,
  type AnyEventObject,
  type StateValue,
} from 'xstate';
import { getAdjacencyMap, serializeSnapshot, type TraversalOptions } from 'xstate/graph';
import { z } from 'zod';
import {
  retryPolicy,
  runMachine,
  runStatusOf,
  withRunClock,
  type RunMachineEvent,
  type RunMachineInput,
  type RunMachineEmitted,
  type RunSnapshot,
  type RunToolEmitted,
} from '../../machines/run.machine.js';
import {
  CANCEL_REASONS,
  type CancelReason,
  type CheckedToolCall,
  type FinalRunStatus,
  type RetryPolicy,
  type RunErrorData,
  type RunMachineOutput,
  type RunStatus,
  type TokenUsage,
  type ToolConfirmation,
} from '../../machines/run-types.js';
import {
  checkOption,
  checkOptionNames,
  positiveDuration,
  runLimitsSchema,
  stateMachine,
} from '../runtime/run-limits.js';

/** The run machine, or one made from it with `runMachine.provide(...)`. */
export type LifecycleMachine = typeof runMachine;

/**
 * What a test does to a run at one step of a lifecycle path. Map each to your system under test:
 * `start` frees a concurrency slot, `chunk`/`end`/`error` drive the fake model, `cancel` calls
 * `cancelRun` (or disconnects, or shuts down), `wait` advances the (fake) clock by `ms`.
 */
export type LifecycleAction =
  /** The run gets its concurrency slot (`START`): the model is called. */
  | { type: 'start' }
  /** The model sends a text delta (`CHUNK`). */
  | { type: 'chunk'; delta: string }
  /** The model ends its stream (`DONE`). */
  | { type: 'end'; finishReason: string; usage: TokenUsage }
  /** The model request fails (`ERROR`): retried when `error.retryable` and nothing has streamed yet. */
  | { type: 'error'; error: RunErrorData }
  /** Somebody cancels the run (`CANCEL`). */
  | { type: 'cancel'; reason: CancelReason }
  /** Time passes until a timer of the run fires: a timeout (`idleTimeout`, `runTimeout`) or the end of a retry backoff (`retryDelay`). */
  | { type: 'wait'; ms: number; timer: string }
  /** The model service itself throws (not the model: the code that calls it). */
  | { type: 'crash'; message: string }
  /** The model ends its turn asking for tool calls (`DONE` with `toolCalls`); a person must confirm those that say so. */
  | { type: 'callTools'; calls: CheckedToolCall[] }
  /**
   * The runtime starts a tool call (`TOOL_STARTED`). Not the test's doing: the runtime starts a queued
   * call at once, so nothing else happens between a `callTools` (or `continue`) and this step.
   */
  | { type: 'toolStarted'; toolCallId: string }
  /** A running tool call returns (`TOOL_DONE`): the model is told `result`. */
  | { type: 'toolDone'; toolCallId: string; result: string }
  /** A running tool call throws `new Error(message)` (`TOOL_DONE` with an error): the model is told `result`. */
  | { type: 'toolThrew'; toolCallId: string; message: string; result: string }
  /**
   * A running tool call is still running after its tool's `timeoutMs` ({@link LifecyclePath.toolTimeoutMs}):
   * time passes `ms` more, the runtime aborts the call's signal and tells the model `result` (`TOOL_DONE`
   * with an error). Like `wait`, advance the (fake) clock by `ms`.
   */
  | { type: 'toolTimeout'; toolCallId: string; ms: number; result: string }
  /** A person answers the paused calls (`CONTINUE`). */
  | { type: 'continue'; tools: ToolConfirmation[] };

/** One step of a {@link LifecyclePath}: an action and what the run machine does with it. */
export interface LifecycleStep {
  action: LifecycleAction;
  /** The machine event the step sends (`xstate.after.*` for a timer, `xstate.error.actor.*` for a crash). */
  event: AnyEventObject;
  /** The machine's state value after the step, e.g. `{ streaming: { attempt: 'receiving' } }`. */
  value: StateValue;
  /** The run's status after the step: the top-level state. */
  status: RunStatus;
  /** The content so far, after the step. */
  content: string;
  /** Deltas the run publishes at this step (one `RunContent` event each). */
  emitted: string[];
  /**
   * What the machine says of tool calls and pauses at this step, in order (the runtime publishes
   * them as `ToolCallStarted`, `ToolCallCompleted` and `ToolCallError`, `RunPaused`, `RunContinued`).
   * The times in their metrics are the path's virtual clock's, from 0.
   */
  toolsEmitted: RunToolEmitted[];
  /** The step sends a new model request. */
  requestsModel: boolean;
  /**
   * The step cuts the model request in flight before the model ended it: its signal is aborted
   * (cancel, timeout). `false` when the model itself ended the request (end, error).
   */
  abortsModel: boolean;
  /**
   * The step aborts a running tool call (cancel, run timeout, the tool's own timeout): its signal is
   * aborted, and whatever it returns later is dropped.
   */
  abortsTools: boolean;
}

/** Limits a path was computed with: give the same ones to the run you test (`limits` of `startRun` or `Agent`). */
export interface LifecycleLimits {
  idleTimeoutMs: number;
  timeoutMs: number;
  retry: RetryPolicy;
  maxToolRounds: number;
  pauseTimeoutMs: number;
}

/** One simple path of a run's lifecycle, from creation (`pending`) to a final state. */
export interface LifecyclePath {
  /** Readable and unique, e.g. `start → chunk "Hello" → cancel (api)`: use it as the test name. */
  name: string;
  steps: LifecycleStep[];
  /** The final status. */
  status: FinalRunStatus;
  /** The machine's output. Its metrics assume that time passes only in `wait` steps, from 0. */
  output: RunMachineOutput;
  /** The limits under which the path's timers fire in this order. */
  limits: LifecycleLimits;
  /** Model requests the run makes along the path. */
  modelRequests: number;
  /** The `timeoutMs` of the path's tools (see {@link LifecyclePathsOptions.toolTimeoutMs}). */
  toolTimeoutMs: number;
}

/** Options of {@link getLifecyclePaths}. Every option has a default. */
export interface LifecyclePathsOptions {
  /** The machine to explore. Default: runstate's `runMachine`. */
  machine?: LifecycleMachine | undefined;
  /**
   * Limits of the run. Default: idle 1 s, run 10 s, 3 attempts. A path that ends on the run timer is
   * given a `timeoutMs` short enough for that timer to fire first (see {@link LifecyclePath.limits}).
   */
  limits?:
    | ({ [K in Exclude<keyof LifecycleLimits, 'retry'>]?: LifecycleLimits[K] | undefined } & {
        retry?: RunMachineInput['retry'];
      })
    | undefined;
  /** The run's random source (retry jitter), as given to the orchestrator. Default `() => 0.5`. */
  random?: (() => number) | undefined;
  /** The deltas the model sends, in order. Also bounds the chunks of a path. Default `['Hello', ' world']`. */
  deltas?: string[] | undefined;
  /**
   * Model errors to try at every point. Default: a retryable 503 with `retryAfterMs: 250` and a
   * non-retryable 400, both `MODEL_REQUEST_FAILED`.
   */
  errors?: RunErrorData[] | undefined;
  /** Cancel reasons to try at every point. Default: all four. */
  cancelReasons?: CancelReason[] | undefined;
  /** How the model ends its stream. Default `stop` with 3 + 2 tokens. */
  end?: { finishReason: string; usage: TokenUsage } | undefined;
  /** Include crashes of the model service (`onError` of the invoke). Default `false`: runstate's never throws. */
  serviceCrashes?: boolean | undefined;
  /**
   * Include tool calls: a model that asks for {@link LIFECYCLE_TOOL_CALL} (or for
   * {@link LIFECYCLE_CONFIRM_CALL}, which pauses the run for a person) on the first attempt of a turn,
   * before any chunk. Default `true`.
   */
  tools?: boolean | undefined;
  /**
   * How a running tool call ends, tried at every point: it returns, throws, or runs past its tool's
   * `timeoutMs`. Default: all three.
   */
  toolOutcomes?: ReadonlyArray<'result' | 'throw' | 'timeout'> | undefined;
  /** The `timeoutMs` of the tools (time the `toolTimeout` steps let pass). Default 400. */
  toolTimeoutMs?: number | undefined;
  /**
   * What the model does in its turn after a tool round. `explore` (default): everything it does in a
   * first turn. `final`: only what ends the run in one step (an end, an error that is not retried, a
   * cancel, a timeout), and tools once more, whose later rounds go in one line (each call returns)
   * to `TOOL_ROUNDS_EXCEEDED` past `maxToolRounds`; so that tools add a few dozen paths, not
   * hundreds, to a slow layer. The turn after a round is a turn like the first: `explore` covers it
   * on a fast one.
   */
  turnAfterTools?: 'explore' | 'final' | undefined;
}

/**
 * The tool call of lifecycle paths: a valid call of a tool named `lookup` (in a later round of a
 * run, with the round's number after its id: `call_lookup_2`...).
 */
export const LIFECYCLE_TOOL_CALL: CheckedToolCall = {
  id: 'call_lookup',
  name: 'lookup',
  arguments: '{}',
  args: {},
  invalid: null,
  requiresConfirmation: false,
};

/** The call of lifecycle paths that needs a person's confirmation: a tool named `publish`. */
export const LIFECYCLE_CONFIRM_CALL: CheckedToolCall = {
  id: 'call_publish',
  name: 'publish',
  arguments: '{}',
  args: {},
  invalid: null,
  requiresConfirmation: true,
};

/** What the tools of lifecycle paths return. */
export const LIFECYCLE_TOOL_RESULT = 'tool result';

/** The message of what a tool of lifecycle paths throws (`toolThrew`). */
const TOOL_ERROR_MESSAGE = 'the lookup service is down';

/** What the runtime tells the model of a call past its tool's `timeoutMs`. */
const timeoutResult = (name: string, ms: number) => `Error: ${name} timed out after ${ms} ms`;

const TOOL_TIMER_PREFIX = 'tool.';

const DEFAULT_LIMITS: LifecycleLimits = {
  idleTimeoutMs: 1_000,
  timeoutMs: 10_000,
  retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1_000, maxRetryAfterMs: 5_000 },
  maxToolRounds: 1,
  pauseTimeoutMs: 3_000,
};

const DEFAULT_TOOL_TIMEOUT_MS = 400;

const DEFAULT_ERRORS: RunErrorData[] = [
  { code: 'MODEL_REQUEST_FAILED', message: 'upstream 503', status: 503, retryable: true, retryAfterMs: 250 },
  { code: 'MODEL_REQUEST_FAILED', message: 'upstream 400', status: 400, retryable: false },
];

const AFTER_PREFIX = 'xstate.after.';
const ERROR_PREFIX = 'xstate.error.actor.';
/** Raised by the machine itself (from its timers), never sent from outside. */
const INTERNAL_EVENTS = new Set(['TIMEOUT', '']); // '': an eventless (`always`) transition
/** Which limit feeds which delay of the run machine: used to make a path's last timer fire first. */
const LIMIT_OF_DELAY: Partial<Record<string, 'idleTimeoutMs' | 'timeoutMs' | 'pauseTimeoutMs'>> = {
  idleTimeout: 'idleTimeoutMs',
  runTimeout: 'timeoutMs',
  pauseTimeout: 'pauseTimeoutMs',
};

/**
 * Every simple path of a run's lifecycle, `pending → streaming (⇄ paused) → completed | cancelled | failed`,
 * found with `xstate/graph` from the run machine itself, so the paths follow the machine when it
 * changes. Each path lists the actions to play (start, chunks, end, model errors, cancels in every
 * non-final state, timers) and what the run must do at every step, so a model-based test replays
 * them against any layer: the machine, the orchestrator, an `Agent`, the HTTP API.
 *
 * A path is simple: it never visits the same machine state (value and context) twice, so each
 * attempt streams at most `deltas.length` chunks and a run retries at most `maxAttempts - 1` times.
 *
 * @example
 * ```ts
 * import { Agent } from 'runstate';
 * import { createFakeModel, getLifecyclePaths } from 'runstate/testing';
 *
 * // An agent without tools whose runs start at once: paths with tool calls, and those that cancel a
 * // run still waiting for a slot, are not its (docs/testing.md has the whole recipe). Its cancels
 * // are `agent.cancelRun` (reason `code`) and a reader that leaves (`client_disconnect`).
 * const paths = getLifecyclePaths({ cancelReasons: ['code', 'client_disconnect'], tools: false }).filter(
 *   (p) => p.steps[0]!.action.type === 'start',
 * );
 * for (const path of paths) {
 *   it(path.name, async () => {
 *     const model = createFakeModel();
 *     const agent = new Agent({ name: 'Writer', model, limits: path.limits });
 *     // play path.steps: `chunk` → call.emit(delta), `cancel` → agent.cancelRun(runId), ...
 *     // and check path.status, path.output.content and each step's `abortsModel`.
 *   });
 * }
 * ```
 */
export function getLifecyclePaths(options: LifecyclePathsOptions = {}): LifecyclePath[] {
  checkLifecycleOptions(options, 'getLifecyclePaths');
  const machine = exploredMachine(options.machine);
  const { limits, random, events, toolTimeoutMs } = lifecycleSetup(options);
  // A clock that stands still: a path's states do not differ by when it was explored.
  const paths = simplePathsToFinalStates(withRunClock(machine, { now: () => 0, random }), {
    input: { runId: 'run', ...limits },
    events,
  }).flatMap((events) => replayWithFeasibleLimits(machine, events, limits, random, toolTimeoutMs) ?? []);
  return uniqueNames(paths);
}

/**
 * The events {@link getLifecyclePaths} tries in a state of the run machine (every variant of every
 * event the state accepts), for a traversal of your own (`xstate/graph`'s `getSimplePaths`).
 *
 * @example
 * ```ts
 * const paths = getShortestPaths(runMachine, {
 *   events: getLifecycleEvents({ tools: false }),
 *   input: { runId: 'r1' },
 * });
 * ```
 */
export function getLifecycleEvents(
  options: LifecyclePathsOptions = {},
): (snapshot: RunSnapshot) => RunMachineEvent[] {
  checkLifecycleOptions(options, 'getLifecycleEvents');
  return lifecycleSetup(options).events;
}

/** The options of {@link getLifecyclePaths} by name: another is refused (see `checkOptionNames`). */
const LIFECYCLE_OPTIONS = [
  'machine',
  'limits',
  'random',
  'deltas',
  'errors',
  'cancelReasons',
  'end',
  'serviceCrashes',
  'tools',
  'toolOutcomes',
  'toolTimeoutMs',
  'turnAfterTools',
] as const satisfies readonly (keyof LifecyclePathsOptions)[];

const lifecycleOptionsSchema = z.object({
  machine: stateMachine<LifecycleMachine>(
    'must be the run machine, or one made from it with runMachine.provide(...)',
  ).optional(),
  limits: runLimitsSchema
    .pick({ idleTimeoutMs: true, timeoutMs: true, retry: true, maxToolRounds: true, pauseTimeoutMs: true })
    .optional(),
  random: z.custom<() => number>((random) => typeof random === 'function', 'must be a function').optional(),
  deltas: z.array(z.string()).optional(),
  errors: z
    .array(z.looseObject({ code: z.string(), message: z.string(), retryable: z.boolean() }))
    .optional(),
  cancelReasons: z.array(z.enum(CANCEL_REASONS)).optional(),
  end: z.object({ finishReason: z.string(), usage: z.looseObject({}) }).optional(),
  serviceCrashes: z.boolean().optional(),
  tools: z.boolean().optional(),
  toolOutcomes: z.array(z.enum(['result', 'throw', 'timeout'])).optional(),
  toolTimeoutMs: positiveDuration.optional(),
  turnAfterTools: z.enum(['explore', 'final']).optional(),
});

/**
 * Refuses options the paths would not follow: a misspelt name (`tool: false`) or a value out of
 * range would otherwise give paths of other runs than the test's, whose failures point far from
 * their cause (limits that `new Agent` then refuses, a cancel reason no layer sends).
 */
function checkLifecycleOptions(options: LifecyclePathsOptions, what: string): void {
  checkOptionNames(options, LIFECYCLE_OPTIONS, what);
  checkOption(lifecycleOptionsSchema, options, 'options');
}

/**
 * The machine whose paths are found: `machine`, except that a delay a limit feeds (see
 * {@link LIMIT_OF_DELAY}) given as a number is runstate's own again. That number is the limit
 * ({@link lifecycleSetup}), and an orchestrator runs runstate's machine under it: its idle timer
 * re-armed for what is left since the last chunk, its run timer for what is left of the limit. Kept
 * as a number, the paths would wait the whole number again at each re-arm, and shortening the run's
 * limit for a timeout to fire first would change nothing: paths a run cannot follow, or a throw.
 */
function exploredMachine(machine: LifecycleMachine | undefined): LifecycleMachine {
  if (!machine) return runMachine;
  const given = machine.implementations.delays as Record<string, unknown>;
  const own = runMachine.implementations.delays as Record<string, unknown>;
  const limited = Object.keys(LIMIT_OF_DELAY).filter((delay) => typeof given[delay] === 'number');
  if (limited.length === 0) return machine;
  const delays = Object.fromEntries(limited.map((delay) => [delay, own[delay]]));
  return machine.provide({ delays });
}

function lifecycleSetup(options: LifecyclePathsOptions) {
  // A delay the machine was given as a number (`provide({ delays: { idleTimeout: 500 } })`) is the
  // limit its timer keeps: the run played against the path must have it too.
  const delays = (options.machine?.implementations.delays ?? {}) as Record<string, unknown>;
  const provided = (delay: string): number | undefined =>
    typeof delays[delay] === 'number' ? delays[delay] : undefined;
  const limits: LifecycleLimits = {
    idleTimeoutMs: provided('idleTimeout') ?? options.limits?.idleTimeoutMs ?? DEFAULT_LIMITS.idleTimeoutMs,
    timeoutMs: provided('runTimeout') ?? options.limits?.timeoutMs ?? DEFAULT_LIMITS.timeoutMs,
    retry: retryPolicy(options.limits?.retry, DEFAULT_LIMITS.retry),
    maxToolRounds: options.limits?.maxToolRounds ?? DEFAULT_LIMITS.maxToolRounds,
    pauseTimeoutMs:
      provided('pauseTimeout') ?? options.limits?.pauseTimeoutMs ?? DEFAULT_LIMITS.pauseTimeoutMs,
  };
  const random = options.random ?? (() => 0.5);
  const deltas = options.deltas ?? ['Hello', ' world'];
  const errors = options.errors ?? DEFAULT_ERRORS;
  const reasons = options.cancelReasons ?? CANCEL_REASONS;
  const end = options.end ?? {
    finishReason: 'stop',
    usage: { input_tokens: 3, output_tokens: 2, total_tokens: 5 },
  };
  const crashes = options.serviceCrashes ?? false;
  const withTools = options.tools ?? true;
  const outcomes = options.toolOutcomes ?? ['result', 'throw', 'timeout'];
  const toolTimeoutMs = options.toolTimeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  // Only to see which events end the run: a clock that stands still will do.
  const machine = withRunClock(exploredMachine(options.machine), { now: () => 0, random });
  const finalTurnAfterTools = options.turnAfterTools === 'final';
  const toolResult = (name: string, outcome: 'result' | 'throw' | 'timeout') =>
    outcome === 'result'
      ? LIFECYCLE_TOOL_RESULT
      : outcome === 'throw'
        ? `Error: ${TOOL_ERROR_MESSAGE}`
        : timeoutResult(name, toolTimeoutMs);

  // The variants of each event the machine accepts. An event type missing here makes the
  // exploration throw: a new event in the machine must be given its variants, not silently skipped.
  const variants = (snapshot: RunSnapshot, type: string): AnyEventObject[] => {
    const { context } = snapshot;
    const queued = context.tools.find((tool) => tool.status === 'queued');
    // A queued call starts at once: nothing else can happen first (see the `toolStarted` action).
    if (queued) return type === 'TOOL_STARTED' ? [{ type, toolCallId: queued.tool_call_id }] : [];
    switch (type) {
      case 'START':
        return [{ type }];
      case 'CANCEL':
        return reasons.map((reason) => ({ type, reason }));
      case 'CHUNK': {
        const delta = deltas[snapshot.context.chunkCount];
        return delta === undefined ? [] : [{ type, delta }];
      }
      case 'DONE': {
        // Tools on a turn's first attempt before any chunk: enough to reach every state, few paths.
        const fresh =
          context.chunkCount === context.turn.chunks && context.attempt - context.turn.attempt === 1;
        if (!withTools || !fresh) return [{ type, ...end }];
        // A later round's call has an id of its own: the runtime renames an id the conversation
        // used already (a server that numbers its calls per response), which a path could not follow.
        const calls =
          context.toolRounds === 0
            ? [LIFECYCLE_TOOL_CALL, LIFECYCLE_CONFIRM_CALL]
            : [{ ...LIFECYCLE_TOOL_CALL, id: `${LIFECYCLE_TOOL_CALL.id}_${context.toolRounds + 1}` }];
        const toolTurn = { finishReason: 'tool_calls', usage: end.usage };
        return [{ type, ...end }, ...calls.map((call) => ({ type, ...toolTurn, toolCalls: [call] }))];
      }
      case 'ERROR':
        return errors.map((error) => ({ type, error }));
      case 'TOOL_STARTED':
        return [];
      case 'TOOL_DONE':
        return context.tools
          .filter((tool) => tool.status === 'running')
          .flatMap((tool) =>
            outcomes.map((outcome) => ({
              type,
              toolCallId: tool.tool_call_id,
              result: toolResult(tool.tool_name, outcome),
              error: outcome !== 'result',
            })),
          );
      case 'CONTINUE': {
        const awaiting = context.tools.filter((tool) => tool.status === 'awaiting_confirmation');
        const answer = (confirmed: boolean): ToolConfirmation[] =>
          awaiting.map((tool) => ({ tool_call_id: tool.tool_call_id, confirmed }));
        return [
          { type, tools: answer(true) },
          { type, tools: answer(false) },
        ];
      }
    }
    if (type.startsWith(AFTER_PREFIX)) return [{ type }];
    if (type.startsWith(ERROR_PREFIX))
      return crashes
        ? [{ type, error: new Error(`${type.endsWith('tools') ? 'tool runner' : 'model service'} crashed`) }]
        : [];
    if (INTERNAL_EVENTS.has(type)) return [];
    throw new Error(`getLifecyclePaths: the machine accepts ${type}, which has no variants here`);
  };

  const events = (snapshot: RunSnapshot): RunMachineEvent[] => {
    const types = new Set(getNextTransitions(snapshot).map((t) => t.eventType as string));
    const all = [...types].flatMap((type) => variants(snapshot, type)) as RunMachineEvent[];
    const { context } = snapshot;
    if (!finalTurnAfterTools || context.toolRounds === 0) return all;
    const inRound = context.round.length > 0;
    const asksForTools = (event: RunMachineEvent) => event.type === 'DONE' && !!event.toolCalls?.length;
    // The first round: every way it can go.
    if (context.toolRounds === 1 && inRound) return all;
    // After it (its calls are over and sent to the model): what ends the run at once, and tools once
    // more, the way to TOOL_ROUNDS_EXCEEDED past `maxToolRounds`.
    if (context.toolRounds === 1) {
      return all.filter(
        (event) => asksForTools(event) || transition(machine, snapshot, event)[0].status === 'done',
      );
    }
    // Later rounds only lead there, in one line: each call returns, the model asks for tools again.
    return inRound
      ? all.filter((event) => event.type === 'TOOL_STARTED' || (event.type === 'TOOL_DONE' && !event.error))
      : all.filter(asksForTools);
  };
  return { limits, random, events, toolTimeoutMs };
}

/**
 * The event sequences of every simple path from the initial state to a final one, over the state
 * graph `xstate/graph` builds from the machine. This is `getSimplePaths` with `toState` set to the
 * final states, done in one walk from the initial state instead of one per reachable state.
 */
function simplePathsToFinalStates(
  machine: LifecycleMachine,
  options: TraversalOptions<RunSnapshot, RunMachineEvent, RunMachineInput>,
): AnyEventObject[][] {
  // getAdjacencyMap's ActorLogic type has no slot for emitted events; the machine is that logic.
  const logic = machine as unknown as ActorLogic<RunSnapshot, RunMachineEvent, RunMachineInput>;
  const adjacency = getAdjacencyMap(logic, options);
  const keys = Object.keys(adjacency) as (keyof typeof adjacency)[];
  const onPath = new Set<string>();
  const events: AnyEventObject[] = [];
  const found: AnyEventObject[][] = [];
  const visit = (key: keyof typeof adjacency) => {
    const vertex = adjacency[key]!;
    if (vertex.state.status === 'done') {
      found.push([...events]);
      return;
    }
    onPath.add(key);
    for (const { event, state } of Object.values(vertex.transitions)) {
      const next = serializeSnapshot(state);
      if (onPath.has(next)) continue;
      events.push(event);
      visit(next);
      events.pop();
    }
    onPath.delete(key);
  };
  // The traversal starts from the initial state, so it is the first key of the map.
  visit(keys[0]!);
  return found;
}

interface Timer {
  type: string;
  delay: string;
  scheduledAt: number;
  fireAt: number;
}

interface Replay {
  path: LifecyclePath;
  /** Set when a timer fired in the model while another would have fired first in real time. */
  conflict?: { step: number; timer: Timer; now: number; next: number; first: Timer | undefined };
}

function replayWithFeasibleLimits(
  machine: LifecycleMachine,
  events: AnyEventObject[],
  limits: LifecycleLimits,
  random: () => number,
  toolTimeoutMs: number,
): LifecyclePath | undefined {
  const first = replay(machine, events, limits, random, toolTimeoutMs);
  if (!first.conflict) return first.path;
  // The idle timer, re-armed for what was left (nothing: the chunks came when it was armed), is due
  // at once: no other timer can fire first, whatever the limits. No clock plays this path.
  const due = first.conflict.first;
  if (due?.delay === 'idleTimeout' && due.fireAt - due.scheduledAt <= 1) return undefined;
  // Only the last step can be a timeout (a timeout ends the run): shorten its limit so that its
  // timer fires half-way between the previous step and the timer that would have fired first.
  const { step, timer, now, next } = first.conflict;
  const limit = LIMIT_OF_DELAY[timer.delay];
  if (step !== events.length - 1 || limit === undefined || next - now < 2) {
    // Name the timer in the way, and the limit that would let this one fire first.
    const inTheWay = due ? `${due.delay} (${LIMIT_OF_DELAY[due.delay] ?? 'its limit'})` : 'another timer';
    throw new Error(
      `getLifecyclePaths: timer ${timer.delay} cannot fire first at step ${step + 1} with these limits ` +
        `(${describeEvents(events)}): ${inTheWay} would fire before it; make that limit longer than ` +
        `${limit ?? timer.delay} and the retries`,
    );
  }
  const fireAt = now + Math.floor((next - now) / 2);
  const adjusted = { ...limits, [limit]: fireAt - timer.scheduledAt };
  const second = replay(machine, events, adjusted, random, toolTimeoutMs);
  if (second.conflict) throw new Error(`getLifecyclePaths: no limits play ${describeEvents(events)}`);
  return second.path;
}

/** Replays events with the pure `transition`, keeping a virtual clock and the timers the machine schedules. */
function replay(
  machine: LifecycleMachine,
  events: AnyEventObject[],
  limits: LifecycleLimits,
  random: () => number,
  toolTimeoutMs: number,
): Replay {
  let now = 0;
  const timers = new Map<string, Timer>();
  const clocked = withRunClock(machine, { now: () => now, random });
  let [snapshot, actions] = initialTransition(clocked, { runId: 'run', ...limits });
  applyActions(actions, timers, now);
  const steps: LifecycleStep[] = [];
  let modelRequests = 0;
  let conflict: Replay['conflict'];

  // Time passes until `timer` fires (a machine timer, or a tool's timeout): the milliseconds it takes.
  const fire = (index: number, timer: Timer): number => {
    const others = [...timers.values()].filter((t) => t !== timer);
    const next = Math.min(...others.map((t) => t.fireAt));
    if (next <= timer.fireAt && !conflict) {
      conflict = { step: index, timer, now, next, first: others.find((t) => t.fireAt === next) };
    }
    const ms = timer.fireAt - now;
    now = timer.fireAt;
    timers.delete(timer.type);
    return ms;
  };

  for (const [index, event] of events.entries()) {
    let action: LifecycleAction;
    if (event.type.startsWith(AFTER_PREFIX)) {
      const timer = timers.get(event.type);
      if (!timer) throw new Error(`getLifecyclePaths: timer ${event.type} is not running`);
      action = { type: 'wait', ms: fire(index, timer), timer: timer.delay };
    } else if (event.type === 'TOOL_DONE') {
      const { toolCallId, result } = event as Extract<RunMachineEvent, { type: 'TOOL_DONE' }>;
      const name = snapshot.context.tools.find((tool) => tool.tool_call_id === toolCallId)?.tool_name ?? '';
      const timer = timers.get(TOOL_TIMER_PREFIX + toolCallId)!;
      if (result === timeoutResult(name, toolTimeoutMs)) {
        action = { type: 'toolTimeout', toolCallId, ms: fire(index, timer), result };
      } else {
        timers.delete(timer.type);
        action =
          result === LIFECYCLE_TOOL_RESULT
            ? { type: 'toolDone', toolCallId, result }
            : { type: 'toolThrew', toolCallId, message: TOOL_ERROR_MESSAGE, result };
      }
    } else {
      action = toAction(event);
    }
    const toolsRan = snapshot.context.tools.some((tool) => tool.status === 'running');
    [snapshot, actions] = transition(clocked, snapshot, event as RunMachineEvent);
    const effects = applyActions(actions, timers, now);
    // A started call's own timer (the runtime's, not the machine's); a stopped runner clears them all.
    if (event.type === 'TOOL_STARTED') {
      const type =
        TOOL_TIMER_PREFIX + (event as Extract<RunMachineEvent, { type: 'TOOL_STARTED' }>).toolCallId;
      timers.set(type, { type, delay: 'toolTimeout', scheduledAt: now, fireAt: now + toolTimeoutMs });
    }
    if (effects.stopsTools)
      for (const type of timers.keys()) if (type.startsWith(TOOL_TIMER_PREFIX)) timers.delete(type);
    if (effects.requestsModel) modelRequests++;
    const modelEnded =
      action.type === 'end' ||
      action.type === 'callTools' ||
      action.type === 'error' ||
      action.type === 'crash';
    steps.push({
      action,
      event,
      value: snapshot.value,
      status: runStatusOf(snapshot),
      content: snapshot.context.content,
      emitted: effects.emitted,
      toolsEmitted: effects.toolsEmitted,
      requestsModel: effects.requestsModel,
      abortsModel: effects.stopsModel && !modelEnded,
      abortsTools:
        action.type === 'toolTimeout' ||
        (effects.stopsTools && toolsRan && action.type !== 'toolDone' && action.type !== 'toolThrew'),
    });
  }
  if (snapshot.status !== 'done')
    throw new Error(`getLifecyclePaths: ${describeEvents(events)} does not end the run`);
  const output = snapshot.output;
  return {
    path: {
      name: steps.map((step) => describeAction(step.action)).join(' → '),
      steps,
      status: output.status,
      output,
      limits,
      modelRequests,
      toolTimeoutMs,
    },
    conflict,
  };
}

interface Effects {
  emitted: string[];
  toolsEmitted: RunToolEmitted[];
  requestsModel: boolean;
  stopsModel: boolean;
  stopsTools: boolean;
}

/** Reads the effects a transition asks for: timers set and cancelled, content emitted, the model started or stopped. */
function applyActions(
  actions: readonly { type: string; params: unknown }[],
  timers: Map<string, Timer>,
  now: number,
): Effects {
  const effects: Effects = {
    emitted: [],
    toolsEmitted: [],
    requestsModel: false,
    stopsModel: false,
    stopsTools: false,
  };
  for (const { type, params } of actions) {
    const p = (params ?? {}) as Record<string, unknown>;
    if (type === 'xstate.raise' && typeof p.delay === 'number') {
      const id = p.id as string;
      const delay = id.slice(AFTER_PREFIX.length).split('.')[0]!;
      timers.set(id, { type: id, delay, scheduledAt: now, fireAt: now + p.delay });
    } else if (type === 'xstate.cancel') {
      timers.delete(p.sendId as string);
    } else if (type === 'xstate.emit') {
      const event = p.event as RunMachineEmitted;
      if (event.type === 'content') effects.emitted.push(event.delta);
      else effects.toolsEmitted.push(event);
    } else if (type === 'xstate.spawnChild' && p.src === 'model') {
      effects.requestsModel = true;
    } else if (type === 'xstate.stopChild' && p.id === 'model') {
      effects.stopsModel = true;
    } else if (type === 'xstate.stopChild' && p.id === 'tools') {
      effects.stopsTools = true;
    }
  }
  return effects;
}

function toAction(event: AnyEventObject): LifecycleAction {
  const e = event as RunMachineEvent | { type: string; error?: unknown };
  switch (e.type) {
    case 'START':
      return { type: 'start' };
    case 'CHUNK':
      return { type: 'chunk', delta: (e as { delta: string }).delta };
    case 'DONE': {
      const done = e as { finishReason: string; usage: TokenUsage; toolCalls?: CheckedToolCall[] };
      if (done.toolCalls) return { type: 'callTools', calls: done.toolCalls };
      return { type: 'end', finishReason: done.finishReason, usage: done.usage };
    }
    case 'TOOL_STARTED':
      return { type: 'toolStarted', toolCallId: (e as { toolCallId: string }).toolCallId };
    case 'CONTINUE':
      return { type: 'continue', tools: (e as { tools: ToolConfirmation[] }).tools };
    case 'ERROR':
      return { type: 'error', error: (e as { error: RunErrorData }).error };
    case 'CANCEL':
      return { type: 'cancel', reason: (e as { reason: CancelReason }).reason };
  }
  if (e.type.startsWith(ERROR_PREFIX)) {
    const error = (e as { error?: unknown }).error;
    return { type: 'crash', message: error instanceof Error ? error.message : String(error) };
  }
  throw new Error(`getLifecyclePaths: no action for ${e.type}`);
}

function describeAction(action: LifecycleAction): string {
  switch (action.type) {
    case 'start':
      return 'start';
    case 'chunk':
      return `chunk ${JSON.stringify(action.delta)}`;
    case 'end':
      return `end (${action.finishReason})`;
    case 'error':
      return `error ${action.error.status ?? action.error.code}${action.error.retryable ? ' (retryable)' : ''}`;
    case 'cancel':
      return `cancel (${action.reason})`;
    case 'wait':
      return `${action.timer} after ${action.ms} ms`;
    case 'crash':
      return action.message.replace(/ed$/, '');
    case 'callTools':
      return `call ${action.calls.map((call) => call.name).join(', ')}`;
    case 'toolStarted':
      return 'tool started';
    case 'toolDone':
      return 'tool done';
    case 'toolThrew':
      return 'tool throws';
    case 'toolTimeout':
      return `tool timeout after ${action.ms} ms`;
    case 'continue':
      return action.tools.every((tool) => tool.confirmed) ? 'confirm' : 'reject';
  }
}

function describeEvents(events: AnyEventObject[]): string {
  return events.map((event) => event.type).join(' → ');
}

function uniqueNames(paths: LifecyclePath[]): LifecyclePath[] {
  const seen = new Map<string, number>();
  for (const path of paths) {
    const count = (seen.get(path.name) ?? 0) + 1;
    seen.set(path.name, count);
    if (count > 1) path.name = `${path.name} #${count}`;
  }
  return paths;
}
