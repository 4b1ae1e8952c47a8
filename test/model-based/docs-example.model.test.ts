// The example of docs/testing.md, run in CI. The code between the markers is the page's example,
// imports included: `runstate` and `runstate/testing` resolve to the sources (vitest.config.ts), as
// they resolve to the package in a project of yours. The last test keeps both equal.
import { readFileSync } from 'node:fs';
// --- example ---
import { Agent, RunstateError, type RunEvent, type RunStream } from 'runstate';
import {
  checkRunEvents,
  createFakeModel,
  getLifecyclePaths,
  nextTurn,
  type FakeModel,
  type FakeModelCall,
  type LifecycleLimits,
} from 'runstate/testing';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// The agent under test, built the way the app builds it, with the model injected, the path's limits
// and the paths' retry jitter (their `random`, 0.5 by default): a retry after an error that says
// no retry-after then waits exactly what the path's `wait` step lets pass.
function createSupportAgent(model: FakeModel, limits: LifecycleLimits) {
  return new Agent({
    name: 'Support Bot',
    instructions: 'Answer in one paragraph.',
    model,
    limits,
    orchestratorOptions: { random: () => 0.5 },
  });
}

// Every lifecycle path of a run, from the run machine itself. This agent has no tools, and its runs
// start at once (no concurrency limit): paths with tool calls, and those that cancel a run still
// waiting for a slot, are left out.
const paths = getLifecyclePaths({ cancelReasons: ['code', 'client_disconnect'], tools: false }).filter(
  (path) => path.steps[0]!.action.type === 'start',
);

describe('Support Bot: every lifecycle path of a run', () => {
  beforeEach(() => {
    // Date too: the run's idle timer measures the silence from the last chunk's time.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it.each(paths.map((path) => [path.name, path] as const))('%s', async (_name, path) => {
    const model = createFakeModel();
    const agent = createSupportAgent(model, path.limits);
    let stream!: RunStream;
    let reader!: AsyncIterator<RunEvent>;
    let call!: FakeModelCall;
    let requests = 0; // the model requests the path has made so far

    for (const step of path.steps) {
      const { action } = step;
      switch (action.type) {
        case 'start':
          stream = agent.run('Where is my order?', { stream: true });
          reader = stream[Symbol.asyncIterator]();
          await reader.next(); // RunStarted: the reader is reading
          break;
        case 'chunk':
          call.emit(action.delta);
          break;
        case 'end':
          call.end(action);
          break;
        case 'error':
          call.fail(new RunstateError(action.error.code, action.error.message, action.error));
          break;
        case 'cancel':
          if (action.reason === 'code') expect(agent.cancelRun(stream.runId)).toBe(true);
          else await reader.return!(); // the reader goes away: the run is cancelled
          break;
        case 'wait': {
          // Nothing happens a moment early: a retry or a timeout whose timer fires too soon fails here.
          const before = await agent.getRun(stream.runId);
          await vi.advanceTimersByTimeAsync(action.ms - 1);
          await nextTurn();
          expect(await agent.getRun(stream.runId), 'a timer fired early').toEqual(before);
          expect(model.calls.length, 'a model request sent early').toBe(requests);
          await vi.advanceTimersByTimeAsync(1);
          break;
        }
        case 'crash':
          throw new Error('not in these paths');
      }
      await nextTurn(); // the fake model, the run and its event log finish what the step set off
      if (step.requestsModel) requests++;
      // Sent by now, and no other: a run that skips a request, or sends one more, fails here, named.
      expect(model.calls.length, 'model requests').toBe(requests);
      if (step.requestsModel) call = await model.nextCall();
      // What the run machine says must hold after this step.
      const run = (await agent.getRun(stream.runId))!;
      expect(run.status).toBe(step.status);
      expect(run.content).toBe(step.content);
      if (step.abortsModel) expect(call.signal.aborted).toBe(true);
    }

    const output = await stream.result;
    expect(output).toMatchObject({
      status: path.status,
      content: path.output.content,
      error: path.output.error,
    });
    const events: RunEvent[] = [];
    for await (const event of await agent.orchestrator.events(stream.runId)) events.push(event);
    checkRunEvents(events, path.status);
    expect(model.calls).toHaveLength(path.modelRequests);
    expect(model.calls[0]!.messages[0]).toEqual({ role: 'system', content: 'Answer in one paragraph.' });
    expect(agent.cancelRun(stream.runId)).toBe(false); // a second cancel is refused
  });
});
// --- end of example ---

describe('docs/testing.md', () => {
  it('shows the code this file runs', () => {
    const page = readFileSync(new URL('../../docs/testing.md', import.meta.url), 'utf8');
    const source = readFileSync(new URL(import.meta.url), 'utf8');
    const example = source.slice(
      source.indexOf('// --- example ---\n') + 19,
      source.indexOf('// --- end of example ---'),
    );
    const block = /```ts\n(import [^]*?)```/.exec(page.slice(page.indexOf('## Test your own agent')))?.[1];
    expect(block, 'the example block of docs/testing.md').toBeDefined();
    expect(block).toBe(example);
  });
});
