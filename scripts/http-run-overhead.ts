/**
 * What the HTTP server adds to a run, apart from the model: `createApp` in a process of its own with
 * an in-process model (deltas one event-loop turn apart, no upstream), a client in this process
 * sending runs over keep-alive connections (`POST /agents/stub/runs`, the SSE stream read to its
 * end), and the same number of runs through `agent.run` in the server's process. Prints the
 * server's CPU per run both ways, in rounds that alternate.
 *
 *   npx tsx scripts/http-run-overhead.ts [--runs 2000] [--chunks 1] [--concurrency 200] [--rounds 3] [--node-classes]
 *
 * `--node-classes` serves with Node's own request and response classes, as `app.listen()` does,
 * instead of `startServer`'s (`RunstateApp.serverOptions`): express then changes the prototypes of
 * every request and response.
 *
 * With `PROF_DIR=dir` in the environment, the server's process writes a V8 CPU profile there
 * (`npx tsx bench/profile-summary.ts dir/*.cpuprofile` summarises it).
 *
 * See docs/performance.md, "Per run, per chunk".
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { answerCpuMeter, forkMeasured, type Cpu } from './cpu-meter.js';
import type { ModelChunk } from '../src/model/chat-model.js';

const { values } = parseArgs({
  options: {
    server: { type: 'boolean', default: false },
    'node-classes': { type: 'boolean', default: false },
    runs: { type: 'string', default: '2000' },
    chunks: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '3' },
  },
});
const CHUNKS = Number(values.chunks);

async function server(): Promise<void> {
  const { Agent } = await import('../src/agent.js');
  const { createApp, startServer } = await import('../src/server/index.js');

  // Every waiting stream gets its next delta in the same later turn, one each.
  let waiting: (() => void)[] = [];
  const deliver = () => {
    const now = waiting;
    waiting = [];
    for (const wake of now) wake();
  };
  const nextTurn = () =>
    new Promise<void>((resolve) => {
      if (waiting.push(resolve) === 1) setImmediate(deliver);
    });
  const END: ModelChunk = {
    type: 'end',
    finishReason: 'stop',
    usage: { input_tokens: 1, output_tokens: CHUNKS, total_tokens: 1 + CHUNKS },
  };
  const agent = new Agent({
    name: 'stub',
    id: 'stub',
    model: {
      id: 'stub',
      provider: 'bench',
      stream: ({ signal }) => {
        let sent = 0;
        return {
          [Symbol.asyncIterator]: () => ({
            async next(): Promise<IteratorResult<ModelChunk>> {
              await nextTurn();
              if (signal.aborted || sent > CHUNKS) return { done: true, value: undefined };
              return { done: false, value: sent++ < CHUNKS ? { type: 'delta', content: `w${sent}` } : END };
            },
          }),
        };
      },
    },
  });
  const runstate = createApp({ agents: [agent] });
  // `--node-classes`: Node's own request and response classes, as `app.listen()` serves with.
  const classes = values['node-classes'] ? { IncomingMessage, ServerResponse } : runstate.serverOptions;
  const listening = await startServer({ ...runstate, serverOptions: classes }, { port: 0 });
  // As behind a balancer: the connections outlast the gaps between rounds.
  listening.server.keepAliveTimeout = 60_000;
  const reply = answerCpuMeter({
    onMessage(message, reply) {
      if (typeof message !== 'string' || !message.startsWith('library:')) return;
      const count = message.slice('library:'.length);
      globalThis.gc?.();
      const start = process.cpuUsage();
      const one = async (i: number) => {
        for await (const event of agent.run(`run ${i}`, { stream: true })) void event;
      };
      void Promise.all(Array.from({ length: Number(count) }, (_, i) => one(i))).then(() =>
        reply(process.cpuUsage(start)),
      );
    },
    onExit: () => listening.close(),
  });
  reply({ url: listening.url });
}

async function driver(): Promise<void> {
  const RUNS = Number(values.runs);
  const CONCURRENCY = Number(values.concurrency);
  const serverArgs = [
    '--server',
    '--chunks',
    String(CHUNKS),
    ...(values['node-classes'] ? ['--node-classes'] : []),
  ];
  const child = forkMeasured(
    fileURLToPath(import.meta.url),
    serverArgs,
    process.env.PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PROF_DIR}`] : [],
  );
  const { url } = await child.next<{ url: string }>();

  async function overHttp(runs: number): Promise<void> {
    let started = 0;
    await Promise.all(
      Array.from({ length: Math.min(CONCURRENCY, runs) }, async () => {
        while (started < runs) {
          started++;
          const response = await fetch(`${url}/agents/stub/runs`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ message: 'hi', stream: true }),
          });
          const text = await response.text();
          if (!text.includes('event: RunCompleted'))
            throw new Error(`a run did not complete: ${text.slice(0, 200)}`);
        }
      }),
    );
  }
  const perRun = (cpu: Cpu) =>
    `${((cpu.user + cpu.system) / RUNS).toFixed(0)} µs (kernel ${(cpu.system / RUNS).toFixed(0)})`;

  // Warm-up: the connections open, both paths compiled.
  await overHttp(Math.min(RUNS, 500));
  child.send(`library:${Math.min(RUNS, 500)}`);
  await child.next<Cpu>();
  console.log(`server CPU per run: ${RUNS} runs of ${CHUNKS} chunk(s), ${CONCURRENCY} at a time over HTTP`);
  console.log('| round | over HTTP | agent.run in the server process |');
  console.log('| ---: | ---: | ---: |');
  for (let round = 1; round <= Number(values.rounds); round++) {
    const http = await child.measure(() => overHttp(RUNS));
    child.send(`library:${RUNS}`);
    const library = await child.next<Cpu>();
    console.log(`| ${round} | ${perRun(http)} | ${perRun(library)} |`);
  }
  child.exit();
}

await (values.server ? server() : driver());
