/**
 * What Agno's Python `AgentOSClient` and `RemoteAgent` send and read (agno/client/os.py): the first
 * frame of a stream parses with Agno's classes, its continue body (every call of the run) is taken,
 * its session routes (one run, rename, update, bulk delete, a delete of a session already gone)
 * and `/config` answer as AgentOS's do, media it cannot use is refused, and its run statuses filter.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Agent, tool, type PausedRunOutput, type RunPausedEvent, type RunRecord } from '../../src/index.js';
import { createAgents } from '../../src/server/create-agents.js';
import { OfflineModel } from '../../src/model/offline-model.js';
import { packageVersion } from '../../src/package-version.js';
import { createFakeModel, type FakeModel } from '../../src/testing/index.js';
import { expectError, postRun, serve } from '../support/app.js';
import { confirmingTool } from '../support/confirming-tool.js';
import { readSse } from '../support/sse.js';
import { MAX_ID_LENGTH } from '../../src/runtime/create-orchestrator.js';

const lookup = tool({
  name: 'lookup',
  description: 'Looks a word up',
  parameters: z.object({ word: z.string() }),
  execute: ({ word }) => `${word}: a small canid`,
});
const publish = confirmingTool();

/** A server of one agent with tools, on a fake model. */
async function serveAgnoTarget(): Promise<{ url: string; agentUrl: string; model: FakeModel }> {
  const model = createFakeModel();
  const agent = new Agent({ name: 'Tool Agent', model, tools: [lookup, publish] });
  const { url } = await serve({ agents: [agent] });
  return { url, agentUrl: `${url}/agents/tool-agent`, model };
}

/** A finished run of one reply, in `session`. */
async function finishedRun(agentUrl: string, model: FakeModel, session: string, message = 'Hi') {
  const response = postRun(agentUrl, { message, session_id: session, stream: false });
  const call = await model.nextCall();
  call.emit('Hello.');
  call.end();
  return (await (await response).json()) as RunRecord;
}

