import { describe, expect, it } from 'vitest';
import {
  readChunk,
  reasonOf,
  streamError,
  usageOf,
  type CompletionState,
} from '../src/model/chat-completion-chunk.js';
import type { ChatCompletionEvent } from '../src/model/chat-completion-stream.js';

const fresh = (): CompletionState => ({ finishReason: undefined, usage: undefined, delivered: false });

function event(delta: Record<string, unknown>, extra: Record<string, unknown> = {}): ChatCompletionEvent {
  return {
    id: 'c',
    object: 'chat.completion.chunk',
    created: 0,
    model: 'm',
    choices: [{ index: 0, delta, finish_reason: null }],
    ...extra,
  };
}

describe('readChunk', () => {
  it("hands out a refusal (OpenAI's structured outputs) and the text parts of array content (Mistral's)", () => {
    const state = fresh();
    expect(readChunk(event({ role: 'assistant', content: null, refusal: '' }), state)).toBeUndefined();
    expect(readChunk(event({ content: null, refusal: "I'm sorry," }), state)).toEqual({
      type: 'delta',
      content: "I'm sorry,",
    });
    const parts = [
      { type: 'text', text: 'Hel' },
      { type: 'image_url', image_url: { url: 'x' } },
      { type: 'text', text: 'lo' },
    ];
    expect(readChunk(event({ content: parts }), state)).toEqual({ type: 'delta', content: 'Hello' });
    expect(readChunk(event({ content: [{ type: 'thinking' }] }), state)).toBeUndefined();
    expect(readChunk(event({ content: 42 }), state)).toBeUndefined();
  });

  it("hands out the thinking parts of Mistral's reasoning models as reasoning, before the text", () => {
    const state = fresh();
    const thinking = (text: string) => ({ type: 'thinking', thinking: [{ type: 'text', text }] });
    expect(readChunk(event({ content: [thinking('Let me')] }), state)).toEqual({
      type: 'delta',
      content: '',
      reasoning: 'Let me',
    });
    expect(state.delivered).toBe(true);
    expect(readChunk(event({ content: [thinking(' see.'), { type: 'text', text: 'Four' }] }), state)).toEqual(
      {
        type: 'delta',
        content: 'Four',
        reasoning: ' see.',
      },
    );
    // (A `thinking` given as a string is read too.)
    expect(readChunk(event({ content: [{ type: 'thinking', thinking: 'hm' }] }), state)).toEqual({
      type: 'delta',
      content: '',
      reasoning: 'hm',
    });
    // Not sent back with tool calls: Mistral has no reasoning field.
    expect(state.reasoningField).toBeUndefined();
  });

  it('sends reasoning back in the field its text came in; an empty field tells it only until text comes', () => {
    // DeepSeek opens with an empty `reasoning_content`, and wants it back even when nothing followed.
    const deepSeek = fresh();
    readChunk(event({ role: 'assistant', content: null, reasoning_content: '' }), deepSeek);
    expect(deepSeek.reasoningField).toBe('reasoning_content');
    readChunk(event({ reasoning_content: 'Hmm' }), deepSeek);
    expect(deepSeek.reasoningField).toBe('reasoning_content');
    // The text in `reasoning`, next to an empty `reasoning_content`: `reasoning`, in one delta or after.
    for (const deltas of [
      [{ reasoning_content: '', reasoning: 'RF' }],
      [{ reasoning_content: '' }, { reasoning: 'RF' }],
    ]) {
      const state = fresh();
      for (const delta of deltas) readChunk(event(delta), state);
      expect(state.reasoningField).toBe('reasoning');
      // Text once told, the field stays: a later empty one (or text in the other) changes nothing.
      readChunk(event({ reasoning_content: 'x' }), state);
      expect(state.reasoningField).toBe('reasoning');
    }
  });

  describe("OpenRouter's reasoning_details", () => {
    const text = (fields: Record<string, unknown>) => ({
      type: 'reasoning.text',
      format: 'anthropic-claude-v1',
      index: 0,
      ...fields,
    });

    it('are merged into whole entries: the fragments of one index and type, in order', () => {
      // Anthropic's thinking via OpenRouter: the text in pieces (beside `reasoning`), then the
      // signature alone; then a redacted block, whole.
      const state = fresh();
      const first = event({
        role: 'assistant',
        content: null,
        reasoning: 'Need ',
        reasoning_details: [text({ text: 'Need ', signature: null, id: 'r1' })],
      });
      expect(readChunk(first, state)).toEqual({ type: 'delta', content: '', reasoning: 'Need ' });
      readChunk(event({ reasoning: 'to add.', reasoning_details: [text({ text: 'to add.' })] }), state);
      readChunk(event({ reasoning_details: [text({ signature: 'sig-1' })] }), state);
      readChunk(event({ reasoning_details: [text({ text: '', signature: '' })] }), state);
      const encrypted = {
        type: 'reasoning.encrypted',
        data: 'opaque',
        format: 'anthropic-claude-v1',
        index: 1,
      };
      readChunk(event({ reasoning_details: [encrypted] }), state);
      expect(state.reasoningDetails).toEqual([
        text({ text: 'Need to add.', signature: 'sig-1', id: 'r1' }),
        encrypted,
      ]);
      // The parsed events stay as they came.
      expect(first.choices[0]!.delta).toMatchObject({
        reasoning_details: [text({ text: 'Need ', signature: null, id: 'r1' })],
      });
    });

    it('that come alone are output with no text: they keep the run alive and end its retries', () => {
      const state = fresh();
      const encrypted = { type: 'reasoning.encrypted', data: 'opaque', index: 0 };
      expect(readChunk(event({ reasoning_details: [] }), state)).toBeUndefined();
      expect(readChunk(event({ reasoning_details: [7, null] }), state)).toBeUndefined();
      expect(state.delivered).toBe(false);
      expect(readChunk(event({ reasoning_details: [encrypted] }), state)).toEqual({
        type: 'delta',
        content: '',
        toolCall: true,
      });
      expect(state.delivered).toBe(true);
    });

    it("join a summary's pieces too, and take a field a later fragment adds", () => {
      const state = fresh();
      const summary = (fields: Record<string, unknown>) => ({
        type: 'reasoning.summary',
        index: 0,
        ...fields,
      });
      readChunk(event({ reasoning_details: [summary({ summary: 'Add ', id: null })] }), state);
      readChunk(
        event({
          reasoning_details: [summary({ summary: 'them.', id: 'rs_1', format: 'openai-responses-v1' })],
        }),
        state,
      );
      expect(state.reasoningDetails).toEqual([
        {
          type: 'reasoning.summary',
          index: 0,
          summary: 'Add them.',
          id: 'rs_1',
          format: 'openai-responses-v1',
        },
      ]);
    });

    it('join the pieces of a block streamed without an index, as one block', () => {
      const state = fresh();
      const piece = (fields: Record<string, unknown>) => ({ type: 'reasoning.text', ...fields });
      readChunk(event({ reasoning_details: [piece({ text: 'Need ' })] }), state);
      readChunk(event({ reasoning_details: [piece({ text: 'to add.' })] }), state);
      readChunk(event({ reasoning_details: [piece({ signature: 'sig' })] }), state);
      expect(state.reasoningDetails).toEqual([piece({ text: 'Need to add.', signature: 'sig' })]);
    });

    it('keep apart what is not one entry: another index, type or id, encrypted entries, text after a signature, and leave out what is no object', () => {
      const state = fresh();
      // None from an empty list, or a null.
      readChunk(event({ reasoning: 'hm', reasoning_details: [] }), state);
      readChunk(event({ content: 'Hi', reasoning_details: null }), state);
      expect(state.reasoningDetails).toBeUndefined();
      // Gemini's thought signatures: one whole encrypted entry per call, of one index.
      const encrypted = (data: string, id: string) => ({ type: 'reasoning.encrypted', index: 2, data, id });
      readChunk(
        event({
          reasoning_details: [
            text({ text: 'a' }),
            text({ text: 'b', index: 1 }),
            { type: 'reasoning.summary', summary: 'c', index: 1 },
            null,
            'text',
            text({ text: 'd', index: 3, id: 'r1' }),
            text({ text: 'e', index: 3, id: 'r2' }),
            text({ text: 'f', index: 4, signature: 'sig' }),
            text({ text: 'g', index: 4 }),
            encrypted('SIG_A', 'call_1'),
            encrypted('SIG_B', 'call_2'),
          ],
        }),
        state,
      );
      expect(state.reasoningDetails).toEqual([
        text({ text: 'a' }),
        text({ text: 'b', index: 1 }),
        { type: 'reasoning.summary', summary: 'c', index: 1 },
        text({ text: 'd', index: 3, id: 'r1' }),
        text({ text: 'e', index: 3, id: 'r2' }),
        text({ text: 'f', index: 4, signature: 'sig' }),
        text({ text: 'g', index: 4 }),
        encrypted('SIG_A', 'call_1'),
        encrypted('SIG_B', 'call_2'),
      ]);
    });
  });

  it('takes tool arguments a server sends as a JSON object, as their text', () => {
    const state = fresh();
    const call = { index: 0, id: 'c1', function: { name: 'add', arguments: { a: 1, b: 2 } } };
    readChunk(event({ tool_calls: [call] }), state);
    expect(state.toolCalls?.calls()).toEqual([
      { id: 'c1', type: 'function', function: { name: 'add', arguments: '{"a":1,"b":2}' } },
    ]);
  });

  it('hands out content, and reasoning before the content of the same delta', () => {
    const state = fresh();
    expect(readChunk(event({ role: 'assistant', content: '' }), state)).toBeUndefined();
    expect(state.delivered).toBe(false);
    expect(readChunk(event({ content: null, reasoning_content: 'think' }), state)).toEqual({
      type: 'delta',
      content: '',
      reasoning: 'think',
    });
    expect(readChunk(event({ content: 'so', reasoning: 'ing' }), state)).toEqual({
      type: 'delta',
      content: 'so',
      reasoning: 'ing',
    });
    expect(readChunk(event({ content: 'Hi' }), state)).toEqual({ type: 'delta', content: 'Hi' });
    expect(state.delivered).toBe(true);
  });

  it('ignores reasoning that is not text (a server sending null or an object)', () => {
    const state = fresh();
    expect(readChunk(event({ content: 'a', reasoning_content: null, reasoning: { x: 1 } }), state)).toEqual({
      type: 'delta',
      content: 'a',
    });
  });

  it('records the finish reason and the usage of a usage chunk with no choices', () => {
    const state = fresh();
    readChunk({ ...event({}), choices: [{ index: 0, delta: {}, finish_reason: 'length' }] }, state);
    readChunk(
      {
        ...event({}),
        choices: [],
        usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
      },
      state,
    );
    expect(state).toMatchObject({
      finishReason: 'length',
      usage: { input_tokens: 3, output_tokens: 4, total_tokens: 7 },
    });
  });

  it("records the usage Groq sends in its last chunk's x_groq", () => {
    const state = fresh();
    readChunk(
      event(
        {},
        {
          choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }],
          x_groq: {
            id: 'req_1',
            usage: { queue_time: 0.01, prompt_tokens: 23, completion_tokens: 19, total_tokens: 42 },
          },
        },
      ),
      state,
    );
    expect(state).toMatchObject({
      finishReason: 'stop',
      usage: { input_tokens: 23, output_tokens: 19, total_tokens: 42 },
    });
  });

  it('throws for an error object, as the error of its status', () => {
    const state = fresh();
    const error = {
      error: { code: 500, message: 'boom', type: 'server_error' },
    } as unknown as ChatCompletionEvent;
    expect(() => readChunk(error, state)).toThrow(
      expect.objectContaining({ code: 'MODEL_REQUEST_FAILED', status: 500 }) as Error,
    );
  });
});

