/**
 * Observers of runs for operations (`runstate/observe`): Prometheus metrics and OpenTelemetry traces,
 * both fed by `orchestrator.subscribe(listener)`. Neither loads express; tracing goes through
 * `@opentelemetry/api` only and is a no-op until the application registers an SDK.
 *
 * @packageDocumentation
 */
export {
  createPrometheusMetrics,
  stateLabel,
  DEFAULT_DURATION_BUCKETS,
  DEFAULT_TIME_TO_FIRST_TOKEN_BUCKETS,
  type PrometheusMetrics,
  type PrometheusMetricsOptions,
} from './create-prometheus-metrics.js';
export { createRunTracer, type RunTracer, type RunTracerOptions } from './create-run-tracer.js';
