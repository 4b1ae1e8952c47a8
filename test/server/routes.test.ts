import { describe, expect, it } from 'vitest';
import { Agent, createOrchestrator, type RunRecord } from '../../src/index.js';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { expectError, postRun, serve, serveFake } from '../support/app.js';
import { readSse } from '../support/sse.js';

interface Accepted {
  run_id: string;
  session_id: string;
  status: string;
}

async function startBackground(agentUrl: string, body: Record<string, unknown> = {}): Promise<Accepted> {
  const response = await postRun(agentUrl, { message: 'Tell me a story', background: true, ...body });
  expect(response.status).toBe(202);
  return (await response.json()) as Accepted;
}

describe('GET /health, /agents, /teams', () => {
  it('answers health without anything else', async () => {
    const { url } = await serveFake();
    const response = await fetch(`${url}/health`);
    expect(response.status).toBe(200);
    const health = (await response.json()) as { status: string; instantiated_at: string };
    expect(Object.keys(health)).toEqual(['status', 'instantiated_at']);
    expect(health.status).toBe('ok');
    // AgentOS's form: when the server was made, in ISO 8601, the same on every answer.
    expect(new Date(health.instantiated_at).toISOString()).toBe(health.instantiated_at);
    expect(await (await fetch(`${url}/health`)).json()).toEqual(health);
  });

  it('lists agents with what the Agent UI reads: id, name, model.model and a non-empty db_id', async () => {
    const { url } = await serveFake({ dbId: 'my-db' });
    const agents = (await (await fetch(`${url}/agents`)).json()) as unknown[];
    expect(agents).toEqual([
      {
        id: 'story-writer-agent',
        name: 'Story Writer Agent',
        description: 'Writes stories.',
        model: { name: 'fake-model', model: 'fake-model', provider: 'fake' },
        db_id: 'my-db',
      },
      expect.objectContaining({ id: 'essay-writer-agent', description: null, db_id: 'my-db' }),
    ]);
  });

  it('shows one agent, and answers 404 JSON for an unknown one', async () => {
    const { url } = await serveFake();
    const agent = await fetch(`${url}/agents/essay-writer-agent`);
    expect(await agent.json()).toMatchObject({ id: 'essay-writer-agent', name: 'Essay Writer Agent' });
    await expectError(await fetch(`${url}/agents/nobody`), 404, 'AGENT_NOT_FOUND');
  });

  it('has no teams or workflows: a plain empty array', async () => {
    const { url } = await serveFake();
    expect(await (await fetch(`${url}/teams`)).json()).toEqual([]);
    expect(await (await fetch(`${url}/workflows`)).json()).toEqual([]);
  });

  it('answers an unknown route 404 JSON, not an HTML page', async () => {
    const { url } = await serveFake();
    const body = await expectError(await fetch(`${url}/no/such/route`), 404, 'NOT_FOUND');
    expect(body.detail).toBe('no route for GET /no/such/route');
  });

  it('answers a path it serves, asked with another method, 405 with the methods it answers in Allow', async () => {
    const { url, story } = await serveFake();
    const deleted = await fetch(`${story}`, { method: 'DELETE' });
    const body = await expectError(deleted, 405, 'NOT_FOUND');
    expect(deleted.headers.get('allow')).toBe('GET, HEAD');
    expect(body.detail).toBe('no route for DELETE /agents/story-writer-agent: it answers GET, HEAD');
    const put = await fetch(`${story}/runs`, { method: 'PUT' });
    await expectError(put, 405, 'NOT_FOUND');
    expect(put.headers.get('allow')).toBe('GET, HEAD, POST');
    const get = await fetch(`${story}/runs/some-run/cancel`);
    await expectError(get, 405, 'NOT_FOUND');
    expect(get.headers.get('allow')).toBe('POST');
    const health = await fetch(`${url}/health`, { method: 'POST' });
    await expectError(health, 405, 'NOT_FOUND');
    expect(health.headers.get('allow')).toBe('GET, HEAD');
    // A path none serves stays a 404, whatever the method.
    await expectError(await fetch(`${url}/no/such/route`, { method: 'PUT' }), 404, 'NOT_FOUND');
  });

  it('serves the API page’s own files, 405 to another method, and no other name under /docs', async () => {
    const { url } = await serveFake();
    for (const file of ['init.js', 'swagger-ui.css', 'swagger-ui-bundle.js']) {
      const served = await fetch(`${url}/docs/${file}`);
      expect(served.status, file).toBe(200);
      await served.arrayBuffer();
      const posted = await fetch(`${url}/docs/${file}`, { method: 'POST' });
      await expectError(posted, 405, 'NOT_FOUND');
      expect(posted.headers.get('allow')).toBe('GET, HEAD');
    }
    // Names an object has of its own prototype were looked up as files (and answered 500).
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'nope']) {
      for (const method of ['GET', 'HEAD']) {
        const response = await fetch(`${url}/docs/${name}`, { method });
        expect(response.status, `${method} ${name}`).toBe(404);
        if (method === 'GET') await expectError(response, 404, 'NOT_FOUND');
      }
    }
  });
});

