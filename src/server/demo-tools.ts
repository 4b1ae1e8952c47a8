import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { tool, type Tool } from '../tools/tool.js';

/** A quick tool: it answers at once. */
const add = tool({
  name: 'add',
  description: 'Adds two numbers and returns their sum.',
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => ({ sum: a + b }),
});

/**
 * A slow tool: it takes `seconds` (5 unless asked), long enough to cancel the run while it runs. It
 * passes its signal to its timer, so a cancel stops it at once.
 */
const slowSearch = tool({
  name: 'slow_search',
  description: 'Searches slowly: takes the given number of seconds (default 5) before it answers.',
  parameters: z.object({
    query: z.string(),
    seconds: z.number().int().min(1).max(60).default(5),
  }),
  execute: async ({ query, seconds }, { signal }) => {
    await sleep(seconds * 1000, undefined, { signal });
    return `3 results for "${query}" after ${seconds} s`;
  },
});

/** A tool a person must confirm: the run pauses before it runs (`RunPaused`, then a continue). */
const publishNote = tool({
  name: 'publish_note',
  description: 'Publishes a short note. A person confirms each call first.',
  parameters: z.object({ note: z.string() }),
  // Nothing leaves the process: the demo only shows the pause and the answer.
  execute: ({ note }) => `published the note "${note}"`,
  requiresConfirmation: true,
});

/**
 * The tools of the demo agent `tool-demo-agent` that `runstate serve` offers when the config declares
 * no agents: `add` (quick), `slow_search` (seconds, to try a cancel mid-tool) and `publish_note`
 * (pauses for a confirmation).
 */
export const DEMO_TOOLS: readonly Tool[] = [add, slowSearch, publishNote];
