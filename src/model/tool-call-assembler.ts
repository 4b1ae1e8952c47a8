import { randomUUID } from 'node:crypto';
import type { ToolCallRequest } from '../../machines/run-types.js';

/** One streamed piece of a tool call (`choices[0].delta.tool_calls[i]`); servers fill it unevenly. */
export interface ToolCallDelta {
  index?: number | undefined;
  id?: string | null | undefined;
  type?: string | null | undefined;
  function?: { name?: string | null | undefined; arguments?: string | null | undefined } | null | undefined;
}

/** Makes an id for a call that came without one: unique within a run, as ids must match results. */
export const makeToolCallId = (): string => `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`;

interface Building {
  id: string;
  name: string;
  arguments: string;
}

/**
 * Builds whole tool calls from the deltas of one streamed turn. Servers differ: OpenAI sends the id
 * and name once, then argument pieces keyed by `index`; some give every call `index: 0` and tell them
 * apart by id only; some send no id at all. So a delta joins the call with its id when it has one
 * (a new id is a new call, whatever its index), else the latest call at its index; without an id, a
 * name arriving for a call that has another name, or whose arguments are already complete JSON,
 * starts a new call. A call with no
 * id gets a made-up one.
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
  readonly #byId = new Map<string, Building>();
  readonly #latestAtIndex = new Map<number, Building>();
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
    const args = delta.function?.arguments ?? '';
    const id = delta.id || undefined;
    let call = id === undefined ? this.#latestAtIndex.get(index) : this.#byId.get(id);
    const startsAnother =
      id === undefined && name !== '' && call?.name && (name !== call.name || isCompleteJson(call.arguments));
    if (startsAnother) {
      call = undefined;
    }
    if (!call) {
      call = { id: id ?? this.#makeId(), name: '', arguments: '' };
      this.#calls.push(call);
      this.#byId.set(call.id, call);
    }
    this.#latestAtIndex.set(index, call);
    // Some servers repeat the name on every delta: the first one is the name.
    if (call.name === '') call.name = name;
    call.arguments += args;
  }

  /** The calls so far, in the order they began. */
  calls(): ToolCallRequest[] {
    return this.#calls.map(({ id, name, arguments: args }) => ({
      id,
      type: 'function',
      function: { name, arguments: args },
    }));
  }
}

function isCompleteJson(text: string): boolean {
  if (text.trim() === '') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
