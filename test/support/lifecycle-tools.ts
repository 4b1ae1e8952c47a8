/**
 * The tools of lifecycle paths (`lookup`, and `publish`, which needs a person's confirmation) as real
 * tools whose calls the test holds with deferred promises, and the wire events a path's tool steps
 * must publish.
 */
import { z } from 'zod';
import type { CheckedToolCall, ToolExecution } from '../../machines/run-types.js';
import type { RunToolEmitted } from '../../machines/run.machine.js';
import { tool, type Tool } from '../../src/tools/tool.js';
import {
  LIFECYCLE_CONFIRM_CALL,
  LIFECYCLE_TOOL_CALL,
  type LifecycleAction,
  type LifecyclePath,
  type LifecycleStep,
} from '../../src/testing/index.js';

/** One call of a held tool: it returns or throws when the test says so. */
export interface HeldToolCall {
  toolCallId: string;
  signal: AbortSignal;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/**
 * The path's tools, each call held until the test settles it. A tool that `honoursSignal` rejects
 * as soon as its signal aborts; one that does not keeps running (and may answer late, when the test
 * says so), as a tool that ignores its signal does.
 */
export function heldLifecycleTools(path: LifecyclePath, honoursSignal: boolean) {
  const calls: HeldToolCall[] = [];
  const waiters: Array<() => void> = [];
  const make = (call: CheckedToolCall): Tool =>
    tool({
      name: call.name,
      description: `${call.name}, held by the test`,
      parameters: z.object({}),
      timeoutMs: path.toolTimeoutMs,
      requiresConfirmation: call.requiresConfirmation,
      execute: (_args, { signal, toolCallId }) =>
        new Promise((resolve, reject) => {
          calls.push({ toolCallId, signal, resolve, reject });
          for (const wake of waiters.splice(0)) wake();
          if (honoursSignal) {
            signal.addEventListener(
              'abort',
              () => reject(new Error(`${call.name} aborted`, { cause: signal.reason })),
              { once: true },
            );
          }
        }),
    });
  return {
    tools: [make(LIFECYCLE_TOOL_CALL), make(LIFECYCLE_CONFIRM_CALL)],
    calls,
    /** Resolves once `count` calls have started (the runtime starts them in a job of their own). */
    async started(count: number): Promise<HeldToolCall> {
      while (calls.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
      return calls[count - 1]!;
    },
  };
}

/** Plays a tool step on the held calls (`toolTimeout` is time passing: not played here). */
export function playOnHeldTool(calls: readonly HeldToolCall[], action: LifecycleAction): boolean {
  const call = calls.at(-1);
  if (action.type === 'toolDone') call!.resolve(action.result);
  else if (action.type === 'toolThrew') call!.reject(new Error(action.message));
  else return false;
  return true;
}

/** A tool call's record without its times (a path's clock starts at 0, a run's is real). */
export function toolFacts(tool: ToolExecution) {
  const { metrics: _metrics, created_at: _createdAt, ...facts } = tool;
  return facts;
}

/** The wire events of what the machine says about tools at a step, with the tool each carries. */
export function toolWireEvents(step: LifecycleStep): { event: string; tools: ToolExecution[] }[] {
  return step.toolsEmitted.flatMap((emitted: RunToolEmitted) => {
    switch (emitted.type) {
      case 'tool_started':
        return [{ event: 'ToolCallStarted', tools: [emitted.tool] }];
      case 'tool_completed':
        return emitted.tool.tool_call_error
          ? [
              { event: 'ToolCallCompleted', tools: [emitted.tool] },
              { event: 'ToolCallError', tools: [emitted.tool] },
            ]
          : [{ event: 'ToolCallCompleted', tools: [emitted.tool] }];
      case 'paused':
        return [{ event: 'RunPaused', tools: emitted.tools }];
      case 'continued':
        return [{ event: 'RunContinued', tools: emitted.tools }];
    }
  });
}

/** The step ends a tool round: the next model request carries its calls and results. */
export const endsRound = (step: LifecycleStep): boolean =>
  step.requestsModel && ['toolDone', 'toolThrew', 'toolTimeout', 'continue'].includes(step.action.type);
