import { setImmediate as breathe } from 'node:timers/promises';
import { RunstateError } from '../errors.js';
import { checkOptionNames } from '../option-names.js';
import type { ChatMessage, ChatModel, ChatRequest, ModelChunk } from './chat-model.js';
import { offlineToolAnswer, offlineToolCalls } from './offline-tool-calls.js';

/** Options of {@link OfflineModel}. Every field has a default. */
export interface OfflineModelOptions {
  /** The model's name. Default `'offline'`. */
  id?: string | undefined;
  /** Seeds the text: the same seed and messages always give the same answer. Default 1. */
  seed?: number | undefined;
  /** Output pace. `Infinity` streams as fast as the consumer reads. Default 30. */
  tokensPerSecond?: number | undefined;
  /** Length of an answer when the prompt does not ask for a number of words. Default 400. */
  maxTokens?: number | undefined;
}

/** A word count asked for in the prompt wins over `maxTokens`, up to this many words. */
const MAX_REQUESTED_WORDS = 5000;
/** Without timers (Infinity pace), give the event loop a turn this often, so cancels can land. */
const TOKENS_PER_BREATH = 64;

const list = (text: string): string[] => text.trim().split(/\s*\|\s*|\n\s*/);
const STOP_WORDS = new Set(
  list(`a|an|the|and|or|but|of|to|in|on|at|for|with|by|from|about|into|over|as|is|are|was|were|be|it|its
    this|that|these|those|who|which|what|when|where|why|how|i|me|my|you|your|we|our|they|them|their|he|she
    his|her|please|write|tell|give|make|explain|describe|show|list|create|compose|story|essay|poem|tale
    article|text|paragraph|paragraphs|words|word|long|very|short|brief|detailed|some|any|all|can|could
    would|should|will|do|does|did|use|using|more|again|continue|now|then|just|so|not|no|yes|hi|hello|thanks`),
);
// Slots: {a} main subject, {b} second subject, the rest are drawn from VOCABULARY.
const STORY = list(`
  Once, in {place}, {a} lay awake at night, dreaming of {b}.
  Every {time}, {a} would wander through {place}, thinking about {b}.
  Nobody believed that {a} could master {b}, but {a} kept trying.
  One {time}, {who} arrived and asked {a} about {b}.
  The work was slow, yet {a} found joy in every small step.
  Each mistake taught {a} something new about {b}.
  The {who2} smiled, having seen this kind of courage before.
  Before long, everyone in {place} was talking about {a} and {b}.
  Slowly, patiently, {b} began to make sense to {a}.
  Far away, {place} fell silent, as if listening to {a}.
  "What is {b} for?" asked the {who2}, and {a} had no answer yet.
  Some days went badly, and {a} wondered whether {b} was worth it.
  Then, one {adj} {time}, everything {a} had learned fitted together.`);
const ESSAY = list(`
  At its heart, {a} is about {b} and the choices it asks us to make.
  A good way to understand {a} is to start with a {kind} example.
  Most people first meet {a} through {b}, and that first impression matters.
  The key point is that {a} and {b} depend on each other.
  In practice, a {kind} approach to {a} saves time and avoids surprises.
  Careful readers {verb} {a} step by step before drawing conclusions.
  It helps to ask what would change about {a} if {b} were left out.
  Over time, the {kind} details of {a} become easier to see.
  This is why {a} keeps coming up whenever {b} is discussed.
  A {thing} is a useful comparison: simple on the surface, rich underneath.
  Common mistakes with {a} come from treating {b} as an afterthought.
  None of this is hard once {a} is seen as a whole.`);
