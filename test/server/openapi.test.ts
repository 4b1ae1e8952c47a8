import { Validator } from '@seriousme/openapi-schema-validator';
import express, { type Express } from 'express';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import type { ErrorCode } from '../../machines/run-types.js';
import type { PausedRunOutput, RunEvent, RunOutput, RunRecord, SessionRecord } from '../../src/index.js';
import { createApp, type AgentJson } from '../../src/server/index.js';
import {
  createOpenApiDocument,
  type JsonSchema,
  type OpenApiDocument,
  type OperationObject,
} from '../../src/server/openapi.js';
import type { pausedRunOutput, sessionRecord } from '../../src/server/openapi-schemas.js';
import {
  agentResponse,
  configResponse,
  errorCode,
  errorResponse,
  runEvent,
  runOutput,
  runRecord,
  sessionDetail,
  sessionPage,
} from '../../src/server/openapi-schemas.js';
import { nextTurn } from '../../src/testing/index.js';
import { postRun, serveConfirmingAgent, serveFake, twoAgents } from '../support/app.js';
import { readSse } from '../support/sse.js';

/** Every `METHOD /path` the express app routes, read from its router (the mounted routers' routes). */
function servedRoutes(app: Express): string[] {
  interface Layer {
    route?: { path: string; methods: Record<string, boolean> };
    handle?: { stack?: Layer[] };
  }
  const routes: string[] = [];
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const method of Object.keys(layer.route.methods))
          routes.push(`${method.toUpperCase()} ${layer.route.path}`);
      } else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return routes;
}

