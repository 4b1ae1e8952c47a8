import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createPrometheusMetrics } from '../../src/observe/index.js';
import { sample } from '../support/notices.js';
import { expectError, postRun, serveFake } from '../support/app.js';
import { readSse } from '../support/sse.js';

async function scrape(url: string, init: RequestInit = {}): Promise<string> {
  const response = await fetch(`${url}/prometheus`, init);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return response.text();
}

describe('GET /prometheus', () => {
  it('is behind the security key like the other data routes', async () => {
    const { url } = await serveFake({ securityKey: 'sesame' });
    await expectError(await fetch(`${url}/prometheus`), 401, 'UNAUTHORIZED');
    const text = await scrape(url, { headers: { authorization: 'Bearer sesame' } });
    expect(text).toContain('# TYPE runstate_runs_started_total counter');
  });

  it('counts runs after they ran: started, finished by status, cancels by reason, tokens, durations', async () => {
    const { url, story, model } = await serveFake();
    const completed = readSse(await postRun(story, { message: 'Tell me a story' }));
    const call = await model.nextCall();
    call.emit('Once');
    call.end({ usage: { input_tokens: 7, output_tokens: 1, total_tokens: 8 } });
    await completed.rest();

    const cancelled = readSse(await postRun(story, { message: 'Another' }));
    const runId = (await cancelled.next())!.data.run_id;
    await model.nextCall();
    let text = await scrape(url);
    expect(sample(text, 'runstate_runs_active', { state: 'streaming.attempt.requesting' })).toBe(1);
    expect((await fetch(`${story}/runs/${runId}/cancel`, { method: 'POST' })).status).toBe(200);
    await cancelled.rest();

    text = await scrape(url);
    const agent = { agent: 'story-writer-agent' };
    expect(sample(text, 'runstate_runs_started_total', agent)).toBe(2);
    expect(sample(text, 'runstate_runs_finished_total', { ...agent, status: 'completed' })).toBe(1);
    expect(sample(text, 'runstate_runs_finished_total', { ...agent, status: 'cancelled' })).toBe(1);
    expect(sample(text, 'runstate_run_cancels_total', { ...agent, reason: 'api' })).toBe(1);
    expect(sample(text, 'runstate_tokens_total', { ...agent, type: 'input' })).toBe(7);
    expect(sample(text, 'runstate_tokens_total', { ...agent, type: 'output' })).toBe(1);
    expect(sample(text, 'runstate_run_duration_seconds_count', { ...agent, status: 'completed' })).toBe(1);
    expect(sample(text, 'runstate_time_to_first_token_seconds_count', agent)).toBe(1);
    expect(sample(text, 'runstate_runs_active', { state: 'streaming.attempt.requesting' })).toBe(0);
    expect(text).not.toContain(runId);
  });

  it('counts the event streams open at the time of the scrape', async () => {
    const { url, story, model } = await serveFake();
    expect(sample(await scrape(url), 'runstate_event_streams_open')).toBe(0);
    const reader = readSse(await postRun(story, { message: 'Tell me a story' }));
    await reader.next();
    const call = await model.nextCall();
    expect(sample(await scrape(url), 'runstate_event_streams_open')).toBe(1);
    call.end();
    await reader.rest();
    expect(sample(await scrape(url), 'runstate_event_streams_open')).toBe(0);
  });

  it("uses the embedder's registry when given one, and serves nothing with metrics: false", async () => {
    const registry = new Registry();
    const { url } = await serveFake({ metrics: createPrometheusMetrics({ registry, prefix: 'svc_' }) });
    expect(await scrape(url)).toContain('svc_runs_started_total');
    expect(await registry.metrics()).toContain('svc_runs_started_total');

    const off = await serveFake({ metrics: false });
    await expectError(await fetch(`${off.url}/prometheus`), 404, 'NOT_FOUND');
    const document = (await (await fetch(`${off.url}/openapi.json`)).json()) as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(document.paths)).not.toContain('/prometheus');
  });
});
