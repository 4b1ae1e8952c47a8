import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  Agent,
  createMemoryRunStore,
  createOrchestrator,
  OfflineModel,
  OpenAIChat,
  openStorage,
  RunstateError,
  tool,
  type MemoryRunStoreOptions,
  type Orchestrator,
} from '../src/index.js';
import {
  databaseUrlSchema,
  storageOptionsFromEnv,
  type StorageOptions,
} from '../src/runtime/open-storage.js';
import { connectRedis } from '../src/runtime/redis/connect-redis.js';
import { createInspector } from '../src/inspect/index.js';
import { createApp, startServer } from '../src/server/index.js';
import { describeUrl } from '../src/runtime/sql/open-sql-database.js';
import { createFakeModel, getLifecycleEvents, getLifecyclePaths } from '../src/testing/index.js';
import { collect } from './support/collect.js';
import { confirmingTool } from './support/confirming-tool.js';
import { createTempDir, createTestDatabase, POSTGRES_URL } from './support/databases.js';
import { MAX_ID_LENGTH } from '../src/runtime/create-orchestrator.js';

// What a JavaScript caller (or data from elsewhere) may pass where the types say otherwise: each is
// refused at once with `INVALID_INPUT` naming what is wrong, instead of a run that hangs, ends at
// once, or a TypeError from deep inside.

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const invalid = (detail: string | RegExp): unknown =>
  expect.objectContaining({
    name: 'RunstateError',
    code: 'INVALID_INPUT',
    message: expect.stringMatching(detail) as unknown,
  });

