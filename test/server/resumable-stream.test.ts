/**
 * AgentOS's resumable streams: `background=true` with `stream=true` streams a run that goes on
 * when its client goes away, every event with its `event_index`, and `POST …/resume` picks it up
 * after the `last_event_index` the client had.
 */
import { describe, expect, it } from 'vitest';
import { sample } from '../support/notices.js';
import { expectError, serveConfirmingAgent, serveFake } from '../support/app.js';
import { eventually } from '../support/eventually.js';
import { readSse, type Frame } from '../support/sse.js';
import type { FakeModel } from '../../src/testing/index.js';

/** A form post, as Agno's clients send it (the cookbook's `sse_reconnect.py`). */
function postForm(url: string, fields: Record<string, string>, init: RequestInit = {}): Promise<Response> {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) body.append(name, value);
  return fetch(url, { method: 'POST', body, ...init });
}

const indexed = (frames: Frame[]) =>
  frames.map((frame) => {
    const data = frame.data as typeof frame.data & { event_index?: number };
    return [data.event, data.event_index];
  });

async function openStreams(url: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/prometheus`)).text();
  return sample(text, 'runstate_event_streams_open');
}

describe('a resumable stream (background=true, stream=true)', () => {
  it('streams every event with its event_index, and the run goes on when the client leaves', async () => {
    const { url, story, model, agents } = await serveFake();
    const client = new AbortController();
    const response = await postForm(
      `${story}/runs`,
      { message: 'Tell me a story', background: 'true', stream: 'true' },
      { signal: client.signal },
    );
    expect(response.status).toBe(200);
    const events = readSse(response);
    const started = (await events.next())!;
    expect(indexed([started])).toEqual([['RunStarted', 0]]);
    const call = await model.nextCall();
    call.emit('Once ');
    expect(indexed([(await events.next())!])).toEqual([['RunContent', 1]]);
    client.abort();
    // The server saw the client go: the run is still streaming, not cancelled.
    await eventually(async () => (await openStreams(url)) === 0, { what: 'the stream closed' });
    expect(await agents[0]!.orchestrator.getRun(started.data.run_id)).toMatchObject({ status: 'streaming' });
    expect(call.signal.aborted).toBe(false);

    // Picked up from the last event the client had.
    const resumed = readSse(
      await postForm(`${story}/runs/${started.data.run_id}/resume`, {
        last_event_index: '1',
        session_id: started.data.session_id,
      }),
    );
    call.emit('upon a time.');
    call.end();
    const rest = await resumed.rest();
    expect(indexed(rest)).toEqual([
      ['RunContent', 2],
      ['RunCompleted', 3],
    ]);
    expect(rest.map((frame) => frame.id)).toEqual(['3', '4']);
    expect(rest.at(-1)!.data).toMatchObject({ status: 'completed', content: 'Once upon a time.' });
  });

  it('answers 202 at once for background=true without stream, as before', async () => {
    const { story } = await serveFake();
    const response = await postForm(`${story}/runs`, { message: 'Hi', background: 'true' });
    expect(response.status).toBe(202);
    expect(await response.json()).toMatchObject({ status: 'pending' });
  });
});

describe('POST /agents/:agent_id/runs/:run_id/resume', () => {
  it('replays a finished run from the first event without last_event_index (or with -1), in JSON too', async () => {
    const { story, model } = await serveFake();
    const { run_id } = (await (
      await postForm(`${story}/runs`, { message: 'Hi', background: 'true', stream: 'false' })
    ).json()) as { run_id: string };
    const call = await model.nextCall();
    call.emit('Hello.');
    call.end();
    const whole = [
      ['RunStarted', 0],
      ['RunContent', 1],
      ['RunCompleted', 2],
    ];
    await eventually(async () => {
      const record = (await (await fetch(`${story}/runs/${run_id}`)).json()) as { status: string };
      return record.status === 'completed';
    });
    expect(indexed(await readSse(await postForm(`${story}/runs/${run_id}/resume`, {})).rest())).toEqual(
      whole,
    );
    const json = await fetch(`${story}/runs/${run_id}/resume`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ last_event_index: -1 }),
    });
    expect(indexed(await readSse(json).rest())).toEqual(whole);
    // No body at all: every field absent.
    const bare = await fetch(`${story}/runs/${run_id}/resume`, { method: 'POST' });
    expect(indexed(await readSse(bare).rest())).toEqual(whole);
    // From its last event on: nothing more.
    const end = await postForm(`${story}/runs/${run_id}/resume`, { last_event_index: '2' });
    expect(await readSse(end).rest()).toEqual([]);
  });

  it('refuses what it cannot resume: a bad index, one past the last event, another session, an unknown run', async () => {
    const { story, model } = await serveFake();
    const { run_id } = (await (
      await postForm(`${story}/runs`, { message: 'Hi', background: 'true', stream: 'false' })
    ).json()) as { run_id: string };
    await model.nextCall();
    for (const bad of ['x', '-2', '1.5', '01']) {
      const answer = await expectError(
        await postForm(`${story}/runs/${run_id}/resume`, { last_event_index: bad }),
        422,
        'INVALID_INPUT',
      );
      expect(answer.field).toBe('last_event_index');
      expect(answer.detail).toBe('last_event_index: must be a whole number, -1 or more');
    }
    // The same words for a JSON number; past the largest exact one, the bound (as `?after=` says it).
    for (const [bad, detail] of [
      [-2, 'must be a whole number, -1 or more'],
      [1.5, 'must be a whole number, -1 or more'],
      ['9007199254740992', 'must be at most 9007199254740991'],
      [1e20, 'must be at most 9007199254740991'],
    ] as const) {
      const answer = await expectError(
        await fetch(`${story}/runs/${run_id}/resume`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ last_event_index: bad }),
        }),
        422,
        'INVALID_INPUT',
      );
      expect(answer.detail, String(bad)).toBe(`last_event_index: ${detail}`);
    }
    const past = await expectError(
      await postForm(`${story}/runs/${run_id}/resume`, { last_event_index: '5' }),
      422,
      'INVALID_INPUT',
    );
    expect(past).toMatchObject({
      field: 'last_event_index',
      detail: `run ${run_id} has no event of index 5`,
    });
    await expectError(
      await postForm(`${story}/runs/${run_id}/resume`, { session_id: 'another' }),
      404,
      'RUN_NOT_FOUND',
    );
    await expectError(await postForm(`${story}/runs/nope/resume`, {}), 404, 'RUN_NOT_FOUND');
  });
});

/**
 * A run of the confirming agent paused at its `publish` call: its ids, and every waiting call
 * confirmed as the continue's `tools` field (a form's JSON text).
 */
async function pausedRun(agentUrl: string, model: FakeModel) {
  const pausing = readSse(await postForm(`${agentUrl}/runs`, { message: 'Publish it' }));
  (await model.nextCall()).callTools([{ id: 'call_p', name: 'publish', arguments: { note: 'hi' } }]);
  const paused = (await pausing.rest()).at(-1)!;
  expect(paused.event).toBe('RunPaused');
  const { run_id, session_id, tools } = paused.data as {
    run_id: string;
    session_id: string;
    tools: Array<{ tool_call_id: string }>;
  };
  const confirmed = JSON.stringify(
    tools.map((tool) => ({ tool_call_id: tool.tool_call_id, confirmed: true })),
  );
  return { run_id, session_id, confirmed };
}

describe('a resumable continue (background=true, stream=true)', () => {
  it('streams from RunContinued with event_index, and the run goes on when the client leaves', async () => {
    const { agentUrl, model, agent } = await serveConfirmingAgent();
    const { run_id, confirmed } = await pausedRun(agentUrl, model);
    const client = new AbortController();
    const continued = readSse(
      await postForm(
        `${agentUrl}/runs/${run_id}/continue`,
        { tools: confirmed, background: 'true', stream: 'true' },
        { signal: client.signal },
      ),
    );
    const first = (await continued.next())!;
    expect(indexed([first])).toEqual([['RunContinued', Number(first.id) - 1]]);
    client.abort();
    const call = await model.nextCall();
    call.emit('Published.');
    call.end();
    expect(await agent.orchestrator.result(run_id)).toMatchObject({ status: 'completed' });
  });
});

describe('a continue in the background (background=true, stream=false)', () => {
  it('answers 202 at once, as a run started in the background does, and the run goes on', async () => {
    const { agentUrl, model, agent } = await serveConfirmingAgent();
    const { run_id, session_id, confirmed } = await pausedRun(agentUrl, model);
    const answer = await postForm(`${agentUrl}/runs/${run_id}/continue`, {
      tools: confirmed,
      background: 'true',
      stream: 'false',
    });
    expect(answer.status).toBe(202);
    const body = (await answer.json()) as { run_id: string; session_id: string; status: string };
    expect(body).toMatchObject({ run_id, session_id });
    expect(body.status).toBe('streaming');
    // The client is gone (its answer read): the run goes on to its end.
    const call = await model.nextCall();
    call.emit('Published.');
    call.end();
    expect(await agent.orchestrator.result(run_id)).toMatchObject({
      status: 'completed',
      content: 'Published.',
    });
  });

  it('answers 404 for an unknown run whatever the body', async () => {
    const { agentUrl } = await serveConfirmingAgent();
    await expectError(
      await postForm(`${agentUrl}/runs/nope/continue`, { tools: 'xx' }),
      404,
      'RUN_NOT_FOUND',
    );
    const json = await fetch(`${agentUrl}/runs/nope/continue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    await expectError(json, 404, 'RUN_NOT_FOUND');
  });
});
