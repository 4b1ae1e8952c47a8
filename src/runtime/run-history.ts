import type { TranscriptMessage } from '../../machines/run-types.js';
import type { ChatMessage } from '../model/chat-model.js';
import type { RunRecord } from './run-events.js';

/**
 * What a finished run adds to its session's conversation: the user's message, the assistant turns
 * that asked for tools with one result per call (`record.messages`), then the last answer. A failed
 * run, or one that produced nothing, adds nothing. A round cut short by a cancel is left out whole,
 * since a model refuses tool calls without their results.
 */
export function runHistory(
  record: Pick<RunRecord, 'status' | 'run_input' | 'content' | 'messages'>,
): ChatMessage[] {
  const rounds: readonly TranscriptMessage[] = record.messages ?? [];
  if (record.status === 'failed' || (record.content === '' && rounds.length === 0)) return [];
  // `content` is every turn's text in order: the last answer is what the rounds' turns did not say.
  let said = 0;
  for (const message of rounds) if (message.role === 'assistant') said += message.content.length;
  const last = record.content.slice(said);
  const messages: ChatMessage[] = [{ role: 'user', content: record.run_input }, ...rounds];
  if (last !== '') messages.push({ role: 'assistant', content: last });
  return messages;
}
