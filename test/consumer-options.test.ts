import { describe, expect, it } from 'vitest';
import { Agent, createOrchestrator, RunstateError } from '../src/index.js';
import { createFakeModel } from '../src/testing/index.js';

// The option types accept `undefined` (`securityKey: process.env.KEY` under exactOptionalPropertyTypes,
// see test/consumer.test.ts); so an option given as `undefined` must mean what leaving it out means.

const retryable = () =>
  new RunstateError('MODEL_REQUEST_FAILED', 'upstream 503', {
    status: 503,
    retryable: true,
    retryAfterMs: 1,
  });

describe('an option given as undefined', () => {
  it('is the default: a retry policy of undefined fields retries as the default one does', async () => {
    const model = createFakeModel();
    const agent = new Agent({
      name: 'Writer',
      model,
      limits: {
        idleTimeoutMs: undefined,
        timeoutMs: undefined,
        retry: {
          maxAttempts: undefined,
          baseDelayMs: undefined,
          maxDelayMs: undefined,
          maxRetryAfterMs: undefined,
        },
      },
    });
    const output = agent.run('hello');
    (await model.nextCall()).fail(retryable());
    const second = await model.nextCall();
    second.emit('ok');
    second.end();
    expect(await output).toMatchObject({ status: 'completed', content: 'ok' });
  });

  it("leaves the orchestrator's limits in place", async () => {
    const model = createFakeModel();
    const orchestrator = createOrchestrator({ limits: { retry: { maxAttempts: 1 } } });
    const agent = new Agent({
      name: 'Writer',
      model,
      orchestrator,
      limits: { idleTimeoutMs: undefined, timeoutMs: undefined, retry: undefined },
    });
    const output = agent.run('hello');
    (await model.nextCall()).fail(retryable());
    expect(await output).toMatchObject({ status: 'failed', error: { code: 'MODEL_REQUEST_FAILED' } });
    expect(model.calls).toHaveLength(1);
    await orchestrator.shutdown();
  });
});
