/**
 * Summarises a V8 CPU profile (`node --cpu-prof`): the functions with the most self time, and the
 * files (or packages) they live in. Used to find what is hot on a benchmark path:
 *
 * ```sh
 * npm run bench -- --only paced --kinds library --reps 1 --cpu-prof prof
 * npx tsx bench/profile-summary.ts prof/paced-library [--top 30]   (a directory: its profiles; or files)
 * ```
 *
 * @packageDocumentation
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** One row of the summary: a function or a file, with its share of the sampled time. */
export interface ProfileRow {
  name: string;
  selfMs: number;
  share: number;
}

/** Where a frame lives: `openai/…`, `xstate/…`, `src/…`, or `(native)` for builtins and GC. */
export function frameLocation(url: string): string {
  if (url === '') return '(native)';
  // The bench's workers run the project transpiled into node_modules/.cache: named as its sources.
  const transpiledAt = /\/node_modules\/\.cache\/runstate-bench-[^/]+\//.exec(url);
  if (transpiledAt) return url.slice(transpiledAt.index + transpiledAt[0].length);
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + '/node_modules/'.length).split('/');
    const depth = rest[0]?.startsWith('@') ? 2 : 1;
    return `${rest.slice(0, depth).join('/')}/${rest.slice(depth).join('/')}`;
  }
  if (url.startsWith('node:')) return url;
  const project = url.search(/\/(src|machines|bench)\//);
  return project >= 0 ? url.slice(project + 1) : url;
}

/** The profile's sampling interval: the median time between two samples, in µs. */
function samplingIntervalUs(timeDeltas: readonly number[]): number {
  const sorted = timeDeltas.filter((delta) => delta > 0).sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/**
 * Self time by function and by file, largest first. Every sample counts as one sampling interval,
 * whatever time passed since the one before it: when the process waits for a core (a loaded
 * machine), the profiler's thread waits too, and the next sample's time delta holds the whole wait
 * (one sample of 264 ms was seen on a 1 ms profile of the bench's server). Weighted by those deltas,
 * a function that happened to run then looks hot; counted, each function gets its share of the
 * samples, which is its share of the CPU.
 */
export function summariseProfile(profile: CpuProfile): { functions: ProfileRow[]; files: ProfileRow[] } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const intervalUs = samplingIntervalUs(profile.timeDeltas);
  const selfUs = new Map<number, number>();
  for (const id of profile.samples) selfUs.set(id, (selfUs.get(id) ?? 0) + intervalUs);
  let total = 0;
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame || frame.functionName === '(idle)' || frame.functionName === '(program)') continue;
    total += us;
    const file = frameLocation(frame.url);
    const name = `${frame.functionName || '(anonymous)'} ${file}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    functions.set(name, (functions.get(name) ?? 0) + us);
    files.set(file, (files.get(file) ?? 0) + us);
  }
  const rows = (map: Map<string, number>): ProfileRow[] =>
    [...map]
      .map(([name, us]) => ({ name, selfMs: us / 1000, share: total === 0 ? 0 : us / total }))
      .sort((a, b) => b.selfMs - a.selfMs);
  return { functions: rows(functions), files: rows(files) };
}

const USAGE =
  'usage: npx tsx bench/profile-summary.ts <profile.cpuprofile | directory of them>... [--top 25]';

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' }, help: { type: 'boolean' } },
  });
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const top = Number(values.top);
  if (positionals.length === 0) throw new Error('name a profile, or a directory of them');
  if (!(Number.isInteger(top) && top > 0))
    throw new Error(`--top must be a whole number ≥ 1, got '${values.top}'`);
  // A directory stands for the profiles in it (`--cpu-prof DIR` writes one per process).
  const paths = positionals.flatMap((path) =>
    statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((name) => name.endsWith('.cpuprofile'))
          .map((name) => join(path, name))
      : [path],
  );
  if (paths.length === 0) throw new Error(`no .cpuprofile file in ${positionals.join(', ')}`);
  for (const path of paths) {
    const profile = JSON.parse(readFileSync(path, 'utf8')) as Partial<CpuProfile> | null;
    if (!Array.isArray(profile?.nodes) || !Array.isArray(profile.samples))
      throw new Error(`${path} is not a V8 CPU profile (what node --cpu-prof writes)`);
    const { functions, files } = summariseProfile(profile as CpuProfile);
    const line = (row: ProfileRow) =>
      `${row.selfMs.toFixed(1).padStart(9)} ms ${(row.share * 100).toFixed(1).padStart(5)}%  ${row.name}`;
    process.stdout.write(`# ${path}\n## self time by file\n`);
    process.stdout.write(`${files.slice(0, top).map(line).join('\n')}\n## self time by function\n`);
    process.stdout.write(`${functions.slice(0, top).map(line).join('\n')}\n\n`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    main();
  } catch (error) {
    // A mistyped option or path, a file that is not a profile: one line, not a stack trace.
    process.stderr.write(`profile-summary: ${(error as Error).message}\n${USAGE}\n`);
    process.exitCode = 2;
  }
}
