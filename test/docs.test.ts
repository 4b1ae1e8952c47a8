import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runMachine } from '../machines/run.machine.js';
import { stateChartMermaid } from '../scripts/state-chart.js';

describe('docs/architecture.md', () => {
  it('shows the chart of the run machine as it is', () => {
    const doc = readFileSync(new URL('../docs/architecture.md', import.meta.url), 'utf8');
    expect(doc).toContain(stateChartMermaid(runMachine));
  });
});
