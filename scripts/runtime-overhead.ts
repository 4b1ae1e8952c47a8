/**
 * runstate's own cost per chunk, without HTTP or parsing: many runs of a model whose deltas come one
 * per run per turn of the event loop (as paced socket reads deliver them), read through
 * `agent.run(input, { stream: true })`. What `npm run bench` cannot show apart from undici and the
 * SDK: the machine, the projection, the event log and the consumer's iterator. Prints CPU per chunk,
 * wall time and peak RSS per run over the baseline; `--model` reads the bare model stream instead;
 * `--heap` prints instead the heap a live run holds (1,000 runs held before their end) and what a
 * finished run leaves in the store (`heapUsed` after a collection, so it needs `--expose-gc`);
 * `--alloc` what the batch allocates per chunk, collected or not, and the functions that allocate
 * most (V8's sampling heap profiler, every 256 bytes), with xstate's share.
 *
 *   node --expose-gc --import tsx --conditions=runstate-source scripts/runtime-overhead.ts [--runs 1000] [--chunks 100] [--model] [--heap | --alloc]
 *
 * Used to decide between variants of the runtime (alternate them, same load); its figures are not
 * the benchmark's.
 */
import { Session } from 'node:inspector/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent } from '../src/agent.js';
import { createMemoryRunStore, MEMORY_STORE_LIMITS } from '../src/runtime/memory-run-store.js';
import type { ChatModel, ChatRequest, ModelChunk } from '../src/model/chat-model.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    chunks: { type: 'string', default: '100' },
    model: { type: 'boolean', default: false },
    heap: { type: 'boolean', default: false },
    alloc: { type: 'boolean', default: false },
  },
});
const RUNS = Number(values.runs);
const CHUNKS = Number(values.chunks);
const DELTA = 'word ';
/** A new string per chunk, as `JSON.parse` of every SSE frame makes one (a shared one would cost nothing to keep). */
const delta = (n: number): string => String.fromCharCode(97 + (n % 26)) + DELTA.slice(1);

// Every waiting stream gets its next delta in the same later turn (setImmediate), one each.
let waiting: (() => void)[] = [];
let scheduled = false;
function deliver(): void {
  scheduled = false;
  const now = waiting;
  waiting = [];
  for (const wake of now) wake();
}
const nextTurn = (): Promise<void> =>
  new Promise((resolve) => {
    waiting.push(resolve);
    if (!scheduled) {
      scheduled = true;
      setImmediate(deliver);
    }
  });

const END: ModelChunk = {
  type: 'end',
  finishReason: 'stop',
  usage: { input_tokens: 1, output_tokens: CHUNKS, total_tokens: 1 + CHUNKS },
};

const model: ChatModel = {
  id: 'paced',
  provider: 'bench',
  stream(request: ChatRequest): AsyncIterable<ModelChunk> {
    let sent = 0;
    return {
      [Symbol.asyncIterator]: () => ({
        async next(): Promise<IteratorResult<ModelChunk>> {
          // With --heap, every run waits before its end until the heap of the live runs is measured.
          if (sent === CHUNKS && gate) await gate.reached();
          await nextTurn();
          if (request.signal.aborted || sent > CHUNKS) return { done: true, value: undefined };
          return { done: false, value: sent++ < CHUNKS ? { type: 'delta', content: delta(sent) } : END };
        },
      }),
    };
  },
};

/** Holds every run before its end (`--heap`): counts the runs there, lets them go together. */
function createGate(runs: number) {
  let arrived = 0;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let all!: () => void;
  const allThere = new Promise<void>((resolve) => (all = resolve));
  return {
    reached(): Promise<void> {
      if (++arrived === runs) all();
      return opened;
    },
    allThere,
    open,
  };
}
let gate: ReturnType<typeof createGate> | undefined;

// The default store, on a clock `--heap` moves past its retention age to see what the finished runs held.
let storeClockOffset = 0;
const store = createMemoryRunStore({ now: () => Date.now() + storeClockOffset });
const agent = new Agent({ name: 'overhead', model, orchestratorOptions: { store } });

async function one(input: string): Promise<number> {
  let content = '';
  if (values.model) {
    const stream = model.stream({ messages: [], signal: new AbortController().signal });
    for await (const chunk of stream) if (chunk.type === 'delta') content += chunk.content;
  } else {
    for await (const event of agent.run(input, { stream: true }))
      if (event.event === 'RunContent') content += event.content;
  }
  return content.length;
}

async function batch(runs: number, tag: string): Promise<void> {
  const lengths = await Promise.all(Array.from({ length: runs }, (_, i) => one(`${tag}-${i}`)));
  if (lengths.some((length) => length !== CHUNKS * DELTA.length)) throw new Error('a run lost content');
}

