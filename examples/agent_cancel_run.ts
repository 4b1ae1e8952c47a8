/**
 * Cancel a run while it streams.
 *
 * One task streams a long story from the agent; another cancels the run after a delay. With no
 * OPENAI_API_KEY the agent runs on runstate's offline model, so this works on any machine.
 *
 *   npm run example:cancel                        # cancels after 8 seconds
 *   CANCEL_AFTER_SECONDS=2 npm run example:cancel
 *   npm run example:cancel -- --cancel-after 2
 */
import { parseArgs } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, OpenAIChat, RunEvent, RunStatus, type RunStatus as Status } from 'runstate';

interface RunResult {
  status: Status | 'unknown';
  runId: string | undefined;
  cancelled: boolean;
  content: string;
}

const { values } = parseArgs({ options: { 'cancel-after': { type: 'string' } } });
const cancelAfterSeconds = Number(values['cancel-after'] ?? process.env.CANCEL_AFTER_SECONDS ?? 8);

const agent = new Agent({
  name: 'StorytellerAgent',
  model: new OpenAIChat({ id: 'gpt-5-mini' }), // a model that writes long answers
  description: 'An agent that writes detailed stories',
});

/** Streams the story, printing each delta, and records how the run ended. */
async function longRunningTask(shared: { runId?: string }): Promise<RunResult> {
  const pieces: string[] = [];
  const preview = () => (pieces.length > 0 ? `${pieces.join('').slice(0, 200)}...` : 'No content');
  for await (const chunk of agent.run(
    'Write a very long story about a dragon who learns to code. ' +
      'Make it at least 2000 words with detailed descriptions and dialogue. ' +
      'Take your time and be very thorough.',
    { stream: true },
  )) {
    shared.runId ??= chunk.run_id;
    if (chunk.event === RunEvent.runContent) {
      process.stdout.write(chunk.content);
      pieces.push(chunk.content);
    } else if (chunk.event === RunEvent.runCancelled) {
      console.log(`\n[CANCELLED] Run was cancelled: ${chunk.run_id} (reason: ${chunk.reason})`);
      return { status: chunk.status, runId: chunk.run_id, cancelled: true, content: preview() };
    } else if (chunk.event === RunEvent.runCompleted) {
      return { status: chunk.status, runId: chunk.run_id, cancelled: false, content: preview() };
    } else if (chunk.event === RunEvent.runError) {
      console.log(`\n[ERROR] ${chunk.code}: ${chunk.content}`);
      return { status: chunk.status, runId: chunk.run_id, cancelled: false, content: preview() };
    }
  }
  return { status: 'unknown', runId: shared.runId, cancelled: false, content: preview() };
}

/** Cancels the run after the delay. `cancelRun` is synchronous: the request is aborted before it returns. */
async function cancelAfterDelay(shared: { runId?: string }, seconds: number): Promise<void> {
  console.log(`[TIMER] Will cancel run in ${seconds} seconds...`);
  await delay(seconds * 1000);
  if (!shared.runId) {
    console.log('[WARNING] No run_id found to cancel');
    return;
  }
  console.log(`\n[CANCEL] Cancelling run: ${shared.runId}`);
  if (agent.cancelRun(shared.runId)) console.log(`[OK] Run ${shared.runId} cancelled`);
  else console.log(`[ERROR] Could not cancel run ${shared.runId} (unknown or already finished)`);
}

console.log('Starting agent run cancellation example...');
console.log(`Model: ${agent.model.id} (${agent.model.provider})`);
console.log('='.repeat(50));
const shared: { runId?: string } = {};
const [result] = await Promise.all([longRunningTask(shared), cancelAfterDelay(shared, cancelAfterSeconds)]);

console.log(`\n${'='.repeat(50)}`);
console.log('RESULTS:');
console.log('='.repeat(50));
console.log(`Status: ${result.status}`);
console.log(`Run ID: ${result.runId}`);
console.log(`Was Cancelled: ${result.cancelled}`);
console.log(`Content Preview: ${result.content}`);
if (result.status === RunStatus.cancelled) console.log('\nSUCCESS: Run was successfully cancelled!');
else console.log('\nWARNING: Run completed before cancellation');
console.log('\nExample completed!');
