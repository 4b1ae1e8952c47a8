import type { ToolExecution } from '../../machines/run-types.js';
import { isOpen } from '../../machines/tool-round.js';
import type { RunEvent } from './run-events.js';

/**
 * The calls of a run as its stored events last showed each: `recorded` (the calls of its record as
 * last written, at its creation or its last pause) brought up to date by every call an event carries
 * whole (`ToolCallStarted`, `ToolCallCompleted`, `ToolCallError`, `RunPaused`, `RunContinued`), in
 * the events' order. What another instance knows of a run whose owner went before its final record.
 *
 * An event's call is the last one listed with its id, unless that one is over and the event's is
 * not the same end told again: some servers number calls per response (every turn's first call is
 * `call_0`), so an id may name a new call of a later turn.
 */
export function toolsAsStored(
  recorded: readonly ToolExecution[],
  events: readonly RunEvent[],
): ToolExecution[] {
  const tools = [...recorded];
  const put = (call: ToolExecution): void => {
    const index = tools.findLastIndex((known) => known.tool_call_id === call.tool_call_id);
    const known = tools[index];
    if (known && (isOpen(known) || known.status === call.status)) tools[index] = call;
    else tools.push(call);
  };
  for (const event of events) {
    if ('tool' in event) put(event.tool);
    else if (event.event === 'RunPaused' || event.event === 'RunContinued') event.tools.forEach(put);
  }
  return tools;
}
