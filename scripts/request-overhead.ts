/**
 * The server's CPU per HTTP request, without a run: `GET /agents/:id` (CORS, the response
 * tracker, the routers, `res.json`) on `createApp` with its metrics and tracing off, in a process
 * of its own, served three ways in alternating rounds:
 *
 * - `startServer`: the app's own message classes (`RunstateApp.serverOptions`), so that express
 *   changes no prototype per request;
 * - `node classes`: Node's `IncomingMessage` and `ServerResponse`, as `app.listen()` serves, so that
 *   express sets the prototypes of every `req` and `res`;
 * - `bare node:http`: a handler that answers the same JSON without express, the floor.
 *
 *   npx tsx scripts/request-overhead.ts [--requests 20000] [--concurrency 50] [--rounds 3]
 *
 * See docs/performance.md, "What changed and why", item 19.
 */
import { Agent as HttpAgent, createServer, IncomingMessage, request, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { answerCpuMeter, forkMeasured } from './cpu-meter.js';

const { values } = parseArgs({
  options: {
    serve: { type: 'string' },
    requests: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '3' },
  },
});
const WAYS = ['startServer', 'node classes', 'bare node:http'] as const;
type Way = (typeof WAYS)[number];

async function serve(way: Way): Promise<void> {
  const { Agent, OfflineModel } = await import('../src/index.js');
  const { createApp } = await import('../src/server/index.js');
  const agent = new Agent({ name: 'probe', id: 'probe', model: new OfflineModel() });
  const runstate = createApp({ agents: [agent], metrics: false, tracing: false });
  const body = JSON.stringify({ id: 'probe', name: 'probe' });
  const server =
    way === 'bare node:http'
      ? createServer((_req, res) => {
          res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
          res.end(body);
        })
      : createServer(
          way === 'startServer' ? runstate.serverOptions : { IncomingMessage, ServerResponse },
          runstate.app,
        );
  server.keepAliveTimeout = 60_000;
  const reply = answerCpuMeter();
  server.listen(0, '127.0.0.1', () => reply({ port: (server.address() as AddressInfo).port }));
}

async function measure(way: Way): Promise<number> {
  const child = forkMeasured(fileURLToPath(import.meta.url), ['--serve', way]);
  const { port } = await child.next<{ port: number }>();
  const agent = new HttpAgent({ keepAlive: true, maxSockets: Number(values.concurrency) });
  const get = () =>
    new Promise<void>((resolve, reject) => {
      const req = request({ port, host: '127.0.0.1', path: '/agents/probe', agent }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
        res.resume();
        res.once('end', resolve);
      });
      req.once('error', reject);
      req.end();
    });
  const batch = async (n: number) => {
    let sent = 0;
    await Promise.all(
      Array.from({ length: Number(values.concurrency) }, async () => {
        while (sent++ < n) await get();
      }),
    );
  };
  const requests = Number(values.requests);
  await batch(Math.min(requests, 5000)); // warm-up: connections open, code optimised
  const { user, system } = await child.measure(() => batch(requests));
  child.exit();
  agent.destroy();
  return (user + system) / requests;
}

if (values.serve) await serve(values.serve as Way);
else {
  console.log(`server CPU per request (GET /agents/probe), ${values.requests} requests per round`);
  console.log(`| round | ${WAYS.join(' | ')} |`);
  console.log(`| ---: |${WAYS.map(() => ' ---: |').join('')}`);
  for (let round = 1; round <= Number(values.rounds); round++) {
    const cells: string[] = [];
    for (const way of WAYS) cells.push(`${(await measure(way)).toFixed(1)} µs`);
    console.log(`| ${round} | ${cells.join(' | ')} |`);
  }
}
