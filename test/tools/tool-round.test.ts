/** A call's times: seconds out (Agno's), its duration to the millisecond. */
import { describe, expect, it } from 'vitest';
import { closeOpen, finished, newExecutions, started } from '../../machines/tool-round.js';

const call = {
  id: 'c1',
  name: 'search',
  arguments: '{}',
  args: {},
  invalid: null,
  requiresConfirmation: false,
};

describe('tool call metrics', () => {
  it('give a finished or cancelled call its duration to the millisecond, with no float noise', () => {
    const [queued] = newExecutions([call], 1_796_301_995_000);
    const running = started(queued!, 1_796_301_995_948);
    expect(running.metrics).toEqual({ start_time: 1_796_301_995.948, end_time: null, duration: null });
    // 1796301997.113 - 1796301995.948 is 1.1649999618530273 in floating point.
    expect(finished(running, 'ok', false, 1_796_301_997_113).metrics).toEqual({
      start_time: 1_796_301_995.948,
      end_time: 1_796_301_997.113,
      duration: 1.165,
    });
    expect(closeOpen([running], 1_796_301_997_113)[0]).toMatchObject({
      status: 'cancelled',
      metrics: { end_time: 1_796_301_997.113, duration: 1.165 },
    });
  });
});
