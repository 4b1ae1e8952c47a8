/**
 * What starting a run costs the server over HTTP, against `agent.run` in the same process: the
 * server (`createApp` + `startServer`, an `OpenAIChat` agent) runs in a process of its own; this
 * process is its model server (runstate's fake OpenAI server: each request answered with one chunk,
 * the stream held open) and its client, which posts `--runs` runs in batches of `--batch` (all at
 * once by default), each on a new connection with `Connection: close`, as the bench's paced
 * scenario does. Prints, per round, the
 * server's CPU per run from the first `POST` until every run's first `RunContent` reached its
 * client, and the same for runs started by `agent.run` in the server's process (`--mode library`),
 * with the server's garbage-collection time over that span (`perf_hooks`, the meter's own forced
 * collection left out).
 *
 *   npx tsx scripts/http-start-cost.ts [--mode http|library] [--runs 1000] [--batch 1000] [--rounds 3]
 *     [--body json|urlencoded|multipart]   (how each `POST` sends its fields: bench/run-body.ts)
 *
 * With `PROF_DIR=dir` in the environment, the server's process writes a V8 CPU profile there.
 * See docs/performance.md ("Not done": the server's stall when 1,000 `POST`s arrive together).
 */
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseRunBodyEncoding, runBody } from '../bench/run-body.js';
import { createFakeOpenAIServer } from '../src/testing/fake-openai-server.js';
import { answerCpuMeter, forkMeasured, type Cpu } from './cpu-meter.js';

const { values } = parseArgs({
  options: {
    server: { type: 'string' },
    mode: { type: 'string', default: 'http' },
    runs: { type: 'string', default: '1000' },
    batch: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    body: { type: 'string', default: 'multipart' },
  },
});

/** The server: the app on a port, `library:N` starts N runs through `agent.run` and answers at their first chunks. */
async function server(baseURL: string): Promise<void> {
  const { PerformanceObserver, constants } = await import('node:perf_hooks');
  const { Agent, OpenAIChat } = await import('../src/index.js');
  const { createApp, startServer } = await import('../src/server/index.js');
  let gcMs = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      // Not the meter's own collection before each round.
      const flags = (entry as { detail?: { flags?: number } }).detail?.flags ?? 0;
      if (!(flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED)) gcMs += entry.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  const agent = new Agent({ name: 'b', id: 'b', model: new OpenAIChat({ id: 'm', baseURL, apiKey: 'k' }) });
  const listening = await startServer(createApp({ agents: [agent] }), { port: 0 });
  let gcAtStart = 0;
  const reply = answerCpuMeter({
    onMessage(message, reply) {
      if (message === 'gc-start') gcAtStart = gcMs;
      if (message === 'gc-stop') reply(gcMs - gcAtStart);
      if (typeof message !== 'string' || !message.startsWith('library:')) return;
      const runs = Number(message.slice('library:'.length));
      let firsts = 0;
      for (let i = 0; i < runs; i++) {
        const stream = agent.run(`run ${i}`, { stream: true });
        void (async () => {
          let first = true;
          const reached = () => {
            first = false;
            if (++firsts === runs) reply('firsts');
          };
          for await (const event of stream) if (first && event.event === 'RunContent') reached();
          // A run that ended without content counts too, so that a failure ends the round.
          if (first) reached();
        })();
      }
    },
    onExit: () => listening.close(),
  });
  reply({ url: listening.url });
}

async function driver(): Promise<void> {
  // Each request gets one chunk, then its stream is held until `endAll` finishes it.
  const upstream = await createFakeOpenAIServer({ backlog: 8192 });
  upstream.setDefault({ fault: 'stall', chunks: ['x'] });
  /** The upstream's requests before this one are finished. */
  let finishedUpTo = 0;
  const child = forkMeasured(
    fileURLToPath(import.meta.url),
    ['--server', upstream.url],
    process.env.PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PROF_DIR}`] : [],
  );
  const { url } = await child.next<{ url: string }>();
  const { body, contentType } = runBody(parseRunBodyEncoding('--body', values.body), 'hi');
  let ended = 0;
  let expected = 0;
  let incomplete = 0;
  let allEnded = (): void => undefined;

  function post(onFirst: () => void): void {
    const req = request(`${url}/agents/b/runs`, {
      method: 'POST',
      agent: false,
      headers: {
        'content-type': contentType,
        connection: 'close',
        'content-length': Buffer.byteLength(body),
      },
    });
    req.end(body);
    req.on('response', (res) => {
      let first = true;
      // The end of the body, enough to hold its last frame whatever reads it came in.
      let tail = '';
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        tail = (tail + text).slice(-4096);
        if (first && text.includes('event: RunContent')) {
          first = false;
          onFirst();
        }
      });
      res.on('end', () => {
        if (!tail.includes('event: RunCompleted')) incomplete++;
        // Ended without content (a failure): counted, so that the round ends and the error is told.
        if (first) onFirst();
        if (++ended === expected) allEnded();
      });
    });
  }
  const overHttp = (runs: number) =>
    new Promise<void>((resolve) => {
      let firsts = 0;
      for (let i = 0; i < runs; i++) post(() => ++firsts === runs && resolve());
    });
  const throughLibrary = async (runs: number) => {
    child.send(`library:${runs}`);
    await child.next<string>();
  };
  /** Ends every held model stream (a last delta, its finish reason), and waits for the HTTP streams. */
  async function endAll(http: boolean): Promise<void> {
    const streams = upstream.requests.slice(finishedUpTo);
    finishedUpTo = upstream.requests.length;
    ended = 0;
    expected = http ? streams.length : 0;
    const over = new Promise<void>((resolve) => (allEnded = resolve));
    for (const request of streams) {
      request.send('y');
      request.finish('stop');
    }
    await (http ? over : Promise.all(streams.map((request) => request.closed)));
  }

  const RUNS = Number(values.runs);
  const BATCH = Number(values.batch);
  const http = values.mode !== 'library';
  const start = http ? overHttp : throughLibrary;
  // Warm-up: both paths compiled.
  await overHttp(200);
  await endAll(true);
  await throughLibrary(200);
  await endAll(false);
  console.log(
    `${http ? 'over HTTP' : 'agent.run'}: ${RUNS} runs, ${BATCH} at once; server CPU per run until every first chunk`,
  );
  for (let round = 1; round <= Number(values.rounds); round++) {
    child.send('gc-start');
    const cpu: Cpu = await child.measure(async () => {
      for (let sent = 0; sent < RUNS; sent += BATCH) await start(Math.min(BATCH, RUNS - sent));
    });
    child.send('gc-stop');
    const gcMs = await child.next<number>();
    console.log(
      `round ${round}: ${((cpu.user + cpu.system) / RUNS).toFixed(0)} µs (kernel ${(cpu.system / RUNS).toFixed(0)}), ` +
        `GC ${((gcMs * 1000) / RUNS).toFixed(0)} µs`,
    );
    await endAll(http);
  }
  if (incomplete > 0) throw new Error(`${incomplete} HTTP runs did not end with RunCompleted`);
  child.exit();
  await upstream.close();
}

await (values.server ? server(values.server) : driver());
