/**
 * Cancel from code with a deadline: the run gets two seconds, then `cancelRun` stops it and aborts
 * the model request. The output keeps what was written before the cancel.
 *
 *   npx tsx --conditions=runstate-source examples/cancel_with_timeout.ts
 *   DEADLINE_MS=500 npx tsx --conditions=runstate-source examples/cancel_with_timeout.ts
 *
 * `DEADLINE_MS` (default 2000) is the deadline in milliseconds; anything else than a number from 0
 * to 2^31 - 1 (Node's longest timer) is refused (exit 2).
 */
import { Agent, OpenAIChat } from 'runstate';

const given = process.env.DEADLINE_MS ?? '';
// Digits only: `Number` takes a blank for 0 and `0x10` for 16, neither a deadline anyone meant.
const DEADLINE_MS = given === '' ? 2_000 : /^\d+$/.test(given) ? Number(given) : NaN;
// Node fires a timer of more than 2^31 - 1 ms at once: a "never" would cancel straight away.
if (!Number.isFinite(DEADLINE_MS) || DEADLINE_MS > 2 ** 31 - 1) {
  console.error(
    `DEADLINE_MS must be milliseconds from 0 to ${2 ** 31 - 1}, got ${JSON.stringify(process.env.DEADLINE_MS)}`,
  );
  process.exit(2);
}
const agent = new Agent({ name: 'Essay Agent', model: new OpenAIChat({ id: 'gpt-5-mini' }) });

const stream = agent.run('Write an essay of 1000 words about the history of clocks.', { stream: true });
const deadline = setTimeout(() => {
  const cancelled = agent.cancelRun(stream.runId);
  console.log(`deadline reached: cancelRun → ${cancelled}`);
}, DEADLINE_MS);

const output = await stream.result; // resolves however the run ends; never rejects
clearTimeout(deadline);
console.log(`status: ${output.status} (reason: ${output.cancel_reason ?? '-'})`);
console.log(`kept ${output.content.length} characters: ${output.content.slice(0, 120)}...`);
