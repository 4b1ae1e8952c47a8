/**
 * What assembling one streamed tool call costs when the server repeats the call's id and name on
 * every argument delta (some do): a call of 2,002 argument deltas, assembled 20 times a round, for
 * 3 rounds. The cost per delta must not grow with the arguments already received (a parse of all of
 * them at each delta made it quadratic: see the performance journal, 4 December).
 *
 *   npx tsx --conditions=runstate-source scripts/tool-call-assembly-cost.ts
 */
import { ToolCallAssembler } from '../src/model/tool-call-assembler.js';

const pieces = ['{"text":"', ...Array.from({ length: 2_000 }, () => 'word '), '"}'];
for (let round = 1; round <= 3; round++) {
  const started = performance.now();
  for (let i = 0; i < 20; i++) {
    const calls = new ToolCallAssembler();
    for (const args of pieces)
      calls.add({ index: 0, id: 'call_0', function: { name: 'write', arguments: args } });
    if (calls.calls().length !== 1) throw new Error('the deltas of one call made several');
  }
  console.log(
    `round ${round}: ${((performance.now() - started) / 20).toFixed(2)} ms per call of ${pieces.length} deltas`,
  );
}