describe('POST /agents/:agent_id/runs without streaming', () => {
  it('answers the run output as JSON once the run is final', async () => {
    const { story, model } = await serveFake();
    const response = postRun(story, { message: 'Say hello', stream: false, user_id: 'ann' });
    const call = await model.nextCall();
    call.emit('Hel');
    call.emit('lo.');
    call.end();
    const output = (await (await response).json()) as RunRecord;
    expect(output).toMatchObject({
      status: 'completed',
      content: 'Hello.',
      run_input: 'Say hello',
      // As Agno's `RunOutput.to_dict()`, which its client reads the input from.
      input: { input_content: 'Say hello' },
      agent_id: 'story-writer-agent',
      user_id: 'ann',
      cancel_reason: null,
    });
    expect(call.messages.at(-1)).toEqual({ role: 'user', content: 'Say hello' });
  });

  it('accepts urlencoded forms, whose booleans are strings', async () => {
    const { story, model } = await serveFake();
    const response = fetch(`${story}/runs`, {
      method: 'POST',
      body: new URLSearchParams({ message: 'Hi', stream: 'false' }),
    });
    (await model.nextCall()).end();
    expect(await (await response).json()).toMatchObject({ status: 'completed', run_input: 'Hi' });
  });

  it("reads a form's booleans as pydantic does (AgentOS's forms), and refuses other words", async () => {
    const { story, model } = await serveFake();
    for (const stream of ['f', 'F', 'n', 'No', 'off', '0']) {
      const response = fetch(`${story}/runs`, {
        method: 'POST',
        body: new URLSearchParams({ message: 'Hi', stream }),
      });
      (await model.nextCall()).end();
      const answer = await response;
      expect(answer.headers.get('content-type'), stream).toMatch(/^application\/json/);
      expect(await answer.json()).toMatchObject({ status: 'completed' });
    }
    for (const stream of ['t', 'Y']) {
      const response = fetch(`${story}/runs`, {
        method: 'POST',
        body: new URLSearchParams({ message: 'Hi', stream }),
      });
      (await model.nextCall()).end();
      const answer = await response;
      expect(answer.headers.get('content-type'), stream).toMatch(/^text\/event-stream/);
      await answer.text();
    }
    for (const stream of ['enabled', 'disabled', 'nope']) {
      const answer = await fetch(`${story}/runs`, {
        method: 'POST',
        body: new URLSearchParams({ message: 'Hi', stream }),
      });
      expect(answer.status, stream).toBe(422);
      expect(JSON.stringify(await answer.json())).toContain('stream');
    }
  });
});

describe('background runs', () => {
  it('answers 202 {run_id, session_id, status: pending}; the events endpoint then replays and follows', async () => {
    const { story, model } = await serveFake();
    const accepted = await startBackground(story);
    expect(Object.keys(accepted).sort()).toEqual(['run_id', 'session_id', 'status']);
    expect(accepted.status).toBe('pending');
    const call = await model.nextCall();
    call.emit('Once');
    const events = readSse(await fetch(`${story}/runs/${accepted.run_id}/events`));
    expect((await events.next())?.data).toMatchObject({
      event: 'RunStarted',
      session_id: accepted.session_id,
    });
    expect((await events.next())?.data).toMatchObject({ event: 'RunContent', content: 'Once' });
    call.emit(' upon a time.');
    call.end();
    const rest = await events.rest();
    expect(rest.map((frame) => frame.event)).toEqual(['RunContent', 'RunCompleted']);
    expect(rest.at(-1)?.data).toMatchObject({ content: 'Once upon a time.', status: 'completed' });
  });

  it('takes multipart/form-data, as Agno clients send it', async () => {
    const { story, model } = await serveFake();
    const form = new FormData();
    form.set('message', 'From a form');
    form.set('background', 'true');
    form.set('session_id', 'form-session');
    const response = await fetch(`${story}/runs`, { method: 'POST', body: form });
    expect(response.status).toBe(202);
    expect(await response.json()).toMatchObject({ session_id: 'form-session', status: 'pending' });
    expect((await model.nextCall()).messages.at(-1)).toEqual({ role: 'user', content: 'From a form' });
  });

  it('keeps a multipart value whole, past 1 MB when the limit allows it, and in UTF-8', async () => {
    const { story, model } = await serveFake({ bodyLimit: '3mb' });
    const message = `${'é'.repeat(700_000)} ✓`; // 1.4 MB in UTF-8
    const form = new FormData();
    form.set('message', message);
    form.set('background', 'true');
    const response = await fetch(`${story}/runs`, { method: 'POST', body: form });
    expect(response.status).toBe(202);
    expect((await model.nextCall()).messages.at(-1)).toEqual({ role: 'user', content: message });
  });

  it('answers a repeated multipart field as the urlencoded one: a 422 naming it, sent once', async () => {
    const { story, model } = await serveFake();
    const form = new FormData();
    form.append('message', 'one');
    form.append('message', 'two');
    const multipart = await expectError(
      await fetch(`${story}/runs`, { method: 'POST', body: form }),
      422,
      'INVALID_INPUT',
    );
    const urlencoded = await expectError(
      await fetch(`${story}/runs`, {
        method: 'POST',
        body: new URLSearchParams([
          ['message', 'one'],
          ['message', 'two'],
        ]),
      }),
      422,
      'INVALID_INPUT',
    );
    expect(multipart).toEqual(urlencoded);
    expect(urlencoded).toMatchObject({
      field: 'message',
      detail: 'message: must be sent once (it was sent 2 times)',
    });
    expect(model.calls).toHaveLength(0);
  });
});