const VOCABULARY: Record<string, string[]> = {
  adj: list('quiet|cold|bright|clear|gentle|still'),
  kind: list('simple|careful|small|familiar|concrete|patient'),
  place: list('a quiet valley|the old city|a village by the sea|the northern hills|a busy harbour'),
  time: list('morning|evening|winter|autumn|night'),
  who: list('a stranger|an old teacher|a wandering owl|a curious child|a travelling merchant'),
  who2: list('stranger|teacher|owl|neighbour|merchant'),
  verb: list('study|test|question|compare|sketch'),
  thing: list('map|recipe|garden|toolbox|bridge'),
};
/** Closing sentences by word count (index = words), so a requested length ends on a whole sentence. */
const CLOSINGS = [
  '',
  ...list(`Indeed.|Nothing more.|That is all.|And that was that.|There is little more here.
  And that is how it ends.|And that is where we stop today.|And that, for now, is where it ends.
  There is more to say, but this will do.|There is much more to say, but this will do.`),
];

/** mulberry32: a tiny seeded PRNG, so answers are reproducible (never `Math.random`). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a, so each prompt picks its own stream of random numbers. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const countWords = (text: string): number => text.split(/\s+/).filter(Boolean).length;
const LENGTH_CLAUSE = /\s*\b(?:in|of)?\s*(?:about|around|exactly)?\s*(\d{1,6})[\s-]*words?\b/i;

/**
 * Longer "words" are no topic (a pasted hash, a megabyte of one letter): repeated in most sentences,
 * one would make the answer dozens of times the size of the prompt.
 */
const MAX_TOPIC_CHARS = 40;

/** The answers name two topics at most; the search stops there (a prompt may be a megabyte). */
const MAX_TOPICS = 2;

/**
 * The first salient words of a prompt: no stop words, no numbers, no verb right after
 * "who"/"which"/"that".
 */
function topicsOf(prompt: string): string[] {
  const raw = prompt.split(/\s+/);
  const topics: string[] = [];
  for (let i = 0; i < raw.length && topics.length < MAX_TOPICS; i++) {
    const word = raw[i]!.replace(/^[^\p{L}]+|[^\p{L}\d-]+$/gu, '');
    const lower = word.toLowerCase();
    const previous = raw[i - 1]?.toLowerCase() ?? '';
    if (word.length > MAX_TOPIC_CHARS) continue;
    if (!/^\p{L}/u.test(word) || STOP_WORDS.has(lower) || /^(who|which|that)$/.test(previous)) continue;
    // Keep acronyms and mid-sentence capitals (HTTP, Paris); lower-case everything else.
    const kept = /\p{Lu}/u.test(word.slice(1)) || (i > 0 && /^\p{Lu}/u.test(word)) ? word : lower;
    if (!topics.includes(kept)) topics.push(kept);
  }
  return topics;
}

/** The subject as the user phrased it ("a dragon who learns to code"), if the prompt says "about". */
const phraseOf = (prompt: string): string | undefined =>
  /\babout\s+([^.,;:!?\n]+)/i
    .exec(prompt.replace(LENGTH_CLAUSE, ''))?.[1]
    ?.trim()
    .split(/\s+/)
    .filter((word) => word.length <= MAX_TOPIC_CHARS)
    .slice(0, 8)
    .join(' ') || undefined;

