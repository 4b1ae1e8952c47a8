import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { RunstateError } from '../../src/errors.js';
import { createPrometheusMetrics, stateLabel } from '../../src/observe/index.js';
import { MAX_TOOL_LABELS } from '../../src/observe/create-prometheus-metrics.js';
import { playRun, sample } from '../support/notices.js';

describe('Prometheus metrics of runs', () => {
  it('counts runs started and finished by agent and status, tokens, cancels by reason, durations', async () => {
    const metrics = createPrometheusMetrics();
    const completed = playRun(metrics.listener);
    completed.request('Once upon a time');
    completed.complete({ input_tokens: 12, output_tokens: 30 });
    const second = playRun(metrics.listener, { agent: 'essay-writer-agent' });
    second.request();
    second.complete({ input_tokens: null, output_tokens: null });
    const cancelled = playRun(metrics.listener);
    cancelled.request();
    cancelled.cancel('api');
    const pending = playRun(metrics.listener);
    pending.cancel('client_disconnect');
    const failed = playRun(metrics.listener);
    failed.state({ streaming: { attempt: 'requesting' } });
    failed.fail('MODEL_REQUEST_FAILED');

    const text = await metrics.registry.metrics();
    const story = { agent: 'story-writer-agent' };
    expect(sample(text, 'runstate_runs_started_total', story)).toBe(4);
    expect(sample(text, 'runstate_runs_started_total', { agent: 'essay-writer-agent' })).toBe(1);
    expect(sample(text, 'runstate_runs_finished_total', { ...story, status: 'completed' })).toBe(1);
    expect(sample(text, 'runstate_runs_finished_total', { ...story, status: 'cancelled' })).toBe(2);
    expect(sample(text, 'runstate_runs_finished_total', { ...story, status: 'failed' })).toBe(1);
    expect(sample(text, 'runstate_run_cancels_total', { ...story, reason: 'api' })).toBe(1);
    expect(sample(text, 'runstate_run_cancels_total', { ...story, reason: 'client_disconnect' })).toBe(1);
    // Unknown counts (null) add nothing.
    expect(sample(text, 'runstate_tokens_total', { ...story, type: 'input' })).toBe(12);
    expect(sample(text, 'runstate_tokens_total', { ...story, type: 'output' })).toBe(30);
    expect(
      sample(text, 'runstate_tokens_total', { agent: 'essay-writer-agent', type: 'input' }),
    ).toBeUndefined();
    expect(sample(text, 'runstate_run_duration_seconds_count', { ...story, status: 'cancelled' })).toBe(2);
    expect(sample(text, 'runstate_run_duration_seconds_sum', { ...story, status: 'cancelled' })).toBe(3);
    // Runs without output have no time to first token; a tool call is output (its HELP says so, as
    // docs/observability.md does).
    expect(text).toMatch(/^# HELP runstate_time_to_first_token_seconds .*tool call/m);
    expect(sample(text, 'runstate_time_to_first_token_seconds_count', story)).toBe(2);
    expect(sample(text, 'runstate_time_to_first_token_seconds_bucket', { ...story, le: '0.25' })).toBe(2);
    expect(sample(text, 'runstate_time_to_first_token_seconds_bucket', { ...story, le: '0.1' })).toBe(0);
    // Nothing is active any more.
    for (const line of text.split('\n').filter((line) => line.startsWith('runstate_runs_active{'))) {
      expect(line).toMatch(/ 0$/);
    }
  });

  it("shows active runs by the machine's state, and counts a retry when the retried request starts", async () => {
    const metrics = createPrometheusMetrics();
    const waiting = playRun(metrics.listener);
    const streaming = playRun(metrics.listener);
    streaming.request();
    let text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'pending' })).toBe(1);
    expect(sample(text, 'runstate_runs_active', { state: 'streaming.attempt.receiving' })).toBe(1);

    const retried = playRun(metrics.listener);
    retried.state({ streaming: { attempt: 'requesting' } });
    retried.state({ streaming: 'retrying' });
    retried.state({ streaming: 'retrying' }); // the same state again is no new retry
    text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'streaming.retrying' })).toBe(1);
    expect(sample(text, 'runstate_runs_active', { state: 'streaming.attempt.requesting' })).toBe(0);
    retried.request();
    retried.state({ streaming: 'retrying' });
    text = await metrics.registry.metrics();
    // Waiting to retry is no retry yet: a run cancelled meanwhile retried nothing.
    expect(sample(text, 'runstate_model_retries_total', { agent: 'story-writer-agent' })).toBe(1);
    retried.request();
    retried.state({ streaming: 'retrying' });
    text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_model_retries_total', { agent: 'story-writer-agent' })).toBe(2);

    waiting.cancel('shutdown');
    streaming.complete();
    retried.fail('MODEL_REQUEST_FAILED');
    text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'pending' })).toBe(0);
    expect(sample(text, 'runstate_runs_active', { state: 'streaming.retrying' })).toBe(0);
  });

  it('counts tool calls by agent, tool and how they ended', async () => {
    const metrics = createPrometheusMetrics();
    const run = playRun(metrics.listener);
    run.state({ streaming: { attempt: 'requesting' } });
    run.tool('get_weather');
    run.tool('get_weather');
    run.tool('get_weather', { error: true });
    let text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'streaming.tools' })).toBe(1);
    run.request();
    run.complete();
    text = await metrics.registry.metrics();
    const labels = { agent: 'story-writer-agent', tool: 'get_weather' };
    expect(sample(text, 'runstate_tool_calls_total', { ...labels, status: 'completed' })).toBe(2);
    expect(sample(text, 'runstate_tool_calls_total', { ...labels, status: 'failed' })).toBe(1);
  });

  it('counts the calls of a name no tool can have (too long, or of other characters) as _other, from the first', async () => {
    const metrics = createPrometheusMetrics();
    const run = playRun(metrics.listener);
    run.state({ streaming: { attempt: 'requesting' } });
    // 50 KB of a prompt's text as the name the model asked for.
    run.tool('x'.repeat(50_000), { ran: false });
    run.tool('no such tool', { ran: false });
    run.tool('get_weather');
    run.request();
    run.complete();
    const text = await metrics.registry.metrics();
    const agent = 'story-writer-agent';
    expect(sample(text, 'runstate_tool_calls_total', { agent, tool: '_other', status: 'failed' })).toBe(2);
    expect(text).not.toContain('xxxxx');
    expect(text).not.toContain('no such tool');
    expect(
      sample(text, 'runstate_tool_calls_total', { agent, tool: 'get_weather', status: 'completed' }),
    ).toBe(1);
  });

  it('refuses histogram buckets that are not finite seconds > 0 in strictly increasing order, naming the option', () => {
    const refused: [number[], string][] = [
      [[5, 1, 0.001], 'durationBuckets: must be strictly increasing'],
      [[1, 1], 'durationBuckets: must be strictly increasing'],
      [[Infinity], 'durationBuckets.0: must hold finite numbers of seconds'],
      [[NaN, 1], 'durationBuckets.0: must hold finite numbers of seconds'],
      [[-1, 2], 'durationBuckets.0: must hold numbers > 0'],
      [[0, 1], 'durationBuckets.0: must hold numbers > 0'],
    ];
    for (const [durationBuckets, message] of refused) {
      const field = message.slice(0, message.indexOf(':'));
      expect(() => createPrometheusMetrics({ durationBuckets })).toThrow(
        new RunstateError('INVALID_INPUT', message, { details: { field } }),
      );
    }
    expect(() => createPrometheusMetrics({ timeToFirstTokenBuckets: [0.5, 0.1] })).toThrow(
      'timeToFirstTokenBuckets: must be strictly increasing',
    );
    expect(() => createPrometheusMetrics({ durationBuckets: '1,2' as never })).toThrow(
      'durationBuckets: must be an array of seconds',
    );
  });

  it('observes into the buckets it was given', async () => {
    const metrics = createPrometheusMetrics({ durationBuckets: [0.5, 2], timeToFirstTokenBuckets: [] });
    const run = playRun(metrics.listener);
    run.request('Once');
    run.complete();
    const text = await metrics.registry.metrics();
    const les = (name: string) =>
      text
        .split('\n')
        .filter((line) => line.startsWith(`${name}_bucket{`))
        .map((line) => /le="([^"]*)"/.exec(line)?.[1]);
    expect(les('runstate_run_duration_seconds')).toEqual(['0.5', '2', '+Inf']);
    expect(les('runstate_time_to_first_token_seconds')).toEqual(['+Inf']);
  });

  it('keeps at most MAX_TOOL_LABELS names of calls that never ran per agent: further ones count as _other', async () => {
    const metrics = createPrometheusMetrics();
    const run = playRun(metrics.listener);
    run.state({ streaming: { attempt: 'requesting' } });
    // Names a model may invent when a prompt asks it to: the agent has no such tool, nothing ran.
    for (let n = 0; n < MAX_TOOL_LABELS + 5; n++) run.tool(`tool_${n}`, { ran: false });
    run.tool('tool_0');
    // One of the agent's own tools, first called after them: its own series all the same.
    run.tool('get_weather');
    // One that asks a person first, rejected (so it never ran): only an agent's own tool asks.
    const asked = run.startTool('publish_note');
    const rejected = { ...asked, requires_confirmation: true, confirmed: false, metrics: null };
    run.event({ event: 'ToolCallCompleted', tool: { ...rejected, status: 'rejected' } });
    run.request();
    run.complete();
    const text = await metrics.registry.metrics();
    const series = text.split('\n').filter((line) => line.startsWith('runstate_tool_calls_total{'));
    expect(new Set(series.map((line) => /tool="([^"]*)"/.exec(line)?.[1])).size).toBe(MAX_TOOL_LABELS + 3);
    const agent = 'story-writer-agent';
    expect(sample(text, 'runstate_tool_calls_total', { agent, tool: '_other', status: 'failed' })).toBe(5);
    expect(sample(text, 'runstate_tool_calls_total', { agent, tool: 'tool_0', status: 'completed' })).toBe(1);
    expect(
      sample(text, 'runstate_tool_calls_total', { agent, tool: 'get_weather', status: 'completed' }),
    ).toBe(1);
    expect(
      sample(text, 'runstate_tool_calls_total', { agent, tool: 'publish_note', status: 'rejected' }),
    ).toBe(1);
  });

  it('stops counting a paused run that another instance took (a `left` notice)', async () => {
    const metrics = createPrometheusMetrics();
    const run = playRun(metrics.listener);
    run.state('paused');
    let text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'paused' })).toBe(1);
    metrics.listener({ type: 'left', runId: run.record.run_id });
    text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'paused' })).toBe(0);
    // Its end is the other instance's to count: nothing is finished here.
    expect(
      sample(text, 'runstate_runs_finished_total', { agent: 'story-writer-agent', status: 'completed' }),
    ).toBe(undefined);
  });

  it('counts a run taken here from the store (a `taken` notice) as active here, not as started', async () => {
    const metrics = createPrometheusMetrics();
    // Created on another instance: its `created` went to that instance's listeners.
    let here = false;
    const run = playRun((notice) => here && metrics.listener(notice));
    here = true;
    metrics.listener({ type: 'taken', run: { ...run.record, status: 'paused' } });
    run.state('paused');
    let text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'paused' })).toBe(1);
    expect(sample(text, 'runstate_runs_started_total', { agent: 'story-writer-agent' })).toBe(undefined);
    run.request();
    run.complete();
    text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'paused' })).toBe(0);
    expect(sample(text, 'runstate_runs_active', { state: 'streaming.attempt.receiving' })).toBe(0);
    expect(
      sample(text, 'runstate_runs_finished_total', { agent: 'story-writer-agent', status: 'completed' }),
    ).toBe(1);
  });

  it('labels nothing with a run or session id', async () => {
    const metrics = createPrometheusMetrics();
    const run = playRun(metrics.listener, { session: 'session-secret-42' });
    run.request();
    run.complete();
    const text = await metrics.registry.metrics();
    expect(text).not.toContain(run.record.run_id);
    expect(text).not.toContain('session-secret-42');
  });

  it('sums the open event streams of every source at each scrape', async () => {
    const metrics = createPrometheusMetrics();
    let first = 2;
    metrics.countEventStreams(() => first);
    const remove = metrics.countEventStreams(() => 3);
    expect(sample(await metrics.registry.metrics(), 'runstate_event_streams_open')).toBe(5);
    first = 0;
    remove();
    expect(sample(await metrics.registry.metrics(), 'runstate_event_streams_open')).toBe(0);
  });

  it('uses a registry of its own: two sets of metrics in one process do not collide', async () => {
    const a = createPrometheusMetrics();
    const b = createPrometheusMetrics();
    playRun(a.listener);
    expect(
      sample(await a.registry.metrics(), 'runstate_runs_started_total', { agent: 'story-writer-agent' }),
    ).toBe(1);
    expect(
      sample(await b.registry.metrics(), 'runstate_runs_started_total', { agent: 'story-writer-agent' }),
    ).toBe(undefined);
    // Or the embedder's registry, with a prefix of its choice.
    const registry = new Registry();
    createPrometheusMetrics({ registry, prefix: 'myapp_agents_' });
    expect(await registry.metrics()).toContain('myapp_agents_runs_started_total');
  });

  it('ignores notices of runs it did not see created (subscribed late)', async () => {
    const metrics = createPrometheusMetrics();
    const before = playRun(() => undefined);
    const runId = before.record.run_id;
    metrics.listener({
      type: 'state',
      runId,
      value: { streaming: { attempt: 'requesting' } },
      status: 'streaming',
      event: { type: 'START' },
      error: null,
    });
    metrics.listener({
      type: 'state',
      runId,
      value: 'completed',
      status: 'completed',
      event: { type: 'DONE' },
      error: null,
    });
    expect(await metrics.registry.metrics()).not.toMatch(/^runstate_runs_active\{/m);
  });
});

describe('stateLabel', () => {
  it('writes a state value as one dotted path', () => {
    expect(stateLabel('pending')).toBe('pending');
    expect(stateLabel({ streaming: { attempt: 'receiving' } })).toBe('streaming.attempt.receiving');
    expect(stateLabel({ streaming: 'retrying' })).toBe('streaming.retrying');
  });
});
