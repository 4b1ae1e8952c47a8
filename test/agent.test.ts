import { describe, expect, it, vi } from 'vitest';
import {
  Agent,
  agentIdFromName,
  createOrchestrator,
  RunEvent,
  RunStatus,
  type RunEvent as Event,
} from '../src/index.js';
import { checkRunEvents, createFakeModel } from '../src/testing/index.js';

describe('Agent', () => {
  it('streams a run whose events all carry the run id known at once', async () => {
    const model = createFakeModel({
      onCall: (call) => {
        call.emit('Hello, ');
        call.emit('world.');
        call.end();
      },
    });
    const agent = new Agent({
      name: 'Story Writer',
      model,
      description: 'Writes stories.',
      instructions: ['Be brief.'],
    });
    const stream = agent.run('Say hello', { stream: true });
    const events: Event[] = [];
    for await (const chunk of stream) events.push(chunk);
    checkRunEvents(events, RunStatus.completed);
    expect(events.every((e) => e.run_id === stream.runId)).toBe(true);
    expect(events.at(-1)).toMatchObject({ event: RunEvent.runCompleted, content: 'Hello, world.' });
    expect(model.calls[0]!.messages[0]).toEqual({ role: 'system', content: 'Writes stories.\n\nBe brief.' });
    expect((await agent.getRun(stream.runId))?.status).toBe('completed');
  });

  it('cancels from another task: cancelRun is true once, the stream ends with RunCancelled', async () => {
    const model = createFakeModel();
    const agent = new Agent({ name: 'StorytellerAgent', model });
    let runId: string | undefined;
    const seen: Event[] = [];
    let contentSeen!: () => void;
    const firstContent = new Promise<void>((resolve) => (contentSeen = resolve));
    const reading = (async () => {
      for await (const chunk of agent.run('Write a long story', { stream: true })) {
        runId ??= chunk.run_id;
        seen.push(chunk);
        if (chunk.event === RunEvent.runContent) contentSeen();
      }
    })();
    const call = await model.nextCall();
    call.emit('Once');
    await firstContent;
    expect(agent.cancelRun(runId!)).toBe(true);
    expect(agent.cancelRun(runId!)).toBe(false);
    await reading;
    checkRunEvents(seen, 'cancelled');
    expect(seen.at(-1)).toMatchObject({ event: 'RunCancelled', reason: 'code' });
    expect(call.signal.aborted).toBe(true);
  });

  it('cancels the run (client_disconnect) when the consumer leaves the loop early', async () => {
    const model = createFakeModel({ onCall: (call) => call.emit('first') });
    const agent = new Agent({ name: 'a', model });
    const stream = agent.run('hi', { stream: true });
    for await (const chunk of stream) if (chunk.event === RunEvent.runContent) break;
    const output = await stream.result;
    expect(output).toMatchObject({
      status: 'cancelled',
      cancel_reason: 'client_disconnect',
      content: 'first',
    });
    expect(model.calls[0]!.signal.aborted).toBe(true);
  });

  it('cancels the run when the consumer gives up on the stream before reading anything', async () => {
    const model = createFakeModel();
    const agent = new Agent({ name: 'Writer', model });
    const stream = agent.run('Hi', { stream: true });
    const reader = stream[Symbol.asyncIterator]();
    await reader.return?.();
    expect(await stream.result).toMatchObject({ status: 'cancelled', cancel_reason: 'client_disconnect' });
    expect(await reader.next()).toEqual({ done: true, value: undefined });
  });

  it('hands its inspect option to every run actor, and refuses it with a shared orchestrator', async () => {
    const inspected: string[] = [];
    const model = createFakeModel({ onCall: (call) => call.end() });
    const agent = new Agent({ name: 'Writer', model, inspect: (event) => inspected.push(event.type) });
    await agent.run('Hi');
    expect(inspected).toContain('@xstate.actor');
    expect(inspected.filter((type) => type === '@xstate.snapshot').length).toBeGreaterThan(2);
    expect(
      () => new Agent({ name: 'Other', model, orchestrator: agent.orchestrator, inspect: () => {} }),
    ).toThrow(/pass it to createOrchestrator/);
  });

  it('resolves a non-streamed run with its output', async () => {
    const model = createFakeModel({
      onCall: (call) => {
        call.emit('42');
        call.end({ usage: { input_tokens: 5, output_tokens: 1, total_tokens: 6 } });
      },
    });
    const output = await new Agent({ name: 'a', model }).run('answer?');
    expect(output).toMatchObject({ status: 'completed', content: '42', error: null });
    expect(output.metrics.total_tokens).toBe(6);
  });

  it('only cancels and reports its own runs when agents share an orchestrator', async () => {
    const orchestrator = createOrchestrator();
    const model = createFakeModel();
    const writer = new Agent({ name: 'writer', model, orchestrator });
    const critic = new Agent({ name: 'critic', model, orchestrator });
    const stream = writer.run('draft', { stream: true });
    await model.nextCall();
    expect(await critic.getRun(stream.runId)).toBeUndefined();
    expect(critic.cancelRun(stream.runId)).toBe(false);
    expect(writer.cancelRun(stream.runId)).toBe(true);
  });

  it('after shutdown, rejects a run in its promise form (so .catch catches it) and throws in its stream form', async () => {
    const agent = new Agent({ name: 'a', model: createFakeModel() });
    await agent.orchestrator.shutdown();
    let caught: unknown;
    // Called without await: a synchronous throw would escape this .catch and crash the process.
    await agent.run('late').catch((error: unknown) => (caught = error));
    expect(caught).toMatchObject({ name: 'RunstateError', code: 'SHUTTING_DOWN' });
    expect(() => agent.run('late', { stream: true })).toThrow(
      expect.objectContaining({ code: 'SHUTTING_DOWN' }),
    );
  });

  it('rejects a run in a session of another agent, which the model never sees', async () => {
    const orchestrator = createOrchestrator();
    const model = createFakeModel({ onCall: (call) => call.end() });
    const writer = new Agent({ name: 'writer', model, orchestrator });
    const critic = new Agent({ name: 'critic', model, orchestrator });
    const first = await writer.run('draft');
    await expect(critic.run('review', { sessionId: first.session_id })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: `session ${first.session_id} belongs to agent writer, not critic`,
    });
    expect(model.calls).toHaveLength(1);
  });

  it('derives its id from its name', () => {
    expect(agentIdFromName('Story Writer Agent')).toBe('story-writer-agent');
    expect(new Agent({ name: 'StorytellerAgent', model: createFakeModel() }).id).toBe('storytelleragent');
    expect(new Agent({ name: 'x', id: 'custom', model: createFakeModel() }).id).toBe('custom');
  });

  it('runs offline by default when no OpenAI key is set', () => {
    vi.stubEnv('OPENAI_API_KEY', '');
    vi.stubEnv('OPENAI_BASE_URL', '');
    try {
      const agent = new Agent({ name: 'a' });
      expect(agent.model).toMatchObject({ id: 'gpt-5-mini', provider: 'offline' });
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