describe('GET /agents/:agent_id/runs[/:run_id]', () => {
  it('shows a run record, live and then final', async () => {
    const { story, model, agents } = await serveFake();
    const { run_id } = await startBackground(story, { message: 'Hi' });
    const call = await model.nextCall();
    const live = (await (await fetch(`${story}/runs/${run_id}`)).json()) as RunRecord;
    expect(live).toMatchObject({ run_id, status: 'streaming', run_input: 'Hi', finished_at: null });
    call.emit('Done.');
    call.end();
    await agents[0]!.orchestrator.result(run_id);
    const final = (await (await fetch(`${story}/runs/${run_id}`)).json()) as RunRecord;
    expect(final).toMatchObject({ status: 'completed', content: 'Done.' });
    expect(final.finished_at).toBeGreaterThan(0);
  });

  it('lists runs whose text passes the longest string V8 allows (~512 MB), written in pieces', async () => {
    const { story, model, agents } = await serveFake();
    // One 1 MiB string, which every record shares: 520 of them are ~545 MB of JSON, which one
    // `JSON.stringify` refuses (`RangeError: Invalid string length`, a 500 before).
    const input = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 520; i++) {
      const output = agents[0]!.run(input);
      (await model.nextCall()).end();
      await output;
    }
    const response = await fetch(`${story}/runs`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    // Read as it comes, keeping only the length and the two ends: the whole would not fit a string.
    let length = 0;
    let first: Uint8Array | undefined;
    let last: Uint8Array = new Uint8Array();
    for await (const piece of response.body! as AsyncIterable<Uint8Array>) {
      length += piece.length;
      first ??= piece;
      last = piece;
    }
    expect(length).toBeGreaterThan(2 ** 29);
    expect(Buffer.from(first!).toString('latin1', 0, 12)).toBe('[{"run_id":"');
    expect(Buffer.from(last).toString('latin1').slice(-2)).toBe('}]');
  }, 60_000);

  it('answers 404 for an unknown run and for a run of another agent', async () => {
    const { url, story } = await serveFake();
    const essay = await startBackground(`${url}/agents/essay-writer-agent`);
    await expectError(await fetch(`${story}/runs/nope`), 404, 'RUN_NOT_FOUND');
    await expectError(await fetch(`${story}/runs/${essay.run_id}`), 404, 'RUN_NOT_FOUND');
    await expectError(await fetch(`${story}/runs/${essay.run_id}/events`), 404, 'RUN_NOT_FOUND');
  });

  it("lists the agent's runs, filtered by session and status", async () => {
    const { url, story, model, agents } = await serveFake();
    const first = await startBackground(story, { session_id: 's-1' });
    (await model.nextCall()).end();
    await agents[0]!.orchestrator.result(first.run_id);
    const second = await startBackground(story, { session_id: 's-2' });
    await model.nextCall();
    await startBackground(`${url}/agents/essay-writer-agent`);

    const ids = async (query: string) =>
      ((await (await fetch(`${story}/runs${query}`)).json()) as RunRecord[]).map((run) => run.run_id);
    expect(await ids('')).toEqual([first.run_id, second.run_id]);
    expect(await ids('?session_id=s-2')).toEqual([second.run_id]);
    expect(await ids('?status=completed')).toEqual([first.run_id]);
    expect(await ids('?status=streaming&session_id=s-1')).toEqual([]);
    const invalid = await expectError(await fetch(`${story}/runs?status=done`), 422, 'INVALID_INPUT');
    expect(invalid.field).toBe('status');
    // As AgentOS: a session that is not this agent's (or none at all) is a 404, not `[]`.
    const essays = await startBackground(`${url}/agents/essay-writer-agent`, { session_id: 'essays' });
    await expectError(await fetch(`${story}/runs?session_id=nope`), 404, 'SESSION_NOT_FOUND');
    await expectError(await fetch(`${story}/runs?session_id=${essays.session_id}`), 404, 'SESSION_NOT_FOUND');
    // And a run asked for in another session than its own is not found.
    expect((await fetch(`${story}/runs/${first.run_id}?session_id=s-1`)).status).toBe(200);
    await expectError(await fetch(`${story}/runs/${first.run_id}?session_id=s-2`), 404, 'RUN_NOT_FOUND');
  });
});

