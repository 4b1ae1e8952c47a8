import { inspect, types } from 'node:util';
import { z } from 'zod';
import { RunstateError } from '../errors.js';
import { checkOptionNames } from '../option-names.js';
import type { ToolDefinition } from '../model/chat-model.js';

/** What a tool's `execute` gets besides its arguments. */
export interface ToolExecuteContext {
  /**
   * Aborted when the call's answer is no longer wanted: the run was cancelled, timed out or shut
   * down, or the call passed its `timeoutMs`. Pass it on (to `fetch`, child processes, timers);
   * whatever the tool returns after it aborted is dropped.
   */
  signal: AbortSignal;
  /**
   * The call's id, as the model's `tool` message and the run's events carry it: the id the model
   * gave the call, or one runstate made up (`call_…`) when the model gave none or one it had
   * already given in that turn.
   */
  toolCallId: string;
  runId: string;
  sessionId: string;
}

/** A zod 4 object schema: a tool's arguments are always a JSON object. */
export type ToolParameters = z.ZodObject;

/** Options of {@link tool}. */
export interface ToolOptions<P extends ToolParameters> {
  /** What the model calls it: letters, digits, `_` and `-`, at most 64 (OpenAI's rule). */
  name: string;
  /** Tells the model when and how to use it. */
  description: string;
  /** The arguments, sent to the model as JSON Schema; a call whose arguments fail it never runs. */
  parameters: P;
  /**
   * Runs one call. A string goes to the model as it is, anything else as JSON (`undefined` as an
   * empty string). A throw is not a failed run: the model is told of the error.
   */
  execute(args: z.output<P>, context: ToolExecuteContext): unknown;
  /** A call running longer is aborted and the model told "timed out after N ms". Default: none. */
  timeoutMs?: number | undefined;
  /** Pause the run before each call of this tool until a person confirms or rejects it. */
  requiresConfirmation?: boolean | undefined;
}

/** A tool an agent can call. Create it with {@link tool}. */
export interface Tool<P extends ToolParameters = ToolParameters> extends Readonly<ToolOptions<P>> {
  /** What the model is sent: name, description and the parameters as JSON Schema. */
  readonly definition: ToolDefinition;
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * Whether `name` can be a tool's, as {@link tool} requires (1 to 64 letters, digits, `_` or `-`,
 * what OpenAI's API accepts). A name a model asks for may be anything: one that fails this is no
 * tool's, and observers do not carry it as it is.
 */
export function isToolName(name: unknown): name is string {
  return typeof name === 'string' && TOOL_NAME.test(name);
}

// (`definition`: a tool spread into the options of another, which is made anew.)
const TOOL_OPTIONS = [
  ...['name', 'description', 'parameters', 'execute', 'timeoutMs', 'requiresConfirmation'],
  'definition',
];

/**
 * Defines a tool: a function the model may call with arguments that match `parameters`.
 *
 * @example
 * ```ts
 * import { z } from 'zod';
 * import { Agent, tool } from 'runstate';
 *
 * const weather = tool({
 *   name: 'get_weather',
 *   description: 'The current weather in a city',
 *   parameters: z.object({ city: z.string() }),
 *   execute: async ({ city }, { signal }) => (await fetch(`https://wttr.in/${city}?format=3`, { signal })).text(),
 *   timeoutMs: 10_000,
 * });
 * const agent = new Agent({ name: 'Weather', tools: [weather] });
 * ```
 */
export function tool<P extends ToolParameters>(options: ToolOptions<P>): Tool<P> {
  if (typeof options !== 'object' || options === null) {
    throw new RunstateError(
      'INVALID_INPUT',
      'tool() needs its options: { name, description, parameters, execute }',
    );
  }
  // (A test of a non-string would pass `undefined` or `123` as the text "undefined" or "123".)
  if (!isToolName(options.name)) {
    const name: unknown = options.name;
    throw new RunstateError(
      'INVALID_INPUT',
      `tool name ${typeof name === 'string' ? `'${name}'` : String(name)} must be 1 to 64 letters, digits, '_' or '-'`,
    );
  }
  // A misspelt `requiresConfirmation` would run the tool without asking anyone.
  checkOptionNames(options, TOOL_OPTIONS, `tool ${options.name}`);
  const { requiresConfirmation } = options as { requiresConfirmation?: unknown };
  if (requiresConfirmation !== undefined && typeof requiresConfirmation !== 'boolean') {
    throw new RunstateError(
      'INVALID_INPUT',
      `requiresConfirmation of tool ${options.name} must be true or false, got ${JSON.stringify(requiresConfirmation)}`,
    );
  }
  if (typeof options.execute !== 'function') {
    throw new RunstateError('INVALID_INPUT', `tool ${options.name} needs an execute function`);
  }
  const { timeoutMs } = options as { timeoutMs?: unknown };
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs > 0)) {
    throw new RunstateError(
      'INVALID_INPUT',
      `timeoutMs of tool ${options.name} must be a number of milliseconds > 0 (Infinity: no limit)`,
    );
  }
  // A caller untyped (JavaScript, a JSON schema given as is): the model is told an object's fields.
  const schema = options.parameters as unknown;
  const converted =
    typeof schema === 'object' && schema !== null && '_zod' in schema
      ? modelSchemaOf(options.name, options.parameters)
      : undefined;
  if (converted?.type !== 'object') {
    throw new RunstateError(
      'INVALID_INPUT',
      `parameters of tool ${options.name} must be a zod object schema (z.object({...}))`,
    );
  }
  // Some servers refuse a `$schema` key inside a tool's parameters; the model needs none.
  const { $schema: _dialect, ...parameters } = converted;
  return Object.freeze({
    ...options,
    definition: { name: options.name, description: options.description, parameters },
  });
}

