/**
 * Whether a long-running server keeps memory it should let go of: `createApp` + `startServer` in
 * this process, with a stub model (a few deltas, one event-loop turn apart), sent rounds of streamed
 * runs over HTTP (100 at a time, a urlencoded form of ~200 characters each: every other round in new
 * sessions, the next in 50 sessions used again). After each round the heap is collected twice and
 * measured: what the retention limits keep (1,000 finished runs, 10,000 sessions in memory) is reached
 * within the first rounds, and the heap must then stay flat.
 *
 *   node --expose-gc --import tsx --conditions=runstate-source scripts/heap-soak.ts [--runs 5000] [--rounds 8] [--pg]
 *
 * `--pg`: the runs stored in PostgreSQL (a database of its own on 127.0.0.1:5432, dropped after)
 * with Redis as the buses (127.0.0.1:6379, keys under a prefix of its own).
 */
import { parseArgs } from 'node:util';
import { Agent } from '../src/agent.js';
import type { ModelChunk } from '../src/model/chat-model.js';
import { createOrchestrator } from '../src/runtime/create-orchestrator.js';
import { openStorage, type Storage } from '../src/runtime/open-storage.js';
import { createApp, startServer } from '../src/server/index.js';
import { createTestDatabase, type TestDatabase } from '../test/support/databases.js';
import { REDIS_URL, redisPrefix } from '../test/support/redis-server.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '8' },
    chunks: { type: 'string', default: '5' },
    pg: { type: 'boolean', default: false },
  },
});
const CHUNKS = Number(values.chunks);
const gc = globalThis.gc;
if (!gc) throw new Error('run with node --expose-gc');

let database: TestDatabase | undefined;
let storage: Storage | undefined;
if (values.pg) {
  database = await createTestDatabase();
  storage = await openStorage({ databaseUrl: database.url, redisUrl: REDIS_URL, redisPrefix: redisPrefix() });
}
const orchestrator = createOrchestrator({
  store: storage?.store,
  cancelBus: storage?.cancelBus,
  eventBus: storage?.eventBus,
});
const END: ModelChunk = {
  type: 'end',
  finishReason: 'stop',
  usage: { input_tokens: 1, output_tokens: CHUNKS, total_tokens: 1 + CHUNKS },
};
const agent = new Agent({
  name: 'stub',
  id: 'stub',
  orchestrator,
  model: {
    id: 'stub',
    provider: 'soak',
    stream: () => ({
      async *[Symbol.asyncIterator]() {
        for (let i = 0; i < CHUNKS; i++) {
          await new Promise((resolve) => setImmediate(resolve));
          yield { type: 'delta', content: `w${i} ` } satisfies ModelChunk;
        }
        yield END;
      },
    }),
  },
});
const server = await startServer(createApp({ agents: [agent] }), { port: 0 });
const url = `${server.url}/agents/stub/runs`;

async function round(runs: number, reuseSessions: boolean): Promise<void> {
  let started = 0;
  await Promise.all(
    Array.from({ length: 100 }, async () => {
      while (started < runs) {
        const i = started++;
        const body = new URLSearchParams({
          message: `hello ${i} `.repeat(20),
          stream: 'true',
          ...(reuseSessions ? { session_id: `s${i % 50}` } : {}),
        });
        const text = await (await fetch(url, { method: 'POST', body })).text();
        if (!text.includes('event: RunCompleted'))
          throw new Error(`a run did not complete: ${text.slice(0, 300)}`);
      }
    }),
  );
}

const mb = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MB`;
console.log(`| runs | heap used | RSS |  (${values.pg ? 'PostgreSQL + Redis' : 'memory'})`);
console.log('| ---: | ---: | ---: |');
try {
  for (let r = 1; r <= Number(values.rounds); r++) {
    await round(Number(values.runs), r % 2 === 0);
    // The final records of the last runs are written after their streams ended.
    await new Promise((resolve) => setTimeout(resolve, 200));
    gc();
    gc();
    const { heapUsed, rss } = process.memoryUsage();
    console.log(`| ${r * Number(values.runs)} | ${mb(heapUsed)} | ${mb(rss)} |`);
  }
} finally {
  await server.close();
  await storage?.close();
  await database?.drop();
}
