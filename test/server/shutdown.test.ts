import { describe, expect, it } from 'vitest';
import { postRun, serveFake } from '../support/app.js';
import { readSse } from '../support/sse.js';

describe('graceful shutdown', () => {
  it('sends RunCancelled (reason shutdown) to every open stream, ends them, then closes', async () => {
    const server = await serveFake();
    const { url, story, model } = server;
    const streamed = readSse(await postRun(story, { message: 'One' }));
    const other = readSse(await postRun(`${url}/agents/essay-writer-agent`, { message: 'Two' }));
    const accepted = await postRun(story, { message: 'Three', background: true });
    const background = (await accepted.json()) as { run_id: string };
    const follower = readSse(await fetch(`${story}/runs/${background.run_id}/events`));
    for (const reader of [streamed, other, follower]) expect((await reader.next())?.event).toBe('RunStarted');
    const calls = await Promise.all([model.nextCall(), model.nextCall(), model.nextCall()]);
    calls[0].emit('partial');
    expect((await streamed.next())?.data).toMatchObject({ content: 'partial' });

    const closing = server.close();
    for (const reader of [streamed, other, follower]) {
      const rest = await reader.rest(); // resolves once the server ended the stream
      expect(rest.at(-1)?.data).toMatchObject({
        event: 'RunCancelled',
        reason: 'shutdown',
        status: 'cancelled',
      });
    }
    await closing;
    expect(calls.every((call) => call.signal.aborted)).toBe(true);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});