const WARM_UP_RUNS = 400;
await batch(WARM_UP_RUNS / 2, 'warm-up');
await batch(WARM_UP_RUNS / 2, 'warm-up-2');
globalThis.gc?.();
if (values.heap) {
  // The heap a live run holds with its chunks in, and what a finished run leaves in the store.
  globalThis.gc!();
  const heapBefore = process.memoryUsage().heapUsed;
  gate = createGate(RUNS);
  const done = batch(RUNS, 'heap');
  await gate.allThere;
  globalThis.gc!();
  const live = process.memoryUsage().heapUsed;
  if (process.env.HEAP_SNAPSHOT) (await import('node:v8')).writeHeapSnapshot(process.env.HEAP_SNAPSHOT);
  gate.open();
  await done;
  gate = undefined;
  // The final writes resolve after the runs' results: let them land.
  await new Promise((resolve) => setTimeout(resolve, 50));
  globalThis.gc!();
  const finished = process.memoryUsage().heapUsed;
  // Past the retention age, the store forgets every finished run at its next call.
  storeClockOffset = MEMORY_STORE_LIMITS.maxAgeMs + 60_000;
  await agent.getRun('none');
  globalThis.gc!();
  const forgotten = process.memoryUsage().heapUsed;
  const kept = Math.min(RUNS, MEMORY_STORE_LIMITS.maxFinishedRuns);
  const kb = (bytes: number, runs: number) => (bytes / 1024 / runs).toFixed(1);
  process.stdout.write(
    `heap per live run ${kb(live - heapBefore, RUNS)} KB, per finished run ${kb(finished - forgotten, kept)} KB\n`,
  );
  await agent.orchestrator.shutdown();
  process.exit(0);
}
if (values.alloc) {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 256,
    // Counted even when collected before the profile is taken: what the collector had to deal with.
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  await batch(RUNS, 'alloc');
  const { profile } = await session.post('HeapProfiler.stopSampling');
  session.disconnect();
  printAllocations(profile.head, RUNS * CHUNKS);
  await agent.orchestrator.shutdown();
  process.exit(0);
}
globalThis.gc?.();
const baseline = process.memoryUsage.rss();
const cpu = process.cpuUsage();
const start = performance.now();
await batch(RUNS, 'run');
const wallMs = performance.now() - start;
const used = process.cpuUsage(cpu);
const peak = process.resourceUsage().maxRSS * 1024;
process.stdout.write(
  `${values.model ? 'bare model' : 'agent.run'}: ${((used.user + used.system) / (RUNS * CHUNKS)).toFixed(2)} µs per chunk, ` +
    `${wallMs.toFixed(0)} ms, ${((peak - baseline) / 1024 / RUNS).toFixed(0)} KB per run over the baseline ` +
    `(peak ${(peak / 2 ** 20).toFixed(0)} MB, baseline ${(baseline / 2 ** 20).toFixed(0)} MB)\n`,
);
await agent.orchestrator.shutdown();

/** A node of V8's sampling heap profile. */
interface AllocationNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: AllocationNode[];
}

/** Bytes allocated per chunk: in all, in xstate's code, and by the functions that allocate most. */
function printAllocations(head: AllocationNode, chunks: number): void {
  // Paths shown from the project's root, and from node_modules for a dependency.
  const root = fileURLToPath(new URL('..', import.meta.url));
  const shortPath = (url: string) =>
    (url.startsWith('file:') ? fileURLToPath(url) : url).replace(root, '').replace(/^node_modules\//, '');
  const byFunction = new Map<string, number>();
  let total = 0;
  let xstate = 0;
  // A built-in (`Set`, `Object.assign`) has no file: it counts for the nearest caller that has one.
  const visit = (node: AllocationNode, caller: { where: string; inXstate: boolean }) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const here = url
      ? {
          where: `${functionName || '(anonymous)'} ${shortPath(url)}:${lineNumber + 1}`,
          inXstate: shortPath(url).startsWith('xstate/'),
        }
      : caller;
    total += node.selfSize;
    if (here.inXstate) xstate += node.selfSize;
    byFunction.set(here.where, (byFunction.get(here.where) ?? 0) + node.selfSize);
    for (const child of node.children) visit(child, here);
  };
  visit(head, { where: '(root)', inXstate: false });
  const perChunk = (bytes: number) => `${(bytes / chunks).toFixed(0)} B`;
  process.stdout.write(
    `${values.model ? 'bare model' : 'agent.run'}: ${perChunk(total)} allocated per chunk, ${perChunk(xstate)} of it in xstate\n`,
  );
  for (const [where, bytes] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, 15))
    process.stdout.write(`  ${perChunk(bytes).padStart(8)}  ${where}\n`);
}