describe('POST /agents/:agent_id/runs/:run_id/cancel', () => {
  it('cancels an active run: 200 {run_id, status: cancelled}, again on a repeat, and aborts the model', async () => {
    const { story, model } = await serveFake();
    const { run_id } = await startBackground(story);
    const call = await model.nextCall();
    call.emit('Partial');
    const cancel = () => fetch(`${story}/runs/${run_id}/cancel`, { method: 'POST' });
    const first = await cancel();
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ run_id, status: 'cancelled' });
    expect(call.signal.aborted).toBe(true);
    const again = await cancel();
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ run_id, status: 'cancelled' });
    const record = (await (await fetch(`${story}/runs/${run_id}`)).json()) as RunRecord;
    expect(record).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
  });

  it('answers 409 with the status of a run that completed or failed', async () => {
    const { story, model, agents } = await serveFake();
    const completed = await startBackground(story);
    (await model.nextCall()).end();
    await agents[0]!.orchestrator.result(completed.run_id);
    const conflict = await expectError(
      await fetch(`${story}/runs/${completed.run_id}/cancel`, { method: 'POST' }),
      409,
      'RUN_ALREADY_FINISHED',
    );
    expect(conflict).toMatchObject({ run_id: completed.run_id, status: 'completed' });

    const failed = await startBackground(story);
    (await model.nextCall()).fail(new Error('the model broke'));
    await agents[0]!.orchestrator.result(failed.run_id);
    const failedConflict = await expectError(
      await fetch(`${story}/runs/${failed.run_id}/cancel`, { method: 'POST' }),
      409,
      'RUN_ALREADY_FINISHED',
    );
    expect(failedConflict.status).toBe('failed');
  });

  it('cancels a run still pending for a slot: the model is never called for it', async () => {
    const { story, model } = await serveFake({ orchestrator: { maxConcurrentRuns: 1 } });
    await startBackground(story);
    await model.nextCall();
    const waiting = await startBackground(story);
    expect(await (await fetch(`${story}/runs/${waiting.run_id}`)).json()).toMatchObject({
      status: 'pending',
    });
    const response = await fetch(`${story}/runs/${waiting.run_id}/cancel`, { method: 'POST' });
    expect(await response.json()).toEqual({ run_id: waiting.run_id, status: 'cancelled' });
    expect(model.calls).toHaveLength(1);
  });

  it('answers 404 for an unknown run (the seed call), an unknown agent, or a run of another agent', async () => {
    const { url, story } = await serveFake();
    // curl --location 'http://localhost:7777/agents/story-writer-agent/runs/123/cancel' --request POST
    const seed = await expectError(
      await fetch(`${url}/agents/story-writer-agent/runs/123/cancel`, { method: 'POST' }),
      404,
      'RUN_NOT_FOUND',
    );
    expect(seed.detail).toContain('123');
    const { run_id } = await startBackground(story);
    await expectError(
      await fetch(`${url}/agents/nobody/runs/${run_id}/cancel`, { method: 'POST' }),
      404,
      'AGENT_NOT_FOUND',
    );
    await expectError(
      await fetch(`${url}/agents/essay-writer-agent/runs/${run_id}/cancel`, { method: 'POST' }),
      404,
      'RUN_NOT_FOUND',
    );
    expect(await (await fetch(`${story}/runs/${run_id}`)).json()).toMatchObject({ status: 'streaming' });
  });
});

