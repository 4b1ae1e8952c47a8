/**
 * A steady stream of new sessions with large messages, in waves, through an orchestrator over the
 * in-memory store with the built-in inspector attached. After each wave: a full garbage collection,
 * then one JSON line on stdout with the wave's number and the process's resident memory.
 *
 *   node --expose-gc --import tsx test/memory/memory-bound-main.ts [waves] [runsPerWave] [inputBytes]
 *
 * Run by memory-bound.test.ts in a child process of its own, so that nothing else shares its heap.
 */
import { randomBytes } from 'node:crypto';
import { setImmediate } from 'node:timers/promises';
import { createInspector } from '../../src/inspect/index.js';
import { createMemoryRunStore, createOrchestrator } from '../../src/runtime/index.js';
import type { ChatModel } from '../../src/model/chat-model.js';

const [waves = 10, runsPerWave = 300, inputBytes = 200_000] = process.argv.slice(2).map(Number);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const store = createMemoryRunStore({ retention: { maxFinishedRuns: runsPerWave } });
const orchestrator = createOrchestrator({ store });
const inspector = createInspector();
inspector.attach(orchestrator);
// A page open on the inspector: it keeps what it would show.
inspector.subscribe(() => {});
// Not the fake model of runstate/testing: it records every call, and so every input.
const model: ChatModel = {
  id: 'short',
  provider: 'test',
  async *stream() {
    await setImmediate(); // as a socket read would: the event loop turns
    yield { type: 'delta', content: 'A short answer.' };
    yield { type: 'end', finishReason: 'stop' };
  },
};

for (let wave = 1; wave <= waves; wave++) {
  const runs = [];
  for (let i = 0; i < runsPerWave; i++) {
    // A fresh string each time (hex of random bytes): nothing shared between runs.
    const input = randomBytes(inputBytes / 2).toString('hex');
    runs.push(orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input }).result);
  }
  const outputs = await Promise.all(runs);
  if (outputs.some((output) => output.status !== 'completed')) throw new Error('a run did not complete');
  // Measured once the event loop has turned: what this wave queued for the next tick has run.
  await setImmediate();
  gc();
  console.log(
    JSON.stringify({
      wave,
      rss: process.memoryUsage().rss,
      sessions: (await orchestrator.listSessions()).length,
    }),
  );
}
inspector.close();
await orchestrator.shutdown();
