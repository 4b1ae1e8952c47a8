import type { ServerResponse } from 'node:http';
import { context, propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { Router } from 'express';
import type { PrometheusMetrics } from '../observe/create-prometheus-metrics.js';

/** Options of {@link observeRoutes}. */
export interface ObserveRoutesOptions {
  /** Served at `GET /prometheus`; `undefined` serves nothing there. */
  metrics: PrometheusMetrics | undefined;
  /** Read the request's `traceparent`, so the runs it starts belong to the caller's trace. */
  traceContext: boolean;
}

/**
 * What the server adds for operations: the trace context of each request (W3C `traceparent`, through
 * the propagator the application registered), the count of open event streams, and `GET
 * /prometheus` (the exposition text; AgentOS's `/metrics` is its JSON usage totals).
 */
export function observeRoutes({ metrics, traceContext }: ObserveRoutesOptions): Router {
  const router = Router();
  if (traceContext) {
    router.use((req, _res, next) => {
      // An HTTP instrumentation of the application already made the request's span: keep it.
      if (trace.getSpan(context.active())) return next();
      context.with(propagation.extract(ROOT_CONTEXT, req.headers), next);
    });
  }
  if (!metrics) return router;

  // Responses in progress; at a scrape, those that turned out to be event streams are counted.
  const open = new Set<ServerResponse>();
  metrics.countEventStreams(() => {
    let streams = 0;
    for (const res of open) {
      if (res.headersSent && String(res.getHeader('content-type')).startsWith('text/event-stream')) streams++;
    }
    return streams;
  });
  router.use((_req, res, next) => {
    open.add(res);
    res.once('close', () => open.delete(res));
    next();
  });
  router.get('/prometheus', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  return router;
}
