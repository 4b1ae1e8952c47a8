/**
 * Tools: a run that calls a tool, a cancel while a slow tool runs, and a run that pauses until a
 * person confirms a tool call. Offline, the model calls the tools a message names (docs/tools.md).
 *
 *   npm run example:tools
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { Agent, OfflineModel, OpenAIChat, RunEvent, tool } from 'runstate';

const add = tool({
  name: 'add',
  description: 'Adds two numbers.',
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => ({ sum: a + b }),
});

let searchSignal: AbortSignal | undefined;
const slowSearch = tool({
  name: 'slow_search',
  description: 'Searches for a minute before it answers.',
  parameters: z.object({ query: z.string() }),
  execute: async ({ query }, { signal }) => {
    searchSignal = signal;
    // The signal goes to the timer: a cancel stops the wait at once.
    await sleep(60_000, undefined, { signal });
    return `results for ${query}`;
  },
});

const publishNote = tool({
  name: 'publish_note',
  description: 'Publishes a note.',
  parameters: z.object({ note: z.string() }),
  execute: ({ note }) => `published "${note}"`,
  requiresConfirmation: true,
});

const agent = new Agent({
  name: 'Tool Agent',
  // A fast offline model unless OPENAI_API_KEY is set.
  model: process.env.OPENAI_API_KEY
    ? new OpenAIChat({ id: 'gpt-5-mini' })
    : new OfflineModel({ tokensPerSecond: 200 }),
  instructions: 'Use the tools the user names, then say what they returned.',
  tools: [add, slowSearch, publishNote],
});

console.log('1. A run that calls a tool');
for await (const event of agent.run('add 2 and 3', { stream: true })) {
  if (event.event === RunEvent.toolCallStarted)
    console.log(`   ToolCallStarted    ${event.tool.tool_name} ${JSON.stringify(event.tool.tool_args)}`);
  if (event.event === RunEvent.toolCallCompleted)
    console.log(`   ToolCallCompleted  ${event.tool.tool_name} → ${event.tool.result}`);
  if (event.event === RunEvent.runCompleted)
    console.log(`   RunCompleted       ${JSON.stringify(event.content)}`);
}

console.log('\n2. A cancel while a slow tool runs');
const search = agent.run('slow search for lighthouses', { stream: true });
for await (const event of search) {
  if (event.event === RunEvent.toolCallStarted) {
    const cancelled = agent.cancelRun(search.runId);
    // The tool's signal is aborted before cancelRun returns.
    console.log(`   ${event.tool.tool_name} started; cancelRun → ${cancelled}`);
    console.log(`   the tool's signal aborted: ${searchSignal?.aborted ?? 'never started'}`);
  }
  if (event.event === RunEvent.runCancelled) console.log(`   RunCancelled       reason: ${event.reason}`);
}
const searched = await agent.getRun(search.runId);
for (const call of searched?.tools ?? []) console.log(`   recorded: ${call.tool_name} ${call.status}`);

console.log('\n3. A run that pauses for a confirmation');
// Without `stream`, run() resolves at the pause: the paused run, with the calls that wait.
let output = await agent.run("publish note 'the example ran'");
if (output.status !== 'paused') console.log('   the model called no tool that needs a confirmation');
while (output.status === 'paused') {
  const waiting = output.tools.filter((call) => call.status === 'awaiting_confirmation');
  for (const call of waiting)
    console.log(`   paused             ${call.tool_name} ${JSON.stringify(call.tool_args)} waits`);
  // A person says yes to every waiting call (`confirmed: false` would reject it: it would not run).
  const answers = waiting.map((call) => ({ tool_call_id: call.tool_call_id, confirmed: true }));
  // Resolves at the next stop: the end, or another pause.
  output = await agent.continueRun(output.run_id, { tools: answers });
}
console.log(`   continued          ${output.status}: ${JSON.stringify(output.content)}`);