function refused(make: () => unknown, detail: string | RegExp): void {
  let thrown: unknown;
  try {
    make();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(RunstateError);
  expect(thrown).toEqual(invalid(detail));
}

/** An orchestrator shut down after the test. */
function orchestrator(options: Parameters<typeof createOrchestrator>[0] = {}): Orchestrator {
  const created = createOrchestrator(options);
  cleanups.push(() => created.shutdown());
  return created;
}

describe('orchestrator options', () => {
  it('refuses a concurrency limit that would keep every run pending', () => {
    for (const maxConcurrentRuns of [0, -1, 1.5, NaN]) {
      refused(
        () => createOrchestrator({ maxConcurrentRuns }),
        /^maxConcurrentRuns: expected a whole number ≥ 1/,
      );
    }
    refused(
      () => new Agent({ name: 'A', model: createFakeModel(), orchestratorOptions: { maxConcurrentRuns: 0 } }),
      'maxConcurrentRuns: expected a whole number ≥ 1, got 0',
    );
    expect(() => orchestrator({ maxConcurrentRuns: 2 })).not.toThrow();
    expect(() => orchestrator({ maxConcurrentRuns: Infinity })).not.toThrow();
  });

  it('refuses orchestratorOptions given with an orchestrator, which would ignore them', () => {
    refused(
      () =>
        new Agent({
          name: 'A',
          model: createFakeModel(),
          orchestrator: orchestrator(),
          orchestratorOptions: { maxConcurrentRuns: 1 },
        }),
      /^orchestratorOptions are for the orchestrator an agent makes itself/,
    );
  });

  it('refuses limits that are not numbers in range, or unknown, naming each', () => {
    refused(
      () => createOrchestrator({ limits: { idleTimeoutMs: NaN } }),
      'limits.idleTimeoutMs: expected milliseconds > 0, got NaN',
    );
    refused(
      () => createOrchestrator({ limits: { timeoutMs: 0 } }),
      'limits.timeoutMs: expected milliseconds > 0, got 0',
    );
    refused(() => createOrchestrator({ limits: { maxConcurrentTools: 0 } }), 'limits.maxConcurrentTools');
    refused(
      () => createOrchestrator({ limits: { pauseTimeoutMs: -1, retry: { maxAttempts: 0 } } }),
      'limits.retry.maxAttempts: expected a whole number ≥ 1, got 0; limits.pauseTimeoutMs: expected milliseconds > 0, got -1',
    );
    // The first problem's place, for a caller that shows the field (as the HTTP server's 422 does).
    expect(() => createOrchestrator({ limits: { pauseTimeoutMs: -1, retry: { maxAttempts: 0 } } })).toThrow(
      expect.objectContaining({ details: { field: 'limits.retry.maxAttempts' } }),
    );
    refused(
      () => createOrchestrator({ limits: { retry: { baseDelayMs: 9000, maxDelayMs: 1 } } }),
      'limits.retry.baseDelayMs: baseDelayMs must not be over maxDelayMs',
    );
    refused(
      () => createOrchestrator({ limits: { idleTimeout: 5 } as never }),
      'limits: Unrecognized key: "idleTimeout"',
    );
    // Past what a timer holds is "very long" (the machine clamps it), and 0 tool rounds is a choice.
    expect(() =>
      orchestrator({ limits: { timeoutMs: 2 ** 40, idleTimeoutMs: Infinity, maxToolRounds: 0 } }),
    ).not.toThrow();
  });

  it('refuses an option it no longer has, rather than ignoring it, and says where retention went', () => {
    refused(
      () => createOrchestrator({ retention: { maxFinishedRuns: 1 } } as never),
      'createOrchestrator has no option "retention": retention is an option of the store',
    );
    // An object with more fields is valid TypeScript: storage as openStorage gives it, spread.
    const storage = { store: undefined, description: 'memory', close: () => undefined };
    expect(() => orchestrator({ ...storage, maxConcurrentRuns: 2 })).not.toThrow();
    refused(
      () =>
        new Agent({
          name: 'A',
          model: createFakeModel(),
          orchestratorOptions: { retention: { maxAgeMs: 1 } } as never,
        }),
      'createOrchestrator has no option "retention"',
    );
  });

  it('refuses an option name it does not have (a typo would drop its setting), and a store or bus that is none', () => {
    refused(
      () => createOrchestrator({ maxConcurrentRun: 1 } as never),
      /^createOrchestrator has no option "maxConcurrentRun": its options are maxConcurrentRuns, limits, /,
    );
    refused(
      () => createOrchestrator({ Limits: { timeoutMs: 5 } } as never),
      /^createOrchestrator has no option "Limits" \(did you mean "limits"\?\)$/,
    );
    refused(() => createOrchestrator({ store: {} as never }), /^store must be a run store/);
    refused(() => createOrchestrator({ store: 'memory' as never }), /^store must be a run store/);
    refused(() => createOrchestrator({ cancelBus: {} as never }), /^cancelBus must be a cancelBus/);
    refused(() => createOrchestrator({ eventBus: null as never }), /^eventBus must be a eventBus/);
    expect(() => orchestrator({ store: createMemoryRunStore() })).not.toThrow();
    refused(
      () => new Agent({ name: 'A', model: createFakeModel(), maxToolRound: 2 } as never),
      /^an Agent has no option "maxToolRound": its options are name, id, model, /,
    );
    refused(
      () => new Agent({ name: 'A', orchestratorOptions: { maxConcurentRuns: 1 } as never }),
      'createOrchestrator has no option "maxConcurentRuns"',
    );
  });

  it('refuses a cancel reason that is none of the four, rather than store it', async () => {
    const owner = orchestrator();
    const model = createFakeModel();
    const run = owner.startRun({ agentId: 'a', agentName: 'A', model, input: 'Hi' });
    refused(
      () => owner.cancelRun(run.runId, 'bogus' as never),
      /^a cancel's reason must be one of api, code, client_disconnect, shutdown, got "bogus"/,
    );
    refused(() => owner.cancelRun(run.runId, 42 as never), /got 42$/);
    await expect(owner.requestCancel(run.runId, 'later' as never)).rejects.toEqual(invalid(/got "later"/));
    expect(owner.cancelRun(run.runId, 'api')).toBe(true);
    expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
  });

  it('refuses an agent whose limits or tool rounds are out of range', () => {
    const model = createFakeModel();
    refused(
      () => new Agent({ name: 'A', model, limits: { maxConcurrentTools: 0 } }),
      'limits.maxConcurrentTools',
    );
    refused(
      () => new Agent({ name: 'A', model, maxToolRounds: -1 }),
      'maxToolRounds: expected a whole number ≥ 0, got -1',
    );
  });

  it('refuses a run whose own limits are out of range, before it starts', () => {
    const model = createFakeModel();
    const runs = orchestrator();
    refused(
      () =>
        runs.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi', limits: { idleTimeoutMs: -5 } }),
      'limits.idleTimeoutMs',
    );
    expect(model.calls).toHaveLength(0);
  });
});

describe('agents and their runs', () => {
  it('needs a name from which an id can be made, or an id', () => {
    const model = createFakeModel();
    refused(() => new Agent({ model } as never), 'an agent needs a name');
    refused(() => new Agent({ name: '  ', model }), 'an agent needs a name');
    refused(() => new Agent({ name: '!!!', model }), "the id derived from the name '!!!' is empty");
    refused(() => new Agent({ name: 'A', id: '', model }), 'an agent id must be a string that is not empty');
    expect(new Agent({ name: '!!!', id: 'bangs', model }).id).toBe('bangs');
  });

  it('refuses input and ids that are not strings, and takes null options as none', async () => {
    const model = createFakeModel({
      onCall: (call) => {
        call.emit('ok');
        call.end();
      },
    });
    const agent = new Agent({ name: 'A', model });
    cleanups.push(() => agent.orchestrator.shutdown());
    refused(() => agent.run(42 as never, { stream: true }), 'input must be a string, got number');
    // Blank, as the HTTP API (422) and the CLI refuse it.
    refused(() => agent.run('', { stream: true }), 'input must not be blank');
    await expect(agent.run(' \n ')).rejects.toEqual(invalid('input must not be blank'));
    await expect(agent.run(42 as never)).rejects.toEqual(invalid('input must be a string, got number'));
    refused(
      () => agent.run('hi', { stream: true, sessionId: 5 as never }),
      'sessionId must be a string, got number',
    );
    expect(await agent.run('hi', null as unknown as { stream?: false })).toMatchObject({
      status: 'completed',
      content: 'ok',
    });
    expect(model.calls).toHaveLength(1);
  });

  it('refuses a NUL character in input and ids, whatever the store (PostgreSQL cannot hold one)', async () => {
    const model = createFakeModel();
    const agent = new Agent({ name: 'A', model });
    cleanups.push(() => agent.orchestrator.shutdown());
    refused(() => agent.run('a\u0000b', { stream: true }), 'input must not contain a NUL character');
    await expect(agent.run('hi', { sessionId: 's\u0000' })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      details: { field: 'sessionId' },
    });
    await expect(agent.run('hi', { userId: '\u0000' })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    refused(() => new Agent({ name: 'A', id: 'a\u0000b', model }), 'must not contain a NUL character');
    refused(
      () => agent.orchestrator.startRun({ agentId: 'a\u0000', agentName: 'A', model, input: 'hi' }),
      'agentId must not contain a NUL character',
    );
    expect(model.calls).toHaveLength(0);
  });

  it('refuses a lone surrogate in input and ids, whatever the store (PostgreSQL and PGlite keep U+FFFD)', async () => {
    const model = createFakeModel();
    const agent = new Agent({ name: 'A', model });
    cleanups.push(() => agent.orchestrator.shutdown());
    refused(() => agent.run('a \ud800 b', { stream: true }), 'input must not contain a lone surrogate');
    await expect(agent.run('hi', { sessionId: 's\udc00' })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      details: { field: 'sessionId' },
    });
    refused(() => new Agent({ name: 'A', id: 'a\ud800', model }), 'must not contain a lone surrogate');
    // A pair is one character, taken as it is.
    const paired = agent.run('a 😀 b');
    (await model.nextCall()).end();
    expect(await paired).toMatchObject({ status: 'completed', run_input: 'a 😀 b' });
    expect(model.calls).toHaveLength(1);
  });

  it('refuses a session or user id longer than MAX_ID_LENGTH, whatever the store (a PostgreSQL index cannot hold one)', async () => {
    const model = createFakeModel();
    const agent = new Agent({ name: 'A', model });
    cleanups.push(() => agent.orchestrator.shutdown());
    const long = 'x'.repeat(MAX_ID_LENGTH + 1);
    await expect(agent.run('hi', { sessionId: long })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: `sessionId must be at most ${MAX_ID_LENGTH} characters`,
      details: { field: 'sessionId' },
    });
    await expect(agent.run('hi', { userId: long })).rejects.toMatchObject({ details: { field: 'userId' } });
    expect(model.calls).toHaveLength(0);
  });

  it('refuses a model that is no chat model (Agno takes "openai:gpt-4o"), and a description or instructions that are not text', () => {
    refused(
      () => new Agent({ name: 'A', model: 'openai:gpt-4o' as never }),
      /^model must be a chat model .*got "openai:gpt-4o"$/,
    );
    refused(() => new Agent({ name: 'A', model: {} as never }), /^model must be a chat model .*got object$/);
    refused(() => new Agent({ name: 'A', model: null as never }), /^model must be a chat model/);
    refused(
      () => new Agent({ name: 'A', description: { text: 'x' } as never }),
      'description must be a string',
    );
    refused(
      () => new Agent({ name: 'A', instructions: ['Be brief', { x: 1 }] as never }),
      'instructions must be a string or an array of strings',
    );
    expect(new Agent({ name: 'A', model: createFakeModel(), instructions: ['a', 'b'] }).instructions).toBe(
      'a\nb',
    );
  });

  it('needs an execute function in a tool', () => {
    refused(
      () => tool({ name: 'lookup', description: 'Looks up', parameters: z.object({}) } as never),
      'tool lookup needs an execute function',
    );
  });

  it('refuses parameters JSON cannot carry (a date, a bigint), naming the tool', () => {
    for (const parameters of [z.object({ at: z.date() }), z.object({ n: z.bigint() })]) {
      const refusal = (() => {
        try {
          tool({ name: 'when', description: 'When', parameters, execute: () => 0 });
        } catch (error) {
          return error as RunstateError;
        }
        return undefined;
      })();
      expect(refusal?.code).toBe('INVALID_INPUT');
      expect(refusal?.message).toMatch(/^parameters of tool when cannot be told to a model as JSON Schema: /);
    }
  });
});

