import { z } from 'zod';
import type { ToolConfirmation, ToolExecution } from '../../machines/run-types.js';
import { RunstateError } from '../errors.js';

/**
 * An entry of a continue's `tools`: the answer to a call a paused run waits for, or a call of the
 * run that waits for nothing, as a paused run's own `tools` list it (Agno's clients send back every
 * call of the run; `confirmed` and `confirmation_note` are then null). Other fields are ignored.
 */
export interface ToolAnswer {
  tool_call_id: string;
  /** `true` runs the call, `false` rejects it; null or absent only for a call that waits for nothing. */
  confirmed?: boolean | null | undefined;
  /** Told to the model with a rejection. */
  confirmation_note?: string | null | undefined;
}

/** The shape of {@link ToolAnswer}s; what is checked against the run is in {@link confirmationsOf}. */
export const toolAnswersSchema = z.array(
  z.object({
    tool_call_id: z.string(),
    confirmed: z.boolean().nullish(),
    confirmation_note: z.string().nullish(),
  }),
);

/**
 * The confirmations in `entries`, the answers to a paused run whose calls are `tools`. An entry for
 * a call that waits for nothing is dropped when it answers nothing new (`confirmed` null or absent,
 * or the answer the call already had from an earlier pause); the rest are kept for the caller to
 * check against the calls that wait (a second answer, a call left unanswered). An id names a call
 * within its turn only (some servers number them per response, so every turn's first call is
 * `call_0`): the entries with an id are the run's last calls with it, in order. A client that sends
 * back every call (Agno's) names them all; one that sends the calls of the pause (`RunPaused.tools`)
 * names the latest, which are the ones waiting. Throws `INVALID_INPUT` naming the entry's field.
 */
export function confirmationsOf(
  runId: string,
  tools: readonly ToolExecution[],
  entries: readonly ToolAnswer[],
): ToolConfirmation[] {
  const callsById = new Map<string, ToolExecution[]>();
  for (const call of tools) {
    const calls = callsById.get(call.tool_call_id);
    if (calls) calls.push(call);
    else callsById.set(call.tool_call_id, [call]);
  }
  const named = new Map<string, number>();
  for (const { tool_call_id: id } of entries) named.set(id, (named.get(id) ?? 0) + 1);
  const seen = new Map<string, number>();
  const confirmations: ToolConfirmation[] = [];
  entries.forEach((entry, index) => {
    const calls = callsById.get(entry.tool_call_id);
    const nth = seen.get(entry.tool_call_id) ?? 0;
    seen.set(entry.tool_call_id, nth + 1);
    const first = calls ? Math.max(0, calls.length - named.get(entry.tool_call_id)!) : 0;
    const call = calls?.[Math.min(first + nth, calls.length - 1)];
    if (!call) {
      throw invalidEntry(index, 'tool_call_id', `run ${runId} has no tool call ${entry.tool_call_id}`);
    }
    const waits = call.status === 'awaiting_confirmation';
    if (!waits && (entry.confirmed == null || entry.confirmed === call.confirmed)) return;
    if (entry.confirmed == null) throw invalidEntry(index, 'confirmed', 'must be true or false');
    const { tool_call_id, confirmed, confirmation_note } = entry;
    confirmations.push(
      confirmation_note == null
        ? { tool_call_id, confirmed }
        : { tool_call_id, confirmed, confirmation_note },
    );
  });
  return confirmations;
}

function invalidEntry(index: number, name: string, problem: string): RunstateError {
  const field = `tools.${index}.${name}`;
  return new RunstateError('INVALID_INPUT', `${field}: ${problem}`, { details: { field } });
}
