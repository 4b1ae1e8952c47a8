import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createPrometheusMetrics } from '../../src/observe/index.js';
import { sample } from '../observe/support.js';
import { expectError, postRun, readSse, serveFake } from './helpers.js';

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