describe('answers to a paused run', () => {
  async function pausedRun() {
    const model = createFakeModel();
    const agent = new Agent({ name: 'Publisher', model, tools: [confirmingTool()] });
    cleanups.push(() => agent.orchestrator.shutdown());
    const stream = agent.run('publish', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: {} }]);
    await collect(stream);
    return { agent, runId: stream.runId };
  }

  it('refuses answers of the wrong shape, none at all, and two for one call (naming the field)', async () => {
    const { agent, runId } = await pausedRun();
    await expect(agent.continueRun(runId, { tools: [{ tool_call_id: 'c1' }] })).rejects.toEqual(
      invalid('tools.0.confirmed: must be true or false'),
    );
    await expect(
      agent.continueRun(runId, { tools: [{ tool_call_id: 'c1', confirmed: 'yes' } as never] }),
    ).rejects.toEqual(invalid('tools.0.confirmed: Invalid input: expected boolean'));
    // The field named as the HTTP server's 422 names it, for a shape refused before the run is read.
    await expect(
      agent.continueRun(runId, { tools: [{ tool_call_id: 5, confirmed: true } as never] }),
    ).rejects.toMatchObject({ details: { field: 'tools.0.tool_call_id' } });
    await expect(agent.continueRun(runId, undefined as never)).rejects.toEqual(
      invalid('agent.continueRun takes an object of options, got undefined'),
    );
    await expect(agent.continueRun(runId, 'stream' as never)).rejects.toEqual(
      invalid('agent.continueRun takes an object of options, got string'),
    );
    const tools = [{ tool_call_id: 'c1', confirmed: true }];
    // A misspelt `stream` would answer with the output, `'false'` (truthy) with a stream.
    await expect(agent.continueRun(runId, { tools, strem: true } as never)).rejects.toEqual(
      invalid(/^agent\.continueRun has no option "strem": its options are tools, stream$/),
    );
    for (const stream of ['false', 1, {}]) {
      const refused = agent.continueRun(runId, { tools, stream } as never);
      await expect(refused).rejects.toEqual(
        invalid(/^agent\.continueRun's stream must be true or false, got /),
      );
      // Iterated as a stream would be: the loop's first step is refused.
      await expect(collect(refused as unknown as AsyncIterable<unknown>)).rejects.toEqual(
        invalid(/^agent\.continueRun's stream must be true or false, got /),
      );
    }
    const twice = agent.continueRun(runId, {
      tools: [
        { tool_call_id: 'c1', confirmed: true },
        { tool_call_id: 'c1', confirmed: false },
      ],
    });
    await expect(twice).rejects.toEqual(invalid('more than one answer for c1'));
    await expect(twice).rejects.toMatchObject({ details: { field: 'tools' } });
    const nul = agent.continueRun(runId, {
      tools: [{ tool_call_id: 'c1', confirmed: false, confirmation_note: '\u0000' }],
    });
    await expect(nul).rejects.toEqual(invalid('tools must not contain a NUL character'));
    // Still paused: none of those touched it.
    expect(agent.orchestrator.isPaused(runId)).toBe(true);
  });
});

describe('reading events after a seq', () => {
  it("refuses from a run's handle, as from the orchestrator, a seq past the run's last event (it would skip what comes)", async () => {
    const model = createFakeModel();
    const runs = orchestrator();
    const run = runs.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi' });
    refused(() => run.events(3), /has no event 3 yet \(its last is 1\)$/);
    await expect(runs.events(run.runId, 3)).rejects.toEqual(invalid(/has no event 3 yet \(its last is 1\)$/));
    (await model.nextCall()).end();
    await run.result;
    refused(() => run.events(50), /has no event 50 yet \(its last is \d+\)$/);
    expect((await collect(run.events(1))).at(-1)).toMatchObject({ event: 'RunCompleted' });
  });

  it("refuses from a continued run's handle a seq past the run's last event", async () => {
    const model = createFakeModel();
    const runs = orchestrator();
    const publish = confirmingTool();
    const run = runs.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi', tools: [publish] });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: {} }]);
    await collect(run.events());
    const continued = await runs.continueRun(run.runId, [{ tool_call_id: 'c1', confirmed: true }], {
      agentId: 'a',
      agentName: 'A',
      model,
      tools: [publish],
    });
    refused(() => continued.events(500), /has no event 500 yet/);
    (await model.nextCall()).end();
    expect((await continued.result).status).toBe('completed');
  });

  it('refuses a seq past the last event of a paused run (its log is whole in the store), and follows from its last', async () => {
    const model = createFakeModel();
    const runs = orchestrator();
    const publish = confirmingTool();
    const run = runs.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi', tools: [publish] });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: {} }]);
    const paused = await collect(run.events());
    expect(paused.at(-1)).toMatchObject({ event: 'RunPaused' });
    const last = paused.at(-1)!.seq;
    await expect(runs.events(run.runId, last + 7)).rejects.toEqual(
      invalid(new RegExp(`has no event ${last + 7} \\(its last is ${last}\\)$`)),
    );
    // From its last event the follow is accepted, and goes on with the continue's events.
    const followed = await runs.events(run.runId, last);
    const continued = await runs.continueRun(run.runId, [{ tool_call_id: 'c1', confirmed: true }], {
      agentId: 'a',
      agentName: 'A',
      model,
      tools: [publish],
    });
    (await model.nextCall()).end();
    expect((await continued.result).status).toBe('completed');
    const after = await collect(followed);
    expect(after[0]).toMatchObject({ event: 'RunContinued', seq: last + 1 });
    expect(after.at(-1)).toMatchObject({ event: 'RunCompleted' });
  });

  it('refuses a seq that is not a whole number ≥ 0, for a finished run and a live one', async () => {
    const model = createFakeModel();
    const runs = orchestrator();
    const run = runs.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi' });
    for (const afterSeq of [1.5, NaN, -5]) {
      refused(() => run.events(afterSeq), /^afterSeq must be a whole number ≥ 0/);
      await expect(runs.events(run.runId, afterSeq)).rejects.toEqual(
        invalid(/^afterSeq must be a whole number ≥ 0/),
      );
    }
    (await model.nextCall()).end();
    await run.result;
    await expect(runs.events(run.runId, 1.5)).rejects.toEqual(
      invalid('afterSeq must be a whole number ≥ 0, got 1.5'),
    );
    expect((await collect(await runs.events(run.runId, 1))).map((event) => event.seq)).toEqual([2]);
  });
});

