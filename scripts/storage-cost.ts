/**
 * What durable storage costs: event writes per batch size (PostgreSQL and PGlite), and the latency
 * of a cancel and of an event batch across two instances through Redis. Prints a markdown table.
 *
 *   npm run bench:storage   (PostgreSQL on 127.0.0.1:5432 user postgres, Redis on 127.0.0.1:6379)
 */
import { performance } from 'node:perf_hooks';
import { createRedisCancelBus, createRedisEventBus } from '../src/runtime/redis/create-redis-buses.js';
import type { RunEvent, RunRecord } from '../src/runtime/run-events.js';
import { createSqlRunStore } from '../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase, type SqlLocation } from '../src/runtime/sql/open-sql-database.js';
import { createTempDir, createTestDatabase } from '../test/support/databases.js';
import { REDIS_URL, redisPrefix } from '../test/support/redis-server.js';

const EVENTS = 5_000;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function record(runId: string): RunRecord {
  return {
    run_id: runId,
    agent_id: 'bench',
    agent_name: 'Bench',
    session_id: `s-${runId}`,
    user_id: null,
    status: 'streaming',
    run_input: 'bench',
    content: '',
    reasoning_content: '',
    finish_reason: null,
    tools: [],
    model: 'fake',
    model_provider: 'fake',
    metrics: null,
    error: null,
    cancel_reason: null,
    created_at: 1,
    finished_at: null,
  };
}

function content(run: RunRecord, seq: number): RunEvent {
  const { run_id, agent_id, agent_name, session_id } = run;
  return {
    event: 'RunContent',
    run_id,
    agent_id,
    agent_name,
    session_id,
    created_at: 1,
    seq,
    content: ' token',
  };
}

async function writes(name: string, location: SqlLocation): Promise<string[]> {
  const store = createSqlRunStore({ db: await openSqlDatabase(location) });
  const rows: string[] = [];
  for (const batch of [1, 16, 256]) {
    const run = record(`${name}-${batch}`);
    await store.createRun(run);
    const events = Array.from({ length: EVENTS }, (_, i) => content(run, i + 1));
    const cpu = process.cpuUsage();
    const start = performance.now();
    for (let i = 0; i < EVENTS; i += batch) await store.appendEvents(run.run_id, events.slice(i, i + batch));
    const ms = performance.now() - start;
    const used = process.cpuUsage(cpu);
    const perEventUs = (ms * 1000) / EVENTS;
    const cpuUs = (used.user + used.system) / EVENTS;
    rows.push(
      `| ${name} | ${batch} | ${Math.ceil(EVENTS / batch)} | ${Math.round(EVENTS / (ms / 1000)).toLocaleString('en')} | ${perEventUs.toFixed(1)} | ${cpuUs.toFixed(1)} |`,
    );
  }
  await store.close();
  return rows;
}

async function redisLatency(): Promise<string[]> {
  const prefix = redisPrefix();
  const bus = { url: REDIS_URL, prefix };
  const [cancelA, cancelB] = [await createRedisCancelBus(bus), await createRedisCancelBus(bus)];
  const [eventsA, eventsB] = [await createRedisEventBus(bus), await createRedisEventBus(bus)];
  const trials = 200;
  let resolve: (() => void) | undefined;
  await cancelA.subscribe(() => resolve?.());
  await eventsA.subscribe('run', () => resolve?.());
  const measure = async (send: () => unknown) => {
    const samples: number[] = [];
    for (let i = 0; i < trials; i++) {
      const arrived = new Promise<void>((r) => (resolve = r));
      const start = performance.now();
      send();
      await arrived;
      samples.push(performance.now() - start);
    }
    return samples;
  };
  const cancel = await measure(() => cancelB.publish('run', 'api'));
  const event = await measure(() => eventsB.publish('run', [content(record('run'), 1)]));
  await Promise.all([cancelA.close(), cancelB.close(), eventsA.close(), eventsB.close()]);
  const row = (what: string, samples: number[]) =>
    `| ${what} | ${median(samples).toFixed(2)} | ${[...samples].sort((a, b) => a - b)[Math.floor(trials * 0.95)]!.toFixed(2)} |`;
  return [
    row('cancel: publish on B → listener on A', cancel),
    row('event batch: publish on B → follower on A', event),
  ];
}

const database = await createTestDatabase();
const dir = await createTempDir();
try {
  console.log(
    `Event writes, ${EVENTS.toLocaleString('en')} RunContent events per row, awaited batch by batch:\n`,
  );
  console.log(
    '| backend | events per batch | INSERTs | events/s | wall µs/event | CPU µs/event (this process) |',
  );
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const row of await writes('PostgreSQL', { databaseUrl: database.url })) console.log(row);
  for (const row of await writes('PGlite', { dataDir: dir.path })) console.log(row);
  console.log('\nAcross two instances through Redis (loopback), 200 trials:\n');
  console.log('| what | median ms | p95 ms |');
  console.log('|---|---:|---:|');
  for (const row of await redisLatency()) console.log(row);
} finally {
  await database.drop();
  await dir.remove();
}
