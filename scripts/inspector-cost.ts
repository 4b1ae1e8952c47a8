/**
 * What inspecting costs: CPU time of runs of 1,000 chunks each, with no inspector, with xstate's
 * inspection and a no-op observer, with the built-in inspector (nobody watching, then a page
 * following), and with `@statelyai/inspect` (its adapter doing nothing, so no network is involved).
 *
 *   node --expose-gc --import tsx --conditions=source scripts/inspector-cost.ts [--runs 20] [--chunks 1000] [--rounds 9]
 *   (or: npm run bench:inspector)
 *
 * Each configuration runs `--runs` concurrent runs per round; every round measures every
 * configuration, in a rotating order, and the medians are reported, so a noisy neighbour does not
 * pick the winner. Prints a Markdown table. No timing is asserted anywhere: this only reports.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createInspector as createStatelyInspector } from '@statelyai/inspect';
import type { InspectionEvent, Observer } from 'xstate';
import { createInspector } from '../src/inspect/index.js';
import { createOrchestrator } from '../src/runtime/create-orchestrator.js';
import { createFakeModel } from '../src/testing/fake-model.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    chunks: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '9' },
  },
});
const RUNS = Number(values.runs);
const CHUNKS = Number(values.chunks);
const ROUNDS = Number(values.rounds);

interface Setup {
  inspect: Observer<InspectionEvent> | ((event: InspectionEvent) => void) | undefined;
  /** Work left once the runs are final (an inspector that defers its work to timers). */
  settle?: () => Promise<void>;
  dispose?: () => void;
}

const CONFIGS: Record<string, () => Setup> = {
  'no inspector': () => ({ inspect: undefined }),
  'no-op observer (xstate inspection alone)': () => ({ inspect: () => {} }),
  'built-in inspector, nobody watching': () => {
    const inspector = createInspector();
    return { inspect: inspector.inspect, dispose: () => inspector.close() };
  },
  'built-in inspector, one page following a run': () => {
    const inspector = createInspector();
    let bytes = 0;
    const unsubscribe = inspector.subscribe((message) => (bytes += JSON.stringify(message).length));
    let follow: (() => void) | undefined;
    return {
      inspect: {
        next(event) {
          inspector.inspect.next?.(event);
          // Follow the first run seen, as a page with a run selected does.
          if (!follow && event.type === '@xstate.snapshot' && event.actorRef.sessionId === event.rootId) {
            const runId = (event.snapshot as { context?: { runId?: string } }).context?.runId;
            if (runId) follow = inspector.subscribe((m) => (bytes += JSON.stringify(m).length), { runId });
          }
        },
      },
      // Let the last flush (at most flushIntervalMs later) happen inside the measurement.
      settle: () => delay(120),
      dispose: () => {
        unsubscribe();
        follow?.();
        inspector.close();
        if (bytes === 0) throw new Error('the page received nothing');
      },
    };
  },
  '@statelyai/inspect (no-op adapter)': () => {
    let sent = 0;
    const inspector = createStatelyInspector({ send: () => void sent++ });
    return {
      inspect: inspector.inspect,
      // It serialises each event in a setTimeout(0) of its own: wait for them all.
      settle: () => delay(50),
    };
  },
};

async function measure(setup: Setup): Promise<number> {
  const model = createFakeModel({
    onCall(call) {
      for (let i = 0; i < CHUNKS; i++) call.emit('token ');
      call.end();
    },
  });
  const orchestrator = createOrchestrator({ inspect: setup.inspect });
  const start = process.cpuUsage();
  const runs = Array.from({ length: RUNS }, (_, i) =>
    orchestrator.startRun({ agentId: 'bench', agentName: 'Bench', model, input: `run ${i}` }),
  );
  const outputs = await Promise.all(runs.map((run) => run.result));
  await setup.settle?.();
  const used = process.cpuUsage(start);
  setup.dispose?.();
  if (outputs.some((output) => output.status !== 'completed' || output.content.length !== CHUNKS * 6)) {
    throw new Error('a run did not complete with all its chunks');
  }
  return (used.user + used.system) / 1000;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};
// With --expose-gc, start every measurement from a collected heap: garbage left by the previous
// configuration is not billed to the next one.
const collect = (globalThis as { gc?: () => void }).gc ?? (() => {});

const names = Object.keys(CONFIGS);
const samples = new Map<string, number[]>(names.map((name) => [name, []]));
// Each round's time over the same round's time with no inspector: the machine's load varies
// between rounds much more than within one.
const ratios = new Map<string, number[]>(names.map((name) => [name, []]));
for (const name of names) await measure(CONFIGS[name]!()); // warm-up: JIT, module loading
for (let round = 0; round < ROUNDS; round++) {
  // A different order every round, so no configuration always follows the same one.
  const order = names.map((_, i) => names[(i + round) % names.length]!);
  const times = new Map<string, number>();
  for (const name of order) {
    collect();
    times.set(name, await measure(CONFIGS[name]!()));
  }
  for (const name of names) {
    samples.get(name)!.push(times.get(name)!);
    ratios.get(name)!.push(times.get(name)! / times.get('no inspector')!);
  }
}

console.log(`${RUNS} concurrent runs × ${CHUNKS} chunks, ${ROUNDS} rounds, Node ${process.version}\n`);
console.log(
  '| configuration | CPU ms per round (median, min–max) | CPU µs per chunk | vs no inspector (median of rounds) |',
);
console.log('|---|---:|---:|---:|');
for (const name of names) {
  const all = samples.get(name)!;
  const ms = median(all);
  const perChunk = (ms * 1000) / (RUNS * CHUNKS);
  const ratio = median(ratios.get(name)!);
  const overhead =
    name === 'no inspector' ? '–' : `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(0)}%`;
  const range = `${ms.toFixed(0)} (${Math.min(...all).toFixed(0)}–${Math.max(...all).toFixed(0)})`;
  console.log(`| ${name} | ${range} | ${perChunk.toFixed(1)} | ${overhead} |`);
}
