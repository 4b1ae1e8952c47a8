import type { RunToolEmitted } from '../../machines/run.machine.js';
import {
  pauseRequirements,
  type RunContinuedEvent,
  type RunEventBase,
  type RunPausedEvent,
  type ToolCallCompletedEvent,
  type ToolCallErrorEvent,
  type ToolCallStartedEvent,
} from './run-events.js';

type Body<E> = Omit<E, keyof RunEventBase>;

/** The wire events of what the run machine emits about tools and pauses, in order. */
export type ToolEventBody =
  | Body<ToolCallStartedEvent>
  | Body<ToolCallCompletedEvent>
  | Body<ToolCallErrorEvent>
  | Body<RunPausedEvent>
  | Body<RunContinuedEvent>;

/**
 * Agno's events for a tool emission: `ToolCallStarted`; `ToolCallCompleted`, followed by
 * `ToolCallError` when the model was told of an error; `RunPaused`; `RunContinued`.
 */
export function toolEvents(emitted: RunToolEmitted): ToolEventBody[] {
  switch (emitted.type) {
    case 'tool_started':
      return [{ event: 'ToolCallStarted', tool: emitted.tool }];
    case 'tool_completed': {
      const { tool } = emitted;
      const completed: ToolEventBody = { event: 'ToolCallCompleted', tool, content: tool.result ?? '' };
      return tool.tool_call_error
        ? [completed, { event: 'ToolCallError', tool, error: tool.result ?? '' }]
        : [completed];
    }
    case 'paused':
      return [
        {
          event: 'RunPaused',
          status: 'paused',
          tools: emitted.tools,
          requirements: pauseRequirements(emitted.tools),
        },
      ];
    case 'continued':
      return [{ event: 'RunContinued', tools: emitted.tools }];
  }
}
