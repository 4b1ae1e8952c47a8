/**
 * The run machine's `CHUNK` transition alone: 200 actors in `streaming.attempt.receiving`, 100 chunks
 * each sent round-robin (as 200 paced streams deliver them), CPU per `CHUNK`. Besides the machine as
 * it is, three variants with an action replaced by a no-op (`machine.provide`), to show what each
 * costs: `emitContent` (the `content` event the projection listens to) and `appendChunk` (the
 * `assign` that appends the delta: xstate builds a new snapshot for it, recomputing its state value
 * and tag set). The variants are wrong machines (no content): they only size the parts.
 *
 *   npx tsx scripts/chunk-transition.ts [--rounds 5]
 *
 * Alternates the variants in every round; compare the columns of one round, not across machines.
 */
import { parseArgs } from 'node:util';
import { createActor, fromCallback, type AnyStateMachine } from 'xstate';
import { runMachine, type ModelServiceInput, type RunMachineEvent } from '../machines/run.machine.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' } } });
const ROUNDS = Number(values.rounds);
const ACTORS = 200;
const CHUNKS = 100;

const idleModel = fromCallback<RunMachineEvent, ModelServiceInput>(() => () => undefined);
const noop = () => undefined;
const variants: Record<string, AnyStateMachine> = {
  'as it is': runMachine.provide({ actors: { model: idleModel } }),
  'no emit': runMachine.provide({ actors: { model: idleModel }, actions: { emitContent: noop } }),
  'no assign': runMachine.provide({ actors: { model: idleModel }, actions: { appendChunk: noop } }),
  neither: runMachine.provide({
    actors: { model: idleModel },
    actions: { appendChunk: noop, emitContent: noop },
  }),
};

/** µs of CPU per `CHUNK`, over ACTORS × CHUNKS chunks. */
function measure(machine: AnyStateMachine): number {
  const actors = Array.from({ length: ACTORS }, (_, i) => {
    const actor = createActor(machine, { input: { runId: `run-${i}` } });
    actor.on('content', noop);
    actor.subscribe(noop);
    actor.start();
    actor.send({ type: 'START' });
    actor.send({ type: 'CHUNK', delta: 'first ' });
    return actor;
  });
  const start = process.cpuUsage();
  for (let chunk = 0; chunk < CHUNKS; chunk++) {
    for (const actor of actors) actor.send({ type: 'CHUNK', delta: 'word ' });
  }
  const used = process.cpuUsage(start);
  for (const actor of actors) actor.stop();
  return (used.user + used.system) / (ACTORS * CHUNKS);
}

for (const machine of Object.values(variants)) measure(machine); // warm-up
console.log(`| round | ${Object.keys(variants).join(' | ')} |`);
console.log(
  `| ---: | ${Object.keys(variants)
    .map(() => '---:')
    .join(' | ')} |`,
);
for (let round = 1; round <= ROUNDS; round++) {
  const cells = Object.values(variants).map((machine) => `${measure(machine).toFixed(2)} µs`);
  console.log(`| ${round} | ${cells.join(' | ')} |`);
}