/** Every `METHOD /path` of the document, with express's `:param` for `{param}`. */
function documentedRoutes(document: OpenApiDocument): string[] {
  return Object.entries(document.paths).flatMap(([path, operations]) =>
    Object.keys(operations).map((method) => `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
  );
}

function operation(
  document: OpenApiDocument,
  method: 'get' | 'post' | 'patch' | 'delete',
  path: string,
): OperationObject {
  const found = document.paths[path]?.[method];
  if (!found) throw new Error(`${method} ${path} is not documented`);
  return found;
}

async function validate(document: OpenApiDocument): Promise<void> {
  const validator = new Validator();
  // As a client reads it: JSON.
  const result = await validator.validate(JSON.parse(JSON.stringify(document)) as Record<string, unknown>);
  expect(result.errors ?? []).toEqual([]);
  expect(result.valid).toBe(true);
  expect(validator.version).toBe('3.1');
  // Every $ref points at something.
  expect(() => validator.resolveRefs()).not.toThrow();
}

async function getDocument(url: string): Promise<OpenApiDocument> {
  const response = await fetch(`${url}/openapi.json`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  return (await response.json()) as OpenApiDocument;
}

/** A schema of the document as zod, its references resolved: to check live requests and answers with. */
function documented(document: OpenApiDocument, schema: JsonSchema | undefined): z.ZodType {
  const resolve = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(resolve);
    if (typeof node !== 'object' || node === null) return node;
    // (`discriminator` is OpenAPI's hint to client generators, no JSON Schema keyword.)
    const { $ref, discriminator: _hint, ...rest } = node as Record<string, unknown>;
    if (typeof $ref === 'string') return resolve(document.components.schemas[$ref.split('/').at(-1)!]);
    return Object.fromEntries(Object.entries(rest).map(([key, value]) => [key, resolve(value)]));
  };
  expect(schema).toBeDefined();
  return z.fromJSONSchema(resolve(schema) as JsonSchema);
}

/** Checks that the document lists the answer's status for the route, and its JSON body's schema. */
async function expectDocumented(
  document: OpenApiDocument,
  route: `${'get' | 'post' | 'patch' | 'delete'} ${string}`,
  response: Response,
): Promise<unknown> {
  const [method, path] = route.split(' ') as ['get' | 'post' | 'patch' | 'delete', string];
  const listed = operation(document, method, path).responses[response.status];
  expect(listed, `${route} answered ${response.status}`).toBeDefined();
  const body: unknown = await response.json();
  const result = documented(document, listed?.content?.['application/json']?.schema).safeParse(body);
  expect(result.error, `${route} answered ${JSON.stringify(body).slice(0, 300)}`).toBeUndefined();
  return body;
}

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document, with and without a security key', async () => {
    await validate(createOpenApiDocument({ secured: false }));
    await validate(createOpenApiDocument({ secured: true }));
    // The validator does reject a broken document: a response without its required description.
    const broken = createOpenApiDocument({ secured: false });
    delete (broken.paths['/health']!.get!.responses['200'] as { description?: string }).description;
    expect(
      (await new Validator().validate(JSON.parse(JSON.stringify(broken)) as Record<string, unknown>)).valid,
    ).toBe(false);
  });

  it('documents every route the app serves, and no route it does not', async () => {
    const { url, runstate } = await serveFake();
    const served = servedRoutes(runstate.app);
    expect(served).toContain('POST /agents/:agent_id/runs/:run_id/cancel');
    // The API page's own files (its script, Swagger UI's) are routes, for their 405, not operations.
    const files = served.filter((route) => route.startsWith('GET /docs/'));
    expect(files.sort()).toEqual([
      'GET /docs/init.js',
      'GET /docs/swagger-ui-bundle.js',
      'GET /docs/swagger-ui.css',
    ]);
    const operations = served.filter((route) => !files.includes(route));
    expect(new Set(documentedRoutes(await getDocument(url)))).toEqual(new Set(operations));
  });

  it("serves the API page's files with the statuses of a static file server: 206, 416, 412", async () => {
    const { url } = await serveFake();
    const css = `${url}/docs/swagger-ui.css`;
    expect((await fetch(css, { headers: { range: 'bytes=0-10' } })).status).toBe(206);
    const past = await fetch(css, { headers: { range: 'bytes=999999999-' } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toMatch(/^bytes \*\/\d+$/);
    expect(await past.json()).toEqual({ detail: 'Range Not Satisfiable', code: 'INVALID_INPUT' });
    const failed = await fetch(css, { headers: { 'if-match': '"nope"' } });
    expect(failed.status).toBe(412);
    expect(await failed.json()).toEqual({ detail: 'Precondition Failed', code: 'INVALID_INPUT' });
  });

  it("names path parameters as the URL templates do, and uses Agno's operation ids", async () => {
    const { url } = await serveFake();
    const document = await getDocument(url);
    for (const [path, operations] of Object.entries(document.paths)) {
      const inTemplate = [...path.matchAll(/\{(\w+)\}/g)].map(([, name]) => name);
      for (const operation of Object.values(operations)) {
        const inPath = (operation.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name);
        expect(inPath).toEqual(inTemplate);
      }
    }
    const ids = Object.fromEntries(
      Object.entries(document.paths).flatMap(([path, operations]) =>
        Object.entries(operations).map(([method, operation]) => [
          `${method.toUpperCase()} ${path}`,
          operation.operationId,
        ]),
      ),
    );
    expect(ids).toMatchObject({
      'GET /': 'get_api_info',
      'GET /health': 'health_check',
      'GET /agents': 'get_agents',
      'GET /agents/{agent_id}': 'get_agent',
      'GET /teams': 'get_teams',
      'POST /agents/{agent_id}/runs': 'create_agent_run',
      'GET /agents/{agent_id}/runs': 'list_agent_runs',
      'GET /agents/{agent_id}/runs/{run_id}': 'get_agent_run',
      'POST /agents/{agent_id}/runs/{run_id}/cancel': 'cancel_agent_run',
      'GET /sessions': 'get_sessions',
      'GET /sessions/{session_id}': 'get_session_by_id',
      'GET /sessions/{session_id}/runs': 'get_session_runs',
      'DELETE /sessions/{session_id}': 'delete_session',
      'GET /config': 'get_config',
      'GET /sessions/{session_id}/runs/{run_id}': 'get_session_run',
      'POST /sessions/{session_id}/rename': 'rename_session',
      'PATCH /sessions/{session_id}': 'update_session',
      'DELETE /sessions': 'delete_sessions',
    });
    expect(new Set(Object.values(ids)).size).toBe(Object.keys(ids).length);
  });

  it('documents every status of a route, the error shape, the three encodings of a run request and the stream', () => {
    const document = createOpenApiDocument({ secured: true });
    const cancel = operation(document, 'post', '/agents/{agent_id}/runs/{run_id}/cancel');
    // (No 403: with a key, foreign hosts and origins are not refused.)
    expect(Object.keys(cancel.responses)).toEqual([
      '200',
      '400',
      '401',
      '404',
      '408',
      '409',
      '413',
      '417',
      '431',
      '500',
      '503',
    ]);
    // What the server answers before any route, on every route: a malformed request or no Host
    // (400), a body announced over the limit behind `Expect: 100-continue` (413), another `Expect`.
    const health = operation(document, 'get', '/health');
    expect(Object.keys(health.responses)).toEqual(['200', '400', '408', '413', '417', '431', '500']);
    expect(cancel.responses['409']?.content?.['application/json']?.schema).toEqual({
      $ref: '#/components/schemas/Error',
    });
    const error = document.components.schemas.Error!;
    expect(error.required).toEqual(['detail', 'code']);
    expect(error.properties?.code).toMatchObject({ enum: errorCode.options });

    const create = operation(document, 'post', '/agents/{agent_id}/runs');
    expect(Object.keys(create.requestBody?.content ?? {})).toEqual([
      'multipart/form-data',
      'application/x-www-form-urlencoded',
      'application/json',
    ]);
    expect(document.components.schemas.CreateRunRequest?.required).toEqual(['message']);
    expect(Object.keys(create.responses)).toEqual([
      '200',
      '202',
      '400',
      '401',
      '404',
      '408',
      '413',
      '415',
      '417',
      '422',
      '431',
      '500',
      '503',
    ]);
    expect(create.responses['200']?.content?.['text/event-stream']?.schema).toEqual({
      $ref: '#/components/schemas/RunEvent',
    });
    expect(Object.keys(document.components.schemas.RunEvent?.discriminator?.mapping ?? {})).toEqual([
      'RunStarted',
      'RunContent',
      'ReasoningStarted',
      'ReasoningCompleted',
      'ToolCallStarted',
      'ToolCallCompleted',
      'ToolCallError',
      'RunPaused',
      'RunContinued',
      'RunCompleted',
      'RunCancelled',
      'RunError',
    ]);
  });

  it('declares the bearer scheme on every route but the open ones when a key is set', () => {
    const secured = createOpenApiDocument({ secured: true });
    expect(Object.keys(secured.components.securitySchemes ?? {})).toEqual(['bearer']);
    expect(secured.components.securitySchemes?.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    const security = (path: string) => operation(secured, 'get', path).security;
    expect(security('/agents')).toEqual([{ bearer: [] }]);
    expect(security('/health')).toEqual([]);
    expect(security('/')).toEqual([]);
    expect(security('/openapi.json')).toEqual([]);
    const open = createOpenApiDocument({ secured: false });
    expect(open.components.securitySchemes).toBeUndefined();
    expect(operation(open, 'get', '/agents').responses['401']).toBeUndefined();
    // Foreign hosts and origins are refused (403) only without a key: with one, never.
    expect(operation(open, 'get', '/agents').responses['403']).toBeDefined();
    expect(operation(secured, 'get', '/agents').responses['403']).toBeUndefined();
    expect(operation(secured, 'post', '/agents/{agent_id}/runs').responses['403']).toBeUndefined();
  });

  it("gives the fields a request may leave empty examples the server takes (the page's Try it out fills them in)", () => {
    const { schemas } = createOpenApiDocument({ secured: false }).components;
    const examples = (schema: string, field: string) =>
      (schemas[schema]?.properties?.[field] as JsonSchema | undefined)?.examples;
    for (const field of ['session_id', 'user_id', 'images', 'audio', 'videos', 'files', 'input_files'])
      expect(examples('CreateRunRequest', field), field).toEqual(['']);
    for (const field of ['session_state', 'metadata', 'summary'])
      expect(examples('UpdateSessionRequest', field), field).toEqual(['']);
    // (A name may also be null: the example is the string's, the alternative the page fills in.)
    expect(JSON.stringify(schemas.UpdateSessionRequest?.properties?.session_name)).toContain(
      '"examples":["My session"]',
    );
    expect(examples('ResumeRunRequest', 'last_event_index')).toEqual([-1]);
    expect(examples('ResumeRunRequest', 'session_id')).toEqual(['']);
  });

  it('names the path an app mounted in another serves under, as its server (none at the root)', async () => {
    const { url } = await serveFake();
    expect((await getDocument(url)).servers).toBeUndefined();
    const runstate = createApp({ agents: twoAgents() });
    const outer = express();
    outer.use('/api', runstate.app);
    outer.use('/t/:tenant', runstate.app);
    const server = outer.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect((await getDocument(`${base}/api`)).servers).toEqual([{ url: '/api' }]);
      // Where the document says, the routes answer.
      expect((await fetch(`${base}/api/health`)).status).toBe(200);
      // A mount of a parameter matches any path: each gets its own server, past the few texts kept too.
      const tenants = Array.from({ length: 12 }, (_, i) => `/t/tenant-${i}`);
      for (const path of [...tenants, tenants[0]!])
        expect((await getDocument(`${base}${path}`)).servers, path).toEqual([{ url: path }]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await runstate.shutdown();
    }
  });

  it('stays open with a security key, as /docs does, while the data routes ask for the token', async () => {
    const { url } = await serveFake({ securityKey: 'sesame' });
    const document = await getDocument(url);
    expect(document.components.securitySchemes?.bearer?.scheme).toBe('bearer');
    expect((await fetch(`${url}/docs`)).status).toBe(200);
    expect((await fetch(`${url}/agents`)).status).toBe(401);
  });
});

describe('the document against live answers', () => {
  it('lists the 400 that every route with a path parameter answers to one it cannot decode', async () => {
    const { url } = await serveFake();
    const document = await getDocument(url);
    let checked = 0;
    for (const [path, operations] of Object.entries(document.paths)) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map(([, name]) => name);
      if (names.length === 0) continue;
      // Every parameter but the last one readable, as in `POST /agents/x/runs/%ZZ/cancel`.
      const target = path.replace(/\{(\w+)\}/g, (_, name: string) => (name === names.at(-1) ? '%ZZ' : 'x'));
      for (const method of Object.keys(operations) as Array<'get' | 'post' | 'patch' | 'delete'>) {
        const response = await fetch(`${url}${target}`, { method: method.toUpperCase() });
        expect(response.status, `${method} ${path}`).toBe(400);
        expect(await expectDocumented(document, `${method} ${path}`, response)).toMatchObject({
          code: 'INVALID_INPUT',
        });
        checked++;
      }
    }
    expect(checked).toBe(14);
  });

  it('lists the 400 that every route reading a body answers to a form field it cannot decode, and the 422 of one sent twice', async () => {
    const { url } = await serveFake();
    const document = await getDocument(url);
    let checked = 0;
    for (const [path, operations] of Object.entries(document.paths)) {
      const target = path.replace('{agent_id}', 'story-writer-agent').replace(/\{(\w+)\}/g, 'x');
      for (const [method, spec] of Object.entries(operations) as Array<
        ['get' | 'post' | 'patch' | 'delete', OperationObject]
      >) {
        const form = spec.requestBody?.content?.['application/x-www-form-urlencoded']?.schema;
        if (form === undefined) continue;
        // Its first field: the body is read, and refused, before the path's ids are looked up.
        const fields = documented(document, form) as z.ZodObject;
        const field = Object.keys(fields.shape)[0]!;
        const route = `${method} ${path}` as const;
        const undecodable = await fetch(`${url}${target}`, {
          method: method.toUpperCase(),
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: `${field}=%FF`,
        });
        expect(undecodable.status, route).toBe(400);
        expect(await expectDocumented(document, route, undecodable)).toMatchObject({ field });
        // (A field sent twice is refused once the route's ids are found: its 422 is checked in routes.test.ts.)
        expect(Object.keys(spec.responses), route).toContain('422');
        checked++;
      }
    }
    expect(checked).toBe(6);
  });

  it('answers the routes without parameters as their schemas say', async () => {
    const { url } = await serveFake();
    const document = await getDocument(url);
    for (const path of ['/', '/health', '/config', '/models', '/agents', '/teams', '/workflows']) {
      const response = await fetch(`${url}${path}`);
      expect(response.status, path).toBe(200);
      await expectDocumented(document, `get ${path}`, response);
    }
  });

  it('answers GET /sessions as SessionPage says, and a limit or page past its range with a listed 422', async () => {
    const { url } = await serveFake();
    const document = await getDocument(url);
    await expectDocumented(document, 'get /sessions', await fetch(`${url}/sessions?limit=1000`));
    for (const query of [`limit=${'9'.repeat(400)}`, `page=${'9'.repeat(400)}`, 'limit=1001']) {
      const response = await fetch(`${url}/sessions?${query}`);
      expect(response.status, query).toBe(422);
      await expectDocumented(document, 'get /sessions', response);
    }
  });

  it('describes the events of a resumable stream and of its resume, with their event_index', async () => {
    const { url, story, model } = await serveFake();
    const document = await getDocument(url);
    const schemaOf = (method: 'get' | 'post', path: string) =>
      documented(
        document,
        operation(document, method, path).responses['200']?.content?.['text/event-stream']?.schema,
      );
    // (The runtime's event type has no `event_index`: only these streams add it.)
    const indexOf = ({ data }: { data: object }) => (data as { event_index?: unknown }).event_index;
    const streamed = readSse(await postRun(story, { message: 'Hi', background: true, stream: true }));
    const started = (await streamed.next())!.data;
    const call = await model.nextCall();
    call.emit('Once');
    call.end();
    const frames = [{ data: started }, ...(await streamed.rest())];
    expect(frames.map(indexOf)).toEqual([0, 1, 2]);
    const resumed = await fetch(`${story}/runs/${started.run_id}/resume`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ last_event_index: 0 }),
    });
    const resumedFrames = await readSse(resumed).rest();
    expect(resumedFrames.map(indexOf)).toEqual([1, 2]);
    const runs = schemaOf('post', '/agents/{agent_id}/runs');
    const resume = schemaOf('post', '/agents/{agent_id}/runs/{run_id}/resume');
    for (const { data } of frames) expect(runs.safeParse(data).error).toBeUndefined();
    for (const { data } of resumedFrames) expect(resume.safeParse(data).error).toBeUndefined();
    // Still strict: a field no event has is refused.
    expect(resume.safeParse({ ...started, surprise: 1 }).success).toBe(false);
  });

  it('describes the run bodies as the routes take them: a message not blank, tools as JSON text in a form', async () => {
    const { model, url, agentUrl } = await serveConfirmingAgent();
    const document = await getDocument(url);
    const body = (path: string, type: string) =>
      documented(document, operation(document, 'post', path).requestBody?.content[type]?.schema);

    const create = body('/agents/{agent_id}/runs', 'application/json');
    for (const message of ['', ' \t\n', '\u00a0\ufeff']) {
      expect(create.safeParse({ message }).success, JSON.stringify(message)).toBe(false);
      const refused = await postRun(agentUrl, { message });
      expect(refused.status).toBe(422);
      expect(await expectDocumented(document, 'post /agents/{agent_id}/runs', refused)).toMatchObject({
        field: 'message',
      });
    }
    expect(create.safeParse({ message: ' Hi ' }).success).toBe(true);

    const paused = postRun(agentUrl, { message: 'publish it', stream: false });
    (await model.nextCall()).callTools([{ id: 'call_pub', name: 'publish' }]);
    const { run_id } = (await expectDocumented(document, 'post /agents/{agent_id}/runs', await paused)) as {
      run_id: string;
    };

    const continuePath = '/agents/{agent_id}/runs/{run_id}/continue';
    const answers = [{ tool_call_id: 'call_pub', confirmed: true }];
    for (const type of ['multipart/form-data', 'application/x-www-form-urlencoded']) {
      const form = body(continuePath, type);
      expect(form.safeParse({ tools: JSON.stringify(answers) }).success, type).toBe(true);
      expect(form.safeParse({ tools: answers }).success, type).toBe(false);
    }
    const json = body(continuePath, 'application/json');
    const sent = { tools: JSON.stringify(answers), stream: false };
    expect(json.safeParse(sent).success).toBe(true);
    expect(json.safeParse({ tools: answers }).success).toBe(true);
    // What the document allows in JSON, the route takes: the answers as JSON text.
    const continued = fetch(`${agentUrl}/runs/${run_id}/continue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(sent),
    });
    const turn = await model.nextCall();
    turn.emit('Published.');
    turn.end();
    const response = await continued;
    expect(response.status).toBe(200);
    expect(await expectDocumented(document, `post ${continuePath}`, response)).toMatchObject({
      status: 'completed',
    });
  });
});

