/**
 * The measuring loop the cost scripts share: every configuration measured once to warm up, then
 * in rounds, each round in another order, from a collected heap; printed as a table of CPU per
 * round and per chunk, with each configuration's overhead over the baseline.
 */

/** The median of some numbers. */
export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

// With --expose-gc, start every measurement from a collected heap: garbage left by the previous
// configuration is not billed to the next one.
export const collectGarbage = (globalThis as { gc?: () => void }).gc ?? (() => {});

/** What {@link compareConfigurations} measures and how it labels the table. */
export interface Comparison<Setup> {
  configs: Record<string, () => Setup>;
  /** The configuration the others are compared with. */
  baseline: string;
  /** Runs one configuration and returns the CPU it used, in milliseconds. */
  measure: (setup: Setup) => Promise<number>;
  runs: number;
  chunks: number;
  rounds: number;
}

/** Measures every configuration, prints the table, returns each one's samples (ms per round). */
export async function compareConfigurations<Setup>(
  comparison: Comparison<Setup>,
): Promise<Map<string, number[]>> {
  const { configs, baseline, measure, runs, chunks, rounds } = comparison;
  const names = Object.keys(configs);
  const samples = new Map<string, number[]>(names.map((name) => [name, []]));
  // Each round's time over the same round's baseline: the machine's load varies between rounds
  // much more than within one.
  const ratios = new Map<string, number[]>(names.map((name) => [name, []]));
  for (const name of names) await measure(configs[name]!()); // warm-up: JIT, module loading
  for (let round = 0; round < rounds; round++) {
    // A different order every round, so no configuration always follows the same one.
    const order = names.map((_, i) => names[(i + round) % names.length]!);
    const times = new Map<string, number>();
    for (const name of order) {
      collectGarbage();
      times.set(name, await measure(configs[name]!()));
    }
    for (const name of names) {
      samples.get(name)!.push(times.get(name)!);
      ratios.get(name)!.push(times.get(name)! / times.get(baseline)!);
    }
  }

  console.log(`${runs} concurrent runs × ${chunks} chunks, ${rounds} rounds, Node ${process.version}\n`);
  console.log(
    `| configuration | CPU ms per round (median, min–max) | CPU µs per chunk | vs ${baseline} (median of rounds) |`,
  );
  console.log('|---|---:|---:|---:|');
  for (const name of names) {
    const all = samples.get(name)!;
    const ms = median(all);
    const ratio = median(ratios.get(name)!);
    const overhead = name === baseline ? '–' : `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(0)}%`;
    const range = `${ms.toFixed(0)} (${Math.min(...all).toFixed(0)}–${Math.max(...all).toFixed(0)})`;
    console.log(`| ${name} | ${range} | ${((ms * 1000) / (runs * chunks)).toFixed(2)} | ${overhead} |`);
  }
  return samples;
}
