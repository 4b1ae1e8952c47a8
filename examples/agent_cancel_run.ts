/**
 * Cancel a run while it streams.
 *
 * One task streams a long story from the agent; another cancels the run after a delay. With no
 * OPENAI_API_KEY the agent runs on runstate's offline model, so this works on any machine.
 *
 *   npm run example:cancel                        # cancels after 8 seconds
 *   CANCEL_AFTER_SECONDS=2 npm run example:cancel
 *   npm run example:cancel -- --cancel-after 2
 *
 * It exits 0 when the run was cancelled or completed first, 1 when the run failed, 2 on a bad delay.
 */
import { parseArgs } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, OpenAIChat, RunEvent, RunStatus, type RunStatus as Status } from 'runstate';

interface RunResult {
  status: Status | 'unknown';
  runId: string | undefined;
  cancelled: boolean;
  content: string;
  /** `CODE: message` when the run failed. */
  error?: string;
}

/** The longest delay a Node timer holds. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The delay in seconds, from `--cancel-after`, else `CANCEL_AFTER_SECONDS`, else 8. */
function readCancelAfter(): number {
  let values: { 'cancel-after'?: string | undefined };
  try {
    ({ values } = parseArgs({ options: { 'cancel-after': { type: 'string' } } }));
  } catch (error) {
    console.error((error as Error).message);
    process.exit(2);
  }
  const [source, raw] =
    values['cancel-after'] !== undefined
      ? ['--cancel-after', values['cancel-after']]
      : process.env.CANCEL_AFTER_SECONDS
        ? ['CANCEL_AFTER_SECONDS', process.env.CANCEL_AFTER_SECONDS]
        : ['default', '8'];
  const seconds = Number(raw);
  // Number('') is 0 and Number('abc') is NaN: neither is a delay anyone meant.
  if (raw.trim() === '' || !Number.isFinite(seconds) || seconds < 0) {
    console.error(`${source} must be a number of seconds, 0 or more (got '${raw}')`);
    process.exit(2);
  }
  // Node fires a timer of more than 2^31 - 1 ms at once: a "never" would cancel straight away.
  if (seconds * 1000 > MAX_TIMER_MS) {
    console.error(`${source} must be at most ${Math.floor(MAX_TIMER_MS / 1000)} seconds (got '${raw}')`);
    process.exit(2);
  }
  return seconds;
}

const cancelAfterSeconds = readCancelAfter();

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
      const error = `${chunk.code}: ${chunk.content}`;
      return { status: chunk.status, runId: chunk.run_id, cancelled: false, content: preview(), error };
    }
  }
  return { status: 'unknown', runId: shared.runId, cancelled: false, content: preview() };
}

/**
 * Cancels the run after the delay, unless the run ends first (`signal`). `cancelRun` is synchronous:
 * the request is aborted before it returns.
 */
async function cancelAfterDelay(shared: { runId?: string }, seconds: number, signal: AbortSignal) {
  console.log(`[TIMER] Will cancel run in ${seconds} seconds...`);
  try {
    await delay(seconds * 1000, undefined, { signal });
  } catch {
    return; // the run ended before the delay: nothing to cancel
  }
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
const runEnded = new AbortController();
const [result] = await Promise.all([
  longRunningTask(shared).finally(() => runEnded.abort()),
  cancelAfterDelay(shared, cancelAfterSeconds, runEnded.signal),
]);

console.log(`\n${'='.repeat(50)}`);
console.log('RESULTS:');
console.log('='.repeat(50));
console.log(`Status: ${result.status}`);
console.log(`Run ID: ${result.runId}`);
console.log(`Was Cancelled: ${result.cancelled}`);
if (result.error) console.log(`Error: ${result.error}`);
console.log(`Content Preview: ${result.content}`);
switch (result.status) {
  case RunStatus.cancelled:
    console.log('\nSUCCESS: Run was successfully cancelled!');
    break;
  case RunStatus.completed:
    console.log('\nWARNING: Run completed before cancellation');
    break;
  case RunStatus.failed:
    console.log('\nFAILED: Run failed before cancellation');
    process.exitCode = 1;
    break;
  default:
    console.log('\nFAILED: the stream ended without a terminal event');
    process.exitCode = 1;
}
console.log('\nExample completed!');
