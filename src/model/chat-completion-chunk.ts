import type { TokenUsage } from '../../machines/run-types.js';
import { RunstateError } from '../errors.js';
import type { ChatCompletionEvent } from './chat-completion-stream.js';
import type { ModelChunk, ReasoningDetail, ReasoningField } from './chat-model.js';
import { ToolCallAssembler, type ToolCallDelta } from './tool-call-assembler.js';

/**
 * What one streamed completion has told so far. Filled in by {@link readChunk}, one parsed event at
 * a time, whatever read the events (the openai SDK's `Stream` or `readChatCompletionStream`).
 */
export interface CompletionState {
  finishReason: string | undefined;
  usage: TokenUsage | undefined;
  /** A delta was handed out: the request can no longer be sent again without repeating output. */
  delivered: boolean;
  /** The tool calls streamed so far (`delta.tool_calls`), made when the first one comes. */
  toolCalls?: ToolCallAssembler | undefined;
  /** The field the reasoning came in, once some did. */
  reasoningField?: ReasoningField | undefined;
  /** {@link reasoningField} was told by a field with text (not an empty one, which text overrides). */
  reasoningFieldHadText?: boolean | undefined;
  /** The whole `reasoning_details` entries so far (see {@link addReasoningDetails}), once some came. */
  reasoningDetails?: ReasoningDetail[] | undefined;
}

/** A delta as servers of reasoning models send it: the SDK's type knows no reasoning. */
interface ReasoningDelta {
  /** A string; an array of text parts from some servers (Mistral's). */
  content?: unknown;
  /** OpenAI's: what a model that refuses (structured outputs) says instead of the content. */
  refusal?: unknown;
  /** vLLM, llama.cpp, DeepSeek's API. */
  reasoning_content?: unknown;
  /** Ollama, OpenRouter, newer vLLM. */
  reasoning?: unknown;
  /** OpenRouter: the same reasoning as structured entries, streamed in fragments. */
  reasoning_details?: unknown;
  tool_calls?: ToolCallDelta[] | null;
}

/**
 * Reads one event of a streamed chat completion into `state`: returns the delta to hand out, if the
 * event has one (reasoning first, then content), and throws a {@link RunstateError} for an error
 * object sent inside the stream (see {@link streamError}).
 */
export function readChunk(event: ChatCompletionEvent, state: CompletionState): ModelChunk | undefined {
  if (event.error) throw streamError(event.error, state.delivered, event);
  const choice = event.choices?.[0];
  // OpenRouter's way of saying the provider failed mid-answer, at times with no error object, and
  // vLLM's for a request its engine aborted (`abort`): the answer is cut, not finished.
  // (The SDK's type knows only OpenAI's reasons.)
  const finishReason = choice?.finish_reason as string | null | undefined;
  if (finishReason === 'error' || finishReason === 'abort')
    throw endedWithError(finishReason, state.delivered, event);
  if (choice?.finish_reason) state.finishReason = choice.finish_reason;
  const usage = event.usage ?? event.x_groq?.usage;
  if (usage) state.usage = usageOf(usage);
  const delta: ReasoningDelta | undefined = choice?.delta;
  if (!delta) return undefined;
  if (Array.isArray(delta.tool_calls)) {
    state.toolCalls ??= new ToolCallAssembler();
    for (const call of delta.tool_calls) state.toolCalls.add(call);
  }
  // The one check a delta without them costs.
  const detailsCame =
    delta.reasoning_details !== undefined && addReasoningDetails(state, delta.reasoning_details);
  let content: string;
  const reasoning = delta.reasoning_content || delta.reasoning;
  // The field a server streams reasoning in is the one it wants back with a turn's tool calls, even
  // when the turn's reasoning is empty (DeepSeek's thinking mode opens with `"reasoning_content": ""`
  // and refuses, 400, a later request whose tool-call turn lacks the field).
  // The field that carries the text tells it; an empty one only until text comes (in either).
  if (!state.reasoningFieldHadText) {
    if (reasoning) {
      state.reasoningField = delta.reasoning_content ? 'reasoning_content' : 'reasoning';
      state.reasoningFieldHadText = true;
    } else if (typeof delta.reasoning_content === 'string') state.reasoningField ??= 'reasoning_content';
    else if (typeof delta.reasoning === 'string') state.reasoningField ??= 'reasoning';
  }
  if (typeof delta.content === 'string') content = delta.content;
  else if (Array.isArray(delta.content)) {
    // Mistral's parts: the text is content, and a `thinking` part is reasoning (no field of its
    // own: Mistral is not sent reasoning back with its tool calls).
    const parts = partsOf(delta.content);
    content = parts.text;
    if (parts.thinking !== '' && !reasoning) {
      state.delivered = true;
      return { type: 'delta', content, reasoning: parts.thinking };
    }
  } else content = '';
  content ||= textOf(delta.refusal);
  if (typeof reasoning === 'string' && reasoning !== '') {
    state.delivered = true;
    return { type: 'delta', content, reasoning };
  }
  if (content) {
    state.delivered = true;
    return { type: 'delta', content };
  }
  // A tool call's name or arguments: no text to hand out, but the model is producing output (a
  // failure after it is not retried, so it is no failure before output either).
  // So are reasoning entries that come alone (an encrypted block, a signature).
  if ((Array.isArray(delta.tool_calls) && delta.tool_calls.length > 0) || detailsCame) {
    state.delivered = true;
    return OUTPUT_WITHOUT_TEXT;
  }
  return undefined;
}

