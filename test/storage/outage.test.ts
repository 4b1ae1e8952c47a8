/**
 * PostgreSQL out of reach while an instance runs (the network path cut by a proxy, the server
 * untouched): the process does not crash, new runs and reads answer 503 STORE_UNAVAILABLE, the runs
 * in flight end cleanly for every client (library, SSE, JSON), and what they streamed is stored once
 * the database is back.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Agent } from '../../src/agent.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { openStorage } from '../../src/runtime/open-storage.js';
import { createApp, startServer } from '../../src/server/index.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { expectError, postRun } from '../support/app.js';
import { readSse } from '../support/sse.js';
import { createProxiedDatabase, type ProxiedDatabase } from '../support/databases.js';
import { eventually } from '../support/eventually.js';

let database: ProxiedDatabase;
beforeAll(async () => {
  database = await createProxiedDatabase();
});
afterAll(() => database.drop(), 30_000);

describe('a PostgreSQL outage', () => {
  it('answers new runs and reads 503, ends the runs in flight for every client, and stores them once the database is back', async () => {
    const storage = await openStorage({ databaseUrl: database.proxiedUrl });
    const direct = await openStorage({ databaseUrl: database.url });
    const model = createFakeModel();
    const orchestrator = createOrchestrator({ store: storage.store });
    const agent = new Agent({ name: 'Story Writer Agent', model, orchestrator });
    const server = await startServer(createApp({ agents: [agent], logger: { error: () => undefined } }), {
      port: 0,
      graceMs: 1_000,
    });
    const story = `${server.url}/agents/story-writer-agent`;
    try {
      // Three runs in flight: read by the library, streamed over HTTP, and answered as JSON.
      const run = agent.run('Tell me a story', { stream: true });
      await run.recorded;
      const call = await model.nextCall();
      const sse = readSse(await postRun(story, { message: 'Tell me another' }));
      const sseStarted = (await sse.next())!.data;
      const sseCall = await model.nextCall();
      const json = postRun(story, { message: 'And a third', stream: false });
      const jsonCall = await model.nextCall();
      for (const each of [call, sseCall, jsonCall]) each.emit('Once');
      const stored = (runId: string) => async () => (await direct.store!.readEvents(runId)).length === 2;
      await eventually(stored(run.runId), { what: 'the first delta stored' });
      await eventually(stored(sseStarted.run_id), { what: 'the first delta stored' });

      await database.proxy.cut();
      for (const each of [call, sseCall, jsonCall]) {
        each.emit(' upon a time');
        each.end();
      }
      const frames = [];
      for await (const event of run) frames.push(event);
      // The runs in flight ended as without an outage, for each of their clients.
      checkRunEvents(frames, 'completed');
      expect(frames.at(-1)).toMatchObject({ event: 'RunCompleted', content: 'Once upon a time' });
      const started = frames[0]!;
      const sseFrames = [sseStarted, ...(await sse.rest()).map((frame) => frame.data)];
      checkRunEvents(sseFrames, 'completed');
      expect(sseFrames.at(-1)).toMatchObject({ event: 'RunCompleted', content: 'Once upon a time' });
      const answer = await json;
      expect(answer.status).toBe(200);
      expect(await answer.json()).toMatchObject({ status: 'completed', content: 'Once upon a time' });

      await expectError(
        await postRun(story, { message: 'Another', stream: false }),
        503,
        'STORE_UNAVAILABLE',
      );
      await expectError(await fetch(`${server.url}/sessions`), 503, 'STORE_UNAVAILABLE');
      expect(model.calls).toHaveLength(3);

      await database.proxy.restore();
      // Accepted before the outage, written after it: the whole log, in order, and the final record.
      for (const [runId, events] of [
        [started.run_id, frames],
        [sseStarted.run_id, sseFrames],
      ] as const) {
        const record = await eventually(
          async () => {
            const found = await direct.store!.getRun(runId);
            return found?.finished_at ? found : undefined;
          },
          { what: 'the run stored after the outage' },
        );
        expect(record).toMatchObject({ status: 'completed', content: 'Once upon a time' });
        expect(JSON.stringify(await direct.store!.readEvents(runId))).toBe(JSON.stringify(events));
      }
      // And new runs are accepted again.
      const again = readSse(await postRun(story, { message: 'Again' }));
      expect((await again.next())!.data.event).toBe('RunStarted');
      (await model.nextCall()).end();
      await again.rest();
    } finally {
      await server.close();
      await storage.close();
      await direct.close();
    }
  });

  it('shuts down during the outage: the runs end, and the writes it could not make are reported, not waited for', async () => {
    const storage = await openStorage({ databaseUrl: database.proxiedUrl });
    const model = createFakeModel();
    const orchestrator = createOrchestrator({ store: storage.store });
    const reported = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'Hi' });
      await run.recorded;
      const call = await model.nextCall();
      call.emit('Once');
      await database.proxy.cut();
      call.emit(' upon');
      await orchestrator.shutdown();
      expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'shutdown' });
      expect(call.signal.aborted).toBe(true);
      // Once for the run, on one line that names the cause: no stack (an outage is no bug).
      const refusals = reported.mock.calls.filter(([line]) =>
        String(line).includes(`refused a write of run ${run.runId}`),
      );
      expect(refusals).toEqual([[expect.stringMatching(/: the database at .+ is unavailable: \S/)]]);
    } finally {
      reported.mockRestore();
      await database.proxy.restore();
      await storage.close();
    }
  });
});
