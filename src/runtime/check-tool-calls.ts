import { z } from 'zod';
import type { CheckedToolCall, ToolCallRequest } from '../../machines/run-types.js';
import type { Tool } from '../tools/tool.js';

/**
 * Checks the calls a model turn asks for against the agent's tools, so that a call to an unknown
 * tool, with arguments that are not a JSON object, or that fail the tool's schema, never runs: its
 * `invalid` text goes to the model instead, which can correct itself on its next turn. The answer
 * is a promise only when a tool's schema is async (an async `refine`), and never rejects: a schema
 * that throws is a mismatch, with the thrown message.
 */
export function checkToolCalls(
  calls: readonly ToolCallRequest[],
  tools: ReadonlyMap<string, Tool>,
): CheckedToolCall[] | Promise<CheckedToolCall[]> {
  const checked = calls.map((call) => checkToolCall(call, tools));
  return checked.every((call) => !(call instanceof Promise))
    ? (checked as CheckedToolCall[])
    : Promise.all(checked.map((call) => Promise.resolve(call)));
}

function checkToolCall(
  { id, function: { name, arguments: text } }: ToolCallRequest,
  tools: ReadonlyMap<string, Tool>,
): CheckedToolCall | Promise<CheckedToolCall> {
  const checked = { id, name, arguments: text, args: {}, requiresConfirmation: false };
  const tool = tools.get(name);
  if (!tool) {
    const known = [...tools.keys()].join(', ') || 'none';
    return { ...checked, invalid: `Error: there is no tool named '${name}' (tools: ${known})` };
  }
  const parsed = parseArguments(text);
  if (!parsed.ok) return { ...checked, invalid: `Error: the arguments are not ${parsed.error}` };
  const args = parsed.value;
  const verdict = (result: CheckedArguments): CheckedToolCall =>
    result.ok
      ? { ...checked, args, invalid: null, requiresConfirmation: tool.requiresConfirmation === true }
      : {
          ...checked,
          args,
          invalid: `Error: the arguments do not match the parameters of ${name}:\n${result.error}`,
        };
  const result = checkArguments(tool, args);
  return result instanceof Promise ? result.then(verdict) : verdict(result);
}

/** What a tool's schema made of arguments: its output, or why they do not match. */
export type CheckedArguments = { ok: true; data: unknown } | { ok: false; error: string };

/**
 * Runs a tool's schema on parsed arguments. Synchronously when it can; a schema with an async
 * refinement (which zod refuses to run synchronously) runs with `safeParseAsync`. Never throws and
 * never rejects: a schema that throws (a `transform` that throws) is a mismatch, with its message.
 */
export function checkArguments(
  tool: Tool,
  args: Record<string, unknown>,
): CheckedArguments | Promise<CheckedArguments> {
  try {
    return verdictOf(tool.parameters.safeParse(args));
  } catch (error) {
    if (!(error instanceof z.core.$ZodAsyncError)) return { ok: false, error: messageOf(error) };
  }
  return tool.parameters.safeParseAsync(args).then(verdictOf, (error: unknown) => ({
    ok: false,
    error: messageOf(error),
  }));
}

function verdictOf(result: z.ZodSafeParseResult<unknown>): CheckedArguments {
  return result.success
    ? { ok: true, data: result.data }
    : { ok: false, error: z.prettifyError(result.error) };
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

type Parsed = { ok: true; value: Record<string, unknown> } | { ok: false; error: string };

/** Empty arguments are an empty object: some servers send nothing for a tool without parameters. */
export function parseArguments(text: string): Parsed {
  if (text.trim() === '') return { ok: true, value: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, error: `valid JSON (${(error as Error).message})` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: 'a JSON object' };
  }
  return { ok: true, value: value as Record<string, unknown> };
}