describe('subscribing', () => {
  it('takes a listener function, or a run id and a seq, and refuses anything else', async () => {
    const model = createFakeModel();
    const runs = orchestrator();
    refused(() => runs.subscribe(123 as never), /^subscribe takes a listener function, or a run id/);
    refused(() => runs.subscribe(undefined as never), /^subscribe takes a listener function/);
    // A run id: the run's events after the seq, refused at the first read when the seq is wrong.
    const run = runs.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi' });
    await expect(collect(runs.subscribe(run.runId, 1.5))).rejects.toEqual(
      invalid('afterSeq must be a whole number ≥ 0, got 1.5'),
    );
    await expect(collect(runs.subscribe('no-such-run'))).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
    // A misspelt option would miss the runs already going without a word.
    refused(
      () => runs.subscribe(() => undefined, { Current: true } as never),
      /^subscribe has no option "Current" \(did you mean "current"\?\)$/,
    );
    (await model.nextCall()).end();
    await run.result;
  });

  it("refuses an inspector's feed listener that is no function, or a misspelt runId", () => {
    const inspector = createInspector();
    cleanups.push(() => inspector.close());
    refused(() => inspector.subscribe('nope' as never), 'inspector.subscribe takes a listener function');
    refused(
      () => inspector.subscribe(() => undefined, { runid: 'x' } as never),
      /^inspector\.subscribe has no option "runid" \(did you mean "runId"\?\)$/,
    );
    refused(
      () => inspector.subscribe(() => undefined, { runId: 5 } as never),
      'inspector.subscribe: runId must be a string',
    );
  });
});

describe("the testing kit's options", () => {
  it('getLifecyclePaths and getLifecycleEvents refuse a misspelt option or a value the paths would not follow', () => {
    refused(
      () => getLifecyclePaths({ tool: false } as never),
      /^getLifecyclePaths has no option "tool": its options are machine, limits, /,
    );
    refused(() => getLifecycleEvents({ tool: false } as never), /^getLifecycleEvents has no option "tool"/);
    refused(
      () => getLifecyclePaths({ tools: false, cancelReasons: ['nope'] as never }),
      /^options\.cancelReasons\.0: Invalid option/,
    );
    refused(
      () => getLifecyclePaths({ tools: false, limits: { idleTimeoutMs: -5 } }),
      'options.limits.idleTimeoutMs: expected milliseconds > 0, got -5',
    );
    refused(
      () => getLifecyclePaths({ limits: { idleTimeout: 5 } as never }),
      'options.limits: Unrecognized key: "idleTimeout"',
    );
    refused(
      () => getLifecyclePaths({ toolOutcomes: ['explode'] as never, turnAfterTools: 'final' }),
      /^options\.toolOutcomes\.0: Invalid option/,
    );
    refused(() => getLifecyclePaths({ random: 3 as never }), 'options.random: must be a function');
  });

  it('createFakeModel refuses an option it does not have', () => {
    refused(
      () => createFakeModel({ foo: 1 } as never),
      'createFakeModel has no option "foo": its options are id, provider, onCall',
    );
  });
});