/**
 * Waits `ms`, or until `signal` aborts (then resolves `false` at once), and leaves no listener behind.
 * It uses the global `setTimeout`, not `node:timers/promises`: vitest's fake timers do not reach that
 * module (vitest#10871), and runstate's tests drive this model on a fake clock.
 */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const finish = (completed: boolean): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(completed);
    };
    const onAbort = (): void => finish(false);
    const timer = setTimeout(() => finish(true), ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Plans the whole answer as tokens: words with their leading space or paragraph break. */
function compose(messages: ChatMessage[], seed: number, maxTokens: number) {
  const users = messages.filter((m) => m.role === 'user');
  const prompt = users.at(-1)?.content ?? '';
  const random = prng(seed ^ hash(prompt));
  const pick = (words: readonly string[]): string => words[Math.floor(random() * words.length)] ?? '';
  const asked = LENGTH_CLAUSE.exec(prompt)?.[1];
  const target = asked ? Math.min(Math.max(Number(asked), 1), MAX_REQUESTED_WORDS) : maxTokens;

  const earlier = messages.some((m) => m.role === 'assistant') ? users.at(-2)?.content : undefined;
  const topics = topicsOf(prompt);
  // A follow-up such as "continue" names no subject: keep talking about the earlier one.
  if (topics.length === 0 && earlier !== undefined) topics.push(...topicsOf(earlier));
  const story = /\b(story|tale|fable|poem|once)\b/i.test(`${prompt} ${earlier ?? ''}`);
  const main = topics[0] ?? 'this question';
  const slots: Record<string, string> = {
    a: story && topics[0] && !/^\p{Lu}/u.test(main) ? `the ${main}` : main,
    b: topics[1] ?? (story ? 'the unknown' : 'everyday practice'),
  };

  // With history, refer back to it instead of introducing the subject again.
  const sentences = [
    earlier !== undefined
      ? `Building on what we said earlier about ${phraseOf(earlier) ?? topicsOf(earlier)[0] ?? 'this'}, here is more.`
      : story
        ? `This is the story of ${phraseOf(prompt) ?? slots.a}.`
        : `Here is a look at ${phraseOf(prompt) ?? main}.`,
  ];
  let used = countWords(sentences[0] ?? '');
  if (asked && used > target) [sentences.length, used] = [0, 0]; // no room for an opening
  const templates = story ? STORY : ESSAY;
  let bag: string[] = [];
  let previous = '';
  while (used < target) {
    const left = target - used;
    let sentence = asked && left < CLOSINGS.length ? CLOSINGS[left] : undefined;
    for (let tries = 0; sentence === undefined && tries < templates.length; tries++) {
      // Draw templates from a shuffled bag, so none repeats before all have been used.
      if (bag.length === 0) {
        // Leave the template just used out of the new bag, so no sentence follows itself.
        const keyed = templates
          .filter((t) => t !== previous)
          .map((template) => ({ template, key: random() }));
        bag = keyed.sort((x, y) => x.key - y.key).map(({ template }) => template);
      }
      previous = bag.pop() ?? '';
      const filled = previous.replace(/\{(\w+)\}/g, (_, s: string) => slots[s] ?? pick(VOCABULARY[s] ?? []));
      // A requested length ends on a whole sentence: skip templates that would overshoot it.
      if (!asked || countWords(filled) <= left) sentence = filled.charAt(0).toUpperCase() + filled.slice(1);
    }
    sentence ??= CLOSINGS.at(-1) ?? '';
    sentences.push(sentence);
    used += countWords(sentence);
  }

  const tokens: string[] = [];
  let untilBreak = 4 + Math.floor(random() * 3);
  for (const sentence of sentences) {
    const paragraph = tokens.length > 0 && --untilBreak < 0;
    if (paragraph) untilBreak = 3 + Math.floor(random() * 3);
    sentence.split(' ').forEach((word, i) => {
      tokens.push(tokens.length === 0 ? word : `${paragraph && i === 0 ? '\n\n' : ' '}${word}`);
    });
  }
  // Without a requested length the text runs until maxTokens cuts it, as a real model's would.
  return { tokens: tokens.slice(0, target), finishReason: asked ? 'stop' : 'length' };
}

/** The slowest offline model: a token every 1,000 s. */
export const MIN_TOKENS_PER_SECOND = 0.001;

/**
 * A deterministic local {@link ChatModel}: readable English about the subject of the last user
 * message, streamed one word per delta at a real model's pace. runstate uses it when no
 * `OPENAI_API_KEY` is set, so examples and tests run offline and reproducibly.
 *
 * Length: the number of words the prompt asks for ("in 50 words", at most 5000), met exactly and
 * ended on a whole sentence (`finishReason: 'stop'`); otherwise `maxTokens`, where the text is cut
 * mid-sentence as a real model's would be (`finishReason: 'length'`). An abort ends the stream
 * quietly, without an `end` chunk.
 *
 * Tools: offered tools that the user's last message names are called (rule and arguments:
 * {@link offlineToolCalls}; `finishReason: 'tool_calls'`); after the results, the answer says what
 * each call returned.
 *
 * @example
 * ```ts
 * const model = new OfflineModel({ tokensPerSecond: Infinity });
 * const messages = [{ role: 'user' as const, content: 'A story about a fox, in 60 words' }];
 * for await (const chunk of model.stream({ messages, signal: AbortSignal.timeout(5000) })) {
 *   if (chunk.type === 'delta') process.stdout.write(chunk.content);
 * }
 * ```
 */
export class OfflineModel implements ChatModel {
  readonly id: string;
  readonly provider = 'offline';
  readonly #seed: number;
  readonly #tokensPerSecond: number;
  readonly #maxTokens: number;

  constructor(options: OfflineModelOptions = {}) {
    if (typeof options !== 'object' || options === null)
      throw new RunstateError('INVALID_INPUT', 'OfflineModel takes an object of options, or none');
    checkOptionNames(options, ['id', 'seed', 'tokensPerSecond', 'maxTokens'], 'OfflineModel');
    const { id = 'offline', seed = 1, tokensPerSecond = 30, maxTokens = 400 } = options;
    // Checked here, since a NaN pace or an endless length would only show up as a hung run.
    // Slower would ask for a timer past what Node's holds (2^31-1 ms), which fires at once.
    if (!(tokensPerSecond >= MIN_TOKENS_PER_SECOND)) {
      throw new RunstateError(
        'INVALID_INPUT',
        `tokensPerSecond must be at least ${MIN_TOKENS_PER_SECOND} (a token every 1,000 s), got ${tokensPerSecond}`,
      );
    }
    if (!(maxTokens >= 1 && Number.isFinite(maxTokens))) {
      throw new RunstateError('INVALID_INPUT', 'maxTokens must be a finite number >= 1');
    }
    this.id = id;
    this.#seed = seed;
    this.#tokensPerSecond = tokensPerSecond;
    this.#maxTokens = Math.floor(maxTokens);
  }

  async *stream({ messages, signal, tools = [] }: ChatRequest): AsyncGenerator<ModelChunk, void, undefined> {
    if (signal.aborted) return;
    const interval = 1000 / this.#tokensPerSecond; // 0 for Infinity
    const input = messages.reduce((n, m) => n + countWords(m.content), 0);
    const toolCalls = offlineToolCalls(messages, tools);
    if (toolCalls.length > 0) {
      // As long as a real model takes to its first token.
      if (interval > 0 && !(await pause(interval, signal))) return;
      const usage = {
        input_tokens: input,
        output_tokens: toolCalls.length,
        total_tokens: input + toolCalls.length,
      };
      // The calls' arguments, as a real model streams them (output: time to first token), then the calls.
      yield { type: 'delta', content: '', toolCall: true };
      yield { type: 'end', finishReason: 'tool_calls', usage, toolCalls };
      return;
    }
    const answer = offlineToolAnswer(messages);
    const { tokens, finishReason } =
      answer === undefined
        ? compose(messages, this.#seed, this.#maxTokens)
        : { tokens: answer.match(/\s*\S+/g) ?? [], finishReason: 'stop' };
    // Token i is due at start + i * interval: scheduling against the start keeps the pace from drifting.
    const start = performance.now();
    let sinceBreath = 0;
    for (const [i, content] of tokens.entries()) {
      const wait = start + i * interval - performance.now();
      if (wait > 0) {
        sinceBreath = 0;
        if (!(await pause(wait, signal))) return; // an abort is not an error
      } else if (++sinceBreath >= TOKENS_PER_BREATH) {
        // Without timers, a long stream would run in microtasks only and starve timers and I/O.
        sinceBreath = 0;
        await breathe();
        if (signal.aborted) return;
      }
      yield { type: 'delta', content };
      if (signal.aborted) return;
    }
    const usage = { input_tokens: input, output_tokens: tokens.length, total_tokens: input + tokens.length };
    yield { type: 'end', finishReason, usage };
  }
}
