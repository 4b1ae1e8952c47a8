import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { runMachine } from '../machines/run.machine.js';
import { stateChartMermaid } from '../scripts/state-chart.js';
import { machineGraph } from '../src/inspect/machine-graph.js';
import { createFakeOpenAIServer } from '../src/testing/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSX = join(ROOT, 'node_modules/.bin/tsx');

describe('docs/architecture.md', () => {
  it('shows the chart of the run machine as it is', () => {
    const doc = readFileSync(new URL('../docs/architecture.md', import.meta.url), 'utf8');
    expect(doc).toContain(stateChartMermaid(runMachine));
  });

  it('draws every transition of the machine, with its guard, and each state where the machine has it', () => {
    const chart = stateChartMermaid(runMachine);
    const labels = chart
      .split('\n')
      .filter((line) => line.includes(' --> ') && !line.includes('[*]'))
      .flatMap((line) => line.slice(line.indexOf(': ') + 2).split('<br/>'));
    const edges = machineGraph(runMachine).edges;
    expect(labels).toHaveLength(edges.length);
    for (const edge of edges) {
      expect(
        labels.some((label) => label.startsWith(edge.guard ? `${edge.label} [${edge.guard}]` : edge.label)),
      ).toBe(true);
    }
    // Mermaid makes every state a block names its child: within `streaming`'s block only its own
    // states are named, so `paused`, `completed` and `failed` stay top-level states, as the run's status.
    const block = chart.slice(chart.indexOf('state streaming {'), chart.indexOf('\n  }\n'));
    for (const status of ['pending', 'paused', 'completed', 'cancelled', 'failed']) {
      expect(block).not.toMatch(new RegExp(`(^|[ >])${status}\\b`, 'm'));
    }
  });
});

/** The first ```ts block after a heading of the README. */
function readmeBlock(heading: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf(`\n## ${heading}\n`));
  const block = /```ts\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error(`no ts block under '## ${heading}'`);
  return block[1]!;
}

describe('README quick start', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runstate-quickstart-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A new project of the given module kind with runstate installed (linked) and the quick start in it. */
  function project(type: 'commonjs' | 'module'): string {
    const cwd = join(dir, type);
    mkdirSync(join(cwd, 'node_modules'), { recursive: true });
    symlinkSync(ROOT, join(cwd, 'node_modules/runstate'), 'dir');
    // What `npm init -y` writes, as far as modules are concerned (npm 11 writes "commonjs").
    writeFileSync(join(cwd, 'package.json'), JSON.stringify({ name: `quickstart-${type}`, type }));
    writeFileSync(join(cwd, 'quickstart.ts'), readmeBlock('Quick start (library)'));
    return cwd;
  }

  it('runs as written with `npx tsx quickstart.ts` in a CommonJS and in an ES module project', async () => {
    const runs = (['commonjs', 'module'] as const).map(async (type) => {
      // Each project gets its own model: the story stalls after one delta, so only the cancel ends
      // it; the haiku is answered at once.
      const upstream = await createFakeOpenAIServer();
      upstream.enqueue({ fault: 'stall', chunks: ['Once upon a time'] }, { chunks: ['An old ', 'pond'] });
      try {
        // The sources stand in for the built package (the "runstate-source" export condition).
        return await promisify(execFile)(TSX, ['--conditions=runstate-source', 'quickstart.ts'], {
          cwd: project(type),
          env: { ...process.env, OPENAI_API_KEY: 'test', OPENAI_BASE_URL: upstream.url },
          timeout: 30_000,
        });
      } finally {
        await upstream.close();
      }
    });
    for (const { stdout, stderr } of await Promise.all(runs)) {
      expect(stderr).toBe('');
      expect(stdout).toMatch(/^Once upon a time\ncancelled \(code\)\ncompleted An old pond \{/);
      expect(stdout).toMatch(/output_tokens: 2\b/);
    }
  });
});
