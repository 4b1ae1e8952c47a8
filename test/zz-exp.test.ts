import { it } from 'vitest';
import { OpenAIChat } from '../src/model/openai-chat.js';
import { createFakeOpenAIServer } from '../src/testing/fake-openai-server.js';
it('timings', async () => {
  const server = await createFakeOpenAIServer();
  const model = new OpenAIChat({ id: 'm', apiKey: 'k', baseURL: server.url });
  for (const fault of ['none', 'reset', 'truncate'] as const) {
    const t = performance.now();
    for (let i = 0; i < 100; i++) {
      server.enqueue({ fault, chunks: ['a', 'b'] } as never);
      try { for await (const _ of model.stream({ messages: [], signal: new AbortController().signal })) { /* */ } } catch { /* */ }
    }
    console.log(fault, ((performance.now() - t) / 100).toFixed(2), 'ms');
  }
  let t = performance.now(); let n = 0;
  for await (const c of new OpenAIChat({ id: 'fake?chunks=10000', apiKey: 'k', baseURL: server.url }).stream({ messages: [], signal: new AbortController().signal })) if (c.type === 'delta') n++;
  console.log('10000 chunks', n, (performance.now() - t).toFixed(0), 'ms');
  t = performance.now();
  const m2 = new OpenAIChat({ id: 'fake?chunks=100&delayMs=10', apiKey: 'k', baseURL: server.url });
  const counts = await Promise.all(Array.from({ length: 1000 }, async () => { let k = 0; for await (const c of m2.stream({ messages: [], signal: new AbortController().signal })) if (c.type === 'delta') k++; return k; }));
  console.log('1000x100@10ms', counts.every((k) => k === 100), (performance.now() - t).toFixed(0), 'ms');
  await server.close();
}, 60000);
