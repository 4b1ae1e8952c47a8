import { describe, expect, it } from 'vitest';
import { summariseProfile } from '../bench/profile-summary.js';
import { spawnCli } from './support/cli-process.js';

/** A profile of two functions, sampled every 1 ms, with samples of `slow` delayed as on a loaded machine. */
function profile(samples: { fn: 'fast' | 'slow'; deltaUs: number }[]) {
  const frame = (functionName: string) => ({
    functionName,
    url: `file:///app/src/${functionName}.js`,
    lineNumber: 0,
  });
  return {
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2, 3] },
      { id: 2, callFrame: frame('fast') },
      { id: 3, callFrame: frame('slow') },
    ],
    samples: samples.map((sample) => (sample.fn === 'fast' ? 2 : 3)),
    timeDeltas: samples.map((sample) => sample.deltaUs),
  };
}

describe('summariseProfile', () => {
  it('counts each sample as one sampling interval, not the wait before it', () => {
    // 9 samples of `fast` and 1 of `slow`, which came after the process waited 250 ms for a core.
    const samples = [
      ...Array.from({ length: 9 }, () => ({ fn: 'fast' as const, deltaUs: 1_000 })),
      { fn: 'slow' as const, deltaUs: 250_000 },
    ];
    const { functions, files } = summariseProfile(profile(samples));
    expect(functions.map((row) => [row.name, row.selfMs, row.share])).toEqual([
      ['fast src/fast.js:1', 9, 0.9],
      ['slow src/slow.js:1', 1, 0.1],
    ]);
    expect(files.map((row) => row.name)).toEqual(['src/fast.js', 'src/slow.js']);
  });
});

describe('bench/profile-summary.ts, as a command', () => {
  const summary: [string, ...string[]] = [process.execPath, '--import', 'tsx', 'bench/profile-summary.ts'];

  it('prints its usage for --help, and one line naming the problem for a wrong option or file', async () => {
    const help = spawnCli(['--help'], {}, summary);
    expect(await help.exit).toBe(0);
    expect(help.output().stdout).toMatch(/^usage: npx tsx bench\/profile-summary\.ts /);
    for (const [args, shown] of [
      [['--tpo', '5'], /^profile-summary: Unknown option '--tpo'/],
      [['/no/such/profile.cpuprofile'], /^profile-summary: ENOENT: no such file or directory/],
      [['package.json'], /^profile-summary: package\.json is not a V8 CPU profile/],
      [['--top', 'abc', 'package.json'], /^profile-summary: --top must be a whole number ≥ 1, got 'abc'/],
      [[], /^profile-summary: name a profile, or a directory of them/],
      [['docs/img'], /^profile-summary: no \.cpuprofile file in docs\/img/],
    ] as const) {
      const run = spawnCli([...args], {}, summary);
      expect(await run.exit).toBe(2);
      const { stdout, stderr } = run.output();
      expect(stdout).toBe('');
      expect(stderr).toMatch(shown);
      expect(stderr).not.toMatch(/\n\s+at /);
    }
  });
});
