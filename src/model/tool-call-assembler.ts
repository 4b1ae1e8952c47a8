import { randomUUID } from 'node:crypto';
import type { ToolCallRequest } from '../../machines/run-types.js';

/** One streamed piece of a tool call (`choices[0].delta.tool_calls[i]`); servers fill it unevenly. */
export interface ToolCallDelta {
  index?: number | undefined;
  id?: string | null | undefined;
  type?: string | null | undefined;
  function?: { name?: string | null | undefined; arguments?: string | null | undefined } | null | undefined;
  /** Gemini's `{google: {thought_signature}}`, which must come back with the call. */
  extra_content?: unknown;
}

/** Makes an id for a call that came without one: unique within a run, as ids must match results. */
export const makeToolCallId = (): string => `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`;

interface Building {
  id: string;
  /** The id the server gave (`undefined`: none), which may repeat on every delta of the call. */
  givenId: string | undefined;
  index: number;
  name: string;
  arguments: string;
  /** See {@link ToolCallRequest.extra_content}. */
  extra?: Record<string, unknown>;
}

/**
 * Builds whole tool calls from the deltas of one streamed turn. `index` identifies a call (OpenAI's
 * streaming contract): a delta joins the latest call at its index, and an id repeated on every
 * delta of that call is normal. Servers differ: some give every call `index: 0` and tell them apart
 * by id only, so a different id at the same index is another call; some send no id at all, so a
 * name arriving for a call that has another name, whose arguments are already complete JSON, or
 * when neither has arguments (two calls of a tool without parameters), starts another call; so
 * does a name with arguments, or another name, after complete arguments under the same id (ids
 * numbered per response, every call `call_0`). A call
 * with no id, or with the id of an earlier call of the turn, gets a made-up one: the results sent
 * back must name exactly one call each. An id that comes after a call's first delta, with nothing
 * that begins another call, is that call's (some servers send it late).
 *
 * @example
 * ```ts
 * const calls = new ToolCallAssembler();
 * calls.add({ index: 0, id: 'call_1', function: { name: 'add', arguments: '{"a":' } });
 * calls.add({ index: 0, function: { arguments: '1}' } });
 * calls.calls(); // [{ id: 'call_1', type: 'function', function: { name: 'add', arguments: '{"a":1}' } }]
 * ```
 */
export class ToolCallAssembler {
  readonly #calls: Building[] = [];
  readonly #latestAtIndex = new Map<number, Building>();
  /** The latest call the server gave each id. */
  readonly #byGivenId = new Map<string, Building>();
  readonly #ids = new Set<string>();
  readonly #makeId: () => string;

  constructor(makeId: () => string = makeToolCallId) {
    this.#makeId = makeId;
  }

  /** True once any delta arrived. */
  get size(): number {
    return this.#calls.length;
  }

  add(delta: ToolCallDelta): void {
    const index = delta.index ?? 0;
    const name = delta.function?.name ?? '';
    const sent: unknown = delta.function?.arguments ?? '';
    // Some servers send the arguments as a JSON object rather than its text.
    const args = typeof sent === 'string' ? sent : JSON.stringify(sent);
    const id = delta.id || undefined;
    let call = this.#latestAtIndex.get(index);
    if (id !== undefined && call?.givenId === undefined && call && !startsAnother(call, name, args)) {
      // The call's id came after its first delta (some servers send it late): the call takes it.
      this.#adopt(call, id);
    } else if (id !== undefined && call?.givenId !== id) {
      // Calls told apart by id at one index may interleave: the id's own call, if at this index.
      const known = this.#byGivenId.get(id);
      call = known?.index === index ? known : undefined;
    }
    // A delta with the call's own id is that call's, whatever it repeats (some servers send the id
    // and name on every delta), unless it names a tool again with arguments after complete ones
    // (a server that numbers ids per response, every call `call_0` at index 0); one without an id
    // is told apart by what it says.
    if (call && (id === undefined ? startsAnother(call, name, args) : startsAgain(call, name, args)))
      call = undefined;
    if (!call) {
      const unique = id !== undefined && !this.#ids.has(id) ? id : this.#makeId();
      call = { id: unique, givenId: id, index, name: '', arguments: '' };
      this.#calls.push(call);
      this.#ids.add(unique);
      if (id !== undefined) this.#byGivenId.set(id, call);
    }
    this.#latestAtIndex.set(index, call);
    // Some servers repeat the name on every delta: the first one is the name.
    if (call.name === '') call.name = name;
    call.arguments += args;
    const extra = delta.extra_content;
    if (typeof extra === 'object' && extra !== null && !Array.isArray(extra))
      call.extra = { ...call.extra, ...(extra as Record<string, unknown>) };
  }

  #adopt(call: Building, id: string): void {
    call.givenId = id;
    this.#byGivenId.set(id, call);
    if (this.#ids.has(id)) return; // another call of the turn has it: the made-up one stays
    this.#ids.delete(call.id);
    this.#ids.add(id);
    call.id = id;
  }

  /**
   * The calls so far, in the order of their indexes (a server may stream a later index first), and
   * calls at one index in the order they began.
   */
  calls(): ToolCallRequest[] {
    return this.#calls
      .slice()
      .sort((a, b) => a.index - b.index)
      .map(({ id, name, arguments: args, extra }) => {
        const call: ToolCallRequest = { id, type: 'function', function: { name, arguments: args } };
        if (extra) call.extra_content = extra;
        return call;
      });
  }
}

/** A name for a call already named, when its arguments cannot go on: the server began another call. */
function startsAnother(call: Building, name: string, args: string): boolean {
  if (name === '' || call.name === '') return false;
  return name !== call.name || isCompleteJson(call.arguments) || (args === '' && call.arguments === '');
}

/**
 * A named delta after the call's complete arguments, under the call's own id: another call with
 * the same id when it names another tool, or brings arguments of its own. (The same name with no
 * arguments is a server repeating the call's id and name on every delta.)
 */
function startsAgain(call: Building, name: string, args: string): boolean {
  return name !== '' && isCompleteJson(call.arguments) && (name !== call.name || args.trim() !== '');
}

/** The last characters a JSON value can have: `}`, `]`, `"`, a digit, `true`/`false`, `null`. */
const VALUE_ENDS = new Set('}]"0123456789el');

/** Whether `text` is one whole JSON value (arguments the server finished). */
export function isCompleteJson(text: string): boolean {
  // A JSON value ends with one of these: arguments still streaming are most often told by their
  // last character, without parsing all of them again at every delta.
  if (!VALUE_ENDS.has(text.trimEnd().at(-1) ?? '')) return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
