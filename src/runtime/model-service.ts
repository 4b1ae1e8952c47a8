import { fromCallback } from 'xstate';
import type { CheckedToolCall, RunErrorData } from '../../machines/run-types.js';
import type { ModelServiceInput, RunMachineEvent } from '../../machines/run.machine.js';
import { RunstateError, toRunErrorData } from '../errors.js';
import {
  streamModel,
  type ChatMessage,
  type ChatModel,
  type ModelChunk,
  type ModelStreamReceiver,
  type ToolDefinition,
} from '../model/chat-model.js';
import type { Tool } from '../tools/tool.js';
import { checkToolCalls } from './check-tool-calls.js';
import type { RunAround } from './storage.js';

/** What the model service needs to know about a run. */
export interface ModelCall {
  model: ChatModel;
  /** The instructions, the session's history and the input; waits for the history from the store. */
  messages: PromiseLike<ChatMessage[]>;
  /** The agent's tools, by name; the model is offered them and its calls are checked against them. */
  tools?: ReadonlyMap<string, Tool> | undefined;
  /** Aborted when the run ends, however it ends (xstate does not always stop children: #5153). */
  runSignal: AbortSignal;
  /** The run's idle timeout, told to the model (see `ChatRequest.idleTimeoutMs`). */
  idleTimeoutMs?: number | undefined;
  /**
   * The run's events, when the runtime projects them: each read's text goes there as it comes,
   * and the machine gets it in fewer `CHUNK`s (see {@link ContentSink}). Without it, every read is
   * a `CHUNK` and the machine's `content` emits are the output.
   */
  sink?: ContentSink | undefined;
  /**
   * Handles a lapse of this instance's lease that the clock says has come and its timer has not told
   * yet (see `LeaseKeeper.lapsed`): the runs held then end `RUN_LOST`, their signals aborted, before
   * anything more the model sends is used. Absent without leases.
   */
  checkLease?: (() => void) | undefined;
  /**
   * Starts each request within the subscribers' `around` (a tracer's `chat` span active, so an HTTP
   * client's span of the request is its child). Absent: started as it is.
   */
  around?: RunAround | undefined;
}

/**
 * How long the text a run streams may wait before the machine is sent it, while the model streams.
 * Each `CHUNK` is an xstate macrostep (a new snapshot, a context copy, ~9 KB allocated): at one
 * delta per socket read, as a real model streams, one per delta cost more than the rest of the
 * delta's path; at one every 100 ms, ten in a second's stream still cost the HTTP server ~6 % of
 * its CPU per chunk (docs/performance.md, item 26). What waits is only the `content` of the
 * machine's snapshot, as xstate's inspection shows it: the run's events, its record, its output and
 * runstate's own inspector are exact at every moment, and the machine's state changes at once.
 */
export const CHUNK_INTERVAL_MS = 1_000;

/**
 * Where a run's model service hands its text. `content` holds the text of one read for the machine
 * (`held`, with its time on the machine's clock) and then makes the run's events of it in the tick
 * it came (a `RunContent`, or a reasoning model's events); it never throws (a failure fails the
 * run). The service sends the machine an attempt's first chunk at once (its state, the time to first
 * token) and then what is held at most every {@link CHUNK_INTERVAL_MS}, and all of it before `DONE`
 * or `ERROR`; the owner of the run sends it before anything else reaches the machine (a cancel, a
 * timer of the run), so the machine's output always holds every delta of the events.
 */
export interface ContentSink {
  content(delta: string, reasoning: string): void;
  /** The model streamed a tool call (no text): noted in `held`, so the machine hears of it. */
  activity?(): void;
  readonly held: HeldChunk;
  /**
   * The model's turn is over (its `end` came, all its text handed over): an open reasoning phase
   * ends here, before the turn's tool calls, a pause or the run's end are reported. Never throws.
   */
  endTurn?(): void;
}

/** Text handed to a run's events that its machine has not been sent yet, as one `CHUNK`. */
export class HeldChunk {
  #delta = '';
  #reasoning = '';
  #at = 0;
  /** Output with no text (a tool call streamed) came since the last `take`. */
  #active = false;

