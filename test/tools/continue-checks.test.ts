/**
 * What a continue checks before it takes a paused run from the store, and what it takes: the pause
 * its answers were checked against, not a later one; tools refused before the run is recorded or
 * taken back, so that a refusal leaves nothing behind.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Agent } from '../../src/agent.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import { openStorage } from '../../src/runtime/open-storage.js';
import type { RunStore } from '../../src/runtime/storage.js';
import { createFakeModel, type FakeModelCall } from '../../src/testing/index.js';
import { tool } from '../../src/tools/tool.js';
import { createTestDatabase } from '../support/databases.js';

const publish = tool({
  name: 'publish',
  description: 'Publishes a note',
  parameters: z.object({ n: z.string() }),
  requiresConfirmation: true,
  execute: ({ n }) => `published ${n}`,
});

/** Asks to publish "first", then (after its result) "second", then answers. */
function publishTwice(call: FakeModelCall): void {
  const turn = call.messages.filter((message) => message.role === 'assistant').length;
  if (turn === 0) call.callTools([{ id: 'p1', name: 'publish', arguments: { n: 'first' } }]);
  else if (turn === 1) call.callTools([{ id: 'p2', name: 'publish', arguments: { n: 'second' } }]);
  else call.end();
}

const waiting = (tools: ReadonlyArray<{ tool_call_id: string; status: string }>) =>
  tools.filter((each) => each.status === 'awaiting_confirmation').map((each) => each.tool_call_id);

describe.each(['memory', 'PostgreSQL'] as const)('a continue (%s)', (backend) => {
  it('takes only the pause it checked its answers against: one sent again, late, is refused, not applied to the next pause', async () => {
    const database = backend === 'PostgreSQL' ? await createTestDatabase() : undefined;
    const storage = database ? await openStorage({ databaseUrl: database.url }) : undefined;
    const store = storage?.store ?? createMemoryRunStore();
    // B's claim of the parked run waits until the run was continued by A and paused again (a slow
    // database, a client's retry sent to another instance).
    let claimReached!: () => void;
    const reached = new Promise<void>((resolve) => (claimReached = resolve));
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const slow: RunStore = {
      ...store,
      async claimParked(...args) {
        claimReached();
        await gate;
        return store.claimParked(...args);
      },
    };
    const a = new Agent({
      name: 'Publisher',
      model: createFakeModel({ onCall: publishTwice }),
      tools: [publish],
      orchestrator: createOrchestrator({ store }),
    });
    const b = new Agent({
      name: 'Publisher',
      model: createFakeModel({ onCall: publishTwice }),
      tools: [publish],
      orchestrator: createOrchestrator({ store: slow }),
    });
    try {
      const paused = await a.run('publish two notes');
      expect(waiting(paused.tools)).toEqual(['p1']);
      const answers = [{ tool_call_id: 'p1', confirmed: true }];
      const late = b.continueRun(paused.run_id, { tools: answers });
      late.catch(() => undefined);
      await reached;
      const again = await a.continueRun(paused.run_id, { tools: answers });
      expect(waiting(again.tools)).toEqual(['p2']);
      openGate();
      await expect(late).rejects.toMatchObject({ code: 'RUN_NOT_PAUSED' });
      // p2 still waits for its person, who can answer it.
      expect(waiting((await a.getRun(paused.run_id))!.tools)).toEqual(['p2']);
      const done = await a.continueRun(paused.run_id, { tools: [{ tool_call_id: 'p2', confirmed: true }] });
      expect(done.status).toBe('completed');
      expect(done.tools.map((each) => [each.tool_call_id, each.status, each.confirmed])).toEqual([
        ['p1', 'completed', true],
        ['p2', 'completed', true],
      ]);
    } finally {
      openGate();
      await a.orchestrator.shutdown();
      await b.orchestrator.shutdown();
      await storage?.close();
      await database?.drop();
    }
  });
});

describe('a continue', () => {
  it('refuses tools it cannot run before it takes the run: the run stays paused, and continues with the right ones', async () => {
    const orchestrator = createOrchestrator();
    const model = createFakeModel({ onCall: publishTwice });
    const agent = new Agent({ name: 'Publisher', model, tools: [publish], orchestrator });
    try {
      const paused = await agent.run('publish two notes');
      const answers = [{ tool_call_id: 'p1', confirmed: false }];
      const request = { agentId: agent.id, agentName: agent.name, model, tools: [publish, publish] };
      await expect(orchestrator.continueRun(paused.run_id, answers, request)).rejects.toMatchObject({
        code: 'INVALID_INPUT',
        message: 'two tools of the run have the same name',
      });
      const notTools = { ...request, tools: [{ name: 'publish' }] } as unknown as typeof request;
      await expect(orchestrator.continueRun(paused.run_id, answers, notTools)).rejects.toMatchObject({
        code: 'INVALID_INPUT',
      });
      expect((await agent.getRun(paused.run_id))?.status).toBe('paused');
      const continued = await agent.continueRun(paused.run_id, { tools: answers });
      expect(continued.tools[0]).toMatchObject({ tool_call_id: 'p1', status: 'rejected' });
    } finally {
      await orchestrator.shutdown();
    }
  });
});

describe('a run started with tools it cannot run', () => {
  it('is refused before it is recorded: no run is left pending', async () => {
    const store = createMemoryRunStore();
    const orchestrator = createOrchestrator({ store });
    const model = createFakeModel();
    const start = (tools: unknown) => () =>
      orchestrator.startRun({
        agentId: 'publisher',
        agentName: 'Publisher',
        model,
        input: 'Hi',
        tools: tools as (typeof publish)[],
      });
    try {
      expect(start([publish, publish])).toThrow('two tools of the run have the same name');
      expect(start([{ name: 'publish' }])).toThrow('tools must be an array of tools made with tool()');
      expect(start(publish)).toThrow('tools must be an array of tools made with tool()');
      expect(await store.listRuns()).toEqual([]);
      expect(model.calls).toHaveLength(0);
    } finally {
      await orchestrator.shutdown();
    }
  });
});