/**
 * The JSON Schema the model is told a tool's arguments in. A schema with what JSON cannot carry
 * (`z.date()`, `z.bigint()`: the model sends JSON) is refused naming the tool, not with zod's error.
 */
function modelSchemaOf(name: string, parameters: ToolParameters): z.core.JSONSchema.BaseSchema {
  try {
    return z.toJSONSchema(parameters, { io: 'input' });
  } catch (error) {
    throw new RunstateError(
      'INVALID_INPUT',
      `parameters of tool ${name} cannot be told to a model as JSON Schema: ${(error as Error).message}` +
        ' (a model sends JSON: take a string or a number, and convert it in execute)',
      { cause: error },
    );
  }
}

/** The longest tool result a model is sent, in characters (a megabyte of ASCII text, as the body limit). */
export const MAX_TOOL_RESULT_CHARS = 1_000_000;

/**
 * What the model is told a call returned: strings as they are, anything else as JSON, also what
 * JSON cannot write (see {@link writableAsJson}); a function or a symbol as `inspect` names it.
 */
export function toolResultText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === undefined) return '';
  if (typeof value === 'bigint') return value.toString();
  try {
    // `undefined` for a function or a symbol.
    const json = JSON.stringify(value) as string | undefined;
    if (json !== undefined) return json;
  } catch {
    // A BigInt or a cycle inside: still JSON, all of it (a result is cut only by the size limit,
    // which fails the call and says so), at JSON's speed: `inspect` took seconds over a large one.
    try {
      return JSON.stringify(value, writableAsJson());
    } catch {
      // A getter or a `toJSON` that throws, a nesting too deep for JSON: as `inspect` prints it,
      // all of it or past the size limit (which then fails the call), never cut short below it.
      return shown(value, WHOLE_TO_THE_LIMIT);
    }
  }
  return shown(value);
}

/**
 * `inspect`'s options that print a value whole, or cut it only where the text is over
 * {@link MAX_TOOL_RESULT_CHARS} anyway (a string past it; an array past half of it, at two
 * characters an item at least): its defaults stop at depth 2, 100 items and 10,000 characters.
 */