  /** The content held. */
  get delta(): string {
    return this.#delta;
  }

  /** The reasoning held. */
  get reasoning(): string {
    return this.#reasoning;
  }

  /** When the last text held came. */
  get at(): number {
    return this.#at;
  }

  add(delta: string, reasoning: string, at: number): void {
    this.#delta += delta;
    this.#reasoning += reasoning;
    this.#at = at;
  }

  /** Output with no text came at `at` (a tool call streamed): the next `take` is a `CHUNK`. */
  touch(at: number): void {
    this.#active = true;
    this.#at = at;
  }

  /** The `CHUNK` of what is held, which is then held no more; `undefined` when nothing is. */
  take(): Extract<RunMachineEvent, { type: 'CHUNK' }> | undefined {
    const delta = this.#delta;
    const reasoning = this.#reasoning;
    if (delta === '' && reasoning === '' && !this.#active) return undefined;
    this.#active = false;
    this.#delta = '';
    this.#reasoning = '';
    return reasoning
      ? { type: 'CHUNK', delta, reasoning, at: this.#at }
      : { type: 'CHUNK', delta, at: this.#at };
  }
}

type SendBack = (event: RunMachineEvent) => void;

/**
 * One model request's lifetime, read on every delta: plain fields rather than `signal.aborted`
 * (a checked getter, several per delta).
 */
interface Attempt {
  /** The run left the state that wanted the answer: the request is aborted, its deltas dropped. */
  stopped: boolean;
}

/**
 * The reason of every abort of a model request: one object, since an abort without a reason builds
 * a `DOMException` with a stack trace each time, and a run aborts on every end.
 */
const STOPPED = new DOMException('the run no longer needs this model request', 'AbortError');

/**
 * Most deltas merged into one hand-over (a `CHUNK`, or one call of the {@link ContentSink}'s
 * `content`): bounds how much text waits for the end of a turn when a stream delivers faster than
 * the process reads it.
 */
export const MAX_DELTAS_PER_CHUNK = 64;

/**
 * The run machine's `model` actor: streams one request and sends `CHUNK`, `DONE` or `ERROR` back.
 * It owns an AbortController and aborts it when the actor is stopped, which is what a `CANCEL`,
 * a timeout or a retry does by leaving the state that invoked it.
 *
 * The model's stream is pushed ({@link streamModel}): a model with `streamTo` (`OpenAIChat`) hands
 * each delta over in the tick its socket read came, with no promise between the socket and the
 * machine. Deltas that arrive together (one socket read can hold hundreds) go to the machine as one
 * `CHUNK`: a transition per delta would cost more than parsing it. The merged chunk is sent on the
 * next tick, which Node runs once the current read is handled, so the deltas of one read are merged
 * and none waits for another read. Merging never reorders: a `CHUNK`'s reasoning came before its
 * content, so reasoning that follows content waiting to be sent goes into the next `CHUNK`.
 *
 * With a {@link ContentSink} (a run of the runtime), each read's text goes to the run's events in
 * that tick, and the machine gets the reads of a paced stream (one delta per read, as a real model
 * sends them) together, at most every {@link CHUNK_INTERVAL_MS}.
 */
export function createModelService(lookup: (runId: string) => ModelCall | undefined) {
  return fromCallback<RunMachineEvent, ModelServiceInput>(({ input, sendBack }) => {
    const call = lookup(input.runId);
    if (!call) {
      sendBack({
        type: 'ERROR',
        error: { code: 'INTERNAL', message: `run ${input.runId} is not registered`, retryable: false },
      });
      return undefined;
    }
    const controller = new AbortController();
    const attempt: Attempt = { stopped: false };
    const stop = () => {
      if (attempt.stopped) return;
      attempt.stopped = true;
      // In the same tick as the cancel (or timeout): the upstream socket closes now.
      controller.abort(STOPPED);
    };
    if (call.runSignal.aborted) stop();
    else call.runSignal.addEventListener('abort', stop, { once: true });
    pump(call, input, controller.signal, attempt, sendBack);
    return () => {
      call.runSignal.removeEventListener('abort', stop);
      stop();
    };
  });
}

function pump(
  call: ModelCall,
  input: ModelServiceInput,
  signal: AbortSignal,
  attempt: Attempt,
  sendBack: SendBack,
): void {
  // What waits for the next tick: reasoning, then content (a CHUNK's order).
  let pending = '';
  let pendingReasoning = '';
  let pendingDeltas = 0;
  /** The model said it all (`end`, so `DONE` was sent) or closed: what still comes is ignored. */
  let over = false;
  // Once aborted, the run has left the state that wanted these deltas: they are dropped.
  const flush = () => {
    if (pendingDeltas === 0 || attempt.stopped) return;
    const delta = pending;
    const reasoning = pendingReasoning;
    pending = '';
    pendingReasoning = '';
    pendingDeltas = 0;
    const { sink } = call;
    if (!sink) {
      sendBack(reasoning ? { type: 'CHUNK', delta, reasoning } : { type: 'CHUNK', delta });
      return;
    }
    // A CHUNK's reasoning came before its content: reasoning after held content goes in the next one.
    if (reasoning && sink.held.delta !== '') sendHeld();
    // Only a tool call streamed: no event, but the machine hears of the output (its idle timer).
    if (delta === '' && reasoning === '') sink.activity?.();
    else sink.content(delta, reasoning);
    // Cancelled by a reader of the events in that call, or the run failed.
    if (attempt.stopped) return;
    const { at } = sink.held;
    if (at - sentAt >= CHUNK_INTERVAL_MS) {
      sentAt = at;
      sendHeld();
    }
  };
  // When the machine was last sent a chunk of this attempt (none yet: its first goes at once).
  let sentAt = -Infinity;
  const sendHeld = () => {
    const chunk = call.sink?.held.take();
    if (chunk) sendBack(chunk);
  };
  // A throw of ours (a check, a sink, the machine) must not look like the model's failure, nor be
  // lost in the model's stream: the run fails at once, as INTERNAL, naming it.
  const fail = (error: unknown): void => {
    over = true;
    if (!attempt.stopped) sendBack({ type: 'ERROR', error: internalError(error) });
  };
  const flushSafely = (): void => {
    try {
      flush();
    } catch (error) {
      fail(error);
    }
  };
  // The conversation sent (set before the request goes out, so before any turn ends).
  let messages: ChatMessage[] = [];
  const done = (chunk: Extract<ModelChunk, { type: 'end' }>, toolCalls?: CheckedToolCall[]): void => {
    if (attempt.stopped) return;
    const { finishReason, usage } = chunk;
    if (!toolCalls) return sendBack({ type: 'DONE', finishReason, usage });
    const { reasoningField, reasoningDetails } = chunk;
    const event: Extract<RunMachineEvent, { type: 'DONE' }> = {
      type: 'DONE',
      finishReason,
      usage,
      toolCalls,
    };
    if (reasoningField) event.reasoningField = reasoningField;
    if (Array.isArray(reasoningDetails) && reasoningDetails.length > 0)
      event.reasoningDetails = reasoningDetails;
    sendBack(event);
  };
  const end = (chunk: Extract<ModelChunk, { type: 'end' }>): void => {
    over = true;
    flush();
    if (attempt.stopped) return;
    sendHeld();
    if (attempt.stopped) return;
    // The turn is over: its reasoning phase ends before its calls are reported.
    call.sink?.endTurn?.();
    if (attempt.stopped) return;
    if (!chunk.toolCalls?.length) return done(chunk);
    // The calls go to the machine once checked (a schema may be async; the check never rejects).
    checkToolCalls(chunk.toolCalls, call.tools ?? NO_TOOLS, toolCallIds(messages))
      .then((calls) => done(chunk, calls))
      .catch(fail);
  };
  const receiver: ModelStreamReceiver = {
    chunk(chunk) {
      if (over || attempt.stopped) return;
      call.checkLease?.();
      if (attempt.stopped) return;
      try {
        if (chunk.type === 'end') return end(chunk);
        const { content, reasoning } = chunk;
        if (reasoning) {
          // Reasoning after content cannot join that CHUNK (its reasoning comes first): send it.
          if (pending !== '') flush();
          if (pendingDeltas === 0) process.nextTick(flushSafely);
          pendingReasoning += reasoning;
          if (content !== '') pending += content;
        } else if (content === '') {
          // Output with no text (a tool call streamed) counts as a delta with none.
          if (!chunk.toolCall) return;
          if (pendingDeltas === 0) process.nextTick(flushSafely);
        } else {
          if (pendingDeltas === 0) process.nextTick(flushSafely);
          pending += content;
        }
        if (++pendingDeltas === MAX_DELTAS_PER_CHUNK) flush();
      } catch (error) {
        fail(error);
      }
    },
    close(error) {
      if (over) return;
      call.checkLease?.();
      over = true;
      // Aborts are how we stop a stream, not failures.
      if (attempt.stopped) return;
      try {
        flush();
        if (attempt.stopped) return;
        sendHeld();
      } catch (thrown) {
        return fail(thrown);
      }
      if (attempt.stopped) return;
      sendBack({
        type: 'ERROR',
        error:
          error === undefined
            ? {
                code: 'MODEL_STREAM_INCOMPLETE',
                message: 'the model stream ended without a finish reason',
                retryable: false,
              }
            : toRunErrorData(error),
      });
    },
  };
  // A store that refused the run (or failed to read its history) fails it here, as a model error would.
  call.messages.then(
    (history) => {
      // Cancelled while the history was read (a durable store's round trip): no request at all.
      if (attempt.stopped) return;
      // The run's own messages (tool rounds) follow the conversation up to the user's message.
      messages = input.transcript.length > 0 ? [...history, ...input.transcript] : history;
      const tools = call.tools?.size ? definitionsOf(call.tools) : undefined;
      try {
        const request = { messages, signal, tools, idleTimeoutMs: call.idleTimeoutMs };
        if (call.around) {
          const { model } = call;
          call.around({ type: 'model', runId: input.runId }, () => streamModel(model, request, receiver));
        } else streamModel(call.model, request, receiver);
      } catch (error) {
        receiver.close(error);
      }
    },
    (error: unknown) => receiver.close(storeRefusal(error)),
  );
}

/**
 * The run's failure when its store refused it, or its history: a refusal of runstate's own (a
 * session of another agent, an outage) as it is; any other error as `INTERNAL`, whose text (a
 * database's, which may name tables, roles or worse) goes to the log, not to the run's events and
 * record, which every reader of the run sees. (It is no model failure either.)
 */
function storeRefusal(error: unknown): unknown {
  if (error instanceof RunstateError) return error;
  console.error('runstate: the run store refused a run, or its history', error);
  return new RunstateError(
    'INTERNAL',
    'the run store refused the run or its history (the error is in the server log)',
    { cause: error },
  );
}

const NO_TOOLS: ReadonlyMap<string, Tool> = new Map();

/** The ids of the tool calls of a conversation (a turn's calls must not reuse them). */
function* toolCallIds(messages: readonly ChatMessage[]): Iterable<string> {
  for (const message of messages)
    if (message.role === 'assistant') for (const call of message.tool_calls ?? []) yield call.id;
}

/** A throw of runstate's own code on the model path, as the run's error: a bug, never retried. */
function internalError(error: unknown): RunErrorData {
  const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return { code: 'INTERNAL', message: `the model service failed: ${what}`, retryable: false };
}
const definitions = new WeakMap<ReadonlyMap<string, Tool>, ToolDefinition[]>();

/** The tool definitions of an agent, made once per tool set rather than once per request. */
function definitionsOf(tools: ReadonlyMap<string, Tool>): ToolDefinition[] {
  let list = definitions.get(tools);
  if (!list) {
    list = [...tools.values()].map((tool) => tool.definition);
    definitions.set(tools, list);
  }
  return list;
}
