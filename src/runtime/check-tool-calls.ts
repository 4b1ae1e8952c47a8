import { z } from 'zod';
import type { CheckedToolCall, ToolCallRequest } from '../../machines/run-types.js';
import type { Tool } from '../tools/tool.js';

/**
 * Checks the calls a model turn asks for against the agent's tools, so that a call to an unknown
 * tool, with arguments that are not a JSON object, or that fail the tool's schema, never runs: its
 * `invalid` text goes to the model instead, which can correct itself on its next turn.
 */
export function checkToolCalls(
  calls: readonly ToolCallRequest[],
  tools: ReadonlyMap<string, Tool>,
): CheckedToolCall[] {
  return calls.map(({ id, function: { name, arguments: text } }) => {
    const checked = { id, name, arguments: text, args: {}, requiresConfirmation: false };
    const tool = tools.get(name);
    if (!tool) {
      const known = [...tools.keys()].join(', ') || 'none';
      return { ...checked, invalid: `Error: there is no tool named '${name}' (tools: ${known})` };
    }
    const parsed = parseArguments(text);
    if (!parsed.ok) return { ...checked, invalid: `Error: the arguments are not ${parsed.error}` };
    const args = parsed.value;
    const result = tool.parameters.safeParse(args);
    if (!result.success) {
      return {
        ...checked,
        args,
        invalid: `Error: the arguments do not match the parameters of ${name}:\n${z.prettifyError(result.error)}`,
      };
    }
    return { ...checked, args, invalid: null, requiresConfirmation: tool.requiresConfirmation === true };
  });
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
