/**
 * What starting many runs in one turn of the event loop costs: `--runs` streams started in one loop
 * (`agent.run(input, { stream: true })`, or the raw openai SDK's `chat.completions.create`), against
 * an OpenAI-compatible server in this process that answers each with one chunk and holds the stream
 * open. Prints, per round: the loop itself (synchronous), the first turn (until a `setImmediate`
 * queued before the loop runs: how long the event loop was held), the time until every stream had
 * its first chunk, the CPU of it all, and when the requests reached the server. This is what the
 * bench's "event-loop delay p99" of 1,000 paced runs is made of (docs/performance.md).
 *
 *   npx tsx --conditions=runstate-source scripts/start-burst.ts raw|library [--runs 1000] [--rounds 4]
 *     [--base-url http://127.0.0.1:PORT/v1]
 *   npx tsx --conditions=runstate-source scripts/start-burst.ts serve [--port PORT]
 *
 * `--base-url` sends the requests to a server in another process (then no arrivals are printed): the
 * server's work is then not part of the client's turns, as in the bench. `serve` is that server (the
 * same answer), until interrupted.
 *
 * With `PROF_DIR=dir` in the environment, each round's first turn (the loop and the work it queued,
 * nothing after) is profiled into `dir`, for `npx tsx bench/profile-summary.ts`.
 */
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { Agent, OpenAIChat } from '../src/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '4' },
    'base-url': { type: 'string' },
    port: { type: 'string', default: '0' },
  },
});
const kind = positionals[0];
if (kind !== 'raw' && kind !== 'library' && kind !== 'serve')
  throw new Error(
    'usage: start-burst.ts raw|library [--runs N] [--rounds N] [--base-url URL] | serve [--port N]',
  );
const RUNS = Number(values.runs);

const frame = `data: ${JSON.stringify({
  id: 'c',
  object: 'chat.completion.chunk',
  created: 0,
  model: 'm',
  choices: [{ index: 0, delta: { content: 'x' }, finish_reason: null }],
})}\n\n`;
let arrived = 0;
let roundStart = 0;
const arrivals: string[] = [];
const server = createServer((req, res) => {
  if (++arrived === 1 || arrived % Math.max(1, Math.floor(RUNS / 4)) === 0)
    arrivals.push(`${arrived}@${(performance.now() - roundStart).toFixed(0)}`);
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(frame);
  });
});
// A backlog for every run's connection at once: Node's default (511) drops SYNs, retried after 1 s.
await new Promise<void>((resolve) =>
  server.listen({ port: Number(values.port), host: '127.0.0.1', backlog: 8192 }, resolve),
);
if (kind === 'serve') {
  console.log(`serving http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
  await new Promise(() => undefined);
}
const baseURL = values['base-url'] ?? `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;

const agent = new Agent({ name: 'burst', model: new OpenAIChat({ id: 'm', baseURL, apiKey: 'k' }) });
const client = new OpenAI({ apiKey: 'k', baseURL, maxRetries: 0 });
const stops: (() => void)[] = [];

function start(i: number, firstChunk: () => void): void {
  if (kind === 'raw') {
    const controller = new AbortController();
    stops.push(() => controller.abort());
    const body = {
      model: 'm',
      messages: [{ role: 'user' as const, content: `t${i}` }],
      stream: true as const,
    };
    void client.chat.completions
      .create(body, { signal: controller.signal })
      .then(async (stream) => {
        for await (const _ of stream) firstChunk();
      })
      .catch(() => undefined);
    return;
  }
  const stream = agent.run(`t${i}`, { stream: true });
  stops.push(() => agent.cancelRun(stream.runId));
  void (async () => {
    for await (const event of stream) if (event.event === 'RunContent') firstChunk();
  })().catch(() => undefined);
}

async function startProfiler(): Promise<Session | undefined> {
  if (!process.env.PROF_DIR) return undefined;
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return session;
}

async function stopProfiler(session: Session | undefined, round: number): Promise<void> {
  if (!session) return;
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  // (A session is only started when PROF_DIR is set.)
  writeFileSync(
    `${process.env.PROF_DIR!}/start-burst-${kind}-${process.pid}-${round}.cpuprofile`,
    JSON.stringify(profile),
  );
}

for (let round = 0; round < Number(values.rounds); round++) {
  let firsts = 0;
  let allFirst!: () => void;
  const everyFirst = new Promise<void>((resolve) => (allFirst = resolve));
  arrived = 0;
  arrivals.length = 0;
  const profiler = await startProfiler();
  const cpu = process.cpuUsage();
  roundStart = performance.now();
  const turnOver = new Promise<number>((resolve) =>
    setImmediate(() => resolve(performance.now() - roundStart)),
  );
  for (let i = 0; i < RUNS; i++) start(i, () => ++firsts === RUNS && allFirst());
  const loopMs = performance.now() - roundStart;
  const firstTurnMs = await turnOver;
  await stopProfiler(profiler, round);
  await everyFirst;
  const allMs = performance.now() - roundStart;
  const used = process.cpuUsage(cpu);
  console.log(
    `${kind}: loop ${loopMs.toFixed(0)} ms, first turn ${firstTurnMs.toFixed(0)} ms, every first chunk ${allMs.toFixed(0)} ms, ` +
      `CPU ${((used.user + used.system) / 1000).toFixed(0)} ms; requests arrived ${arrivals.join(' ')}`,
  );
  for (const stop of stops.splice(0)) stop();
  // The cancelled streams close: let their sockets go before the next round.
  await new Promise((resolve) => setTimeout(resolve, 300));
}
server.closeAllConnections();
server.close();
await agent.orchestrator.shutdown();
