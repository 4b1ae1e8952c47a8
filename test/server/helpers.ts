/**
 * Shared by the server tests: a real app on an ephemeral 127.0.0.1 port, agents on a fake model,
 * and an SSE reader built on eventsource-parser.
 */
import { connect } from 'node:net';
import { EventSourceParserStream } from 'eventsource-parser/stream';
import { afterEach, expect } from 'vitest';
import { Agent, createOrchestrator, type OrchestratorOptions, type RunEvent } from '../../src/index.js';
import type { ChatModel } from '../../src/model/chat-model.js';
import { createApp, startServer, type CreateAppOptions, type RunstateApp } from '../../src/server/index.js';
import { createFakeModel, type FakeModel } from '../../src/testing/index.js';

/** A started test server. */
export interface TestServer {
  url: string;
  runstate: RunstateApp;
  /** Graceful close (the one `startServer` gives). */
  close(): Promise<void>;
}

const open: TestServer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((server) => server.close()));
});

/** Serves `createApp(options)` on 127.0.0.1, port 0; closed after the test. */
export async function serve(options: CreateAppOptions): Promise<TestServer> {
  const runstate = createApp({ logger: { error: () => undefined }, ...options });
  const server = await startServer(runstate, { port: 0, host: '127.0.0.1', graceMs: 1_000 });
  const test: TestServer = { url: server.url, runstate, close: () => server.close() };
  open.push(test);
  return test;
}

/** Two agents (story-writer-agent, essay-writer-agent) on one orchestrator and one model. */
export function twoAgents(model: ChatModel = createFakeModel(), options: OrchestratorOptions = {}): Agent[] {
  const orchestrator = createOrchestrator(options);
  return [
    new Agent({ name: 'Story Writer Agent', description: 'Writes stories.', model, orchestrator }),
    new Agent({ name: 'Essay Writer Agent', model, orchestrator }),
  ];
}

/** A server with {@link twoAgents} on a fake model the test drives. */
export async function serveFake(
  options: Omit<CreateAppOptions, 'agents'> & { orchestrator?: OrchestratorOptions } = {},
): Promise<TestServer & { model: FakeModel; agents: Agent[]; story: string }> {
  const model = createFakeModel();
  const agents = twoAgents(model, options.orchestrator);
  const server = await serve({ ...options, agents });
  return { ...server, model, agents, story: `${server.url}/agents/story-writer-agent` };
}

/** One parsed SSE frame: its `id:` and `event:` lines, and the JSON of its `data:` line. */
export interface Frame {
  id: string | undefined;
  event: string | undefined;
  data: RunEvent;
}

/** Reads an event-stream response frame by frame. */
export interface SseReader {
  /** The next frame, or `undefined` once the server ended the stream. */
  next(): Promise<Frame | undefined>;
  /** Every frame until the end of the stream. */
  rest(): Promise<Frame[]>;
  /** Resolves with the text of the next comment line (`: ping`). */
  nextComment(): Promise<string>;
}

/** Parses a fetch response as server-sent events with a real SSE parser. */
export function readSse(response: Response): SseReader {
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  let commentWaiters: Array<(comment: string) => void> = [];
  const parser = new EventSourceParserStream({
    onError: 'terminate',
    onComment: (comment) => {
      const waiters = commentWaiters;
      commentWaiters = [];
      for (const resolve of waiters) resolve(comment);
    },
  });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).pipeThrough(parser).getReader();
  const next = async (): Promise<Frame | undefined> => {
    const { value, done } = await reader.read();
    if (done) return undefined;
    const data = JSON.parse(value.data) as RunEvent;
    // The frame's lines agree with its JSON.
    expect(value.event).toBe(data.event);
    expect(value.id).toBe(String(data.seq));
    return { id: value.id, event: value.event, data };
  };
  return {
    next,
    async rest() {
      const frames: Frame[] = [];
      for (let frame = await next(); frame; frame = await next()) frames.push(frame);
      return frames;
    },
    nextComment: () => new Promise((resolve) => commentWaiters.push(resolve)),
  };
}

/** Starts a streamed run with a JSON body. */
export function postRun(
  agentUrl: string,
  body: Record<string, unknown>,
  init: RequestInit = {},
): Promise<Response> {
  return fetch(`${agentUrl}/runs`, {
    method: 'POST',
    ...init,
    headers: { 'content-type': 'application/json', ...init.headers },
    body: JSON.stringify(body),
  });
}

/** The JSON of an error answer, after checking its status and shape. */
export async function expectError(
  response: Response,
  status: number,
  code: string,
): Promise<Record<string, unknown>> {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await response.json()) as Record<string, unknown>;
  expect(body).toMatchObject({ code });
  expect(typeof body.detail).toBe('string');
  expect(JSON.stringify(body)).not.toMatch(/\n\s+at |<html/i);
  return body;
}

/** A raw HTTP/1.1 exchange over a socket: for what fetch refuses to send (bad targets, odd header bytes). */
export async function rawRequest(
  url: string,
  head: string,
): Promise<{ status: number; headers: string; body: string }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.end(Buffer.from(`${head}\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`, 'latin1'));
  let answer = '';
  for await (const chunk of socket) answer += (chunk as Buffer).toString('latin1');
  const [headers = '', body = ''] = answer.split('\r\n\r\n');
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(headers)?.[1]), headers, body };
}
