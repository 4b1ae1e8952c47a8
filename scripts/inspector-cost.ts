/**
 * What inspecting costs: CPU time of runs of 1,000 chunks each, with no inspector, with xstate's
 * inspection and a no-op observer, with the built-in inspector (nobody watching, then a page
 * following), and with `@statelyai/inspect` (its adapter doing nothing, so no network is involved).
 *
 *   node --expose-gc --import tsx --conditions=runstate-source scripts/inspector-cost.ts [--runs 20] [--chunks 1000] [--rounds 9]
 *   (or: npm run bench:inspector)
 *
 * Each configuration runs `--runs` concurrent runs per round; every round measures every
 * configuration, in a rotating order, and the medians are reported, so a noisy neighbour does not
 * pick the winner. Prints a Markdown table. No timing is asserted anywhere: this only reports.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { createInspector as createStatelyInspector } from '@statelyai/inspect';
import type { InspectionEvent, Observer } from 'xstate';
import { createInspector } from '../src/inspect/index.js';
import { createOrchestrator, type Orchestrator } from '../src/runtime/create-orchestrator.js';
import { createFakeModel, nextTurn } from '../src/testing/fake-model.js';
import { collectGarbage, compareConfigurations, median } from './compare-configurations.js';
import { readScriptOptions } from './script-options.js';

const {
  runs: RUNS,
  chunks: CHUNKS,
  rounds: ROUNDS,
} = readScriptOptions('inspector-cost', { runs: '20', chunks: '1000', rounds: '9' });

interface Setup {
  /** xstate's inspection, handed to every run actor. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Follows the orchestrator's run notices, as the built-in inspector does. */
  attach?: (orchestrator: Orchestrator) => void;
  dispose?: () => void;
}

/**
 * Every measurement waits this long after its runs end, inside the measurement: the built-in
 * inspector's last flush and @statelyai/inspect's deferred serialisation are billed, and so is the
 * garbage collection that an idle moment allows, the same way for every configuration.
 */
const SETTLE_MS = 150;

const CONFIGS: Record<string, () => Setup> = {
  'no inspector': () => ({ inspect: undefined }),
  'no-op observer (xstate inspection alone)': () => ({ inspect: () => {} }),
  'built-in inspector, nobody watching': () => {
    const inspector = createInspector();
    return {
      attach: (orchestrator) => void inspector.attach(orchestrator),
      dispose: () => inspector.close(),
    };
  },
  'built-in inspector, one page following a run': () => {
    const inspector = createInspector();
    let bytes = 0;
    const unsubscribe = inspector.subscribe((message) => (bytes += JSON.stringify(message).length));
    let follow: (() => void) | undefined;
    return {
      attach(orchestrator) {
        inspector.attach(orchestrator);
        // Follow the first run, as a page with a run selected does.
        orchestrator.subscribe((notice) => {
          if (follow || notice.type !== 'created') return;
          follow = inspector.subscribe((m) => (bytes += JSON.stringify(m).length), {
            runId: notice.run.run_id,
          });
        });
      },
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
    };
  },
};

async function measure(setup: Setup): Promise<number> {
  const model = createFakeModel({
    // One chunk a turn, as a model streams: chunks emitted in one turn would reach the machine as
    // one CHUNK, and there would be little left to inspect.
    onCall(call) {
      void (async () => {
        for (let i = 0; i < CHUNKS; i++) {
          call.emit('token ');
          await nextTurn();
        }
        call.end();
      })();
    },
  });
  const orchestrator = createOrchestrator({ inspect: setup.inspect });
  setup.attach?.(orchestrator);
  const start = process.cpuUsage();
  const runs = Array.from({ length: RUNS }, (_, i) =>
    orchestrator.startRun({ agentId: 'bench', agentName: 'Bench', model, input: `run ${i}` }),
  );
  const outputs = await Promise.all(runs.map((run) => run.result));
  await delay(SETTLE_MS);
  const used = process.cpuUsage(start);
  setup.dispose?.();
  if (outputs.some((output) => output.status !== 'completed' || output.content.length !== CHUNKS * 6)) {
    throw new Error('a run did not complete with all its chunks');
  }
  return (used.user + used.system) / 1000;
}

const samples = await compareConfigurations({
  configs: CONFIGS,
  baseline: 'no inspector',
  measure,
  runs: RUNS,
  chunks: CHUNKS,
  rounds: ROUNDS,
});

// The differences above are a few per cent of noisy totals. The listener's own cost is measured
// apart: each run notice is handed to it 1 time, then 101 times (the page subscribed, so it does
// all its work); the difference, over 100 × the notices, is its cost per notice, well above the
// noise. (Repeated notices of a run that ended are dropped early: this slightly underestimates.)
async function amplified(times: number): Promise<{ ms: number; events: number }> {
  const inspector = createInspector();
  const unsubscribe = inspector.subscribe(() => {});
  let events = 0;
  const ms = await measure({
    attach(orchestrator) {
      inspector.attach({
        requestCancel: (runId, reason) => orchestrator.requestCancel(runId, reason),
        subscribe: (listener) =>
          orchestrator.subscribe((notice) => {
            events++;
            for (let i = 0; i < times; i++) listener(notice);
          }),
      });
    },
    dispose: () => {
      unsubscribe();
      inspector.close();
    },
  });
  return { ms, events };
}
const once: number[] = [];
const many: number[] = [];
let events = 0;
await amplified(1);
await amplified(101);
for (let round = 0; round < ROUNDS; round++) {
  collectGarbage();
  const single = await amplified(1);
  once.push(single.ms);
  events = single.events;
  collectGarbage();
  many.push((await amplified(101)).ms);
}
const perEvent = ((median(many) - median(once)) * 1e6) / (100 * events);
const perChunk = (perEvent * events) / (RUNS * CHUNKS);
const chunkCost = (median(samples.get('no inspector')!) * 1e6) / (RUNS * CHUNKS);
console.log(
  `\nThe built-in inspector's own work: ${perEvent.toFixed(0)} ns per run notice, ` +
    `${(events / (RUNS * CHUNKS)).toFixed(1)} notices per chunk: ${perChunk.toFixed(0)} ns per chunk ` +
    `(${((perChunk / chunkCost) * 100).toFixed(1)}% of the ${(chunkCost / 1000).toFixed(1)} µs a chunk costs with no inspector).`,
);