const WHOLE_TO_THE_LIMIT = {
  depth: Infinity,
  maxStringLength: MAX_TOOL_RESULT_CHARS + 1,
  maxArrayLength: MAX_TOOL_RESULT_CHARS / 2,
} as const;

/**
 * A `JSON.stringify` replacer for what JSON cannot write: a BigInt as its digits in a string (JSON's
 * numbers lose digits past 2^53), a reference back to an object that holds it as `"[Circular]"`.
 * An object met twice but not inside itself is written twice, as JSON does.
 */
function writableAsJson(): (this: unknown, key: string, value: unknown) => unknown {
  // The objects from the top down to the one being written.
  const ancestors: unknown[] = [];
  return function (this: unknown, _key: string, value: unknown): unknown {
    if (typeof value === 'bigint') return value.toString();
    if (typeof value !== 'object' || value === null) return value;
    // `this` holds `value`: what was below `this` is done with (the top's holder is no ancestor).
    ancestors.length = ancestors.lastIndexOf(this) + 1;
    if (ancestors.includes(value)) return '[Circular]';
    ancestors.push(value);
    return value;
  };
}

/**
 * What a tool threw, as the model is told it: an error's message, else the value as text. Never
 * throws, whatever was thrown (`Object.create(null)`, an object whose `toString` throws): the call
 * must end, and its run go on.
 */
export function thrownText(error: unknown): string {
  try {
    // Also an error of another realm (a `vm` context), which `instanceof Error` does not see.
    if (error instanceof Error || types.isNativeError(error)) {
      const { name, message } = error;
      // `new TypeError()` still says what it was.
      return typeof message === 'string' && message !== '' ? message : String(name || 'Error');
    }
    if (typeof error === 'object' && error !== null) {
      // Some SDKs throw plain objects: `{ message, code }`.
      const { message, code } = error as { message?: unknown; code?: unknown };
      if (typeof message === 'string' && message !== '') {
        return typeof code === 'string' || typeof code === 'number' ? `${message} (code ${code})` : message;
      }
    }
    const text = String(error);
    // An object with no `toString` of its own says more as `inspect` prints it.
    return text === '[object Object]' ? shown(error) : text;
  } catch {
    return shown(error);
  }
}

/**
 * `inspect`'s text of a value (at most 4 levels deep unless `options` say otherwise), or a fixed
 * text when even that throws (a custom inspect hook, a nesting too deep for the stack).
 */
function shown(value: unknown, options?: typeof WHOLE_TO_THE_LIMIT): string {
  try {
    return inspect(value, { depth: 4, ...options, breakLength: Infinity });
  } catch {
    return '(a value that cannot be shown)';
  }
}

/**
 * Whether `value` is a tool as {@link tool} makes it. Checked by shape, not by identity: a tools
 * module may import `runstate` from another copy (its build where the CLI runs from the sources, or
 * the reverse).
 */
export function isTool(value: unknown): value is Tool {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<Tool>;
  return (
    typeof candidate.name === 'string' &&
    typeof candidate.execute === 'function' &&
    typeof candidate.definition === 'object' &&
    candidate.definition !== null &&
    typeof candidate.parameters?.safeParse === 'function'
  );
}

/**
 * Refuses `tools` that are not an array of tools made with {@link tool}, or that name one tool
 * twice (the model could not tell them apart). `of` names whose they are (`agent writer`; default:
 * the run's).
 */
export function checkTools(tools: unknown, of?: string): asserts tools is Tool[] {
  if (!Array.isArray(tools) || !tools.every(isTool)) {
    throw new RunstateError(
      'INVALID_INPUT',
      `${of ? `tools of ${of}` : 'tools'} must be an array of tools made with tool()`,
    );
  }
  if (new Set(tools.map((each) => each.name)).size !== tools.length)
    throw new RunstateError('INVALID_INPUT', `two tools of ${of ?? 'the run'} have the same name`);
}
