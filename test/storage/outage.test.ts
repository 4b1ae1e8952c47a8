/**
 * PostgreSQL out of reach while an instance runs (the network path cut by a proxy, the server
 * untouched): the process does not crash, new runs and reads answer 503 STORE_UNAVAILABLE, a run in
 * flight ends cleanly, and what it streamed is stored once the database is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { openStorage } from '../../src/runtime/open-storage.js';
import { createApp, startServer } from '../../src/server/index.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { expectError, postRun } from '../support/app.js';
import { readSse } from '../support/sse.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { eventually } from '../support/eventually.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

let database: TestDatabase;
let proxy: TcpProxy;
beforeAll(async () => {
  database = await createTestDatabase();
  const url = new URL(database.url);
  proxy = await startTcpProxy(url.hostname, Number(url.port || 5432));
});
afterAll(async () => {
  await proxy.close();
  await database.drop();
}, 30_000);

describe('a PostgreSQL outage', () => {
  it('answers new runs and reads 503, ends the run in flight, and stores it once the database is back', async () => {
    const through = new URL(database.url);
    through.port = String(proxy.port);
    const storage = await openStorage({ databaseUrl: through.toString() });
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
      const run = agent.run('Tell me a story', { stream: true });
      await run.recorded;
      const call = await model.nextCall();
      call.emit('Once');
      await eventually(async () => (await direct.store!.readEvents(run.runId)).length === 2, {
        what: 'the first delta stored',
      });

      await proxy.cut();
      call.emit(' upon a time');
      call.end();
      const frames = [];
      for await (const event of run) frames.push(event);
      // The run in flight ended as without an outage, for its own reader.
      checkRunEvents(frames, 'completed');
      expect(frames.at(-1)).toMatchObject({ event: 'RunCompleted', content: 'Once upon a time' });
      const started = frames[0]!;

      await expectError(
        await postRun(story, { message: 'Another', stream: false }),
        503,
        'STORE_UNAVAILABLE',
      );
      await expectError(await fetch(`${server.url}/sessions`), 503, 'STORE_UNAVAILABLE');
      expect(model.calls).toHaveLength(1);

      await proxy.restore();
      // Accepted before the outage, written after it: the whole log, in order, and the final record.
      const stored = await eventually(
        async () => {
          const record = await direct.store!.getRun(started.run_id);
          return record?.finished_at ? record : undefined;
        },
        { what: 'the run stored after the outage' },
      );
      expect(stored).toMatchObject({ status: 'completed', content: 'Once upon a time' });
      expect(JSON.stringify(await direct.store!.readEvents(started.run_id))).toBe(JSON.stringify(frames));
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
});
