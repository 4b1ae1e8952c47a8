import { z } from 'zod';
import type { CheckedToolCall, ToolCallRequest } from '../../machines/run-types.js';
import { makeToolCallId } from '../model/tool-call-assembler.js';
import type { Tool } from '../tools/tool.js';

/**
 * Checks the calls a model turn asks for against the agent's tools, so that a call to an unknown
 * tool, with arguments that are not a JSON object, or that fail the tool's schema, never runs: its
 * `invalid` text goes to the model instead, which can correct itself on its next turn. Never
 * rejects: a schema that throws is a mismatch, with the thrown message.
 *
 * A call with no id, or with the id of an earlier call of the turn or of the conversation (`taken`),
 * gets a made-up one: an id is how a result goes back to its call and how a cancel finds a running
 * call, so two calls cannot share one; and clients such as Agno's Agent UI merge a run's calls by
 * id, across its turns (some servers number calls per response: `call_0` in every turn).
 * (`OpenAIChat` makes them unique within a turn as it assembles the calls; any `ChatModel` may not.)
 */
export function checkToolCalls(
  calls: readonly ToolCallRequest[],
  tools: ReadonlyMap<string, Tool>,
  taken: Iterable<string> = [],
): Promise<CheckedToolCall[]> {
  const ids = new Set<string>(taken);
  return Promise.all(
    calls.map((call) => {
      const id = call.id && !ids.has(call.id) ? call.id : makeToolCallId();
      ids.add(id);
      return checkToolCall(id === call.id ? call : { ...call, id }, tools);
    }),
  );
}

/** How much of arguments that are not JSON a call's result quotes back to the model. */
const MAX_QUOTED = 2_000;

async function checkToolCall(
  { id, function: { name, arguments: text }, extra_content }: ToolCallRequest,
  tools: ReadonlyMap<string, Tool>,
): Promise<CheckedToolCall> {
  const parsed = parseArguments(text);
  // The call goes back to the model with a JSON object as its arguments: a server that parses them
  // (vLLM, whose chat templates read them as a mapping) refuses the next request otherwise. Empty
  // text, or text that is no JSON object, goes back as `{}`; the latter is quoted in the call's
  // result, where the model reads what was wrong with it.
  const checked = {
    id,
    name,
    arguments: text.trim() === '' || !parsed.ok ? '{}' : text,
    args: {},
    requiresConfirmation: false,
    ...(extra_content ? { extra_content } : {}),
  };
  const tool = tools.get(name);
  if (!tool) {
    const known = [...tools.keys()].join(', ') || 'none';
    return { ...checked, invalid: `Error: there is no tool named '${name}' (tools: ${known})` };
  }
  if (!parsed.ok) {
    const quoted = text.length > MAX_QUOTED ? `${text.slice(0, MAX_QUOTED)}…` : text;
    return { ...checked, invalid: `Error: the arguments are not ${parsed.error}: ${quoted}` };
  }
  const args = parsed.value;
  const result = await checkArguments(tool, args);
  return result.ok
    ? { ...checked, args, invalid: null, requiresConfirmation: tool.requiresConfirmation === true }
    : {
        ...checked,
        args,
        invalid: `Error: the arguments do not match the parameters of ${name}:\n${result.error}`,
      };
}

/** What a tool's schema made of arguments: its output, or why they do not match. */
export type CheckedArguments = { ok: true; data: unknown } | { ok: false; error: string };

/**
 * Runs a tool's schema on parsed arguments, always with `safeParseAsync`: a schema may have async
 * refinements or transforms, which a synchronous parse cannot run (and would start, then drop: a
 * refinement that rejects would be an unhandled rejection). Never rejects: a schema that throws (a
 * `transform` that throws) is a mismatch, with its message.
 */
export async function checkArguments(tool: Tool, args: Record<string, unknown>): Promise<CheckedArguments> {
  try {
    const result = await tool.parameters.safeParseAsync(args);
    return result.success
      ? { ok: true, data: result.data }
      : { ok: false, error: z.prettifyError(result.error) };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

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
