import type { ChatMessage } from '../model/chat-model.js';
import type { RunRecord } from './run-events.js';
import { runHistory } from './run-history.js';

/**
 * The conversation so far, as messages for the model, from a session's runs (oldest first): each
 * finished run with an answer, with its tool rounds (see {@link runHistory}). A cancelled run keeps
 * its partial answer, as chat apps do; failed runs and runs still active are left out.
 */
export function sessionHistory(runs: readonly RunRecord[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  for (const run of runs) {
    if (run.status !== 'completed' && run.status !== 'cancelled') continue;
    messages.push(...runHistory(run));
  }
  return messages;
}
