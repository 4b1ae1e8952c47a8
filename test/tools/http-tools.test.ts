/**
 * Tools over HTTP: a run of an agent with tools streams Agno's tool events (what the Agent UI turns
 * into chips), a pause ends the stream at `RunPaused`, and `POST .../continue` (Agno's form: `tools`
 * as a JSON string) streams on from `RunContinued`; a second continue is refused with 409. With
 * `stream=false`, a run that pauses answers the paused run, and a continue the output.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Agent, createOrchestrator, tool, type PausedRunOutput } from '../../src/index.js';
import { pausedRunOutput, runOutput } from '../../src/server/openapi-schemas.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { expectError, postRun, serve } from '../support/app.js';
import { readSse } from '../support/sse.js';

const lookup = tool({
  name: 'lookup',
  description: 'Looks a word up',
  parameters: z.object({ word: z.string() }),
  execute: ({ word }) => `${word}: a small canid`,
});
const publish = tool({
  name: 'publish',
  description: 'Publishes a post',
  parameters: z.object({}),
  execute: () => 'published',
  requiresConfirmation: true,
});

async function serveToolAgent() {
  const model = createFakeModel();
  const agent = new Agent({
    name: 'Tool Agent',
    model,
    tools: [lookup, publish],
    orchestrator: createOrchestrator(),
  });
  const server = await serve({ agents: [agent] });
  return { model, agentUrl: `${server.url}/agents/tool-agent` };
}

describe('tools over HTTP', () => {
  it('streams ToolCallStarted and ToolCallCompleted with the tool object the Agent UI reads', async () => {
    const { model, agentUrl } = await serveToolAgent();
    const response = await postRun(agentUrl, { message: 'look up fox' });
    (await model.nextCall()).callTools([{ id: 'call_1', name: 'lookup', arguments: { word: 'fox' } }]);
    const answer = await model.nextCall();
    answer.emit('A fox is a small canid.');
    answer.end();
    const events = (await readSse(response).rest()).map((frame) => frame.data);
    checkRunEvents(events, 'completed');
    const started = events.find((e) => e.event === 'ToolCallStarted');
    const completed = events.find((e) => e.event === 'ToolCallCompleted');
    expect(started?.event === 'ToolCallStarted' && started.tool).toMatchObject({
      tool_call_id: 'call_1',
      tool_name: 'lookup',
      tool_args: { word: 'fox' },
      tool_call_error: false,
      created_at: expect.any(Number) as unknown,
    });
    expect(completed?.event === 'ToolCallCompleted' && completed.tool).toMatchObject({
      tool_call_id: 'call_1',
      result: 'fox: a small canid',
      content: 'fox: a small canid',
      metrics: { start_time: expect.any(Number) as unknown, duration: expect.any(Number) as unknown },
    });
    // Agno's event carries what the model was told at its top level too.
    expect(completed).toMatchObject({ content: 'fox: a small canid' });
    const last = events.at(-1);
    expect(last?.event === 'RunCompleted' && last.tools.map((t) => t.tool_call_id)).toEqual(['call_1']);
  });

  it('ends the stream at RunPaused, continues with Agno form fields, and refuses a second continue', async () => {
    const { model, agentUrl } = await serveToolAgent();
    const response = await postRun(agentUrl, { message: 'publish it' });
    (await model.nextCall()).callTools([{ id: 'call_pub', name: 'publish' }]);
    const paused = (await readSse(response).rest()).map((frame) => frame.data);
    expect(paused.map((e) => e.event)).toEqual(['RunStarted', 'RunPaused']);
    const runId = paused[0]!.run_id;
    const record = (await (await fetch(`${agentUrl}/runs/${runId}`)).json()) as { status: string };
    expect(record.status).toBe('paused');

    const form = new FormData();
    form.set('tools', JSON.stringify([{ tool_call_id: 'call_pub', confirmed: true }]));
    form.set('session_id', paused[0]!.session_id);
    form.set('stream', 'true');
    const continued = await fetch(`${agentUrl}/runs/${runId}/continue`, { method: 'POST', body: form });
    const answer = await model.nextCall();
    expect(answer.messages.at(-1)).toEqual({ role: 'tool', tool_call_id: 'call_pub', content: 'published' });
    answer.emit('Done.');
    answer.end();
    const rest = (await readSse(continued).rest()).map((frame) => frame.data);
    expect(rest[0]).toMatchObject({ event: 'RunContinued', seq: 3 });
    checkRunEvents([...paused, ...rest], 'completed');

    const again = await fetch(`${agentUrl}/runs/${runId}/continue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tools: [{ tool_call_id: 'call_pub', confirmed: true }] }),
    });
    await expectError(again, 409, 'RUN_NOT_PAUSED');
    await expectError(
      await fetch(`${agentUrl}/runs/nope/continue`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ tools: [] }),
      }),
      404,
      'RUN_NOT_FOUND',
    );
  });

  it('answers a non-streamed run that pauses with the paused run, and a non-streamed continue with the output', async () => {
    const { model, agentUrl } = await serveToolAgent();
    const answer = postRun(agentUrl, { message: 'publish it', stream: false });
    (await model.nextCall()).callTools([{ id: 'call_pub', name: 'publish' }]);
    const response = await answer;
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const paused = (await response.json()) as PausedRunOutput;
    pausedRunOutput.parse(paused); // the document's schema of it
    expect(paused).toMatchObject({ status: 'paused', finished_at: null, content: '' });
    expect(paused.tools).toEqual([
      expect.objectContaining({
        tool_call_id: 'call_pub',
        tool_name: 'publish',
        requires_confirmation: true,
        status: 'awaiting_confirmation',
      }),
    ]);
    expect(paused.metrics.duration).toBeGreaterThanOrEqual(0);

    const form = new FormData();
    form.set('tools', JSON.stringify([{ tool_call_id: 'call_pub', confirmed: true }]));
    form.set('stream', 'false');
    const continued = fetch(`${agentUrl}/runs/${paused.run_id}/continue`, { method: 'POST', body: form });
    const turn = await model.nextCall();
    turn.emit('Published.');
    turn.end();
    const output = runOutput.parse(await (await continued).json());
    expect(output).toMatchObject({ status: 'completed', content: 'Published.' });
    expect(output.tools).toEqual([
      expect.objectContaining({ tool_call_id: 'call_pub', status: 'completed', result: 'published' }),
    ]);
  });

  it('answers 400 naming the problem to tools that are not JSON, and 422 to JSON that is not an array of answers', async () => {
    const { model, agentUrl } = await serveToolAgent();
    const response = await postRun(agentUrl, { message: 'publish it' });
    (await model.nextCall()).callTools([{ id: 'call_pub', name: 'publish' }]);
    const runId = (await readSse(response).rest())[0]!.data.run_id;
    const continueWith = (tools: string) => {
      const form = new FormData();
      form.set('tools', tools);
      return fetch(`${agentUrl}/runs/${runId}/continue`, { method: 'POST', body: form });
    };
    const notJson = await expectError(await continueWith('[{"tool_call_id":'), 400, 'INVALID_INPUT');
    expect(notJson.detail).toMatch(/^tools: not valid JSON \(/);
    const jsonBody = await expectError(
      await fetch(`${agentUrl}/runs/${runId}/continue`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ tools: 'not json' }),
      }),
      400,
      'INVALID_INPUT',
    );
    expect(jsonBody.detail).toMatch(/^tools: not valid JSON/);
    const notArray = await expectError(
      await continueWith('{"tool_call_id":"call_pub","confirmed":true}'),
      422,
      'INVALID_INPUT',
    );
    expect(notArray.field).toBe('tools');
    // Still paused: the refused answers changed nothing.
    const record = (await (await fetch(`${agentUrl}/runs/${runId}`)).json()) as { status: string };
    expect(record.status).toBe('paused');
  });
});