describe('the schemas of what the server takes', () => {
  const document = createOpenApiDocument({ secured: false, prometheus: true });
  const body = (method: 'post' | 'patch', path: string) => operation(document, method, path).requestBody;
  const create = () =>
    documented(document, body('post', '/agents/{agent_id}/runs')?.content['application/json']?.schema);

  it('show the defaults a request without the field gets', () => {
    const { properties } = document.components.schemas.CreateRunRequest!;
    expect(properties).toMatchObject({
      stream: { default: true },
      background: { default: false },
      on_disconnect: { default: 'cancel' },
    });
    expect(document.components.schemas.ContinueRunRequest!.properties).toMatchObject({
      stream: { default: true },
    });
  });

  it('refuse what the routes refuse: a flag that is no yes or no, an event index below -1, a name too long', () => {
    const run = create();
    for (const stream of [true, 'Yes', 'off', '1', 'TRUE', ''])
      expect(run.safeParse({ message: 'Hi', stream }).success, String(stream)).toBe(true);
    for (const stream of ['maybe', 'truth', '2'])
      expect(run.safeParse({ message: 'Hi', stream }).success, stream).toBe(false);
    const resume = documented(
      document,
      body('post', '/agents/{agent_id}/runs/{run_id}/resume')?.content['application/json']?.schema,
    );
    for (const last_event_index of [-1, 0, 7, '3', ''])
      expect(resume.safeParse({ last_event_index }).success, String(last_event_index)).toBe(true);
    for (const last_event_index of [-5, 1.5, '-2'])
      expect(resume.safeParse({ last_event_index }).success, String(last_event_index)).toBe(false);
    const rename = documented(
      document,
      body('post', '/sessions/{session_id}/rename')?.content['application/json']?.schema,
    );
    expect(rename.safeParse({ session_name: 'é'.repeat(100) }).success).toBe(true);
    expect(rename.safeParse({ session_name: 'é'.repeat(101) }).success).toBe(false);
  });

  it('take no null in a query, and no body in a PATCH of a session (it renames nothing)', () => {
    for (const [path, operations] of Object.entries(document.paths))
      for (const [method, each] of Object.entries(operations ?? {}))
        for (const parameter of each.parameters ?? [])
          expect(JSON.stringify(parameter.schema), `${method} ${path} ${parameter.name}`).not.toContain(
            'null',
          );
    expect(body('patch', '/sessions/{session_id}')?.required).toBe(false);
  });
});

