/**
 * runstate's own cost per chunk, without HTTP or parsing: many runs of a model whose deltas come one
 * per run per turn of the event loop (as paced socket reads deliver them), read through
 * `agent.run(input, { stream: true })`. What `npm run bench` cannot show apart from undici and the
 * SDK: the machine, the projection, the event log and the consumer's iterator. Prints CPU per chunk,
 * wall time and peak RSS per run over the baseline; `--model` reads the bare model stream instead.
 *
 *   node --expose-gc --import tsx --conditions=runstate-source scripts/runtime-overhead.ts [--runs 1000] [--chunks 100] [--model]
 *
 * Used to decide between variants of the runtime (alternate them, same load); its figures are not
 * the benchmark's.
 */
import { parseArgs } from 'node:util';
import { Agent } from '../src/agent.js';
import type { ChatModel, ChatRequest, ModelChunk } from '../src/model/chat-model.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    chunks: { type: 'string', default: '100' },
    model: { type: 'boolean', default: false },
  },
});
const RUNS = Number(values.runs);
const CHUNKS = Number(values.chunks);
const DELTA = 'word ';

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
          await nextTurn();
          if (request.signal.aborted || sent > CHUNKS) return { done: true, value: undefined };
          return { done: false, value: sent++ < CHUNKS ? { type: 'delta', content: DELTA } : END };
        },
      }),
    };
  },
};

const agent = new Agent({ name: 'overhead', model });

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

await batch(200, 'warm-up');
await batch(200, 'warm-up-2');
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
    `${wallMs.toFixed(0)} ms, ${((peak - baseline) / 1024 / RUNS).toFixed(0)} KB per run over the baseline\n`,
);
await agent.orchestrator.shutdown();
