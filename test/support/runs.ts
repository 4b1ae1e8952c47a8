/**
 * Driving runs in tests: the machine's model errors, settling a turn, pulling the next event,
 * deterministic ids, fake timers, a tracker of live actors, and lifecycle paths played on a fake model.
 */
import type { ActorRefLike, AnyStateNode, InspectionEvent } from 'xstate';
import { RunstateError } from '../../src/errors.js';
import type { RunEvent, RunRecord } from '../../src/runtime/index.js';
import type { FakeModelCall, LifecycleAction, LifecyclePath } from '../../src/testing/index.js';
import { nextTurn } from '../../src/testing/index.js';
import { toolWireEvents } from './lifecycle-tools.js';
import type { CheckedToolCall, RunErrorData, RunMetrics } from '../../machines/run-types.js';

/** The machine's model errors, one per branch of its retry guard and of the runtime's error mapping. */
export const MACHINE_ERRORS: RunErrorData[] = [
  // Retried after the delay the server asked for.
  { code: 'MODEL_REQUEST_FAILED', message: 'upstream 503', status: 503, retryable: true, retryAfterMs: 250 },
  // Retried after an exponential backoff with jitter.
  { code: 'MODEL_REQUEST_FAILED', message: 'upstream 502', status: 502, retryable: true },
  // Retryable, but the server asks for a wait longer than maxRetryAfterMs: failed at once.
  {
    code: 'MODEL_REQUEST_FAILED',
    message: 'upstream 429',
    status: 429,
    retryable: true,
    retryAfterMs: 60_000,
  },
  { code: 'MODEL_REQUEST_FAILED', message: 'upstream 400', status: 400, retryable: false },
  {
    code: 'MODEL_STREAM_INCOMPLETE',
    message: 'the model stream ended without a finish reason',
    retryable: false,
  },
];
/**
 * The random source of retry jitter, shared by the paths and the runs that replay them. 0.5 keeps
 * the backoffs whole milliseconds (75, 150): timers truncate fractions, the machine does not.
 */
export const RANDOM = () => 0.5;

/** A checked call of a tool that pauses its run for a person: what the run machine's tests ask for. */
export const PUBLISH_CALL: CheckedToolCall = {
  id: 'c1',
  name: 'publish',
  arguments: '{"q":"post"}',
  args: { q: 'post' },
  invalid: null,
  requiresConfirmation: true,
};

/**
 * Lets every effect of an action land: the fake model, the model service and the event log hand
 * work on through promises and ticks only, all done by the next turn of the event loop.
 */
export const settle = nextTurn;

/** Only the timers and the clock are faked. */
export const FAKE_TIMERS = {
  toFake: ['setTimeout', 'clearTimeout', 'Date'] as const,
  now: 1_700_000_000_000,
};

/** The next event of a run, which must already be in its log: fails at once instead of hanging. */
export async function pull(events: AsyncIterator<RunEvent>): Promise<RunEvent> {
  const missing = Symbol('missing');
  const next = await Promise.race([events.next(), settle().then(() => missing)]);
  if (typeof next === 'symbol') throw new Error('expected an event, but the run published none');
  if (next.done) throw new Error('expected an event, but the event stream ended');
  return next.value;
}

export function counterIds(prefix = 'id'): () => string {
  let n = 0;
  return () => `${prefix}-${++n}`;
}

/** Plays a model action of a path on a fake model call. Returns false for actions that are not the model's. */
export function playOnFakeModel(call: FakeModelCall, action: LifecycleAction): boolean {
  switch (action.type) {
    case 'chunk':
      call.emit(action.delta);
      return true;
    case 'end':
      call.end({ finishReason: action.finishReason, usage: action.usage });
      return true;
    case 'error':
      failCall(call, action.error);
      return true;
    default:
      return false;
  }
}

/** Makes a fake call fail so that the runtime maps it back to exactly `error`. */
export function failCall(call: FakeModelCall, error: RunErrorData): void {
  // A stream that stops without an end is how a model produces MODEL_STREAM_INCOMPLETE.
  if (error.code === 'MODEL_STREAM_INCOMPLETE') return call.close();
  call.fail(
    new RunstateError(error.code, error.message, {
      status: error.status,
      retryable: error.retryable,
      retryAfterMs: error.retryAfterMs,
    }),
  );
}

export const TERMINAL_EVENT = {
  completed: 'RunCompleted',
  cancelled: 'RunCancelled',
  failed: 'RunError',
} as const;

/**
 * The wire events a path must publish, after `RunStarted`: one `RunContent` per delta and the tool
 * events of each step, in order, then the terminal one.
 */
export function expectedEventNames(path: LifecyclePath): string[] {
  const names = ['RunStarted'];
  for (const step of path.steps) {
    for (const _ of step.emitted) names.push('RunContent');
    for (const { event } of toolWireEvents(step)) names.push(event);
  }
  names.push(TERMINAL_EVENT[path.status]);
  return names;
}

/**
 * Records every actor created, to check that none is left running. An actor counts once it started
 * (its first snapshot): one stopped before it started never ran (xstate leaves its snapshot
 * `active`; the tool runner of a round whose calls were all rejected is one).
 */
export function actorTracker() {
  const actors = new Set<ActorRefLike>();
  const started = new Set<ActorRefLike>();
  return {
    inspect: (event: InspectionEvent) => {
      if (event.type === '@xstate.actor') actors.add(event.actorRef);
      if (event.type === '@xstate.snapshot') started.add(event.actorRef);
    },
    get size() {
      return actors.size;
    },
    running(): string[] {
      return [...started]
        .filter((actor) => (actor.getSnapshot() as { status: string }).status === 'active')
        .map((actor) => actor.sessionId);
    },
  };
}

/** Every state node of a machine, the root first. */
export function allStateNodes(node: AnyStateNode): AnyStateNode[] {
  return [node, ...Object.values(node.states).flatMap((child) => allStateNodes(child))];
}

/** A stable key for a transition: its source, its event and its place among the transitions of that event. */
export function transitionKey(transition: { source: AnyStateNode; eventType: string }): string {
  // Eventless (`always`) transitions live apart from the others, under the event type ''.
  const list =
    (transition.eventType === ''
      ? transition.source.always
      : transition.source.transitions.get(transition.eventType)) ?? [];
  const index = list.findIndex((candidate) => candidate === transition);
  return `${transition.source.id} on ${transition.eventType} #${index}`;
}

/** The record of a streaming run (`run-1` of `agent` in `session-1`), every other field neutral. */
export function streamingRecord(fields: Partial<RunRecord> = {}): RunRecord {
  return {
    run_id: 'run-1',
    agent_id: 'agent',
    agent_name: 'Agent',
    session_id: 'session-1',
    user_id: null,
    run_input: 'Hi',
    input: { input_content: fields.run_input ?? 'Hi' },
    model: 'fake',
    model_provider: 'fake',
    created_at: 1_800_000_000,
    status: 'streaming',
    content: '',
    reasoning_content: '',
    finish_reason: null,
    metrics: null,
    error: null,
    cancel_reason: null,
    tools: [],
    finished_at: null,
    ...fields,
  };
}

/** The metrics of a finished run, every field given (a test's stand-in for what a model reported). */
export function finishedMetrics(): RunMetrics {
  return { input_tokens: 1, output_tokens: 2, total_tokens: 3, time_to_first_token: 0.1, duration: 1 };
}
