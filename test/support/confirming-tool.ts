import { z } from 'zod';
import { tool } from '../../src/index.js';

/** A tool that pauses its runs until a person confirms the call; it answers `published`. */
export function confirmingTool(name = 'publish') {
  return tool({
    name,
    description: 'Publishes once a person confirms it',
    parameters: z.object({}),
    requiresConfirmation: true,
    execute: () => 'published',
  });
}