describe('model and memory store options', () => {
  it('refuses OpenAIChat options that would fail every request or be sent wrong, naming each', () => {
    const make = (options: Record<string, unknown>) => () =>
      new OpenAIChat({ id: 'm', baseURL: 'http://127.0.0.1:1/v1', ...options });
    refused(make({ id: '' }), /^OpenAIChat: id must be the model name/);
    refused(make({ requestTimeoutMs: NaN }), /^OpenAIChat: requestTimeoutMs must be milliseconds > 0/);
    refused(make({ requestTimeoutMs: -1 }), /requestTimeoutMs/);
    refused(make({ requestTimeoutMs: Infinity }), /requestTimeoutMs/);
    refused(make({ maxTokens: NaN }), /^OpenAIChat: maxTokens must be a whole number ≥ 1, got NaN$/);
    refused(make({ maxTokens: 2.5 }), /maxTokens/);
    refused(make({ temperature: 'hot' }), /^OpenAIChat: temperature must be a number ≥ 0, got hot$/);
    refused(make({ maxTokensField: 'foo' }), /^OpenAIChat: maxTokensField must be 'max_tokens' or/);
    refused(make({ extraBody: [] }), /extraBody/);
    refused(make({ apiKey: 42 }), /^OpenAIChat: apiKey must be a string$/);
    refused(
      make({ baseURL: 'localhost:8000/v1' }),
      /^OpenAIChat: baseURL must be an http:\/\/ or https:\/\/ URL, got "localhost:8000\/v1"$/,
    );
    refused(make({ baseURL: 'nope' }), /baseURL must be an http/);
    expect(make({ maxTokens: 512, temperature: 0, requestTimeoutMs: 30_000 })()).toBeInstanceOf(OpenAIChat);
  });

  it('names OPENAI_BASE_URL when the address that is no http(s) URL came from the environment', () => {
    vi.stubEnv('OPENAI_BASE_URL', 'foo');
    try {
      refused(
        () => new OpenAIChat({ id: 'm' }),
        /^OpenAIChat: OPENAI_BASE_URL must be an http:\/\/ or https:\/\/ URL/,
      );
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('refuses memory store limits that would forget every finished run at once, naming each', () => {
    refused(
      () => createMemoryRunStore({ retention: { maxAgeMs: Number(undefined) } }),
      /^options\.retention\.maxAgeMs: expected milliseconds ≥ 0, got NaN$/,
    );
    refused(() => createMemoryRunStore({ retention: { maxFinishedRuns: -1 } }), /retention\.maxFinishedRuns/);
    refused(
      () => createMemoryRunStore({ maxRunsPerSession: 0 }),
      /^options\.maxRunsPerSession: expected a whole/,
    );
    refused(() => createMemoryRunStore({ maxSessions: 0 }), /maxSessions/);
    refused(() => createMemoryRunStore({ maxRuns: 5 } as MemoryRunStoreOptions), /maxRuns/);
    // Keeping no finished run at all is a choice, not a mistake.
    expect(() => createMemoryRunStore({ retention: { maxFinishedRuns: 0, maxAgeMs: 0 } })).not.toThrow();
  });
});

describe('storage options', () => {
  it('refuses a lease too short to be renewed, or too long for a timer, from options as from the environment', async () => {
    // Past 2^31-1 ms, Node fires the lease's timers after 1 ms: renewals back to back.
    for (const leaseMs of [0, -1, 1, 99, NaN, 1.5, 2 ** 31, 30 * 24 * 60 * 60_000, Infinity]) {
      await expect(openStorage({ dataDir: '/nonexistent/never-opened', leaseMs })).rejects.toEqual(
        invalid(/^leaseMs must be a whole number of ms, from 100 to 2147483647, got/),
      );
    }
    refused(
      () => storageOptionsFromEnv({ RUNSTATE_LEASE_MS: '50' }),
      "RUNSTATE_LEASE_MS must be a whole number of ms, from 100 to 2147483647, got '50'",
    );
    refused(
      () => storageOptionsFromEnv({ RUNSTATE_LEASE_MS: '2147483648' }),
      "RUNSTATE_LEASE_MS must be a whole number of ms, from 100 to 2147483647, got '2147483648'",
    );
    expect(storageOptionsFromEnv({ RUNSTATE_LEASE_MS: '100' }).leaseMs).toBe(100);
    expect(storageOptionsFromEnv({ RUNSTATE_LEASE_MS: '2147483647' }).leaseMs).toBe(2 ** 31 - 1);
  });

  it('refuses a data directory that is no path, or cannot be made, as INVALID_INPUT naming it', async () => {
    await expect(openStorage({ dataDir: 42 as never })).rejects.toEqual(
      invalid('dataDir must be the path of a directory'),
    );
    const dir = await createTempDir('runstate-file-dir-');
    cleanups.push(() => dir.remove());
    const file = join(dir.path, 'a-file');
    await writeFile(file, '');
    await expect(openStorage({ dataDir: join(file, 'sub') })).rejects.toEqual(
      invalid(`the data directory ${join(file, 'sub')} cannot be made: ENOTDIR`),
    );
    // Under /proc, Node 20's recursive mkdir loops for ever: refused instead.
    if (process.platform === 'linux') {
      await expect(openStorage({ dataDir: '/proc/runstate-nope/data' })).rejects.toEqual(
        invalid('the data directory /proc/runstate-nope/data cannot be made: ENOENT'),
      );
    }
  });

  it('refuses a data directory that exists but where the lock cannot be written, as INVALID_INPUT naming it', async () => {
    // Tests run as root, whom a directory's mode does not stop: there, a directory of /sys (which
    // takes no new file, whoever asks) stands for one without write permission.
    let path: string;
    if (process.getuid?.() !== 0) {
      const dir = await createTempDir('runstate-read-only-');
      cleanups.push(async () => {
        await chmod(dir.path, 0o755);
        await dir.remove();
      });
      await chmod(dir.path, 0o555);
      path = dir.path;
    } else if (process.platform === 'linux') {
      path = '/sys/kernel';
    } else {
      return; // root elsewhere: no directory at hand that root cannot write
    }
    await expect(openStorage({ dataDir: path })).rejects.toMatchObject({
      name: 'RunstateError',
      code: 'INVALID_INPUT',
      message: expect.stringMatching(
        new RegExp(`^the data directory ${path} cannot be written: (EACCES|EPERM|EROFS)$`),
      ) as unknown,
    });
  });

  it('refuses SQL store limits out of range before opening the database, as the memory store does', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ retention: { maxFinishedRuns: -1 } }, /^store\.retention\.maxFinishedRuns: /],
      [{ retention: { maxFinishedRuns: 1.5 } }, /^store\.retention\.maxFinishedRuns: /],
      [{ retention: { maxAgeMs: -5 } }, /^store\.retention\.maxAgeMs: /],
      [{ maxSessions: 0 }, /^store\.maxSessions: /],
      [{ maxRunsPerSession: NaN }, /^store\.maxRunsPerSession: /],
      [{ eventGroupsInFlight: 0 }, /^store\.eventGroupsInFlight: /],
    ];
    for (const [store, message] of cases) {
      await expect(openStorage({ dataDir: '/nonexistent/never-opened', store })).rejects.toEqual(
        invalid(message),
      );
    }
  });

  it('refuses an option name it does not have (databaseURL would open memory), and checks store limits in memory too', async () => {
    await expect(openStorage({ databaseURL: POSTGRES_URL } as never)).rejects.toEqual(
      invalid(/^openStorage has no option "databaseURL" \(did you mean "databaseUrl"\?\)$/),
    );
    await expect(openStorage({ datadir: '/tmp/x' } as never)).rejects.toEqual(
      invalid(/^openStorage has no option "datadir" \(did you mean "dataDir"\?\)$/),
    );
    await expect(openStorage({ store: { retention: { maxFinishedRuns: 'x' } } } as never)).rejects.toEqual(
      invalid(/^store\.retention\.maxFinishedRuns: /),
    );
    await expect(openStorage({ store: { maxSession: 5 } } as never)).rejects.toEqual(
      invalid(/^openStorage's store has no option "maxSession": its options are instanceId, /),
    );
    // In memory, its limits make the memory store, and the buses of a store shared by every
    // orchestrator given the storage: a cancel asked of one reaches a run of another.
    const storage = await openStorage({ store: { retention: { maxFinishedRuns: 1 } } });
    expect(storage.description).toBe('memory');
    const [owner, other] = [orchestrator({ ...storage }), orchestrator({ ...storage })];
    const held = createFakeModel();
    const streaming = owner.startRun({ agentId: 'a', agentName: 'A', model: held, input: 'held' });
    await held.nextCall();
    expect(await other.requestCancel(streaming.runId, 'api')).toMatchObject({ status: 'cancelled' });
    expect(await streaming.result).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    const model = createFakeModel();
    for (const input of ['one', 'two']) {
      const run = owner.startRun({ agentId: 'a', agentName: 'A', model, input });
      (await model.nextCall()).end();
      await run.result;
    }
    expect((await owner.listRuns()).map((run) => run.run_input)).toEqual(['two']);
    expect((await openStorage()).store).toBeUndefined();
  });

  it('takes no limit (Infinity) for a SQL store, as for the memory store', async () => {
    const dir = await createTempDir();
    cleanups.push(() => dir.remove());
    const storage = await openStorage({
      dataDir: dir.path,
      store: { retention: { maxFinishedRuns: Infinity, maxAgeMs: Infinity }, maxRunsPerSession: Infinity },
    });
    cleanups.push(() => storage.close());
    const model = createFakeModel({ onCall: (call) => call.end() });
    const orchestrator = createOrchestrator({ store: storage.store });
    cleanups.push(() => orchestrator.shutdown());
    const agent = new Agent({ name: 'A', model, orchestrator });
    const output = await agent.run('hi');
    expect(output.status).toBe('completed');
    expect(await agent.getRun(output.run_id)).toMatchObject({ status: 'completed' });
  });

  it('refuses a database or Redis URL of the wrong scheme, or one that does not parse, before connecting', async () => {
    for (const databaseUrl of ['mysql://db/x', 'postgres://127.0.0.1:99999/x', 'localhost:5432']) {
      await expect(openStorage({ databaseUrl })).rejects.toEqual(
        invalid('databaseUrl: must be a postgres:// URL'),
      );
    }
    // A Unix socket, with a user and no host as pg takes it, or with neither, is a URL.
    for (const socket of ['postgresql://postgres@/x?host=/var/run/postgresql', 'postgresql:///x?host=/tmp'])
      expect(databaseUrlSchema.safeParse(socket).success).toBe(true);
    // Checked before the database is opened: nothing is left to close.
    for (const redisUrl of ['http://x', 'redis://127.0.0.1:99999']) {
      await expect(
        openStorage({ databaseUrl: 'postgres://127.0.0.1:1/never-opened', redisUrl }),
      ).rejects.toEqual(invalid('redisUrl: must be a redis:// URL'));
    }
    // One node-redis refuses itself (its database is not a number): a setting, not an outage.
    await expect(connectRedis('redis://127.0.0.1:6379/abc')).rejects.toEqual(
      invalid('bad Redis URL 127.0.0.1:6379/abc: Invalid pathname'),
    );
  });

  it('tells a server it cannot reach from one that refused it (a database that does not exist)', async () => {
    const unavailable = (message: string): unknown =>
      expect.objectContaining({ name: 'RunstateError', code: 'STORE_UNAVAILABLE', message });
    await expect(openStorage({ databaseUrl: 'postgres://127.0.0.1:1/never-opened' })).rejects.toEqual(
      unavailable('cannot reach PostgreSQL at 127.0.0.1:1/never-opened: ECONNREFUSED'),
    );
    const missing = new URL(POSTGRES_URL);
    missing.pathname = '/runstate_test_never_created';
    await expect(openStorage({ databaseUrl: missing.href })).rejects.toEqual(
      unavailable(
        `PostgreSQL at ${missing.host}/runstate_test_never_created refused the connection: database "runstate_test_never_created" does not exist`,
      ),
    );
  });

  it('names the socket directory and the database of a Unix-socket URL it cannot reach, never the password', async () => {
    const cases: [string, string][] = [
      [
        'postgresql://postgres:secret@/fixa_never?host=/nonexistent-socket-dir',
        '/nonexistent-socket-dir (socket), database fixa_never',
      ],
      [
        'postgresql://postgres:secret@%2Fnonexistent-socket-dir:5433/fixa_never',
        '/nonexistent-socket-dir (socket, port 5433), database fixa_never',
      ],
    ];
    for (const [databaseUrl, where] of cases) {
      const error = await openStorage({ databaseUrl }).then(
        () => expect.fail('a socket in no directory was reached'),
        (error: unknown) => error as Error,
      );
      expect(error).toMatchObject({
        code: 'STORE_UNAVAILABLE',
        message: `cannot reach PostgreSQL at ${where}: ENOENT`,
      });
      expect(error.message).not.toContain('secret');
    }
    // A user and no host at all: pg connects to localhost, and the message says so.
    expect(describeUrl('postgres://u:secret@/db?port=19899')).toBe('localhost:19899/db');
    expect(describeUrl('postgres://postgres@/db')).toBe('localhost:5432/db');
  });

  it('refuses a data directory that is a file, saying so', async () => {
    const dir = await createTempDir('runstate-bad-dir-');
    cleanups.push(() => dir.remove());
    const file = join(dir.path, 'not-a-directory');
    await writeFile(file, 'x');
    await expect(openStorage({ dataDir: file })).rejects.toEqual(
      invalid(`the data directory ${file} is not a directory`),
    );
  });

  it('refuses a data directory a live process has open, and takes over one whose process is gone', async () => {
    const dir = await createTempDir('runstate-locked-dir-');
    cleanups.push(() => dir.remove());
    const first = await openStorage({ dataDir: dir.path });
    await expect(openStorage({ dataDir: dir.path })).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
      message: expect.stringContaining(
        `the data directory ${dir.path} is open in this process already (process ${process.pid}): open its storage once`,
      ) as unknown,
    });
    // The same directory under another path is the same directory: refused, and its lock kept.
    const link = `${dir.path}-link`;
    await symlink(dir.path, link);
    cleanups.push(() => rm(link, { force: true }));
    const lock = await readFile(join(dir.path, 'runstate.lock'), 'utf8');
    await expect(openStorage({ dataDir: link })).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(await readFile(join(dir.path, 'runstate.lock'), 'utf8')).toBe(lock);
    await first.close();
    const second = await openStorage({ dataDir: dir.path });
    await second.close();

    // Left behind by a process that was killed: its pid runs no more.
    const child = spawn(process.execPath, ['-e', '']);
    await once(child, 'exit');
    await writeFile(join(dir.path, 'runstate.lock'), String(child.pid));
    const third = await openStorage({ dataDir: dir.path });
    expect(await readFile(join(dir.path, 'runstate.lock'), 'utf8')).toMatch(
      new RegExp(`^${process.pid}[ \n]`),
    );
    await third.close();

    // Left by a killed server whose pid the new one has (a container restarted: pid 1 again).
    await writeFile(join(dir.path, 'runstate.lock'), String(process.pid));
    const fourth = await openStorage({ dataDir: dir.path });
    await fourth.close();
    // Four PGlite starts of seconds each: more than the default timeout on a loaded machine.
  }, 60_000);

  it.runIf(process.platform === 'linux')(
    'tells the process that took a data directory from a later one with its pid (Linux: boot and start time)',
    async () => {
      const dir = await createTempDir('runstate-reused-pid-');
      cleanups.push(() => dir.remove());
      const lock = join(dir.path, 'runstate.lock');
      const live = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
      cleanups.push(() => void live.kill());
      await once(live, 'spawn');
      const stat = await readFile(`/proc/${live.pid}/stat`, 'utf8');
      const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
      const started = `${boot}/${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}`;

      await writeFile(lock, `${live.pid} ${started}\n`);
      await expect(openStorage({ dataDir: dir.path })).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
        message: expect.stringContaining(`is in use by process ${live.pid}`) as unknown,
      });
      // The same pid, started at another moment: another process, the lock's is gone.
      await writeFile(lock, `${live.pid} ${boot}/1\n`);
      const storage = await openStorage({ dataDir: dir.path });
      await storage.close();
    },
  );

  it.each(['PostgreSQL', 'PGlite'])(
    'answers a read of a closed %s store with a runstate error',
    async (kind) => {
      let options: StorageOptions;
      if (kind === 'PostgreSQL') {
        const database = await createTestDatabase();
        cleanups.push(() => database.drop());
        options = { databaseUrl: database.url };
      } else {
        const dir = await createTempDir('runstate-closed-');
        cleanups.push(() => dir.remove());
        options = { dataDir: dir.path };
      }
      const storage = await openStorage(options);
      await storage.close();
      await expect(storage.store!.getRun('r1')).rejects.toMatchObject({
        name: 'RunstateError',
        code: 'INTERNAL',
        message: 'the run store is closed',
      });
    },
    60_000,
  );
});

