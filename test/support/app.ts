/**
 * A real app on an ephemeral 127.0.0.1 port (closed after each test), agents on a fake model, and
 * requests to it: a run posted, an error answer checked, a raw request fetch cannot send.
 */
import type { Server } from 'node:http';
import { connect } from 'node:net';
import { afterEach, expect } from 'vitest';
import { Agent, createOrchestrator, type OrchestratorOptions } from '../../src/index.js';
import type { ChatModel } from '../../src/model/chat-model.js';
import { createApp, startServer, type CreateAppOptions, type RunstateApp } from '../../src/server/index.js';
import { createFakeModel, type FakeModel } from '../../src/testing/index.js';
import { confirmingTool } from './confirming-tool.js';

/** A started test server. */
export interface TestServer {
  url: string;
  /** The node:http server (its connections, for a test that waits for them to close). */
  server: Server;
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
  const test: TestServer = { url: server.url, server: server.server, runstate, close: () => server.close() };
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

/** A server with one agent, `editor`, whose `publish` tool pauses its runs until a person confirms the call. */
export async function serveConfirmingAgent() {
  const model = createFakeModel();
  const agent = new Agent({
    name: 'Editor',
    model,
    tools: [confirmingTool()],
    orchestrator: createOrchestrator(),
  });
  const server = await serve({ agents: [agent] });
  return { model, agent, url: server.url, agentUrl: `${server.url}/agents/editor` };
}

/** A server with {@link twoAgents} on a fake model the test drives. */
export async function serveFake(
  options: Omit<CreateAppOptions, 'agents'> & { orchestrator?: OrchestratorOptions } = {},
): Promise<TestServer & { model: FakeModel; agents: Agent[]; story: string }> {
  const { orchestrator, ...appOptions } = options;
  const model = createFakeModel();
  const agents = twoAgents(model, orchestrator);
  const server = await serve({ ...appOptions, agents });
  return { ...server, model, agents, story: `${server.url}/agents/story-writer-agent` };
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

/** Checks a {@link rawRequest} answer: `status`, a JSON content type and exactly `body`. */
export function expectRawError(
  answer: { status: number; headers: string; body: string },
  status: number,
  body: { detail: string; code: string },
): void {
  expect(answer.status).toBe(status);
  expect(answer.headers).toMatch(/content-type: application\/json/i);
  expect(JSON.parse(answer.body)).toEqual(body);
}

/**
 * A raw HTTP/1.1 exchange over a socket: for what fetch refuses to send (bad targets, odd header
 * bytes, malformed bodies). `head` is the request line and headers, `body` what follows them.
 */
export async function rawRequest(
  url: string,
  head: string,
  body = '',
): Promise<{ status: number; headers: string; body: string }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.end(Buffer.from(`${head}\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n${body}`, 'latin1'));
  let answer = '';
  for await (const chunk of socket) answer += (chunk as Buffer).toString('latin1');
  const [headers = '', answerBody = ''] = answer.split('\r\n\r\n');
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(headers)?.[1]), headers, body: answerBody };
}
