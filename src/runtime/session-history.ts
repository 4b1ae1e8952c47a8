import type { ChatMessage } from '../model/chat-model.js';
import type { RunRecord } from './run-events.js';
import { runHistory } from './run-history.js';

/**
 * The conversation so far, as messages for the model, from a session's runs (oldest first): each
 * finished run with an answer, with its tool rounds (see {@link runHistory}), the last `maxRuns` of
 * them. A cancelled run keeps its partial answer, as chat apps do; failed runs, runs still active
 * and runs that left nothing to send are left out, and not counted.
 */
export function sessionHistory(runs: readonly RunRecord[], maxRuns = Infinity): ChatMessage[] {
  const turns: ChatMessage[][] = [];
  for (let i = runs.length - 1; i >= 0 && turns.length < maxRuns; i--) {
    const run = runs[i]!;
    if (run.status !== 'completed' && run.status !== 'cancelled') continue;
    const turn = runHistory(run);
    if (turn.length > 0) turns.push(turn);
  }
  return turns.reverse().flat();
}