describe('sessions', () => {
  it('lists sessions as the Agent UI asks: {data: [{session_id, session_name, created_at}], meta}', async () => {
    const { url, story, model } = await serveFake();
    await startBackground(story, { message: 'First question', session_id: 'chat-1' });
    await model.nextCall();
    await startBackground(`${url}/agents/essay-writer-agent`, { message: 'Other', session_id: 'chat-2' });

    const response = await fetch(`${url}/sessions?type=agent&component_id=story-writer-agent&db_id=runstate`);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { data: unknown[]; meta: unknown };
    expect(body.data).toEqual([
      expect.objectContaining({
        session_id: 'chat-1',
        session_name: 'First question',
        agent_id: 'story-writer-agent',
      }),
    ]);
    expect(body.data[0]).toHaveProperty('created_at');
    expect(body.meta).toEqual({ page: 1, limit: 20, total_count: 1, total_pages: 1 });

    const all = (await (await fetch(`${url}/sessions?limit=1&page=2`)).json()) as typeof body;
    expect(all.data).toHaveLength(1);
    expect(all.meta).toEqual({ page: 2, limit: 1, total_count: 2, total_pages: 2 });
    expect(((await (await fetch(`${url}/sessions?type=team`)).json()) as typeof body).data).toEqual([]);
    await expectError(await fetch(`${url}/sessions?db_id=another-db`), 404, 'NOT_FOUND');
    const invalid = await expectError(await fetch(`${url}/sessions?limit=0`), 422, 'INVALID_INPUT');
    expect(invalid.field).toBe('limit');
  });

  it('sorts sessions by created_at (or updated_at), finds them by name, and scopes them to a user_id', async () => {
    let clock = 1_000_000_000_000;
    const { url, story, model } = await serveFake({ orchestrator: { now: () => clock } });
    const start = async (message: string, session_id: string, user_id: string) => {
      await startBackground(story, { message, session_id, user_id });
      const call = await model.nextCall();
      call.end();
      clock += 10_000;
    };
    await start('Lighthouses', 'old', 'alice');
    await start('Tides', 'new', 'bob');
    await start('Lighthouses again', 'old', 'alice'); // the older session is now the last updated
    const ids = async (query: string) =>
      (
        (await (await fetch(`${url}/sessions?${query}`)).json()) as { data: { session_id: string }[] }
      ).data.map((session) => session.session_id);
    expect(await ids('sort_by=created_at&sort_order=desc')).toEqual(['new', 'old']);
    expect(await ids('')).toEqual(['new', 'old']);
    expect(await ids('sort_by=updated_at&sort_order=desc')).toEqual(['old', 'new']);
    expect(await ids('session_name=LIGHT')).toEqual(['old']);
    // Sessions begun within one second (times are whole seconds): ascending is descending reversed.
    clock -= 10_000;
    await start('Waves', 'same-1', 'carol');
    clock -= 10_000;
    await start('Reefs', 'same-2', 'carol');
    const newestFirst = await ids('user_id=carol&sort_by=created_at&sort_order=desc');
    expect(newestFirst).toEqual(['same-2', 'same-1']);
    expect(await ids('user_id=carol&sort_by=created_at&sort_order=asc')).toEqual(['same-1', 'same-2']);
    const bad = await expectError(await fetch(`${url}/sessions?sort_by=bogus`), 422, 'INVALID_INPUT');
    expect(bad.field).toBe('sort_by');
    const long = await expectError(
      await fetch(`${url}/sessions?session_name=${'a'.repeat(600)}`),
      422,
      'INVALID_INPUT',
    );
    expect(long).toMatchObject({
      field: 'session_name',
      detail: 'session_name: must be at most 512 characters',
    });

    // Another user's session is not found, to read, rename or delete.
    for (const path of ['/sessions/old', '/sessions/old/runs']) {
      expect((await fetch(`${url}${path}?user_id=alice`)).status).toBe(200);
      await expectError(await fetch(`${url}${path}?user_id=bob`), 404, 'SESSION_NOT_FOUND');
    }
    const rename = await fetch(`${url}/sessions/old/rename?user_id=bob`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ session_name: 'hijacked' }),
    });
    await expectError(rename, 404, 'SESSION_NOT_FOUND');
    expect((await fetch(`${url}/sessions/old?user_id=bob`, { method: 'DELETE' })).status).toBe(204);
    expect(await (await fetch(`${url}/sessions/old`)).json()).toMatchObject({ session_name: 'Lighthouses' });

    // The runs of a session created in a window (Unix seconds, both ends included).
    const runs = async (query: string) =>
      ((await (await fetch(`${url}/sessions/old/runs?${query}`)).json()) as RunRecord[]).map(
        (run) => run.run_input,
      );
    expect(await runs('created_after=1000000001')).toEqual(['Lighthouses again']);
    expect(await runs('created_before=1000000001')).toEqual(['Lighthouses']);
    expect(await runs('created_after=1000000000&created_before=1000000020')).toEqual([
      'Lighthouses',
      'Lighthouses again',
    ]);
  });

  it('answers 422 to a known parameter in a bracket form (qs arrays) or sent twice, rather than drop its filter or guess', async () => {
    const { url, story } = await serveFake();
    const started = await postRun(story, { message: 'Hi', background: true, session_id: 's1' });
    const { run_id } = (await started.json()) as { run_id: string };
    for (const [path, field] of [
      ['/sessions?user_id[]=bob', 'user_id'],
      ['/sessions?component_id[a]=x', 'component_id'],
      ['/sessions/s1?db_id[x]=runstate', 'db_id'],
      [`/agents/story-writer-agent/runs/${run_id}?session_id[]=other`, 'session_id'],
      [`/agents/story-writer-agent/runs/${run_id}/events?after[]=1`, 'after'],
    ] as const) {
      const body = await expectError(await fetch(`${url}${path}`), 422, 'INVALID_INPUT');
      expect(body.field, path).toBe(field);
      expect(body.detail, path).toContain(`${field}=value, once`);
    }
    // Sent twice, even with one value: which of two counts would be a guess.
    for (const [path, field] of [
      ['/sessions?type=agent&type=agent', 'type'],
      [`/agents/story-writer-agent/runs/${run_id}?session_id=s1&session_id=s2`, 'session_id'],
      [`/agents/story-writer-agent/runs/${run_id}/events?after=1&after=2&after=3`, 'after'],
    ] as const) {
      const body = await expectError(await fetch(`${url}${path}`), 422, 'INVALID_INPUT');
      expect(body.field, path).toBe(field);
      expect(body.detail, path).toMatch(/must be sent once \(it was sent [23] times\)/);
    }
    // A parameter no route reads is ignored, as FastAPI's AgentOS does, brackets, repeats or not.
    expect((await fetch(`${url}/sessions?fields[]=x&other=1&other=2`)).status).toBe(200);
    // A longer name that begins with a route's own is another parameter, not its bracket form.
    expect((await fetch(`${url}/sessions?user_idx=bob&limitx=1`)).status).toBe(200);
    expect((await fetch(`${story}/runs?session_id=s1`)).status).toBe(200);
  });

  it('answers 422 to a field of a body in a bracket form, rather than read it as absent', async () => {
    const { url, story } = await serveFake();
    const started = await postRun(story, { message: 'Hi', background: true, session_id: 's1' });
    const { run_id } = (await started.json()) as { run_id: string };
    const form = (fields: Record<string, string>) => ({ method: 'POST', body: new URLSearchParams(fields) });
    for (const [path, init, field] of [
      [`${story}/runs`, form({ message: 'Hi', 'session_id[]': 's1' }), 'session_id'],
      [`${story}/runs/${run_id}/resume`, form({ 'last_event_index[]': '5' }), 'last_event_index'],
      [`${url}/sessions/s1/rename`, form({ 'session_name[x]': 'a' }), 'session_name'],
      [
        `${url}/sessions/s1`,
        { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: '{"session_name[]":"a"}' },
        'session_name',
      ],
    ] as const) {
      const body = await expectError(await fetch(path, init), 422, 'INVALID_INPUT');
      expect(body.field, path).toBe(field);
      expect(body.detail, path).toContain(`${field}=value, once`);
    }
    // Nothing was started or renamed meanwhile.
    expect(await (await fetch(`${url}/sessions/s1/runs`)).json()).toHaveLength(1);
    // A field no route reads is ignored, brackets or not.
    const other = await fetch(`${story}/runs`, form({ message: 'Hi', background: 'true', 'extra[]': 'x' }));
    expect(other.status).toBe(202);
  });

  it('answers 422 to a field of a form body sent twice, as to a query parameter, on every route that reads one', async () => {
    const { url, story, model } = await serveFake();
    const started = await postRun(story, { message: 'Hi', background: true, session_id: 's1' });
    const { run_id } = (await started.json()) as { run_id: string };
    (await model.nextCall()).end();
    // Each form as urlencoded and as multipart, with the same fields.
    const bodies = (fields: string) => {
      const multipart = new FormData();
      for (const [name, value] of new URLSearchParams(fields)) multipart.append(name, value);
      return [new URLSearchParams(fields), multipart];
    };
    for (const [method, path, fields, field, times] of [
      ['POST', `${story}/runs`, 'message=x&message=y', 'message', 2],
      ['POST', `${story}/runs`, 'message=x&session_id=a&session_id=b', 'session_id', 2],
      ['POST', `${story}/runs`, 'message=x&stream=false&stream=true', 'stream', 2],
      ['POST', `${story}/runs`, 'message=x&user_id=u&user_id=u&user_id=u', 'user_id', 3],
      ['POST', `${story}/runs/${run_id}/continue`, 'tools=[]&tools=[]', 'tools', 2],
      [
        'POST',
        `${story}/runs/${run_id}/resume`,
        'last_event_index=0&last_event_index=1',
        'last_event_index',
        2,
      ],
      ['POST', `${url}/sessions/s1/rename`, 'session_name=a&session_name=b', 'session_name', 2],
      ['PATCH', `${url}/sessions/s1`, 'session_name=a&session_name=b', 'session_name', 2],
    ] as const) {
      for (const body of bodies(fields)) {
        const answer = await expectError(await fetch(path, { method, body }), 422, 'INVALID_INPUT');
        expect(answer, `${method} ${path} ${fields}`).toEqual({
          detail: `${field}: must be sent once (it was sent ${times} times)`,
          code: 'INVALID_INPUT',
          field,
        });
      }
    }
    // Nothing was started or renamed meanwhile.
    expect(model.calls).toHaveLength(1);
    expect(await (await fetch(`${url}/sessions/s1`)).json()).toMatchObject({ session_name: 'Hi' });
    // A field that takes a list is sent once for each item.
    const both = new URLSearchParams([
      ['session_ids', 's1'],
      ['session_ids', 's2'],
      ['session_types', 'agent'],
      ['session_types', 'agent'],
    ]);
    expect((await fetch(`${url}/sessions`, { method: 'DELETE', body: both })).status).toBe(204);
    expect((await fetch(`${url}/sessions/s1`)).status).toBe(404);
  });

  it('keeps the last of a key a JSON body repeats, as JSON.parse does: a repeat cannot be seen there', async () => {
    const { story, model } = await serveFake();
    const response = await fetch(`${story}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"message":"first","message":"last","background":true}',
    });
    expect(response.status).toBe(202);
    expect((await model.nextCall()).messages.at(-1)).toEqual({ role: 'user', content: 'last' });
  });

  it('answers 422 naming limit or page when either is not a whole number in its range, however long', async () => {
    const { url } = await serveFake();
    const huge = '9'.repeat(400); // Number() makes it Infinity: `null` once in JSON
    for (const [query, field] of [
      [`limit=${huge}`, 'limit'],
      [`page=${huge}`, 'page'],
      ['limit=1001', 'limit'],
      ['page=9007199254740992', 'page'], // past the largest safe integer, rounded by Number()
      ['page=1.5', 'page'],
    ]) {
      const body = await expectError(await fetch(`${url}/sessions?${query}`), 422, 'INVALID_INPUT');
      expect(body.field, query).toBe(field);
    }
    const largest = await fetch(`${url}/sessions?limit=1000&page=9007199254740991`);
    expect(((await largest.json()) as { meta: unknown }).meta).toEqual({
      page: 9007199254740991,
      limit: 1000,
      total_count: 0,
      total_pages: 0,
    });
  });

  it('answers the runs of a session with the run in progress, never []', async () => {
    const { url, story, model } = await serveFake();
    const response = await postRun(story, { message: 'Write a poem', session_id: '' });
    const events = readSse(response);
    const started = (await events.next())!.data;
    // A new session: RunStarted names it, and the UI asks for its runs while the answer streams.
    expect(started.session_id).not.toBe('');
    const call = await model.nextCall();
    call.emit('Roses');
    expect((await events.next())?.data).toMatchObject({ content: 'Roses' });

    const runs = (await (
      await fetch(`${url}/sessions/${started.session_id}/runs?type=agent&db_id=runstate`)
    ).json()) as RunRecord[];
    expect(runs).toEqual([
      expect.objectContaining({
        run_id: started.run_id,
        run_input: 'Write a poem',
        content: 'Roses',
        status: 'streaming',
      }),
    ]);
    expect(runs[0]?.created_at).toBeGreaterThan(0);
    call.end();
    await events.rest();
    await expectError(await fetch(`${url}/sessions/unknown/runs`), 404, 'SESSION_NOT_FOUND');
  });

  it('shows one session; deletes a session (2xx) and cancels its active run', async () => {
    const { url, story, model, agents } = await serveFake();
    const { run_id } = await startBackground(story, { message: 'Hello there', session_id: 'doomed' });
    const call = await model.nextCall();
    expect(await (await fetch(`${url}/sessions/doomed`)).json()).toMatchObject({
      session_id: 'doomed',
      session_name: 'Hello there',
      run_ids: [run_id],
    });
    const output = agents[0]!.orchestrator.result(run_id);

    const deleted = await fetch(`${url}/sessions/doomed?db_id=runstate`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    expect(await output).toMatchObject({ status: 'cancelled' });
    expect(call.signal.aborted).toBe(true);
    await expectError(await fetch(`${url}/sessions/doomed/runs`), 404, 'SESSION_NOT_FOUND');
    // As AgentOS answers: 204 whether or not there is such a session (any more).
    expect((await fetch(`${url}/sessions/doomed`, { method: 'DELETE' })).status).toBe(204);
  });

  it('finds no team or workflow session (runstate has agent sessions only), and refuses an unknown type', async () => {
    const { url, story, model } = await serveFake();
    await startBackground(story, { message: 'Hello there', session_id: 'mine' });
    (await model.nextCall()).end();
    expect((await fetch(`${url}/sessions/mine?type=agent`)).status).toBe(200);
    for (const type of ['team', 'workflow']) {
      for (const path of ['/sessions/mine', '/sessions/mine/runs'])
        await expectError(await fetch(`${url}${path}?type=${type}`), 404, 'SESSION_NOT_FOUND');
      const renamed = await fetch(`${url}/sessions/mine/rename?type=${type}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ session_name: 'Renamed' }),
      });
      await expectError(renamed, 404, 'SESSION_NOT_FOUND');
      // Nothing of that type to delete: 204, and the agent session stays.
      expect((await fetch(`${url}/sessions/mine?type=${type}`, { method: 'DELETE' })).status).toBe(204);
    }
    expect(await (await fetch(`${url}/sessions/mine`)).json()).toMatchObject({ session_name: 'Hello there' });
    await expectError(await fetch(`${url}/sessions/mine?type=bogus`), 422, 'INVALID_INPUT');
  });

  it('sends the earlier turns of a session with a second run', async () => {
    const { story, model } = await serveFake();
    const first = postRun(story, { message: 'My name is Ann.', session_id: 'memory', stream: false });
    const call = await model.nextCall();
    call.emit('Hello Ann.');
    call.end();
    await first;
    const second = postRun(story, { message: 'What is my name?', session_id: 'memory', stream: false });
    const next = await model.nextCall();
    expect(next.messages.filter((message) => message.role !== 'system')).toEqual([
      { role: 'user', content: 'My name is Ann.' },
      { role: 'assistant', content: 'Hello Ann.' },
      { role: 'user', content: 'What is my name?' },
    ]);
    next.end();
    await second;
  });

  it('refuses 422 (field session_id) a session of another agent', async () => {
    const { url, story, model } = await serveFake();
    await startBackground(story, { session_id: 'mine' });
    await model.nextCall();
    const response = await postRun(`${url}/agents/essay-writer-agent`, { message: 'Hi', session_id: 'mine' });
    const body = await expectError(response, 422, 'INVALID_INPUT');
    expect(body.field).toBe('session_id');
  });

  it('refuses 422 (field session_id) a run of one user in a session of another', async () => {
    const { story, model } = await serveFake();
    await startBackground(story, { session_id: 'ann', user_id: 'u1' });
    (await model.nextCall()).end();
    const response = await postRun(story, { message: 'Hi', session_id: 'ann', user_id: 'u2' });
    const body = await expectError(response, 422, 'INVALID_INPUT');
    expect(body.field).toBe('session_id');
    expect(body.detail).toMatch(/another user/);
    expect(model.calls).toHaveLength(1);
  });

  it('with an orchestrator per agent: one session of an id raced by two agents, and a delete of it in each', async () => {
    const model = createFakeModel();
    const agents = ['Story Writer Agent', 'Essay Writer Agent'].map(
      (name) => new Agent({ name, model, orchestrator: createOrchestrator() }),
    );
    const { url } = await serve({ agents });
    // Two first runs of one new session id at once, one per agent (and store): one is refused.
    const answers = await Promise.all(
      agents.map((agent) =>
        postRun(`${url}/agents/${agent.id}`, { message: 'Hi', session_id: 'raced', background: true }),
      ),
    );
    expect(answers.map((answer) => answer.status).sort()).toEqual([202, 422]);
    const refused = answers.find((answer) => answer.status === 422)!;
    expect(await expectError(refused, 422, 'INVALID_INPUT')).toMatchObject({ field: 'session_id' });
    const holders = await Promise.all(agents.map((agent) => agent.orchestrator.getSession('raced')));
    expect(holders.filter(Boolean)).toHaveLength(1);
    (await model.nextCall()).end();

    // A session of one id in both stores (started from code, past the route's check): deleted in both.
    for (const agent of agents) {
      const run = agent.run('Hello', { sessionId: 'twice' });
      (await model.nextCall()).end();
      await run;
    }
    expect((await fetch(`${url}/sessions/twice`, { method: 'DELETE' })).status).toBe(204);
    for (const agent of agents) expect(await agent.orchestrator.getSession('twice')).toBeUndefined();
  });

  it('deletes a session whose first run is still on its way into the store', async () => {
    const store = createMemoryRunStore();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const orchestrator = createOrchestrator({
      store: { ...store, createRun: async (run) => (await held, store.createRun(run)) },
    });
    // The delete reaches the orchestrator (not a read of the store first, which finds nothing yet):
    // the record goes on then, and the delete waits for it.
    const deleteSession = orchestrator.deleteSession.bind(orchestrator);
    orchestrator.deleteSession = (sessionId) => (release(), deleteSession(sessionId));
    const model = createFakeModel();
    const agent = new Agent({ name: 'Story Writer Agent', model, orchestrator });
    const { url } = await serve({ agents: [agent] });
    const run = agent.run('Hello', { sessionId: 'quick', stream: true });
    expect((await fetch(`${url}/sessions/quick`, { method: 'DELETE' })).status).toBe(204);
    release();
    // Cancelled with its session, and forgotten with it.
    expect((await run.result).status).toBe('cancelled');
    expect(await orchestrator.getSession('quick')).toBeUndefined();
    expect(await agent.getRun(run.runId)).toBeUndefined();
  });

  it('RunStarted carries the session_id that was sent', async () => {
    const { story } = await serveFake();
    const events = readSse(await postRun(story, { message: 'Hi', session_id: 'given' }));
    expect((await events.next())?.data).toMatchObject({ event: 'RunStarted', session_id: 'given' });
  });
});

describe('events of a finished run', () => {
  it('replays them all and ends', async () => {
    const { story, model, agents } = await serveFake();
    const { run_id } = await startBackground(story);
    const call = await model.nextCall();
    call.emit('a');
    call.emit('b');
    call.end();
    await agents[0]!.orchestrator.result(run_id);
    const frames = await readSse(await fetch(`${story}/runs/${run_id}/events`)).rest();
    checkRunEvents(
      frames.map((frame) => frame.data),
      'completed',
    );
  });
});

describe('mounted handlers', () => {
  it('are reached before the 404, behind auth, and pass on what they do not serve', async () => {
    const { url } = await serveFake({
      securityKey: 'key',
      mount: {
        '/extra': (req, res, next) => {
          if (req.url !== '/hello') return next();
          res.setHeader('content-type', 'text/plain');
          res.end('hi');
        },
      },
    });
    const auth = { authorization: 'Bearer key' };
    await expectError(await fetch(`${url}/extra/hello`), 401, 'UNAUTHORIZED');
    expect(await (await fetch(`${url}/extra/hello`, { headers: auth })).text()).toBe('hi');
    await expectError(await fetch(`${url}/extra/other`, { headers: auth }), 404, 'NOT_FOUND');
  });
});
