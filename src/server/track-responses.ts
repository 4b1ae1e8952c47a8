import type { RequestHandler } from 'express';

/** Counts the responses in progress, so a shutdown can wait for the last one. */
export interface ResponseTracker {
  readonly middleware: RequestHandler;
  /** Responses not yet over (finished or closed). */
  readonly open: number;
  /** Resolves once no response is in progress. */
  idle(): Promise<void>;
}

/** Creates a {@link ResponseTracker}: a counter, not a list, so it costs nothing per request kept. */
export function trackResponses(): ResponseTracker {
  let open = 0;
  let waiters: Array<() => void> = [];
  return {
    middleware: (_req, res, next) => {
      open++;
      // 'close' comes once per response, whether it finished or its connection dropped.
      res.once('close', () => {
        if (--open > 0) return;
        const wake = waiters;
        waiters = [];
        for (const resolve of wake) resolve();
      });
      next();
    },
    get open() {
      return open;
    },
    idle() {
      return open === 0 ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve));
    },
  };
}