/** A delta of output with no text (see `ModelChunk`'s `toolCall`). */
export const OUTPUT_WITHOUT_TEXT: ModelChunk = { type: 'delta', content: '', toolCall: true };

/**
 * Adds a delta's `reasoning_details` fragments to the turn's entries; true when any came.
 *
 * What OpenRouter sends: its reasoning-tokens docs put the entries in `delta.reasoning_details` of
 * each chunk, to be read in the order of the chunks, each entry with its `type` and (optional)
 * `index`; they ask for the entries back unmodified, in order, with the turn's tool calls. Streams
 * of Claude seen in client bug reports (OpenRouter's AI SDK provider, issue 423) send a thinking
 * block as many `reasoning.text` fragments of one `index`, a piece of the text each, then one with
 * the `signature` and no text; Anthropic refuses the block back without its signature ("Invalid
 * `signature` in `thinking` block"). An encrypted entry (a redacted block, a Gemini thought
 * signature, one per call) comes whole.
 *
 * So a text or summary fragment continues the last entry when it is of its `type` and `index` (or
 * both have none), names no other `id`, and does not bring new text to a block already signed (a
 * signature closes a block): its `text` and `summary` are appended, a non-empty `signature`
 * replaces the entry's, and a field the entry lacks (or has null) is taken. Any other fragment is an
 * entry of its own; anything that is no object is no entry, and is left out.
 */
function addReasoningDetails(state: CompletionState, fragments: unknown): boolean {
  if (!Array.isArray(fragments)) return false;
  let added = false;
  for (const fragment of fragments) {
    if (!isRecord(fragment)) continue;
    added = true;
    const entries = (state.reasoningDetails ??= []);
    const last = entries.at(-1);
    if (last && continues(last, fragment)) mergeFragment(last, fragment);
    // A copy: the entry grows with later fragments, the parsed event stays as it came.
    else entries.push({ ...fragment });
  }
  return added;
}

/** The fields of a text or summary entry that stream a piece per fragment. */
const FRAGMENT_TEXT_FIELDS = ['text', 'summary'] as const;

function continues(entry: ReasoningDetail, fragment: ReasoningDetail): boolean {
  if (fragment.type !== entry.type || (entry.type !== 'reasoning.text' && entry.type !== 'reasoning.summary'))
    return false;
  if (fragment.index !== entry.index) return false;
  if (fragment.id != null && entry.id != null && fragment.id !== entry.id) return false;
  const bringsText = FRAGMENT_TEXT_FIELDS.some(
    (key) => typeof fragment[key] === 'string' && fragment[key] !== '',
  );
  return !(bringsText && typeof entry.signature === 'string' && entry.signature !== '');
}

function mergeFragment(entry: ReasoningDetail, fragment: ReasoningDetail): void {
  for (const [key, value] of Object.entries(fragment)) {
    const kept = entry[key];
    if ((FRAGMENT_TEXT_FIELDS as readonly string[]).includes(key)) {
      if (typeof value === 'string') entry[key] = typeof kept === 'string' ? kept + value : value;
    } else if (key === 'signature') {
      // The signature comes last, alone (Anthropic's): an empty or null one says nothing new.
      if (value || kept === undefined) entry[key] = value;
    } else if (kept === undefined || kept === null) entry[key] = value;
  }
}

/**
 * The text of a delta's `refusal` (or `content`): a string, or the text parts of an array of parts;
 * anything else has none.
 */
function textOf(value: unknown): string {
  if (typeof value === 'string') return value;
  return Array.isArray(value) ? partsOf(value).text : '';
}

/**
 * An array of content parts, as Mistral's servers stream them: `{type: 'text', text}` parts are
 * text, and `{type: 'thinking', thinking}` parts (its reasoning models; `thinking` is itself text
 * parts, or a string) are reasoning. Parts of other types have no text.
 */
function partsOf(parts: unknown[]): { text: string; thinking: string } {
  let text = '';
  let thinking = '';
  for (const part of parts) {
    const { type, text: piece, thinking: thought } = (part ?? {}) as Record<string, unknown>;
    if (type === 'text' && typeof piece === 'string') text += piece;
    else if (type === 'thinking') thinking += typeof thought === 'string' ? thought : textOf(thought);
  }
  return { text, thinking };
}

/** A count the server did not send (or sent as no number) is unknown, not 0. */
export function usageOf(usage: {
  prompt_tokens?: unknown;
  completion_tokens?: unknown;
  total_tokens?: unknown;
}): TokenUsage {
  const input = count(usage.prompt_tokens);
  const output = count(usage.completion_tokens);
  const total = count(usage.total_tokens) ?? (input !== null && output !== null ? input + output : null);
  return { input_tokens: input, output_tokens: output, total_tokens: total };
}

