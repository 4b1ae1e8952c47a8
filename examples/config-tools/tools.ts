/**
 * A tools module for a config file: every export made with `tool()` (or an array of them) can be
 * named in an agent's `tools`. `runstate.config.json` next to this file serves an agent with two
 * of them:
 *
 *   npm start -- --config examples/config-tools/runstate.config.json
 */
import { tool } from 'runstate';
import { z } from 'zod';

export const wordCount = tool({
  name: 'word_count',
  description: 'Counts the words of a text.',
  parameters: z.object({ text: z.string() }),
  execute: ({ text }) => ({ words: text.split(/\s+/).filter(Boolean).length }),
});

export const reverseText = tool({
  name: 'reverse_text',
  description: 'Writes a text backwards.',
  parameters: z.object({ text: z.string() }),
  execute: ({ text }) => [...text].reverse().join(''),
});

/** Not named in the config: a module may hold more tools than its agents use. */
export const shout = tool({
  name: 'shout',
  description: 'Writes a text in capitals.',
  parameters: z.object({ text: z.string() }),
  execute: ({ text }) => text.toUpperCase(),
});
