/**
 * The observers' options as JavaScript (or options read from elsewhere) may pass them: a misspelt
 * or mistyped one is refused at once, named, rather than ignored or failing every run later.
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent, OfflineModel } from '../../src/index.js';
import { createPrometheusMetrics, createRunTracer } from '../../src/observe/index.js';
import { createApp } from '../../src/server/index.js';

/** The `INVALID_INPUT` error `make` throws. */
function refusal(make: () => unknown): { code: unknown; message: string } {
  try {
    make();
  } catch (error) {
    const { code, message } = error as { code: unknown; message: string };
    return { code, message };
  }
  throw new Error('accepted');
}

const agents = () => [new Agent({ name: 'Writer', model: new OfflineModel() })];

describe('options of the observers', () => {
  it("createPrometheusMetrics refuses a registry that has runstate's metrics of that prefix already", async () => {
    const registry = new Registry();
    createPrometheusMetrics({ registry });
    expect(refusal(() => createPrometheusMetrics({ registry }))).toEqual({
      code: 'INVALID_INPUT',
      message:
        "createPrometheusMetrics: the registry has runstate's metrics with the prefix 'runstate_' already: create them once and subscribe their listener to every orchestrator, or give another prefix",
    });
    createPrometheusMetrics({ registry, prefix: 'other_' });
    expect(await registry.metrics()).toMatch(/other_runs_started_total/);
  });

  it('createPrometheusMetrics refuses unknown options, no object, a registry or a prefix it cannot use', async () => {
    const registry = new Registry();
    expect(refusal(() => createPrometheusMetrics({ regsitry: registry } as never))).toEqual({
      code: 'INVALID_INPUT',
      message:
        'createPrometheusMetrics has no option "regsitry": its options are registry, prefix, durationBuckets, timeToFirstTokenBuckets',
    });
    expect(await registry.metrics()).toBe('\n');
    expect(refusal(() => createPrometheusMetrics(null as never)).message).toBe(
      'createPrometheusMetrics takes an object of options, got null',
    );
    expect(refusal(() => createPrometheusMetrics({ registry: {} as never })).message).toBe(
      'registry must be a prom-client Registry',
    );
    expect(refusal(() => createPrometheusMetrics({ prefix: 'my-app_' })).message).toBe(
      "prefix: must be letters, digits, '_' or ':', not starting with a digit",
    );
    expect(refusal(() => createPrometheusMetrics({ prefix: 42 as never })).message).toBe(
      'prefix: must be a string',
    );
  });

  it('createRunTracer refuses unknown options, a provider that is none, a recordContent not boolean', () => {
    expect(refusal(() => createRunTracer({ recordContnet: true } as never))).toEqual({
      code: 'INVALID_INPUT',
      message: 'createRunTracer has no option "recordContnet": its options are tracerProvider, recordContent',
    });
    expect(refusal(() => createRunTracer({ tracerProvider: 5 as never })).message).toBe(
      'createRunTracer: tracerProvider must be an OpenTelemetry TracerProvider',
    );
    expect(refusal(() => createRunTracer({ recordContent: 'yes' as never })).message).toBe(
      'createRunTracer: recordContent must be true or false',
    );
  });

  it('createApp names its tracing and metrics options when they are wrong', () => {
    expect(
      refusal(() => createApp({ agents: agents(), tracing: { recordContnet: true } as never })).message,
    ).toBe('createApp tracing has no option "recordContnet": its options are tracerProvider, recordContent');
    for (const metrics of [{ prefix: 'x_' }, true, {}]) {
      expect(refusal(() => createApp({ agents: agents(), metrics: metrics as never }))).toEqual({
        code: 'INVALID_INPUT',
        message:
          'options.metrics: must be what createPrometheusMetrics() returns (createPrometheusMetrics({ prefix })), or false',
      });
    }
  });
});
