import { fromCallback } from 'xstate';
import type { ToolRunnerInput } from '../../machines/run-types.js';
import { clampDelay, type RunMachineEvent } from '../../machines/run.machine.js';
import { MAX_TOOL_RESULT_CHARS, thrownText, toolResultText, type Tool } from '../tools/tool.js';
import type { RunAround } from './storage.js';
import { checkArguments, parseArguments, type CheckedArguments } from './check-tool-calls.js';

export { MAX_TOOL_RESULT_CHARS };

/** What the tool runner needs to know about a run. */
export interface ToolRun {
  tools: ReadonlyMap<string, Tool>;
  sessionId: string;
  /** Calls of one turn running at once; the others wait for a free slot. */
  maxConcurrentTools: number;
  /** Aborted when the run ends, however it ends (xstate does not always stop children: #5153). */
  runSignal: AbortSignal;
  /** Handles a lapse of this instance's lease before a result is used (see `ModelCall.checkLease`). */
  checkLease?: (() => void) | undefined;
  /** Runs each call's `execute` within the subscribers' `around` (a tracer's span active). */
  around?: RunAround | undefined;
}

/** Calls of one turn running at once, unless the agent sets its own limit. */
export const DEFAULT_MAX_CONCURRENT_TOOLS = 8;

type Call = ToolRunnerInput['calls'][number];

/**
 * The run machine's `tools` actor: runs the calls of one model turn, at most `maxConcurrentTools`
 * at once, and sends `TOOL_STARTED` and `TOOL_DONE` for each. Every call has its own
 * AbortController; stopping the actor (a `CANCEL`, a timeout, shutdown: anything that leaves the
 * state that invoked it) aborts them all in the same tick, starts nothing more, and drops whatever a
 * tool that ignored its signal returns later. A call past its tool's `timeoutMs` is aborted and the
 * model told "timed out after N ms"; a tool that throws is an error for the model, not for the run.
 */
export function createToolRunner(lookup: (runId: string) => ToolRun | undefined) {
  return fromCallback<RunMachineEvent, ToolRunnerInput>(({ input, sendBack }) => {
    const run = lookup(input.runId);
    if (!run) {
      for (const call of input.calls) {
        sendBack({ type: 'TOOL_DONE', toolCallId: call.id, result: 'Error: the run is gone', error: true });
      }
      return undefined;
    }
    const waiting = [...input.calls];
    const running = new Map<string, { controller: AbortController; timer?: NodeJS.Timeout }>();
    let stopped = false;

    const startWaiting = (): void => {
      while (!stopped && running.size < run.maxConcurrentTools && waiting.length > 0) start(waiting.shift()!);
    };

    const start = (call: Call): void => {
      const tool = run.tools.get(call.name);
      const controller = new AbortController();
      const slot: { controller: AbortController; timer?: NodeJS.Timeout } = { controller };
      running.set(call.id, slot);
      // Once over (result, error or timeout), a call frees its slot; anything it says later is dropped.
      const settle = (result: string, error: boolean): void => {
        run.checkLease?.();
        if (stopped || running.get(call.id) !== slot) return;
        running.delete(call.id);
        clearTimeout(slot.timer);
        sendBack({ type: 'TOOL_DONE', toolCallId: call.id, result, error });
        startWaiting();
      };
      // Clamped as the run's limits are (Node fires a delay it cannot hold after 1 ms): a very long
      // limit, `Infinity` included, stays very long.
      if (tool?.timeoutMs !== undefined) {
        const ms = tool.timeoutMs;
        slot.timer = setTimeout(() => {
          controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError'));
          settle(`Error: ${call.name} timed out after ${ms} ms`, true);
        }, clampDelay(ms));
      }
      const execute = (args: CheckedArguments | undefined): void => {
        if (stopped || controller.signal.aborted) return;
        if (!tool || !args?.ok) {
          // The machine runs checked calls only: a schema that changed its mind, or a bug.
          settle(
            `Error: the call to ${call.name} cannot run${args && !args.ok ? `: ${args.error}` : ''}`,
            true,
          );
          return;
        }
        sendBack({ type: 'TOOL_STARTED', toolCallId: call.id });
        const context = {
          signal: controller.signal,
          toolCallId: call.id,
          runId: input.runId,
          sessionId: run.sessionId,
        };
        const data = args.data as Record<string, unknown>;
        const work = () => tool.execute(data, context);
        const step = { type: 'tool', runId: input.runId, toolCallId: call.id } as const;
        new Promise((resolve) => resolve(run.around ? run.around(step, work) : work())).then(
          (value) => {
            const text = toolResultText(value);
            // Stored several times over (the call's events, the record, the model's messages) and
            // sent to the model: a result past what a context holds is a mistake, told as one.
            if (text.length <= MAX_TOOL_RESULT_CHARS) settle(text, false);
            else
              settle(
                `Error: the result of ${call.name} is ${text.length} characters, over the limit of ${MAX_TOOL_RESULT_CHARS}`,
                true,
              );
          },
          (error: unknown) => settle(`Error: ${thrownText(error)}`, true),
        );
      };
      // Run the tool's code in a job of its own, never inside the machine's transition: a tool that
      // cancels its own run, or throws synchronously, then meets a machine that is not mid-step.
      queueMicrotask(() => {
        if (stopped || controller.signal.aborted) return;
        const parsed = parseArguments(call.arguments);
        // The schema runs again for its output (a paused call may run in another process than the
        // one that checked it).
        if (!tool || !parsed.ok) return execute(undefined);
        void checkArguments(tool, parsed.value).then(execute);
      });
    };

    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      run.runSignal.removeEventListener('abort', stop);
      for (const { controller, timer } of running.values()) {
        clearTimeout(timer);
        controller.abort();
      }
      running.clear();
      waiting.length = 0;
    };
    if (run.runSignal.aborted) return stop();
    run.runSignal.addEventListener('abort', stop, { once: true });
    startWaiting();
    return stop;
  });
}