function count(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : null;
}

/** Statuses worth sending the same request again for: timeout, conflict, rate limit. And every 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** Error types that name a status without giving it (OpenAI's, Anthropic-style proxies'). */
const STATUS_OF_TYPE: Record<string, number> = {
  rate_limit_exceeded: 429,
  rate_limit_error: 429,
  server_error: 500,
  overloaded_error: 503,
};

/**
 * The error a server sent inside a 200 stream (`data: {"error": {...}}`: llama.cpp's failures, a
 * proxy's rate limit), as an HTTP error of its status would be: its status is the error's `code`
 * (or `status`, or what its `type` names; beside a bare reason, `{"error": "...", "code": 503}`, the
 * event's). Before any output it is `MODEL_REQUEST_FAILED`, retryable
 * for 408, 409, 429 and 5xx; after output it is `MODEL_STREAM_INCOMPLETE`, never retryable (sending
 * the request again would repeat what the user already has).
 */
export function streamError(error: unknown, delivered: boolean, event?: object): RunstateError {
  const status = statusOf(error, event as Record<string, unknown> | undefined);
  const reason = reasonOf(error) ?? 'the server reported an error';
  const message = `${status === undefined ? '' : `${status} `}${reason} (sent inside the stream)`;
  if (delivered) {
    return new RunstateError('MODEL_STREAM_INCOMPLETE', `The stream broke: ${message}`, {
      status,
      cause: error,
    });
  }
  return new RunstateError('MODEL_REQUEST_FAILED', message, {
    status,
    retryable: status !== undefined && isRetryableStatus(status),
    cause: error,
  });
}

/**
 * A stream whose finish reason is `error` (a gateway's provider failed) or `abort` (vLLM's engine
 * aborted the request), with no error object. Retried
 * before any output (a new request may reach a working provider), as a server error would be.
 */
function endedWithError(finishReason: string, delivered: boolean, event: object): RunstateError {
  const reason = `the server ended the answer with finish_reason "${finishReason}"`;
  if (delivered)
    return new RunstateError('MODEL_STREAM_INCOMPLETE', `The stream broke: ${reason}`, { cause: event });
  return new RunstateError('MODEL_REQUEST_FAILED', reason, { retryable: true, cause: event });
}

function statusOf(error: unknown, event?: Record<string, unknown>): number | undefined {
  // `{"error": "Model overloaded", "code": 503}`: the status beside a bare reason.
  if (!isRecord(error)) return event === undefined ? undefined : statusOf(event);
  for (const value of [error.code, error.status]) {
    const status = typeof value === 'string' && /^\d{3}$/.test(value) ? Number(value) : value;
    if (typeof status === 'number' && Number.isInteger(status) && status >= 400 && status <= 599)
      return status;
  }
  for (const value of [error.type, error.code]) {
    if (typeof value === 'string' && STATUS_OF_TYPE[value] !== undefined) return STATUS_OF_TYPE[value];
  }
  return undefined;
}

/** Longest reason kept from an error body: an HTML error page is not a message. */
const MAX_REASON_LENGTH = 500;

/**
 * The server's reason in an error body of any common shape: OpenAI's `{error: {message}}`, a bare
 * `{error: "..."}`, FastAPI's `{detail: "..."}` (or its list of validation errors), `{message}`, a
 * list of such bodies (Gemini's), a JSON string, or plain text. `undefined` for an empty body.
 */
export function reasonOf(body: unknown): string | undefined {
  if (typeof body === 'string') return clip(pageTitle(body.trim())) || undefined;
  // Gemini's OpenAI endpoint answers an error as a list of error bodies: their reasons.
  if (Array.isArray(body) && body.length > 0) {
    const reasons = body.map(reasonOf).filter((reason) => reason !== undefined);
    if (reasons.length > 0) return clip(reasons.join('; '));
  }
  if (!isRecord(body)) return body === undefined || body === null ? undefined : clip(JSON.stringify(body));
  const { error, detail, message } = body;
  if (typeof error === 'string' && error !== '') return clip(error);
  if (isRecord(error)) return reasonOf(error);
  if (typeof detail === 'string' && detail !== '') return clip(detail);
  if (Array.isArray(detail)) {
    return clip(
      detail
        .map((item) => (isRecord(item) && typeof item.msg === 'string' ? item.msg : JSON.stringify(item)))
        .join('; '),
    );
  }
  if (typeof message === 'string' && message !== '') return clip(message);
  // Mistral's validation errors: `{"object": "error", "message": {"detail": [...]}}`.
  if (isRecord(message)) return reasonOf(message);
  return clip(JSON.stringify(body));
}

/** An HTML error page (a proxy's 502 or 503) as its title: the page's markup is no message. */
function pageTitle(text: string): string {
  if (!/^<(?:!doctype\s+html|html|head|body)\b/i.test(text)) return text;
  const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1]?.trim();
  return title ? `${title} (an HTML page)` : 'an HTML page';
}

function clip(text: string): string {
  return text.length > MAX_REASON_LENGTH ? `${text.slice(0, MAX_REASON_LENGTH - 1)}…` : text;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
