/**
 * What durable storage costs: event writes per batch size (PostgreSQL and PGlite); many paced runs
 * at once on one orchestrator and PostgreSQL (the statements they cost, by kind, and the runs that
 * did not complete); and the latency of a cancel and of an event batch across two instances through
 * Redis. Prints markdown tables.
 *
 *   npm run bench:storage   (PostgreSQL on 127.0.0.1:5432 user postgres, Redis on 127.0.0.1:6379)
 *   npm run bench:storage -- --only runs --runs 1000 --groups 2
 */
import { performance } from 'node:perf_hooks';
import { createOrchestrator } from '../src/runtime/create-orchestrator.js';
import { createRedisCancelBus, createRedisEventBus } from '../src/runtime/redis/create-redis-buses.js';
import type { RunEvent, RunRecord } from '../src/runtime/run-events.js';
import { createSqlRunStore } from '../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase, type SqlLocation } from '../src/runtime/sql/open-sql-database.js';
import type { SqlDatabase, SqlQueryable } from '../src/runtime/sql/sql-database.js';
import { createFakeModel } from '../src/testing/fake-model.js';
import { createTempDir, createTestDatabase } from '../test/support/databases.js';
import { REDIS_URL, redisPrefix } from '../test/support/redis-server.js';
import { readScriptOptions } from './script-options.js';

const args = readScriptOptions(
  'storage-cost',
  { runs: '1000', chunks: '100', groups: '2' },
  { only: { default: 'writes,runs,redis', choices: ['writes', 'runs', 'redis'] } },
);
const { only } = args;

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
    input: { input_content: 'bench' },
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

/** What one statement is, for counting: its verb and table (`INSERT runstate_events`). */
function kindOf(text: string): string {
  // A statement with CTEs is named after its last write (the main statement).
  const writes = [...text.matchAll(/(INSERT INTO|UPDATE|DELETE FROM)\s+(runstate_\w+)/g)];
  const verb = /^\s*(\w+)/.exec(text)?.[1]?.toUpperCase() ?? '?';
  if (verb === 'WITH' && writes.length > 0)
    return `${writes.at(-1)![1]!.split(' ')[0]} ${writes.at(-1)![2]} (WITH)`;
  return `${verb} ${/runstate_\w+/.exec(text)?.[0] ?? ''}`.trim();
}

/** `db` counting its statements by kind (those of transactions too) and how long they took. */
function counted(db: SqlDatabase) {
  const counts = new Map<string, { n: number; ms: number }>();
  const count = (text: string, ms: number) => {
    const entry = counts.get(kindOf(text)) ?? { n: 0, ms: 0 };
    entry.n++;
    entry.ms += ms;
    counts.set(kindOf(text), entry);
  };
  const timed = (on: SqlQueryable): SqlQueryable => ({
    async query(text, params) {
      const start = performance.now();
      try {
        return await on.query(text, params);
      } finally {
        count(text, performance.now() - start);
      }
    },
  });
  const wrapped: SqlDatabase = {
    ...timed(db),
    transaction: (fn) => db.transaction((tx) => fn(timed(tx))),
    close: () => db.close(),
  };
  return { db: wrapped, counts };
}

/**
 * `runs` runs started at once on one orchestrator storing in PostgreSQL, each streaming `chunks`
 * deltas 10 ms apart (what a model sends), as the HTTP server's runs do without HTTP: the
 * statements they cost, by kind, and how many did not complete.
 */
async function pacedRuns(url: string, runs: number, chunks: number, groups: number): Promise<string[]> {
  const { db, counts } = counted(await openSqlDatabase({ databaseUrl: url }));
  const store = createSqlRunStore({ db, eventGroupsInFlight: groups });
  const model = createFakeModel({
    onCall(call) {
      let sent = 0;
      const timer = setInterval(() => {
        if (call.settled) return clearInterval(timer);
        if (sent++ < chunks) return call.emit(' token');
        clearInterval(timer);
        call.end();
      }, 10);
    },
  });
  const orchestrator = createOrchestrator({ store });
  const cpu = process.cpuUsage();
  const start = performance.now();
  const outcomes = await Promise.all(
    Array.from({ length: runs }, async () => {
      const run = orchestrator.startRun({ agentId: 'bench', agentName: 'Bench', model, input: 'Hi' });
      try {
        await run.recorded;
        return (await run.result).status;
      } catch (error) {
        return (error as { code?: string }).code ?? String(error);
      }
    }),
  );
  const ms = performance.now() - start;
  const used = process.cpuUsage(cpu);
  await orchestrator.shutdown();
  await store.close();
  const failed = new Map<string, number>();
  for (const outcome of outcomes)
    if (outcome !== 'completed') failed.set(outcome, (failed.get(outcome) ?? 0) + 1);
  const rows = [
    `${runs.toLocaleString('en')} runs × ${chunks} deltas 10 ms apart, ${groups} event group(s) in flight at most: ` +
      `${Math.round(ms).toLocaleString('en')} ms wall, ${((used.user + used.system) / 1000).toFixed(0)} ms CPU (this process, PostgreSQL's not counted), ` +
      `not completed: ${runs - (outcomes.length - [...failed.values()].reduce((a, b) => a + b, 0))}` +
      (failed.size ? ` (${[...failed].map(([what, n]) => `${n} ${what}`).join(', ')})` : ''),
    '',
    '| statement | count | per run | mean ms (pool wait included) |',
    '|---|---:|---:|---:|',
  ];
  for (const [kind, { n, ms: total }] of [...counts].sort((a, b) => b[1].n - a[1].n))
    rows.push(
      `| ${kind} | ${n.toLocaleString('en')} | ${(n / runs).toFixed(2)} | ${(total / n).toFixed(1)} |`,
    );
  return rows;
}

const database = await createTestDatabase();
const dir = await createTempDir();
try {
  if (only.has('writes')) {
    console.log(
      `Event writes, ${EVENTS.toLocaleString('en')} RunContent events per row, awaited batch by batch:\n`,
    );
    console.log(
      '| backend | events per batch | INSERTs | events/s | wall µs/event | CPU µs/event (this process) |',
    );
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const row of await writes('PostgreSQL', { databaseUrl: database.url })) console.log(row);
    for (const row of await writes('PGlite', { dataDir: dir.path })) console.log(row);
  }
  if (only.has('runs')) {
    console.log('\nPaced runs at once on PostgreSQL (pool of 10 connections):\n');
    const rows = await pacedRuns(database.url, args.runs, args.chunks, args.groups);
    for (const row of rows) console.log(row);
  }
  if (only.has('redis')) {
    console.log('\nAcross two instances through Redis (loopback), 200 trials:\n');
    console.log('| what | median ms | p95 ms |');
    console.log('|---|---:|---:|');
    for (const row of await redisLatency()) console.log(row);
  }
} finally {
  await database.drop();
  await dir.remove();
}
