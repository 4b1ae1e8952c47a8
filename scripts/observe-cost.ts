/**
 * What tracing and metrics cost per token: CPU time of runs of 1,000 chunks each with no observer,
 * with tracing through `@opentelemetry/api` and no SDK (the default of a host that registers none),
 * with an SDK that records spans (exporting none, then exporting in batches to an exporter that drops
 * them), with Prometheus metrics, and with both.
 *
 *   node --expose-gc --import tsx --conditions=runstate-source scripts/observe-cost.ts [--runs 20] [--chunks 1000] [--rounds 9]
 *   (or: npm run bench:observe)
 *
 * Each configuration runs `--runs` concurrent runs per round; every round measures every configuration
 * in a rotating order, and medians are reported. Then each observer's own work is measured apart: the
 * notices of one recorded run are replayed to it many times, which costs far more than the noise of
 * the end-to-end figures. No timing is asserted anywhere: this only reports.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { TracerProvider } from '@opentelemetry/api';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-node';
import { createPrometheusMetrics, createRunTracer } from '../src/observe/index.js';
import { createOrchestrator } from '../src/runtime/create-orchestrator.js';
import type { RunListener, RunNotice } from '../src/runtime/storage.js';
import { createFakeModel, nextTurn } from '../src/testing/fake-model.js';
import { collectGarbage, compareConfigurations, median } from './compare-configurations.js';
import { readScriptOptions } from './script-options.js';

const {
  runs: RUNS,
  chunks: CHUNKS,
  rounds: ROUNDS,
} = readScriptOptions('observe-cost', { runs: '20', chunks: '1000', rounds: '9' });
/** Inside every measurement: the batch exporter's timer and the garbage an idle moment collects. */
const SETTLE_MS = 150;

/** An exporter that drops what it is given: the cost of recording and batching, not of a network. */
const dropping: SpanExporter = {
  export: (_spans, done) => done({ code: 0 }),
  shutdown: () => Promise.resolve(),
};

interface Setup {
  listeners: RunListener[];
  dispose?: () => Promise<void>;
}

const sdk = (batch: boolean): { provider: TracerProvider; dispose: () => Promise<void> } => {
  const provider = new BasicTracerProvider({
    spanProcessors: batch ? [new BatchSpanProcessor(dropping)] : [],
  });
  return { provider, dispose: () => provider.shutdown() };
};

const CONFIGS: Record<string, () => Setup> = {
  'no observer': () => ({ listeners: [] }),
  'tracing, no SDK registered (API no-op)': () => ({ listeners: [createRunTracer().listener] }),
  'tracing, SDK recording spans, no export': () => {
    const { provider, dispose } = sdk(false);
    return { listeners: [createRunTracer({ tracerProvider: provider }).listener], dispose };
  },
  'tracing, SDK, batch export (dropped)': () => {
    const { provider, dispose } = sdk(true);
    return { listeners: [createRunTracer({ tracerProvider: provider }).listener], dispose };
  },
  'Prometheus metrics': () => ({ listeners: [createPrometheusMetrics().listener] }),
  'metrics + tracing (SDK, batch export)': () => {
    const { provider, dispose } = sdk(true);
    return {
      listeners: [createPrometheusMetrics().listener, createRunTracer({ tracerProvider: provider }).listener],
      dispose,
    };
  },
};

function streamingModel() {
  return createFakeModel({
    // One chunk a turn, as a model streams; usage at the end, as OpenAI sends it.
    onCall(call) {
      void (async () => {
        for (let i = 0; i < CHUNKS; i++) {
          call.emit('token ');
          await nextTurn();
        }
        call.end({ usage: { input_tokens: 20, output_tokens: CHUNKS, total_tokens: 20 + CHUNKS } });
      })();
    },
  });
}

async function measure(setup: Setup): Promise<number> {
  const model = streamingModel();
  const orchestrator = createOrchestrator();
  for (const listener of setup.listeners) orchestrator.subscribe(listener);
  const start = process.cpuUsage();
  const runs = Array.from({ length: RUNS }, (_, i) =>
    orchestrator.startRun({ agentId: 'bench', agentName: 'Bench', model, input: `run ${i}` }),
  );
  const outputs = await Promise.all(runs.map((run) => run.result));
  await delay(SETTLE_MS);
  const used = process.cpuUsage(start);
  await setup.dispose?.();
  await orchestrator.shutdown();
  if (outputs.some((output) => output.status !== 'completed' || output.content.length !== CHUNKS * 6)) {
    throw new Error('a run did not complete with all its chunks');
  }
  return (used.user + used.system) / 1000;
}

const samples = await compareConfigurations({
  configs: CONFIGS,
  baseline: 'no observer',
  measure,
  runs: RUNS,
  chunks: CHUNKS,
  rounds: ROUNDS,
});

// Each observer's own work: the notices of one run, recorded, replayed to it whole (created to
// finished) many times. Per chunk, a run sends one `event` notice (its RunContent).
const recorded: RunNotice[] = [];
{
  const orchestrator = createOrchestrator();
  orchestrator.subscribe((notice) => recorded.push(notice));
  await orchestrator.startRun({ agentId: 'bench', agentName: 'Bench', model: streamingModel(), input: 'x' })
    .result;
  await orchestrator.shutdown();
}
const REPLAYS = 1000;
function replayCost(listener: RunListener): number {
  for (let i = 0; i < 300; i++) for (const notice of recorded) listener(notice); // warm-up: JIT
  const times: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    collectGarbage();
    const start = process.hrtime.bigint();
    for (let i = 0; i < REPLAYS; i++) for (const notice of recorded) listener(notice);
    times.push(Number(process.hrtime.bigint() - start) / (REPLAYS * CHUNKS));
  }
  return median(times);
}
const noop = replayCost(() => {});
const chunkCost = (median(samples.get('no observer')!) * 1e6) / (RUNS * CHUNKS);
console.log(
  `\n${recorded.length} notices per run of ${CHUNKS} chunks. Each observer's own work, per chunk:\n`,
);
console.log('| observer | ns per chunk | share of a chunk with no observer |');
console.log('|---|---:|---:|');
const own: Array<[string, () => { listener: RunListener; dispose?: () => Promise<void> }]> = [
  ['tracer, no SDK', () => createRunTracer()],
  [
    'tracer, SDK recording spans, no export',
    () => {
      const { provider, dispose } = sdk(false);
      return { listener: createRunTracer({ tracerProvider: provider }).listener, dispose };
    },
  ],
  ['Prometheus metrics', () => createPrometheusMetrics()],
];
for (const [name, make] of own) {
  const { listener, dispose } = make();
  const ns = replayCost(listener) - noop;
  await dispose?.();
  console.log(
    `| ${name} | ${ns.toFixed(0)} | ${((ns / chunkCost) * 100).toFixed(2)}% of ${(chunkCost / 1000).toFixed(1)} µs |`,
  );
}