describe('usageOf', () => {
  it('keeps an unreported count unknown (null), and computes a missing total', () => {
    expect(usageOf({ prompt_tokens: 2, completion_tokens: 3 })).toEqual({
      input_tokens: 2,
      output_tokens: 3,
      total_tokens: 5,
    });
    expect(usageOf({ completion_tokens: 3 })).toEqual({
      input_tokens: null,
      output_tokens: 3,
      total_tokens: null,
    });
    expect(usageOf({ prompt_tokens: 'x', completion_tokens: -1, total_tokens: 0 })).toEqual({
      input_tokens: null,
      output_tokens: null,
      total_tokens: 0,
    });
  });
});

describe('streamError', () => {
  it.each([
    { error: { code: 500, message: 'm' }, status: 500, retryable: true },
    { error: { code: '503', message: 'm' }, status: 503, retryable: true },
    { error: { status: 408, message: 'm' }, status: 408, retryable: true },
    { error: { code: 'rate_limit_exceeded', message: 'm' }, status: 429, retryable: true },
    { error: { type: 'server_error', message: 'm' }, status: 500, retryable: true },
    { error: { code: 400, message: 'm' }, status: 400, retryable: false },
    { error: { code: 'context_length_exceeded', message: 'm' }, status: undefined, retryable: false },
    { error: 'm', status: undefined, retryable: false },
  ])('takes the status from $error', ({ error, status, retryable }) => {
    const before = streamError(error, false);
    expect(before).toMatchObject({ code: 'MODEL_REQUEST_FAILED', status, isRetryable: retryable });
    expect(before.message).toContain('m');
    expect(streamError(error, true)).toMatchObject({
      code: 'MODEL_STREAM_INCOMPLETE',
      status,
      isRetryable: false,
    });
  });
});

