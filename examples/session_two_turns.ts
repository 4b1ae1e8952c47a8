/**
 * A session of two turns: runs that share a `sessionId` send the earlier turns to the model.
 *
 *   npx tsx --conditions=runstate-source examples/session_two_turns.ts
 */
import { Agent, OfflineModel, OpenAIChat, RunEvent } from 'runstate';

const agent = new Agent({
  name: 'Chat Agent',
  model: process.env.OPENAI_API_KEY
    ? new OpenAIChat({ id: 'gpt-5-mini' })
    : new OfflineModel({ tokensPerSecond: 300 }),
});

const first = await agent.run('Tell me about lighthouses in 30 words.');
console.log(`turn 1 (${first.status}): ${first.content}\n`);

// Same session: the model receives turn 1 (question and answer) before the new question.
for await (const event of agent.run('And what about their keepers? Answer in 30 words.', {
  stream: true,
  sessionId: first.session_id,
})) {
  if (event.event === RunEvent.runStarted) process.stdout.write('turn 2: ');
  if (event.event === RunEvent.runContent) process.stdout.write(event.content);
  if (event.event === RunEvent.runCompleted) console.log(`\n\nsession ${event.session_id}: 2 turns`);
}
const session = await agent.orchestrator.getSession(first.session_id);
console.log(`runs in the session: ${session?.run_ids.length}`);
