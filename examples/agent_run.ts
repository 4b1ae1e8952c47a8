/**
 * A run without streaming: `agent.run(input)` resolves with the run's output once it is final.
 *
 *   npx tsx --conditions=runstate-source examples/agent_run.ts
 */
import { Agent, OfflineModel, OpenAIChat } from 'runstate';

const agent = new Agent({
  name: 'Haiku Agent',
  // A fast offline model unless OPENAI_API_KEY is set.
  model: process.env.OPENAI_API_KEY
    ? new OpenAIChat({ id: 'gpt-5-mini' })
    : new OfflineModel({ tokensPerSecond: 200 }),
  instructions: 'Answer in a few short lines.',
});

const output = await agent.run('Write a short poem about state machines in 40 words.');
console.log(`status:  ${output.status}`);
console.log(`run id:  ${output.run_id}`);
// A server that reports no usage gives null counts: unknown, not zero.
const tokens = (count: number | null) => (count === null ? 'unknown' : String(count));
console.log(
  `tokens:  ${tokens(output.metrics.output_tokens)} out, ${tokens(output.metrics.input_tokens)} in`,
);
console.log(`finish:  ${output.finish_reason}`);
console.log(
  `time:    ${output.metrics.duration.toFixed(2)} s (first token after ${output.metrics.time_to_first_token?.toFixed(3)} s)`,
);
console.log(`\n${output.content}`);