describe('reasonOf', () => {
  it.each([
    { body: { error: { message: 'openai' } }, reason: 'openai' },
    { body: { error: 'bare' }, reason: 'bare' },
    { body: { detail: 'fastapi' }, reason: 'fastapi' },
    {
      body: { detail: [{ loc: ['body', 'model'], msg: 'field required' }, { msg: 'x' }] },
      reason: 'field required; x',
    },
    { body: { message: 'express' }, reason: 'express' },
    {
      // Mistral's validation error: the FastAPI detail inside `message`.
      body: {
        object: 'error',
        message: {
          detail: [{ type: 'extra_forbidden', loc: ['body', 'x'], msg: 'Extra inputs are not permitted' }],
        },
        type: 'invalid_request_error',
      },
      reason: 'Extra inputs are not permitted',
    },
    { body: '  plain text \n', reason: 'plain text' },
    { body: { other: 1 }, reason: '{"other":1}' },
    {
      body: [
        { error: { code: 400, message: 'API key not valid.', status: 'INVALID_ARGUMENT', details: [] } },
      ],
      reason: 'API key not valid.',
    },
    { body: [], reason: '[]' },
    { body: '', reason: undefined },
    { body: undefined, reason: undefined },
    {
      body: '<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>…</body></html>',
      reason: '503 Service Temporarily Unavailable (an HTML page)',
    },
    { body: '<!DOCTYPE html><html><body><h1>Bad gateway</h1></body></html>', reason: 'an HTML page' },
    { body: '<not html> as text', reason: '<not html> as text' },
  ])('finds $reason in $body', ({ body, reason }) => {
    expect(reasonOf(body)).toBe(reason);
  });

  it('shortens a long body to 500 characters', () => {
    expect(reasonOf('x'.repeat(10_000))).toHaveLength(500);
  });
});