const json = (method: string, body: unknown): RequestInit => ({
  method,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

/** A call as Agno's `ToolExecution.to_dict()` sends it back: its fields, Agno's nulls, `confirmed`. */
function agnoToolDict(call: PausedRunOutput['tools'][number], confirmed: boolean | null) {
  return {
    ...call,
    child_run_id: null,
    stop_after_tool_call: false,
    requires_user_input: null,
    user_input_schema: null,
    user_feedback_schema: null,
    answered: null,
    external_execution_required: null,
    external_execution_silent: null,
    approval_type: null,
    approval_id: null,
    confirmed,
  };
}

describe("Agno's AgentOSClient", () => {
  it("gets RunStarted.run_input as Agno's RunInput dict, while the session runs keep the string", async () => {
    const { url, agentUrl, model } = await serveAgnoTarget();
    const response = await postRun(agentUrl, { message: 'Tell me a story', session_id: 's-input' });
    const reader = readSse(response);
    const started = await reader.next();
    expect(started?.data).toMatchObject({
      event: 'RunStarted',
      run_input: { input_content: 'Tell me a story' },
    });
    const call = await model.nextCall();
    call.emit('Once.');
    call.end();
    await reader.rest();
    const runs = (await (await fetch(`${url}/sessions/s-input/runs`)).json()) as RunRecord[];
    expect(runs.map((run) => run.run_input)).toEqual(['Tell me a story']);
  });

  it('reads an empty form field of a flag (stream=, background=, on_disconnect=) as absent: its default', async () => {
    const { agentUrl, model } = await serveAgnoTarget();
    const form = new FormData();
    form.set('message', 'Hi');
    for (const name of ['stream', 'background', 'on_disconnect']) form.set(name, '');
    const response = await fetch(`${agentUrl}/runs`, { method: 'POST', body: form });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const call = await model.nextCall();
    call.emit('Hello.');
    call.end();
    const events = await readSse(response).rest();
    expect(events.at(-1)?.data).toMatchObject({ event: 'RunCompleted', content: 'Hello.' });
  });

  it('continues with every call of the run in tools: calls that wait for nothing are ignored', async () => {
    const { agentUrl, model } = await serveAgnoTarget();
    const answer = postRun(agentUrl, { message: 'look up fox, then publish', stream: false });
    (await model.nextCall()).callTools([
      { id: 'call_look', name: 'lookup', arguments: { word: 'fox' } },
      { id: 'call_pub', name: 'publish' },
    ]);
    const paused = (await (await answer).json()) as PausedRunOutput;
    expect(paused.status).toBe('paused');
    const [looked, waiting] = paused.tools;
    // The call that needs no confirmation waits for nothing (it runs once the turn goes on).
    expect(looked).toMatchObject({
      tool_call_id: 'call_look',
      requires_confirmation: false,
      confirmed: null,
    });
    expect(looked!.status).not.toBe('awaiting_confirmation');
    expect(waiting).toMatchObject({ tool_call_id: 'call_pub', status: 'awaiting_confirmation' });
    // The waiting call again, as Agno's RunRequirement: what its `active_requirements` are read from.
    expect(paused.requirements).toEqual([
      {
        id: 'call_pub',
        created_at: new Date(waiting!.created_at * 1000).toISOString(),
        tool_execution: waiting,
      },
    ]);
    const continueWith = (tools: unknown[]) => {
      const form = new FormData();
      form.set('tools', JSON.stringify(tools));
      form.set('session_id', paused.session_id);
      form.set('stream', 'false');
      return fetch(`${agentUrl}/runs/${paused.run_id}/continue`, { method: 'POST', body: form });
    };

    // An id the run does not know, and a waiting call left unanswered, are still refused.
    const unknown = await expectError(
      await continueWith([
        agnoToolDict(looked!, null),
        { ...agnoToolDict(waiting!, true), tool_call_id: 'nope' },
      ]),
      422,
      'INVALID_INPUT',
    );
    expect(unknown).toMatchObject({ field: 'tools.1.tool_call_id' });
    expect(unknown.detail).toMatch(/nope/);
    const unanswered = await expectError(
      await continueWith([agnoToolDict(looked!, null), agnoToolDict(waiting!, null)]),
      422,
      'INVALID_INPUT',
    );
    expect(unanswered).toMatchObject({ field: 'tools.1.confirmed' });

    // What Agno's client sends: `[t.to_dict() for t in run.tools]`, the waiting one confirmed.
    const continued = continueWith([agnoToolDict(looked!, null), agnoToolDict(waiting!, true)]);
    const turn = await model.nextCall();
    expect(turn.messages.at(-1)).toEqual({ role: 'tool', tool_call_id: 'call_pub', content: 'published' });
    turn.emit('Done.');
    turn.end();
    const output = (await (await continued).json()) as RunRecord;
    expect(output).toMatchObject({ status: 'completed', content: 'Done.' });
  });

  it('continues with every call of the run when the model repeats ids from turn to turn (call_0 in each)', async () => {
    const { agentUrl, model } = await serveAgnoTarget();
    const answer = postRun(agentUrl, { message: 'look up fox, then publish', stream: false });
    (await model.nextCall()).callTools([{ id: 'call_0', name: 'lookup', arguments: { word: 'fox' } }]);
    (await model.nextCall()).callTools([{ id: 'call_0', name: 'publish' }]);
    const paused = (await (await answer).json()) as PausedRunOutput;
    // The second call gets an id of its own: the Agent UI tells a run's calls apart by id.
    const waitingId = paused.tools[1]!.tool_call_id;
    expect(waitingId).not.toBe('call_0');
    expect(paused.tools.map((t) => [t.tool_call_id, t.status])).toEqual([
      ['call_0', 'completed'],
      [waitingId, 'awaiting_confirmation'],
    ]);
    const form = new FormData();
    form.set(
      'tools',
      JSON.stringify([agnoToolDict(paused.tools[0]!, null), agnoToolDict(paused.tools[1]!, true)]),
    );
    form.set('session_id', paused.session_id);
    form.set('stream', 'false');
    const continued = fetch(`${agentUrl}/runs/${paused.run_id}/continue`, { method: 'POST', body: form });
    const turn = await model.nextCall();
    expect(turn.messages.at(-1)).toEqual({ role: 'tool', tool_call_id: waitingId, content: 'published' });
    turn.emit('Done.');
    turn.end();
    expect(await (await continued).json()).toMatchObject({ status: 'completed', content: 'Done.' });
  });

  it('continues a second pause with only its call, when the model repeats ids from turn to turn (call_0 in each)', async () => {
    const { agentUrl, model } = await serveAgnoTarget();
    const answer = postRun(agentUrl, { message: 'publish twice', stream: false });
    (await model.nextCall()).callTools([{ id: 'call_0', name: 'publish' }]);
    const first = (await (await answer).json()) as PausedRunOutput;
    // The body tools.md shows: the waiting call's id from RunPaused.tools, confirmed.
    const confirm = (id: string) => {
      const form = new FormData();
      form.set('tools', JSON.stringify([{ tool_call_id: id, confirmed: true }]));
      form.set('session_id', first.session_id);
      form.set('stream', 'false');
      return fetch(`${agentUrl}/runs/${first.run_id}/continue`, { method: 'POST', body: form });
    };
    const once = confirm(first.tools[0]!.tool_call_id);
    (await model.nextCall()).callTools([{ id: 'call_0', name: 'publish' }]);
    const second = (await (await once).json()) as PausedRunOutput;
    const waitingId = second.tools[1]!.tool_call_id;
    expect(second.tools.map((t) => [t.tool_call_id, t.status])).toEqual([
      ['call_0', 'completed'],
      [waitingId, 'awaiting_confirmation'],
    ]);
    expect(waitingId).not.toBe('call_0');
    const again = confirm(waitingId);
    const turn = await model.nextCall();
    expect(turn.messages.at(-1)).toEqual({ role: 'tool', tool_call_id: waitingId, content: 'published' });
    turn.emit('Done.');
    turn.end();
    const output = (await (await again).json()) as RunRecord;
    expect(output).toMatchObject({ status: 'completed', content: 'Done.' });
    expect(output.tools.map((t) => [t.tool_call_id, t.status, t.confirmed])).toEqual([
      ['call_0', 'completed', true],
      [waitingId, 'completed', true],
    ]);
  });

  it('ends the stream of a continue at the next RunPaused, and the run still waits there', async () => {
    const { agentUrl, model } = await serveAgnoTarget();
    const answer = postRun(agentUrl, { message: 'publish twice', stream: false });
    (await model.nextCall()).callTools([{ id: 'call_1', name: 'publish' }]);
    const paused = (await (await answer).json()) as PausedRunOutput;
    const form = new FormData();
    form.set('tools', JSON.stringify([{ tool_call_id: 'call_1', confirmed: true }]));
    const stream = readSse(
      await fetch(`${agentUrl}/runs/${paused.run_id}/continue`, { method: 'POST', body: form }),
    );
    (await model.nextCall()).callTools([{ id: 'call_2', name: 'publish' }]);
    const events = await stream.rest();
    expect(events.map((e) => (e.data as { event: string }).event).at(-1)).toBe('RunPaused');
    // The stream's end let go of the run's events: it did not leave (cancel) the paused run.
    const again = (await (await fetch(`${agentUrl}/runs/${paused.run_id}`)).json()) as RunRecord;
    expect(again.status).toBe('paused');
  });

  it("streams RunPaused with the waiting calls as Agno's requirements, and continues from them", async () => {
    const { agentUrl, model } = await serveAgnoTarget();
    const reader = readSse(await postRun(agentUrl, { message: 'publish it' }));
    (await model.nextCall()).callTools([{ id: 'call_pub', name: 'publish' }]);
    const events = await reader.rest();
    const paused = events.at(-1)?.data as RunPausedEvent;
    expect(paused).toMatchObject({ event: 'RunPaused', tools: [{ tool_call_id: 'call_pub' }] });
    expect(paused.requirements).toEqual([
      {
        id: 'call_pub',
        created_at: new Date(paused.tools[0]!.created_at * 1000).toISOString(),
        tool_execution: paused.tools[0],
      },
    ]);
    // Agno's requirement.confirm() sets the call's `confirmed`; its client sends the calls back.
    const form = new FormData();
    form.set(
      'tools',
      JSON.stringify(paused.requirements.map((r) => ({ ...r.tool_execution, confirmed: true }))),
    );
    form.set('session_id', paused.session_id);
    form.set('stream', 'false');
    const continued = fetch(`${agentUrl}/runs/${paused.run_id}/continue`, { method: 'POST', body: form });
    const turn = await model.nextCall();
    turn.emit('Done.');
    turn.end();
    expect(await (await continued).json()).toMatchObject({ status: 'completed', content: 'Done.' });
  });

  it("details a session with AgentOS's required fields, and one run of it", async () => {
    const { url, agentUrl, model } = await serveAgnoTarget();
    const run = await finishedRun(agentUrl, model, 's-detail', 'First question');
    const other = await finishedRun(agentUrl, model, 's-other');
    expect(await (await fetch(`${url}/sessions/s-detail`)).json()).toMatchObject({
      agent_session_id: 's-detail',
      session_id: 's-detail',
      session_name: 'First question',
      agent_id: 'tool-agent',
    });

    const one = await fetch(`${url}/sessions/s-detail/runs/${run.run_id}?db_id=runstate`);
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({
      run_id: run.run_id,
      run_input: 'First question',
      status: 'completed',
    });
    await expectError(await fetch(`${url}/sessions/s-detail/runs/${other.run_id}`), 404, 'RUN_NOT_FOUND');
    await expectError(await fetch(`${url}/sessions/nope/runs/${run.run_id}`), 404, 'SESSION_NOT_FOUND');
  });

  it('renames a session (POST rename, PATCH session_name) and refuses what runstate does not keep', async () => {
    const { url, agentUrl, model } = await serveAgnoTarget();
    await finishedRun(agentUrl, model, 's-name');

    const renamed = await fetch(`${url}/sessions/s-name/rename`, json('POST', { session_name: 'Trip' }));
    expect(renamed.status).toBe(200);
    expect(await renamed.json()).toMatchObject({ agent_session_id: 's-name', session_name: 'Trip' });
    const page = (await (await fetch(`${url}/sessions`)).json()) as { data: Array<{ session_name: string }> };
    expect(page.data.map((session) => session.session_name)).toEqual(['Trip']);

    const patched = await fetch(`${url}/sessions/s-name`, json('PATCH', { session_name: 'Lisbon' }));
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ session_id: 's-name', session_name: 'Lisbon' });
    const state = await expectError(
      await fetch(`${url}/sessions/s-name`, json('PATCH', { session_state: { step: 2 } })),
      422,
      'INVALID_INPUT',
    );
    expect(state.field).toBe('session_state');
    // Left empty in a form (as the API page's "Try it out" sends them), they are unset, as null is.
    const form = new URLSearchParams({
      session_name: 'Lisbon',
      session_state: '',
      metadata: '',
      summary: '',
    });
    const empties = await fetch(`${url}/sessions/s-name`, { method: 'PATCH', body: form });
    expect(empties.status).toBe(200);
    expect(await empties.json()).toMatchObject({ session_id: 's-name', session_name: 'Lisbon' });
    const blank = await expectError(
      await fetch(`${url}/sessions/s-name/rename`, json('POST', { session_name: ' ' })),
      422,
      'INVALID_INPUT',
    );
    expect(blank.field).toBe('session_name');
    await expectError(
      await fetch(`${url}/sessions/nope/rename`, json('POST', { session_name: 'X' })),
      404,
      'SESSION_NOT_FOUND',
    );
    expect((await (await fetch(`${url}/sessions/s-name`)).json()) as { session_name: string }).toMatchObject({
      session_name: 'Lisbon',
    });
  });

  it('renames the sessions of the agents runstate serve makes', async () => {
    const agents = await createAgents({
      agents: [{ name: 'Offline', model: { provider: 'offline', tokensPerSecond: 10_000 } }],
    });
    const { url } = await serve({ agents });
    const run = (await (
      await postRun(`${url}/agents/offline`, {
        message: 'Hi',
        stream: false,
      })
    ).json()) as RunRecord;
    const renamed = await fetch(
      `${url}/sessions/${run.session_id}/rename`,
      json('POST', { session_name: 'Mine' }),
    );
    expect(await renamed.json()).toMatchObject({ session_name: 'Mine' });
  });

  it('deletes sessions in bulk and a session that is gone with 204, as AgentOS does', async () => {
    const { url, agentUrl, model } = await serveAgnoTarget();
    await finishedRun(agentUrl, model, 's-1');
    await finishedRun(agentUrl, model, 's-2');
    await finishedRun(agentUrl, model, 's-3');

    const bulk = await fetch(
      `${url}/sessions?db_id=runstate`,
      json('DELETE', { session_ids: ['s-1', 's-2', 'never'], session_types: ['agent', 'agent', 'agent'] }),
    );
    expect(bulk.status).toBe(204);
    const page = (await (await fetch(`${url}/sessions`)).json()) as { data: Array<{ session_id: string }> };
    expect(page.data.map((session) => session.session_id)).toEqual(['s-3']);
    await expectError(
      await fetch(
        `${url}/sessions`,
        json('DELETE', { session_ids: ['s-3'], session_types: ['agent', 'team'] }),
      ),
      400,
      'INVALID_INPUT',
    );
    const empty = await expectError(
      await fetch(`${url}/sessions`, json('DELETE', { session_ids: [], session_types: ['agent'] })),
      422,
      'INVALID_INPUT',
    );
    expect(empty.field).toBe('session_ids');
    const blank = await expectError(
      await fetch(`${url}/sessions`, json('DELETE', { session_ids: '', session_types: 'agent' })),
      422,
      'INVALID_INPUT',
    );
    expect(blank).toMatchObject({
      field: 'session_ids.0',
      detail: 'session_ids.0: must not hold an empty id',
    });

    expect((await fetch(`${url}/sessions/never-was?db_id=runstate`, { method: 'DELETE' })).status).toBe(204);
    expect((await fetch(`${url}/sessions/s-3`, { method: 'DELETE' })).status).toBe(204);
    expect((await fetch(`${url}/sessions/s-3`, { method: 'DELETE' })).status).toBe(204);
  });

  it("answers GET / as AgentOS's home route (get_api_info): what the server is", async () => {
    const { url } = await serveAgnoTarget();
    const answer = await fetch(`${url}/`);
    expect(answer.status).toBe(200);
    const info = (await answer.json()) as Record<string, unknown>;
    expect(info).toEqual({
      name: 'runstate',
      description: info.description,
      id: 'runstate',
      version: packageVersion(),
    });
    expect(info.description).toContain('AgentOS');
    expect(packageVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('reads the agents and their database from GET /config', async () => {
    const { url } = await serveAgnoTarget();
    expect(await (await fetch(`${url}/config`)).json()).toEqual({
      os_id: 'runstate',
      name: 'runstate',
      os_database: 'runstate',
      databases: ['runstate'],
      session: { dbs: [{ db_id: 'runstate', domain_config: { display_name: 'Sessions' } }] },
      agents: [
        {
          id: 'tool-agent',
          name: 'Tool Agent',
          description: null,
          db_id: 'runstate',
          model: { id: 'fake-model', provider: 'fake' },
        },
      ],
      teams: [],
      workflows: [],
      interfaces: [],
    });
  });

  it('lists each model of the agents once from GET /models (AgentOSClient.get_models)', async () => {
    const { url } = await serveAgnoTarget();
    expect(await (await fetch(`${url}/models`)).json()).toEqual([{ id: 'fake-model', provider: 'fake' }]);
    const offline = new OfflineModel();
    const agents = ['A', 'B'].map((name) => new Agent({ name, model: offline }));
    const two = await serve({ agents: [...agents, new Agent({ name: 'C', model: createFakeModel() })] });
    expect(await (await fetch(`${two.url}/models`)).json()).toEqual([
      { id: 'offline', provider: 'offline' },
      { id: 'fake-model', provider: 'fake' },
    ]);
  });

  it('refuses the media fields of run_agent with a 422 naming the field, and takes them empty', async () => {
    const { agentUrl, model } = await serveAgnoTarget();
    for (const field of ['images', 'audio', 'videos', 'files', 'input_files']) {
      const form = new FormData();
      form.set('message', 'What is in this?');
      form.set('stream', 'false');
      form.set(field, JSON.stringify([{ url: 'https://example.com/x' }]));
      const refused = await expectError(
        await fetch(`${agentUrl}/runs`, { method: 'POST', body: form }),
        422,
        'INVALID_INPUT',
      );
      expect(refused.field).toBe(field);
      expect(refused.detail).toMatch(/runstate does not take/);
    }
    const empty = postRun(agentUrl, { message: 'Hi', stream: false, images: [], input_files: '' });
    const call = await model.nextCall();
    call.end();
    expect((await empty).status).toBe(200);
  });

  it("filters runs by Agno's upper-case statuses as well as runstate's", async () => {
    const { agentUrl, model } = await serveAgnoTarget();
    const done = await finishedRun(agentUrl, model, 's-status');
    const ids = async (status: string) =>
      ((await (await fetch(`${agentUrl}/runs?status=${status}`)).json()) as RunRecord[]).map((r) => r.run_id);
    expect(await ids('COMPLETED')).toEqual([done.run_id]);
    expect(await ids('completed')).toEqual([done.run_id]);
    expect(await ids('RUNNING')).toEqual([]);
    expect(await ids('ERROR')).toEqual([]);
    const invalid = await expectError(await fetch(`${agentUrl}/runs?status=Completed`), 422, 'INVALID_INPUT');
    expect(invalid.field).toBe('status');
  });
});

describe('input the new session routes refuse', () => {
  it('refuses a NUL character or a lone surrogate in a field, or a NUL in a path, with a 4xx naming it, on every store alike', async () => {
    const { url, agentUrl, model } = await serveAgnoTarget();
    await finishedRun(agentUrl, model, 's-nul');
    const message = await expectError(
      await fetch(`${agentUrl}/runs`, json('POST', { message: 'a\u0000b', stream: false })),
      422,
      'INVALID_INPUT',
    );
    expect(message).toMatchObject({ field: 'message' });
    // Half of a UTF-16 pair, which JSON can carry and PostgreSQL's JSON cannot.
    const lone = await expectError(
      await fetch(`${agentUrl}/runs`, json('POST', { message: 'hi', user_id: 'u\ud800', stream: false })),
      422,
      'INVALID_INPUT',
    );
    expect(lone).toMatchObject({
      field: 'user_id',
      detail: 'user_id: must not contain a lone surrogate (half of a UTF-16 pair: not Unicode text)',
    });
    const renamed = await expectError(
      await fetch(`${url}/sessions/s-nul/rename`, json('POST', { session_name: 'a\u0000b' })),
      422,
      'INVALID_INPUT',
    );
    expect(renamed).toMatchObject({ field: 'session_name' });
    const bulk = await expectError(
      await fetch(
        `${url}/sessions`,
        json('DELETE', { session_ids: ['s-nul', 'x\u0000'], session_types: ['agent', 'agent'] }),
      ),
      422,
      'INVALID_INPUT',
    );
    expect(bulk).toMatchObject({ field: 'session_ids.1' });
    // Nothing was deleted by the refused request.
    expect((await fetch(`${url}/sessions/s-nul`)).status).toBe(200);
    await expectError(await fetch(`${url}/sessions/a%00b`), 400, 'INVALID_INPUT');
    await expectError(await fetch(`${url}/sessions/a%00b`, { method: 'DELETE' }), 400, 'INVALID_INPUT');
  });

  it('refuses a session or user id longer than runstate keeps on every store, with a 422 naming it', async () => {
    const { agentUrl } = await serveAgnoTarget();
    for (const field of ['session_id', 'user_id']) {
      const body = { message: 'hi', stream: false, [field]: 's'.repeat(MAX_ID_LENGTH + 1) };
      const refused = await expectError(
        await fetch(`${agentUrl}/runs`, json('POST', body)),
        422,
        'INVALID_INPUT',
      );
      expect(refused).toMatchObject({
        field,
        detail: `${field}: must be at most ${MAX_ID_LENGTH} characters`,
      });
    }
  });

  it('caps a bulk delete at 1,000 ids and a name at 100 characters, and takes one id from a form', async () => {
    const { url, agentUrl, model } = await serveAgnoTarget();
    await finishedRun(agentUrl, model, 's-one');
    const many = Array.from({ length: 1_001 }, (_, i) => `s-${i}`);
    const tooMany = await expectError(
      await fetch(
        `${url}/sessions`,
        json('DELETE', { session_ids: many, session_types: many.map(() => 'agent') }),
      ),
      422,
      'INVALID_INPUT',
    );
    expect(tooMany).toMatchObject({ field: 'session_ids' });
    const long = await expectError(
      await fetch(`${url}/sessions/s-one/rename`, json('POST', { session_name: 'x'.repeat(101) })),
      422,
      'INVALID_INPUT',
    );
    expect(long.detail).toMatch(/at most 100 characters/);
    // 100 characters of two UTF-16 units each are 100 characters.
    const emoji = '😀'.repeat(100);
    const named = await fetch(`${url}/sessions/s-one/rename`, json('POST', { session_name: emoji }));
    expect(await named.json()).toMatchObject({ session_name: emoji });

    const form = new URLSearchParams({ session_ids: 's-one', session_types: 'agent' });
    expect((await fetch(`${url}/sessions`, { method: 'DELETE', body: form })).status).toBe(204);
    expect((await fetch(`${url}/sessions/s-one`)).status).toBe(404);
  });

  it('takes a media field sent twice empty', async () => {
    const { agentUrl, model } = await serveAgnoTarget();
    const form = new FormData();
    form.set('message', 'Hi');
    form.set('stream', 'false');
    form.append('files', '');
    form.append('files', '');
    const answer = fetch(`${agentUrl}/runs`, { method: 'POST', body: form });
    const call = await model.nextCall();
    call.emit('Hello.');
    call.end();
    expect((await answer).status).toBe(200);
  });
});
