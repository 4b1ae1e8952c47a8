import { setImmediate } from 'node:timers/promises';
import type { TokenUsage } from '../../machines/run-types.js';
import { checkOptionNames } from '../option-names.js';
import type {
  ChatMessage,
  ChatModel,
  ChatRequest,
  ModelChunk,
  ToolCallRequest,
  ToolDefinition,
} from '../model/chat-model.js';

/** One `stream()` call of a {@link FakeModel}, driven by the test. */
export interface FakeModelCall {
  /** 0 for the first call of the model, 1 for the next... */
  readonly index: number;
  readonly messages: ChatMessage[];
  /** The tools the model was offered (`[]` for none). */
  readonly tools: ToolDefinition[];
  /** The signal the model was given: aborted when the run stopped needing the answer. */
  readonly signal: AbortSignal;
  /** Resolves when `signal` aborts. */
  readonly aborted: Promise<void>;
  /**
   * Sends a text delta. Deltas emitted in one turn of the event loop reach the run as one
   * `RunContent`, as the deltas of one socket read do; `await nextTurn()` between two emits to
   * deliver them apart.
   */
  emit(content: string): void;
  /** Sends a reasoning delta, as a reasoning model streams its thinking before its answer. */
  emitReasoning(reasoning: string): void;
  /** Ends the stream normally (finish reason `stop` unless told otherwise). */
  end(options?: { finishReason?: string; usage?: TokenUsage }): void;
  /**
   * Ends the turn asking for tool calls (finish reason `tool_calls`); `arguments` may be an object
   * (sent as JSON) or the raw text a model wrote. `usage` is what the turn reports.
   */
  callTools(
    calls: ReadonlyArray<{ id: string; name: string; arguments?: string | object }>,
    options?: { usage?: TokenUsage },
  ): void;
  /** Makes the stream throw `error`. */
  fail(error: unknown): void;
  /** Ends the stream with no `end` chunk: an incomplete stream. */
  close(): void;
  /** True once the consumer stopped reading (finished, aborted or broke out). */
  readonly settled: boolean;
}

/** Options of {@link createFakeModel}. */
export interface FakeModelOptions {
  id?: string | undefined;
  provider?: string | undefined;
  /** Called for every new call, to script it (for example: emit two chunks and end). */
  onCall?: ((call: FakeModelCall) => void) | undefined;
}

/** A {@link ChatModel} that does only what the test tells it, and records every call. */
export interface FakeModel extends ChatModel {
  readonly calls: readonly FakeModelCall[];
  /** Resolves with the next call not yet taken (one already made, or the next one to come). */
  nextCall(): Promise<FakeModelCall>;
}

type Item = { kind: 'chunk'; chunk: ModelChunk } | { kind: 'error'; error: unknown } | { kind: 'close' };

/**
 * Creates a controllable fake model: each `stream()` call waits for the test to `emit`, `end`,
 * `fail` or `close` it, and stalls otherwise, so every schedule of a run can be played without
 * sleeping.
 *
 * @example
 * ```ts
 * const model = createFakeModel();
 * const run = agent.run('hi', { stream: true });
 * const call = await model.nextCall();
 * call.emit('Hello');
 * agent.cancelRun(run.runId);
 * await call.aborted; // the model's signal was aborted
 * ```
 */
export function createFakeModel(options: FakeModelOptions = {}): FakeModel {
  checkOptionNames(options, ['id', 'provider', 'onCall'], 'createFakeModel');
  const calls: FakeModelCall[] = [];
  let taken = 0;
  const waiters: Array<(call: FakeModelCall) => void> = [];

  function stream({ messages, signal, tools = [] }: ChatRequest): AsyncIterable<ModelChunk> {
    const queue: Item[] = [];
    let wake: (() => void) | undefined;
    let settled = false;
    const push = (item: Item) => {
      queue.push(item);
      wake?.();
    };
    const call: FakeModelCall = {
      index: calls.length,
      messages,
      tools,
      signal,
      aborted: new Promise((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      }),
      emit: (content) => push({ kind: 'chunk', chunk: { type: 'delta', content } }),
      emitReasoning: (reasoning) => push({ kind: 'chunk', chunk: { type: 'delta', content: '', reasoning } }),
      end: ({ finishReason = 'stop', usage } = {}) =>
        push({ kind: 'chunk', chunk: { type: 'end', finishReason, usage } }),
      callTools: (requested, { usage } = {}) => {
        const toolCalls: ToolCallRequest[] = requested.map(({ id, name, arguments: args = {} }) => ({
          id,
          type: 'function',
          function: { name, arguments: typeof args === 'string' ? args : JSON.stringify(args) },
        }));
        push({ kind: 'chunk', chunk: { type: 'end', finishReason: 'tool_calls', usage, toolCalls } });
      },
      fail: (error) => push({ kind: 'error', error }),
      close: () => push({ kind: 'close' }),
      get settled() {
        return settled;
      },
    };
    calls.push(call);
    const waiter = waiters.shift();
    if (waiter) {
      taken++;
      waiter(call);
    }
    options.onCall?.(call);

    async function* read(): AsyncGenerator<ModelChunk> {
      const onAbort = () => wake?.();
      signal.addEventListener('abort', onAbort);
      try {
        for (;;) {
          if (signal.aborted) return;
          const item = queue.shift();
          if (!item) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
            continue;
          }
          if (item.kind === 'close') return;
          if (item.kind === 'error') throw item.error;
          yield item.chunk;
          if (item.chunk.type === 'end') return;
        }
      } finally {
        settled = true;
        signal.removeEventListener('abort', onAbort);
      }
    }
    return read();
  }

  return {
    id: options.id ?? 'fake-model',
    provider: options.provider ?? 'fake',
    calls,
    stream,
    nextCall() {
      if (taken < calls.length) return Promise.resolve(calls[taken++]!);
      return new Promise((resolve) => waiters.push(resolve));
    },
  };
}

/**
 * Resolves on the next turn of the event loop, once everything the current one set off has
 * happened: an emitted delta has become a `RunContent`, a cancel has aborted the model's signal.
 * It waits for no timer, and fake timers do not hold it back: it is `node:timers/promises`'
 * `setImmediate`, which they do not replace.
 *
 * @example
 * ```ts
 * const call = await model.nextCall();
 * call.emit('Once');
 * await nextTurn();
 * expect((await agent.getRun(runId))?.content).toBe('Once');
 * ```
 */
export function nextTurn(): Promise<void> {
  return setImmediate();
}