describe('server and inspector options', () => {
  const agents = () => [new Agent({ name: 'A', model: createFakeModel() })];

  it('refuses a heartbeat period that is not a positive number of milliseconds (0 would ping at every turn)', () => {
    for (const heartbeatMs of [0, -1, Number.NaN, '15000']) {
      expect(() => createApp({ agents: agents(), heartbeatMs: heartbeatMs as number })).toThrow(
        invalid(/^heartbeatMs: /),
      );
      expect(() => createInspector({ heartbeatMs: heartbeatMs as number })).toThrow(
        invalid(/^options\.heartbeatMs: /),
      );
    }
  });

  it('refuses app options of the wrong type, naming each, rather than failing later with a TypeError', () => {
    type Options = Parameters<typeof createApp>[0];
    const refusedApp = (options: unknown, message: RegExp) =>
      expect(() => createApp(options as Options)).toThrow(invalid(message));
    refusedApp(undefined, /^options: must be an object with agents/);
    refusedApp({}, /^options\.agents: must be an array of agents/);
    refusedApp({ agents: agents(), securityKey: 5 }, /^options\.securityKey: must be a string/);
    refusedApp({ agents: agents(), cors: { origins: 'http://x' } }, /^options\.cors\.origins: /);
    refusedApp({ agents: agents(), bodyLimit: '1xb' }, /^bodyLimit must be bytes, or a size like '1mb'/);
    refusedApp({ agents: agents(), dbId: 5 }, /^options\.dbId: must be a string/);
    // The Agent UI loads no sessions without a db_id.
    refusedApp({ agents: agents(), dbId: '' }, /^options\.dbId: must not be empty/);
    refusedApp({ agents: [] }, /^options\.agents: must hold at least one agent/);
    // A misspelt option would be lost without a word: a server with no key, or other origins.
    refusedApp(
      { agents: agents(), securityKy: 'k' },
      /^createApp has no option "securityKy": its options are agents, securityKey, /,
    );
    refusedApp({ agents: agents(), DbId: 'x' }, /^createApp has no option "DbId" \(did you mean "dbId"\?\)/);
    refusedApp({ agnets: agents() }, /^createApp has no option "agnets": its options are agents, /);
    refusedApp({ agents: agents(), cors: { origin: ['http://x'] } }, /^options\.cors: must be { origins }/);
    // What JavaScript callers pass for "not set" is taken as not set.
    for (const unset of [
      { securityKey: null },
      { cors: {} },
      { cors: null },
      { bodyLimit: null },
      { mount: null },
    ])
      expect(() => createApp({ agents: agents(), ...unset } as unknown as Options).shutdown()).not.toThrow();
    refusedApp({ agents: agents(), mount: { '/x': 'page' } }, /^options\.mount\.\/x: must be a handler/);
    // A key no header can carry would refuse every request.
    for (const securityKey of ['a\u0000b', 'a\nb', 'a\rb'])
      refusedApp({ agents: agents(), securityKey }, /security key holds a control character/);
  });

  it('refuses server options that Node would take for something else (a port that names a socket)', async () => {
    const app = createApp({ agents: agents() });
    cleanups.push(() => app.shutdown());
    type Options = Parameters<typeof startServer>[1];
    for (const [options, message] of [
      [{ port: 'x' }, /^options\.port: must be a whole number from 0 to 65535/],
      [{ port: -1 }, /^options\.port: /],
      [{ port: 70000 }, /^options\.port: /],
      [{ graceMs: -1 }, /^options\.graceMs: /],
      [{ backlog: -5 }, /^options\.backlog: /],
      [{ host: '' }, /^options\.host: must not be empty/],
      // Misspelt, it would listen on 7777.
      [{ prot: 0 }, /^startServer has no option "prot": its options are port, host, graceMs, backlog/],
    ] as const) {
      await expect(startServer(app, options as unknown as Options)).rejects.toEqual(invalid(message));
    }
    // A port in digits, as `process.env.PORT` gives it, is a port.
    const server = await startServer(app, { port: '0' as unknown as number, graceMs: Infinity });
    expect(server.port).toBeGreaterThan(0);
    await server.close();
  });

  it("refuses the inspector's limits out of range and a cancel route it does not serve, naming each", () => {
    expect(() => createInspector({ cancelroute: 'inspector' } as never)).toThrow(
      invalid(/^createInspector has no option "cancelroute" \(did you mean "cancelRoute"\?\)$/),
    );
    expect(() => createInspector({ flushInterval: 5 } as never)).toThrow(
      invalid(/^createInspector has no option "flushInterval": its options are machine, /),
    );
    expect(() => createInspector({ now: 5 } as never)).toThrow(invalid(/^options\.now: must be a function/));
    expect(() => createInspector({ flushIntervalMs: -1 })).toThrow(invalid(/options\.flushIntervalMs/));
    expect(() => createInspector({ maxFinishedRuns: -1 })).toThrow(invalid(/options\.maxFinishedRuns/));
    expect(() => createInspector({ maxLogEntries: 0 })).toThrow(invalid(/options\.maxLogEntries/));
    expect(() => createInspector({ cancelRoute: 'x' as 'agentos' })).toThrow(invalid(/options\.cancelRoute/));
    expect(() => createInspector({ machine: 'x' as never })).toThrow(
      invalid(/^options\.machine: must be an xstate machine/),
    );
    expect(() => createInspector({ basePath: 5 as never })).toThrow(invalid(/^options\.basePath: /));
    // In range, and a very long period as a timer holds it.
    expect(() =>
      createInspector({ flushIntervalMs: 0, maxFinishedRuns: 0, heartbeatMs: Infinity }),
    ).not.toThrow();
  });
});

