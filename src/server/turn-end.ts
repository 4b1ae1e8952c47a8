import { setImmediate } from 'node:timers';

/** The promise this turn's callers of {@link atTurnEnd} wait for, until its check phase. */
let turnEnd: Promise<void> | undefined;

/**
 * Resolves at the end of this turn of the event loop (its check phase, a `setImmediate`), for every
 * caller of this turn at once, in the order they called; called in a check phase, at the next one.
 *
 * Why: the run route starts its runs there. A server reads the requests of a turn one socket after
 * another, each through Node's HTTP parser, express and the body's parser; a run started in between
 * two of them cost the server nearly twice what the same start costs in a loop of `agent.run()`
 * (most likely the CPU's caches then held a request's code and data, not a run's). Started
 * together, after the turn's reads, they cost a third less, and the server a few percent of its CPU
 * per chunk (docs/performance.md, item 25). A lone request's run starts once its turn's I/O is read,
 * microseconds later. `setImmediate` is `node:timers`' binding, not the global a test's fake timers
 * replace: faked time never holds a run back.
 */
export function atTurnEnd(): Promise<void> {
  turnEnd ??= new Promise((resolve) =>
    setImmediate(() => {
      turnEnd = undefined;
      resolve();
    }),
  );
  return turnEnd;
}