describe('the schemas of what the server sends', () => {
  it('have the types of the runtime, field for field', () => {
    expectTypeOf<z.output<typeof runEvent>>().toEqualTypeOf<RunEvent>();
    expectTypeOf<z.output<typeof runRecord>>().toEqualTypeOf<RunRecord>();
    expectTypeOf<z.output<typeof runOutput>>().toEqualTypeOf<RunOutput>();
    expectTypeOf<z.output<typeof pausedRunOutput>>().toEqualTypeOf<PausedRunOutput>();
    expectTypeOf<z.output<typeof sessionRecord>>().toEqualTypeOf<SessionRecord>();
    expectTypeOf<z.output<typeof agentResponse>>().toEqualTypeOf<AgentJson>();
    expectTypeOf<z.output<typeof errorCode>>().toEqualTypeOf<ErrorCode>();
  });

  it('accept what real runs send: events, records, sessions, agents, errors', async () => {
    const { url, story, model } = await serveFake();
    const streamed = await postRun(story, { message: 'Tell me a story' });
    const call = await model.nextCall();
    call.emitReasoning('A story, then.');
    await nextTurn();
    call.emit('Once');
    call.end({ usage: { input_tokens: 3, output_tokens: 1, total_tokens: 4 } });
    const frames = await readSse(streamed).rest();
    expect(frames.map(({ data }) => data.event)).toEqual([
      'RunStarted',
      'ReasoningStarted',
      'RunContent',
      'ReasoningCompleted',
      'RunContent',
      'RunCompleted',
    ]);
    for (const { data } of frames) runEvent.parse(data);
    const runId = frames[0]!.data.run_id;
    const sessionId = frames[0]!.data.session_id;

    const reader = readSse(await postRun(story, { message: 'Another', session_id: sessionId }));
    const started = (await reader.next())!.data;
    runEvent.parse(started);
    // Cancelled, and failed, while the model reasoned: their ends carry its phases too.
    (await model.nextCall()).emitReasoning('Another story.');
    await nextTurn();
    const cancel = await fetch(`${story}/runs/${started.run_id}/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(200);
    const cancelled = (await reader.rest()).map(({ data }) => data);
    expect(cancelled.at(-1)).toMatchObject({ event: 'RunCancelled', reasoning_steps: [{}] });
    for (const data of cancelled) runEvent.parse(data);
    const failing = readSse(await postRun(story, { message: 'Fail', session_id: sessionId }));
    const failingCall = await model.nextCall();
    failingCall.emitReasoning('A failing story.');
    await nextTurn();
    failingCall.fail(new Error('boom'));
    const failedFrames = (await failing.rest()).map(({ data }) => data);
    expect(failedFrames.at(-1)).toMatchObject({ event: 'RunError', reasoning_steps: [{}] });
    for (const data of failedFrames) runEvent.parse(data);

    const failed = postRun(story, { message: 'Fail', stream: false });
    (await model.nextCall()).fail(new Error('boom'));
    runOutput.parse(await (await failed).json());

    runRecord.parse(await (await fetch(`${story}/runs/${runId}`)).json());
    for (const run of (await (await fetch(`${story}/runs`)).json()) as unknown[]) runRecord.parse(run);
    sessionPage.parse(await (await fetch(`${url}/sessions`)).json());
    sessionDetail.parse(await (await fetch(`${url}/sessions/${sessionId}`)).json());
    configResponse.parse(await (await fetch(`${url}/config`)).json());
    for (const agent of (await (await fetch(`${url}/agents`)).json()) as unknown[])
      agentResponse.parse(agent);

    const conflict = await fetch(`${story}/runs/${runId}/cancel`, { method: 'POST' });
    expect(conflict.status).toBe(409);
    expect(errorResponse.parse(await conflict.json())).toMatchObject({ code: 'RUN_ALREADY_FINISHED' });
    const invalid = await postRun(story, { message: '' });
    expect(errorResponse.parse(await invalid.json())).toMatchObject({ field: 'message' });
  });
});
