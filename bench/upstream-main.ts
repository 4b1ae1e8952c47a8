/**
 * The benchmark's OpenAI-compatible upstream, in a process of its own. The model name picks the
 * stream (see {@link Workloads} in `bench/config.ts`):
 * - `burst:<n>`: n chunks as fast as the socket takes them (one write; the client reads them in
 *   as many pieces as its socket reads take);
 * - `paced:<n>:<ms>`: one chunk every <ms> ms, so that every socket read holds one delta, as a real
 *   model streams. One timer serves every paced stream: a timer per stream would make the upstream
 *   the busiest process of the machine;
 * - `stall:<n>`: n chunks, then nothing until the client goes away; the upstream then sends the
 *   parent an `upstream-closed` notice with the time (CLOCK_MONOTONIC, shared by all processes).
 * Frames have the shape and size of OpenAI's (id, created, model, service tier, fingerprint,
 * logprobs, usage null, obfuscation), so that parsing them costs what parsing OpenAI's does.
 *
 * @packageDocumentation
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WORDS } from './config.js';
import { monotonicNs, notifyParent, serveTasks } from './processes.js';

function framesOf(model: string) {
  const head =
    `data: {"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012","object":"chat.completion.chunk",` +
    `"created":${Math.floor(Date.now() / 1000)},"model":${JSON.stringify(model)},` +
    `"service_tier":"default","system_fingerprint":"fp_0ba0d124f1","choices":`;
  const tail = `,"usage":null,"obfuscation":"Xq3vJ"}\n\n`;
  return {
    delta: (i: number) =>
      `${head}[{"index":0,"delta":{${i === 0 ? '"role":"assistant",' : ''}"content":${JSON.stringify(WORDS[i % WORDS.length])},"refusal":null},"logprobs":null,"finish_reason":null}]${tail}`,
    end: (completionTokens: number) =>
      `${head}[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]${tail}` +
      `${head}[],"usage":{"prompt_tokens":12,"completion_tokens":${completionTokens},"total_tokens":${12 + completionTokens}},"obfuscation":"b4"}\n\n` +
      'data: [DONE]\n\n',
  };
}

/** A stream paced by the shared timer. */
interface Paced {
  res: ServerResponse;
  frames: ReturnType<typeof framesOf>;
  sent: number;
  count: number;
}
const pacedByDelay = new Map<number, Set<Paced>>();

function pace(stream: Paced, delayMs: number): void {
  let streams = pacedByDelay.get(delayMs);
  if (!streams) {
    const set = new Set<Paced>();
    pacedByDelay.set(delayMs, (streams = set));
    const timer = setInterval(() => {
      for (const s of set) {
        if (s.res.destroyed) set.delete(s);
        else if (s.sent < s.count) s.res.write(s.frames.delta(s.sent++));
        else {
          s.res.end(s.frames.end(s.count));
          set.delete(s);
        }
      }
      if (set.size === 0) {
        clearInterval(timer);
        pacedByDelay.delete(delayMs);
      }
    }, delayMs);
  }
  streams.add(stream);
}

const burstBodies = new Map<string, string>();

function answer(res: ServerResponse, model: string, tag: string): void {
  const [mode = '', a = '0', b = '0'] = model.split(':');
  const count = Number(a);
  const frames = framesOf(model);
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  if (mode === 'burst') {
    let body = burstBodies.get(model);
    if (body === undefined) {
      body = '';
      for (let i = 0; i < count; i++) body += frames.delta(i);
      burstBodies.set(model, (body += frames.end(count)));
    }
    res.end(body);
  } else if (mode === 'paced') {
    pace({ res, frames, sent: 0, count }, Number(b));
  } else if (mode === 'stall') {
    for (let i = 0; i < count; i++) res.write(frames.delta(i));
    res.once('close', () => notifyParent({ type: 'upstream-closed', tag, at: monotonicNs() }));
  } else {
    res.end(`data: {"error":{"message":"unknown bench model ${JSON.stringify(model)}"}}\n\n`);
  }
}

const server = createServer((req, res) => {
  let raw = '';
  req.setEncoding('utf8');
  req.on('data', (part: string) => (raw += part));
  req.on('end', () => {
    const body = JSON.parse(raw) as { model: string; messages: { content: string }[] };
    answer(res, body.model, body.messages.at(-1)?.content ?? '');
  });
});
server.keepAliveTimeout = 60_000;
// A large accept queue: the mass scenario opens thousands of connections within seconds.
await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 8192 }, resolve));

serveTasks(
  (task) => Promise.reject(new Error(`unknown task ${task.type}`)),
  () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  },
);
notifyParent({ type: 'ready', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` });