describe('the library API given what its types rule out (found by a reviewer)', () => {
  it('refuses options that are no object, functions that are none and an orchestrator that is none', () => {
    expect(() => new Agent(undefined as never)).toThrow(
      invalid(/^an Agent takes an object of options, got undefined/),
    );
    expect(() => new Agent(null as never)).toThrow(invalid(/got null/));
    expect(() => createOrchestrator(null as never)).toThrow(
      invalid(/^createOrchestrator takes an object of options/),
    );
    expect(() => createOrchestrator({ idGenerator: 5 as never })).toThrow(
      invalid(/idGenerator must be a function/),
    );
    expect(() => createOrchestrator({ random: 5 as never })).toThrow(invalid(/random must be a function/));
    expect(() => new Agent({ name: 'a', orchestrator: {} as never })).toThrow(
      invalid(/^orchestrator must be an orchestrator/),
    );
    expect(() => new OfflineModel(null as never)).toThrow(invalid(/OfflineModel takes an object of options/));
  });

  it('refuses an id from idGenerator that no store can keep, at the start of the run', () => {
    for (const id of ['', 5, undefined, 'a\0b']) {
      const orchestrator = createOrchestrator({ idGenerator: () => id as string });
      const model = createFakeModel();
      expect(() => orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'Hi' })).toThrow(
        invalid(/^idGenerator must return a string/),
      );
    }
  });

  it('refuses a misspelt option of run() and a misspelt filter, which would start a new session or list everything', async () => {
    const agent = new Agent({ name: 'a', model: createFakeModel() });
    await expect(agent.run('Hi', { sesionId: 's' } as never)).rejects.toEqual(
      invalid(/^agent\.run has no option "sesionId"/),
    );
    expect(() => agent.run('Hi', { stream: true, sesionId: 's' } as never)).toThrow(invalid(/sesionId/));
    await expect(agent.orchestrator.listRuns({ agentid: 'x' } as never)).rejects.toEqual(
      invalid(/^listRuns has no option "agentid" \(did you mean "agentId"\?\)/),
    );
    await expect(agent.orchestrator.listSessions({ userid: 'x' } as never)).rejects.toEqual(
      invalid(/^listSessions has no option "userid"/),
    );
    // `null` is no filter, as `undefined` is.
    await expect(agent.orchestrator.listRuns(null as never)).resolves.toStrictEqual([]);
    await expect(agent.orchestrator.renameSession('s', 5 as never)).rejects.toEqual(
      invalid(/^a session name must be a string/),
    );
    await expect(agent.orchestrator.renameSession('s', 'a\0b')).rejects.toEqual(
      invalid(/^name must not contain/),
    );
    // The orchestrator's own start request, and a filter's value.
    const model = createFakeModel();
    expect(() =>
      agent.orchestrator.startRun({
        agentId: 'a',
        agentName: 'A',
        model,
        input: 'Hi',
        sesionId: 's',
      } as never),
    ).toThrow(
      invalid(/^startRun has no option "sesionId": its options are agentId, agentName, model, input, /),
    );
    await expect(agent.orchestrator.listRuns({ status: 'bogus' } as never)).rejects.toEqual(
      invalid(/^listRuns's status must be one of pending, streaming, paused, completed, cancelled, failed$/),
    );
    // `'false'` is truthy: neither form is taken for it.
    for (const stream of ['false', 1, {}])
      expect(() => agent.run('Hi', { stream } as never)).toThrow(
        invalid(/^agent\.run's stream must be true or false, got /),
      );
    expect(await agent.orchestrator.listRuns()).toStrictEqual([]);
  });

  it('refuses a start request without a model, ids or tools of the right kind', async () => {
    const orchestrator = createOrchestrator();
    const model = createFakeModel();
    const base = { agentId: 'a', agentName: 'A', model, input: 'Hi' };
    expect(() => orchestrator.startRun(undefined as never)).toThrow(invalid(/^startRun takes a request/));
    expect(() => orchestrator.startRun({ ...base, model: undefined as never })).toThrow(
      invalid(/^model must be a chat model/),
    );
    expect(() => orchestrator.startRun({ ...base, agentId: 5 as never })).toThrow(
      invalid(/^agentId must be a string/),
    );
    expect(() => orchestrator.startRun({ ...base, tools: 'x' as never })).toThrow(
      invalid(/^tools must be an array/),
    );
    expect(() => orchestrator.startRun({ ...base, instructions: 5 as never })).toThrow(
      invalid(/^instructions must be a string/),
    );
    await expect(orchestrator.continueRun('r', [], undefined as never)).rejects.toEqual(
      invalid(/^continueRun needs the run's agent/),
    );
  });
});

describe('models and tools: a misspelt option is refused, not ignored', () => {
  it('refuses a tool whose requiresConfirmation is misspelt or no boolean: it would run without asking anyone', () => {
    const base = {
      name: 'publish_note',
      description: 'Publishes a note',
      parameters: z.object({}),
      execute: () => 'published',
    };
    expect(() => tool({ ...base, requireConfirmation: true } as typeof base)).toThrow(
      'tool publish_note has no option "requireConfirmation"',
    );
    for (const requiresConfirmation of ['true', 1, 'yes']) {
      expect(() => tool({ ...base, requiresConfirmation } as unknown as typeof base)).toThrow(
        'requiresConfirmation of tool publish_note must be true or false',
      );
    }
    // A tool spread into another's options is fine: its definition is made anew.
    const renamed = tool({ ...tool({ ...base, requiresConfirmation: true }), name: 'publish_draft' });
    expect(renamed).toMatchObject({ requiresConfirmation: true, definition: { name: 'publish_draft' } });
  });

  it('refuses a misspelt option of OpenAIChat (baseUrl would send the requests to api.openai.com) and of OfflineModel', () => {
    expect(
      () => new OpenAIChat({ id: 'qwen3', apiKey: 'k', baseUrl: 'http://127.0.0.1:1/v1' } as { id: string }),
    ).toThrow('OpenAIChat has no option "baseUrl" (did you mean "baseURL"?)');
    expect(() => new OfflineModel({ tokenPerSecond: 5 } as object)).toThrow(
      'OfflineModel has no option "tokenPerSecond"',
    );
  });
});
