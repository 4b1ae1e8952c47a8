import { createServer, request } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { once } from 'node:events';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, createOrchestrator } from '../../src/index.js';
import { createFakeModel } from '../../src/testing/index.js';
import { answerClientError, createApp, startServer } from '../../src/server/index.js';
import {
  expectError,
  expectRawError,
  postRun,
  rawRequest,
  serve,
  serveFake,
  twoAgents,
} from '../support/app.js';

/** POSTs `body` to `url` as `contentType`, as it is. */
function postAs(url: string, contentType: string, body: string | Buffer): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body });
}
describe('bearer auth', () => {
  it('answers 401 without a token or with a wrong one, 200 with the right one', async () => {
    const { url } = await serveFake({ securityKey: 's3cret' });
    const missing = await fetch(`${url}/agents`);
    await expectError(missing, 401, 'UNAUTHORIZED');
    expect(missing.headers.get('www-authenticate')).toBe('Bearer');
    await expectError(
      await fetch(`${url}/agents`, { headers: { authorization: 'Bearer nope' } }),
      401,
      'UNAUTHORIZED',
    );
    await expectError(
      await fetch(`${url}/agents`, { headers: { authorization: 's3cret' } }),
      401,
      'UNAUTHORIZED',
    );
    const ok = await fetch(`${url}/agents`, { headers: { authorization: 'Bearer s3cret' } });
    expect(ok.status).toBe(200);
  });

  it('guards runs and cancels too, and leaves /health and / open', async () => {
    const { url, story } = await serveFake({ securityKey: 's3cret' });
    await expectError(await postRun(story, { message: 'Hi' }), 401, 'UNAUTHORIZED');
    await expectError(await fetch(`${story}/runs/123/cancel`, { method: 'POST' }), 401, 'UNAUTHORIZED');
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect(await (await fetch(`${url}/`)).json()).toMatchObject({ id: 'runstate' });
    // Open to reads only: another method there is refused like any route without a token.
    await expectError(await fetch(`${url}/health`, { method: 'POST' }), 401, 'UNAUTHORIZED');
    await expectError(await fetch(`${url}/`, { method: 'POST' }), 401, 'UNAUTHORIZED');
    // Exactly `/`: what lies under it is not opened with it.
    await expectError(await fetch(`${url}/agents/`), 401, 'UNAUTHORIZED');
  });

  it('leaves CORS preflights open: they never carry credentials', async () => {
    const { url } = await serveFake({ securityKey: 's3cret' });
    const preflight = await fetch(`${url}/sessions/abc`, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://localhost:3000',
        'access-control-request-method': 'DELETE',
        'access-control-request-headers': 'content-type,authorization',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://localhost:3000');
  });

  it('compares the token exactly: a no-break space before or after the key is a wrong token', async () => {
    const { url } = await serveFake({ securityKey: 's3cret' });
    const wrong = [
      'Bearer s3cret\xa0', // what Unicode-aware trimming accepted
      'Bearer \xa0s3cret',
      'Bearer\xa0s3cret',
      'Bearer s3cret\u3000'.replace('\u3000', '\xe3\x80\x80'), // an ideographic space, as UTF-8 bytes
      'Bearer s3cre',
      'Bearer s3crett',
    ];
    for (const authorization of wrong) {
      const answer = await rawRequest(url, `GET /agents HTTP/1.1\r\nAuthorization: ${authorization}`);
      expect(answer.status, JSON.stringify(authorization)).toBe(401);
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'UNAUTHORIZED' });
    }
    // HTTP's own optional whitespace around a header value is no part of it; the scheme is case-insensitive.
    for (const authorization of ['Bearer s3cret', 'bearer  s3cret', 'Bearer s3cret \t']) {
      const answer = await rawRequest(url, `GET /agents HTTP/1.1\r\nAuthorization: ${authorization}`);
      expect(answer.status, JSON.stringify(authorization)).toBe(200);
    }
  });

  it('matches a key that is not ASCII, sent as UTF-8', async () => {
    const { url } = await serveFake({ securityKey: 'clé-ключ' });
    const bytes = Buffer.from('clé-ключ', 'utf8').toString('latin1');
    const answer = await rawRequest(url, `GET /agents HTTP/1.1\r\nAuthorization: Bearer ${bytes}`);
    expect(answer.status).toBe(200);
  });

  it('refuses to start with a key that starts or ends with whitespace: no client could send it', () => {
    const agents = [new Agent({ name: 'A', model: createFakeModel(), orchestrator: createOrchestrator() })];
    for (const securityKey of [' s3cret', 's3cret\n', 's3cret\u00a0', '\ufeffs3cret']) {
      expect(() => createApp({ agents, securityKey }), JSON.stringify(securityKey)).toThrow(
        /security key starts or ends with whitespace/,
      );
    }
  });

  describe('from RUNSTATE_SECURITY_KEY', () => {
    const saved = process.env.RUNSTATE_SECURITY_KEY;
    afterEach(() => {
      if (saved === undefined) delete process.env.RUNSTATE_SECURITY_KEY;
      else process.env.RUNSTATE_SECURITY_KEY = saved;
    });

    it('uses the environment variable when no key is passed', async () => {
      process.env.RUNSTATE_SECURITY_KEY = 'from-env';
      const { url } = await serveFake();
      await expectError(await fetch(`${url}/teams`), 401, 'UNAUTHORIZED');
      expect((await fetch(`${url}/teams`, { headers: { authorization: 'Bearer from-env' } })).status).toBe(
        200,
      );
    });
  });
});

describe('CORS', () => {
  const preflight = (url: string, origin: string) =>
    fetch(`${url}/agents`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'content-type',
      },
    });

  it('answers a preflight from an allowed origin with methods and headers named explicitly', async () => {
    const { url } = await serveFake({ cors: { origins: ['http://ui.example'] } });
    const response = await preflight(url, 'http://ui.example');
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe('http://ui.example');
    expect(response.headers.get('access-control-allow-methods')).toBe('GET,POST,PATCH,DELETE');
    const headers = response.headers.get('access-control-allow-headers')!.split(',');
    expect(headers).toEqual(expect.arrayContaining(['content-type', 'authorization']));
  });

  it('gives no allowed-origin header to another origin', async () => {
    const { url } = await serveFake({ cors: { origins: ['http://ui.example'] } });
    const response = await preflight(url, 'http://evil.example');
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    const get = await fetch(`${url}/agents`, { headers: { origin: 'http://evil.example' } });
    expect(get.headers.get('access-control-allow-origin')).toBeNull();
  });

  it("allows every origin with '*'", async () => {
    const { url } = await serveFake({ cors: { origins: '*' } });
    const response = await fetch(`${url}/agents`, { headers: { origin: 'http://anywhere.example' } });
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
  });
});

/** A request with a `Host` header of the test's choosing (fetch sets its own). */
function withHost(
  url: string,
  host: string,
  init: { method?: string; headers?: Record<string, string> } = {},
) {
  return new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
    const req = request(url, { method: init.method ?? 'GET', headers: { ...init.headers, host } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('requests a web page of another site could make', () => {
  it('refuses a Host name it does not know (DNS rebinding), without a security key: 403 naming it', async () => {
    const { url } = await serveFake();
    const port = new URL(url).port;
    const refused = await withHost(`${url}/agents`, `evil.example:${port}`);
    expect(refused.status).toBe(403);
    expect(refused.body).toEqual({
      detail:
        `this server does not answer to the host "evil.example:${port}": a web page could read runs ` +
        'through a name that points here (DNS rebinding). Add it to allowedHosts, or set a security key',
      code: 'FORBIDDEN',
    });
    for (const host of [
      `localhost:${port}`,
      `LOCALHOST:${port}`,
      `127.0.0.1:${port}`,
      '[::1]',
      'app.localhost',
      '10.0.0.7',
    ]) {
      expect((await withHost(`${url}/agents`, host)).status, host).toBe(200);
    }
    // An address in brackets is one only when they close, before its port at most.
    for (const host of ['[::1', '[::1]evil.example', `[::1]:${port}x`]) {
      expect((await withHost(`${url}/agents`, host)).status, host).toBe(403);
    }
    expect((await withHost(`${url}/agents`, `[::1]:${port}`)).status).toBe(200);
    // A balancer's health check may name the service as it likes.
    expect((await withHost(`${url}/health`, 'runstate.internal')).status).toBe(200);

    const listed = await serveFake({ allowedHosts: ['runstate.example.com'] });
    expect((await withHost(`${listed.url}/agents`, 'runstate.example.com:443')).status).toBe(200);
    expect((await withHost(`${listed.url}/agents`, 'other.example.com')).status).toBe(403);
    const any = await serveFake({ allowedHosts: '*' });
    expect((await withHost(`${any.url}/agents`, 'evil.example')).status).toBe(200);
    // With a key, any host: a page cannot send the token.
    const keyed = await serveFake({ securityKey: 's3cret' });
    expect((await withHost(`${keyed.url}/agents`, 'evil.example')).status).toBe(401);
    // The health check as express routes it, and a 403 an allowed page can read.
    expect((await withHost(`${url}/HEALTH/`, 'evil.example')).status).toBe(200);
    const allowedPage = await new Promise<string | undefined>((resolve, reject) => {
      request(
        `${url}/agents`,
        { headers: { host: 'evil.example', origin: 'http://localhost:3000' } },
        (res) => {
          res.resume();
          resolve(res.headers['access-control-allow-origin']);
        },
      )
        .on('error', reject)
        .end();
    });
    expect(allowedPage).toBe('http://localhost:3000');
    expect(() => createApp({ agents: twoAgents(), allowedHosts: ['runstate.example.com:8080'] })).toThrow(
      /allowedHosts\.0: must be a host name, without a port/,
    );
  });

  it('checks the host on a connection over the network too (a port Docker maps, a LAN address)', async (context) => {
    const address = Object.values(networkInterfaces())
      .flat()
      .find((entry) => entry?.family === 'IPv4' && !entry.internal)?.address;
    if (!address) return context.skip(); // a machine with loopback only
    const { agents } = await serveFake();
    const server = await startServer(createApp({ agents }), { port: 0, host: '0.0.0.0' });
    try {
      const port = new URL(server.url).port;
      expect((await withHost(`http://${address}:${port}/agents`, 'rebind.example')).status).toBe(403);
      expect((await withHost(`http://${address}:${port}/agents`, address)).status).toBe(200);
      expect((await withHost(`http://127.0.0.1:${port}/agents`, 'runstate')).status).toBe(403);
    } finally {
      await server.close();
    }
  });

  it('refuses at creation an origin no browser sends as written (it would match no page)', async () => {
    const agent = new Agent({ name: 'A', model: createFakeModel() });
    try {
      for (const [origin, shown] of [
        ['*', "options.cors.origins.0: '*' allows every origin on its own: write origins: '*'"],
        [
          'http://ui.example/',
          "'http://ui.example/' matches no page: a browser sends its origin as 'http://ui.example'",
        ],
        ['localhost:3000', "'localhost:3000' is not an origin: a scheme and a host"],
        ['https://ui.example:443', "a browser sends its origin as 'https://ui.example'"],
        ['NULL', "'NULL' is not an origin: the origin of no site is written null"],
      ] as const) {
        expect(() => createApp({ agents: [agent], cors: { origins: [origin] } })).toThrow(shown);
      }
      // As browsers send them: an IPv6 host, a port, another scheme (an extension's page).
      const app = createApp({
        agents: [agent],
        // 'null': what a file:// page or a sandboxed frame sends.
        cors: {
          origins: ['http://[::1]:3000', 'chrome-extension://abcdef', 'null', /^https:\/\/.*\.example$/],
        },
      });
      await app.shutdown();
    } finally {
      await agent.orchestrator.shutdown();
    }
  });

  it('takes a POST from an origin a RegExp of cors allows, as CORS does, and refuses one it does not match', async () => {
    // Global: a pattern that keeps where its last test ended must match afresh every time.
    const { story } = await serveFake({
      cors: { origins: [/^http:\/\/ui\.example(:\d+)?$/g, 'http://b.example'] },
    });
    const form = (origin: string) =>
      fetch(`${story}/runs`, {
        method: 'POST',
        headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'message=hi&background=true',
      });
    for (const origin of [
      'http://ui.example',
      'http://ui.example:8080',
      'http://ui.example',
      'http://b.example',
    ])
      expect((await form(origin)).status, origin).toBe(202);
    await expectError(await form('http://ui.example.evil'), 403, 'FORBIDDEN');
  });

  it('refuses a POST from a page of an origin neither allowed nor its own, starting no run', async () => {
    const { url, story, model } = await serveFake();
    const form = (origin: string) =>
      fetch(`${story}/runs`, {
        method: 'POST',
        headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'message=hi&stream=false&background=true',
      });
    const refused = await expectError(await form('http://evil.example'), 403, 'FORBIDDEN');
    expect(refused.detail).toBe(
      'a POST from a page of http://evil.example is refused: that origin is not allowed (cors.origins)',
    );
    await expectError(await form('null'), 403, 'FORBIDDEN');
    await expectError(
      await fetch(`${story}/runs/x/cancel`, { method: 'POST', headers: { origin: 'http://evil.example' } }),
      403,
      'FORBIDDEN',
    );
    expect(model.calls).toHaveLength(0);
    // The Agent UI's origin, and the server's own page.
    expect((await form('http://localhost:3000')).status).toBe(202);
    expect((await form(url)).status).toBe(202);
    // Reading is CORS's to decide (the browser keeps the answer from the page).
    expect((await fetch(`${url}/agents`, { headers: { origin: 'http://evil.example' } })).status).toBe(200);
    // The server's own origin as a proxy names it, and with a scheme's default port.
    const ownThroughProxy = await fetch(`${story}/runs`, {
      method: 'POST',
      headers: {
        origin: 'https://api.example.com',
        'x-forwarded-host': 'api.example.com:443',
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'message=hi&background=true',
    });
    expect(ownThroughProxy.status).toBe(202);
    // With a key a page cannot send the token: the origin is not checked.
    const keyed = await serveFake({ securityKey: 's3cret' });
    const authorised = await fetch(`${keyed.story}/runs`, {
      method: 'POST',
      headers: {
        origin: 'http://evil.example',
        authorization: 'Bearer s3cret',
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'message=hi&background=true',
    });
    expect(authorised.status).toBe(202);
    const open = await serveFake({ cors: { origins: '*' } });
    const opened = await fetch(`${open.story}/runs`, {
      method: 'POST',
      headers: { origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
      body: 'message=hi&background=true',
    });
    expect(opened.status).toBe(202);
  });
});

describe('invalid run requests', () => {
  it('answers 422 naming the failing field: message missing, empty, of the wrong type', async () => {
    const { story } = await serveFake();
    const field = async (body: Record<string, unknown>) =>
      (await expectError(await postRun(story, body), 422, 'INVALID_INPUT')).field;
    expect(await field({})).toBe('message');
    expect(await field({ message: '   ' })).toBe('message');
    expect(await field({ message: 42 })).toBe('message');
    expect(await field({ message: 'Hi', stream: 'maybe' })).toBe('stream');
    expect(await field({ message: 'Hi', background: 3 })).toBe('background');
    expect(await field({ message: 'Hi', session_id: 7 })).toBe('session_id');
    expect(await field({ message: 'Hi', on_disconnect: 'ignore' })).toBe('on_disconnect');
    const detail = (await expectError(await postRun(story, {}), 422, 'INVALID_INPUT')).detail;
    expect(detail).toBe('message: is required');
  });

  it('answers 415 naming content-type for a body of another media type, and 422 for a JSON array', async () => {
    const { story } = await serveFake();
    const text = await fetch(`${story}/runs`, {
      method: 'POST',
      body: 'message=hi',
      headers: { 'content-type': 'text/plain' },
    });
    expect(await expectError(text, 415, 'INVALID_INPUT')).toMatchObject({
      field: 'content-type',
      detail:
        "the body must be application/json, application/x-www-form-urlencoded or multipart/form-data (its Content-Type is 'text/plain')",
    });
    const untyped = await fetch(`${story}/runs`, { method: 'POST', body: new Uint8Array([1]) });
    expect((await expectError(untyped, 415, 'INVALID_INPUT')).detail).toMatch(
      /its Content-Type is missing\)$/,
    );
    const array = await fetch(`${story}/runs`, {
      method: 'POST',
      body: '[]',
      headers: { 'content-type': 'application/json' },
    });
    expect((await expectError(array, 422, 'INVALID_INPUT')).field).toBe('body');
  });

  it('takes an empty body with no type for no body (a bodiless PATCH as Node and Python send it)', async () => {
    const { url } = await serveFake();
    const patch = (head: string, body = '') =>
      rawRequest(url, `PATCH /sessions/nowhere HTTP/1.1\r\n${head}`, body);
    // Each reaches the route, which answers for the session: no 415.
    for (const empty of [
      await patch('Content-Length: 0'),
      await patch('Transfer-Encoding: chunked', '0\r\n\r\n'),
    ]) {
      expect(empty.status).toBe(404);
      expect(JSON.parse(empty.body)).toMatchObject({ code: 'SESSION_NOT_FOUND' });
    }
    const typed = await patch('Content-Type: text/plain\r\nContent-Length: 0');
    expect(typed.status).toBe(404);
    const something = await patch('Transfer-Encoding: chunked', '1\r\nx\r\n0\r\n\r\n');
    expect(something.status).toBe(415);
  });

  it('answers 400 JSON for malformed JSON', async () => {
    const { story } = await serveFake();
    const response = await fetch(`${story}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"message": "Hi"',
    });
    const body = await expectError(response, 400, 'INVALID_INPUT');
    expect(body.detail).toMatch(/^malformed JSON body/);
  });

  it('answers 422 naming the body for JSON that is no object (null, a number, a string)', async () => {
    const { story, model } = await serveFake();
    for (const [json, kind] of [
      ['null', 'null'],
      [' 5 ', 'number'],
      ['"Hi"', 'string'],
      ['true', 'boolean'],
      ['[]', 'array'],
      ['[{"message": "Hi"}]', 'array'],
    ]) {
      const response = await fetch(`${story}/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: json,
      });
      const body = await expectError(response, 422, 'INVALID_INPUT');
      expect(body).toMatchObject({ field: 'body', detail: `body: must be a JSON object, not ${kind}` });
    }
    expect(model.calls).toHaveLength(0);
  });

  it('counts an id in UTF-16 units, as the stores do: 300 emoji are 600, and the 422 names the wire field', async () => {
    const { story, model } = await serveFake();
    for (const field of ['session_id', 'user_id']) {
      const response = await postRun(story, { message: 'Hi', stream: false, [field]: '😀'.repeat(300) });
      const body = await expectError(response, 422, 'INVALID_INPUT');
      expect(body).toMatchObject({ field });
      expect(body.detail).toMatch(new RegExp(`^${field}: must be at most 512 characters`));
    }
    expect(model.calls).toHaveLength(0);
  });

  it('takes a JSON null as an absent option (clients that send every unset field), flags included', async () => {
    const { story, model } = await serveFake();
    const answered = postRun(story, {
      message: 'Hi',
      stream: false,
      background: null,
      on_disconnect: null,
      session_id: null,
      user_id: null,
      images: null,
    });
    const call = await model.nextCall();
    call.emit('Hello');
    call.end();
    const response = await answered;
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'completed', content: 'Hello' });
    // `stream: null` is the default, a stream.
    const streamed = postRun(story, { message: 'Hi', stream: null });
    const second = await model.nextCall();
    second.emit('Streamed');
    second.end();
    const stream = await streamed;
    expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(await stream.text()).toContain('RunCompleted');
  });

  it('names the allowed values of a query option in its own words', async () => {
    const { url } = await serveFake();
    for (const [query, detail] of [
      ['sort_by=x', 'sort_by: must be created_at or updated_at'],
      ['sort_order=up', 'sort_order: must be asc or desc'],
      ['type=team2', 'type: must be agent, team or workflow'],
    ]) {
      const body = await expectError(await fetch(`${url}/sessions?${query}`), 422, 'INVALID_INPUT');
      expect(body.detail).toBe(detail);
    }
  });

  it('reads a JSON body by its media type, parameters aside, and answers 400 for a charset it cannot read', async () => {
    const { story, model } = await serveFake();
    const post = (contentType: string, body: string | Buffer) => postAs(`${story}/runs`, contentType, body);
    const utf8 = await post('Application/JSON; charset=UTF-8', '{"message":"Hi","background":true}');
    expect(utf8.status).toBe(202);
    expect((await model.nextCall()).messages.at(-1)).toEqual({ role: 'user', content: 'Hi' });
    const latin1 = await post('application/json; charset=latin1', '{"message":"Hi"}');
    expect(await expectError(latin1, 400, 'INVALID_INPUT')).toMatchObject({
      detail: expect.stringMatching(/charset/i) as string,
      field: 'content-type',
    });
    // Another type that ends in json is not taken for JSON: it is named, never read.
    const vendor = await post('application/vnd.api+json', '{"message":"Hi"}');
    expect((await expectError(vendor, 415, 'INVALID_INPUT')).field).toBe('content-type');
  });

  it('answers 400 JSON for malformed multipart', async () => {
    const { story } = await serveFake();
    const truncated = await fetch(`${story}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=XYZ' },
      body: '--XYZ\r\nContent-Disposition: form-data; name="message"\r\n\r\nHi',
    });
    expect((await expectError(truncated, 400, 'INVALID_INPUT')).detail).toMatch(/^malformed multipart body/);
    const noBoundary = await fetch(`${story}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data' },
      body: 'message=Hi',
    });
    await expectError(noBoundary, 400, 'INVALID_INPUT');
  });

  it('answers 400 for a multipart field in a charset it cannot decode, never drops it', async () => {
    const { story, url } = await serveFake();
    const part = (name: string, value: string, type = '') =>
      `--X\r\nContent-Disposition: form-data; name="${name}"\r\n${type}\r\n${value}\r\n`;
    const bogus = 'Content-Type: text/plain; charset=x-bogus\r\n';
    const response = await fetch(`${story}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=X' },
      body: `${part('message', 'Hi')}${part('session_id', 'mine', bogus)}${part('background', 'true')}--X--\r\n`,
    });
    const body = await expectError(response, 400, 'INVALID_INPUT');
    expect(body.detail).toBe(
      "multipart body: field 'session_id' is in a charset this server does not read (send UTF-8)",
    );
    expect(body.field).toBe('session_id');
    // No run was started in a new session instead.
    expect(await (await fetch(`${url}/sessions`)).json()).toMatchObject({ data: [] });
  });

  it("refuses a file part with a 422 naming its field, but takes a form's file input left empty (no name, no bytes)", async () => {
    const { story, url } = await serveFake();
    const post = (file: string) =>
      fetch(`${story}/runs`, {
        method: 'POST',
        headers: { 'content-type': 'multipart/form-data; boundary=X' },
        body:
          '--X\r\nContent-Disposition: form-data; name="message"\r\n\r\nHi\r\n' +
          '--X\r\nContent-Disposition: form-data; name="background"\r\n\r\ntrue\r\n' +
          `--X\r\nContent-Disposition: form-data; name="attachment"; ${file}\r\n` +
          'Content-Type: application/octet-stream\r\n\r\n' +
          `${file.includes('notes') ? 'some notes' : ''}\r\n--X--\r\n`,
      });
    for (const file of ['filename="notes.txt"', 'filename=""; x="notes"', 'filename="empty.txt"']) {
      const answer = await expectError(await post(file), 422, 'INVALID_INPUT');
      expect(answer, file).toEqual({
        detail: 'file uploads are not supported; send text fields only',
        code: 'INVALID_INPUT',
        field: 'attachment',
      });
    }
    expect(await (await fetch(`${url}/sessions`)).json()).toMatchObject({ data: [] });
    // What a browser sends for <input type="file" name="attachment"> with no file chosen.
    expect((await post('filename=""')).status).toBe(202);
  });

  it('answers 400 naming a urlencoded field whose percent-escapes cannot be decoded, never keeps it as sent', async () => {
    const { story, url } = await serveFake();
    const post = (body: string) =>
      fetch(`${story}/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
      });
    for (const [body, field] of [
      // Its valid escapes (%C3%A9, %20) are no reason to keep the others: qs kept all as sent.
      ['message=caf%C3%A9%20ok%FF&stream=false', 'message'],
      ['message=Hi&session_id=r%C3%A9v6%20s%FF', 'session_id'],
      ['message=Hi&user_id=u%E9', 'user_id'],
      // A lone surrogate (U+D800 in UTF-8's form): no text.
      ['message=%ED%A0%80', 'message'],
      ['message=50%', 'message'],
      ['message=Hi&stream=%ZZ', 'stream'],
      // A name that cannot be decoded is named as it was sent.
      ['message=Hi&sess%FFion=s1', 'sess%FFion'],
    ] as const) {
      const answer = await expectError(await post(body), 400, 'INVALID_INPUT');
      expect(answer, body).toMatchObject({ field });
      expect(answer.detail, body).toBe(
        `${field}: ${field === 'sess%FFion' ? 'the name cannot' : 'cannot'} be decoded (a percent-escape that is malformed or not UTF-8)`,
      );
    }
    // Nothing was started.
    expect(await (await fetch(`${url}/sessions`)).json()).toMatchObject({ data: [] });
  });

  it('answers 400 naming a query parameter the route reads whose percent-escapes cannot be decoded, never reads U+FFFD in its place', async () => {
    const { story, url } = await serveFake();
    // A session of the user U+FFFD: a query that put U+FFFD in place of %FF would list it.
    const made = await fetch(`${story}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'hi', user_id: '\ufffd', background: true }),
    });
    expect(made.status).toBe(202);
    for (const [path, field] of [
      ['/sessions?user_id=%FF', 'user_id'],
      ['/sessions?user_id=%C0', 'user_id'],
      ['/sessions?user_id=ok&user_id=%E2%82', 'user_id'],
      ['/agents/story-writer-agent/runs?session_id=r%C3%A9v%FF', 'session_id'],
    ] as const) {
      const answer = await expectError(await fetch(`${url}${path}`), 400, 'INVALID_INPUT');
      expect(answer, path).toMatchObject({
        field,
        detail: `${field}: cannot be decoded (a percent-escape that is malformed or not UTF-8)`,
      });
    }
    // More parameters than are read: refused, rather than the filter past them dropped.
    const many = `${'x=1&'.repeat(1_000)}user_id=nobody`;
    expect(await expectError(await fetch(`${url}/sessions?${many}`), 400, 'INVALID_INPUT')).toEqual({
      detail: 'the query string holds more than 1,000 parameters',
      code: 'INVALID_INPUT',
    });
    expect((await fetch(`${url}/sessions?${'x=1&'.repeat(999)}user_id=nobody&&&`)).status).toBe(200);
    // Valid escapes are read; a parameter the route does not read is ignored, whatever it holds.
    const listed = await fetch(`${url}/sessions?user_id=%EF%BF%BD&utm=%FF&%FF=1`);
    expect(listed.status).toBe(200);
    expect(await listed.json()).toMatchObject({ meta: { total_count: 1 } });
  });

  it('answers 400 to bytes that are no UTF-8, sent as they are in a JSON, urlencoded or multipart body, never keeps U+FFFD in their place', async () => {
    const { story, url, model } = await serveFake();
    const post = (contentType: string, body: string | Buffer) => postAs(`${story}/runs`, contentType, body);
    const bytes = (...parts: (string | number[])[]) =>
      Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : Buffer.from(part))));

    const json = await expectError(
      await post('application/json', bytes('{"message":"a', [0xff, 0xfe], 'b"}')),
      400,
      'INVALID_INPUT',
    );
    expect(json.detail).toBe(
      'malformed JSON body: it is not UTF-8 text (bytes that are no UTF-8; JSON is sent in UTF-8)',
    );
    // A surrogate in UTF-8's form (CESU-8), as the escape %ED%A0%80 is refused.
    await expectError(
      await post('application/json', bytes('{"message":"a', [0xed, 0xa0, 0x80], 'b"}')),
      400,
      'INVALID_INPUT',
    );

    const form = await expectError(
      await post('application/x-www-form-urlencoded', bytes('stream=false&message=a', [0xff], 'b')),
      400,
      'INVALID_INPUT',
    );
    expect(form).toMatchObject({
      field: 'message',
      detail: 'message: cannot be decoded (bytes that are no UTF-8; send UTF-8, or name its charset)',
    });

    const boundary = 'b0undary';
    const multipart = await expectError(
      await post(
        `multipart/form-data; boundary=${boundary}`,
        bytes(
          `--${boundary}\r\nContent-Disposition: form-data; name="message"\r\n\r\na`,
          [0xff],
          `b\r\n--${boundary}--\r\n`,
        ),
      ),
      400,
      'INVALID_INPUT',
    );
    expect(multipart).toMatchObject({ field: 'message' });
    expect(multipart.detail).toBe(
      "multipart body: field 'message' cannot be decoded (bytes that are no UTF-8; send UTF-8, or name its charset)",
    );
    // A part in latin1, its charset named, is read as latin1: é is its byte 0xE9. And a U+FFFD sent
    // as such (its UTF-8, EF BF BD) in the other part is no sign of bytes that were not UTF-8.
    const latin1 = post(
      `multipart/form-data; boundary=${boundary}`,
      bytes(
        `--${boundary}\r\nContent-Disposition: form-data; name="message"\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf`,
        [0xe9],
        `\r\n--${boundary}\r\nContent-Disposition: form-data; name="stream"\r\n\r\nfalse`,
        `\r\n--${boundary}\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nu\uFFFDx`,
        `\r\n--${boundary}--\r\n`,
      ),
    );
    const call = await model.nextCall();
    expect(call.messages.at(-1)).toEqual({ role: 'user', content: 'café' });
    call.end();
    const answered = await latin1;
    expect(answered.status).toBe(200);
    expect(await answered.json()).toMatchObject({ user_id: 'u\uFFFDx' });
    // Nothing else was started.
    expect(((await (await fetch(`${url}/sessions`)).json()) as { data: unknown[] }).data).toHaveLength(1);
  });

  it('answers 400 naming content-encoding to a body that is not compressed as its Content-Encoding says', async () => {
    const { story } = await serveFake();
    for (const [encoding, body] of [
      ['gzip', Buffer.from('{"message":"not gzip"}')],
      ['deflate', Buffer.from('not deflate')],
      ['gzip', gzipSync(Buffer.from('{"message":"cut"}')).subarray(0, 12)],
      ['br', Buffer.from('not brotli')],
    ] as const) {
      const answer = await expectError(
        await fetch(`${story}/runs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-encoding': encoding },
          body,
        }),
        400,
        'INVALID_INPUT',
      );
      expect(answer.field, encoding).toBe('content-encoding');
      expect(answer.detail).toMatch(/^the body cannot be decoded as its Content-Encoding says: \S/);
    }
    // One it does not read at all is named too.
    const zstd = await fetch(`${story}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'zstd' },
      body: '{"message":"x"}',
    });
    expect(await expectError(zstd, 400, 'INVALID_INPUT')).toMatchObject({
      detail: 'unsupported content encoding "zstd"',
      field: 'content-encoding',
    });
  });

  it('answers 400 to an undecodable urlencoded field on every route that reads a body', async () => {
    const { story: agentUrl, url, model } = await serveFake();
    const started = await postRun(agentUrl, { message: 'Publish', background: true, session_id: 's1' });
    const { run_id } = (await started.json()) as { run_id: string };
    (await model.nextCall()).end();
    // (The body is read before the run is looked up: whether it is paused makes no difference.)
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    for (const [method, path, body, field] of [
      ['POST', `${agentUrl}/runs/${run_id}/continue`, 'tools=%5B%FF%5D', 'tools'],
      ['POST', `${agentUrl}/runs/${run_id}/continue`, 'tools=%5B%5D&session_id=s%FF', 'session_id'],
      ['POST', `${agentUrl}/runs/${run_id}/resume`, 'last_event_index=%FF', 'last_event_index'],
      ['POST', `${url}/sessions/s1/rename`, 'session_name=r%C3%A9v%FF', 'session_name'],
      ['PATCH', `${url}/sessions/s1`, 'session_name=r%C3%A9v%FF', 'session_name'],
      ['DELETE', `${url}/sessions`, 'session_ids=s1&session_ids=s%FF&session_types=agent', 'session_ids'],
    ] as const) {
      const answer = await expectError(
        await fetch(path, { method, headers: form, body }),
        400,
        'INVALID_INPUT',
      );
      expect(answer.field, `${method} ${path}`).toBe(field);
    }
    // The session is there, its name unchanged.
    expect(await (await fetch(`${url}/sessions/s1`)).json()).toMatchObject({ session_name: 'Publish' });
  });

  it('decodes the escapes of a urlencoded body in UTF-8, and in latin1 when its charset says so', async () => {
    const { story, model } = await serveFake();
    const post = (contentType: string, body: string | Buffer) => postAs(`${story}/runs`, contentType, body);
    const utf8 = await post('application/x-www-form-urlencoded', 'message=caf%C3%A9+ok%21&background=true');
    expect(utf8.status).toBe(202);
    expect((await model.nextCall()).messages.at(-1)).toEqual({ role: 'user', content: 'café ok!' });
    // In latin1 every escape is a character: %E9 is é.
    const latin1 = await post(
      'application/x-www-form-urlencoded; charset=iso-8859-1',
      'message=caf%E9&background=true',
    );
    expect(latin1.status).toBe(202);
    expect((await model.nextCall()).messages.at(-1)).toEqual({ role: 'user', content: 'café' });
  });

  it('answers 422 naming the field of a file part: runs take text only', async () => {
    const { story } = await serveFake();
    const form = new FormData();
    form.set('message', 'Hi');
    form.set('files', new Blob(['%PDF'], { type: 'application/pdf' }), 'a.pdf');
    const response = await fetch(`${story}/runs`, { method: 'POST', body: form });
    expect((await expectError(response, 422, 'INVALID_INPUT')).field).toBe('files');
  });

  it('answers 404 for an unknown agent whatever the body', async () => {
    const { url } = await serveFake();
    const response = await fetch(`${url}/agents/nobody/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{oops',
    });
    await expectError(response, 404, 'AGENT_NOT_FOUND');
  });

  it('answers JSON to a request target express cannot parse: 400 without a key, never its HTML page', async () => {
    const { url } = await serveFake();
    expectRawError(await rawRequest(url, 'GET http://[::1/agents HTTP/1.1'), 400, {
      detail: 'the request target cannot be parsed',
      code: 'INVALID_INPUT',
    });
  });

  it('answers 401 JSON to a request target express cannot parse when a key is configured', async () => {
    const { url } = await serveFake({ securityKey: 's3cret' });
    const answer = await rawRequest(url, 'GET http://[::1/agents HTTP/1.1');
    expect(answer.status).toBe(401);
    expect(answer.headers).toMatch(/www-authenticate: Bearer/i);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('answers 400 for a path that cannot be decoded', async () => {
    const { url } = await serveFake();
    await expectError(await fetch(`${url}/agents/%E0%A4%A`), 400, 'INVALID_INPUT');
  });
});

/**
 * Sends `head` on a raw connection, then, given a `chunk`, that chunk again and again as a chunked
 * body that never ends, until the server answers; the answer, read until the server closes the
 * connection. The request is never ended: a server that waits for its end never answers.
 */
async function sendUntilAnswered(
  url: string,
  head: string,
  chunk?: Buffer,
): Promise<{ status: number; headers: string; body: string; bodyBytesSent: number }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  // The server closes the connection after its answer: a write then may fail, which is expected.
  socket.on('error', () => undefined);
  // (Not `once()`: it rejects on that error.)
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  let answer = '';
  socket.on('data', (data: Buffer) => (answer += data.toString('latin1')));
  const answered = Promise.race([new Promise((resolve) => socket.once('data', resolve)), closed]);
  let over = false;
  void answered.then(() => (over = true));
  socket.write(`${head}\r\nHost: ${hostname}\r\n\r\n`);
  let bodyBytesSent = 0;
  if (chunk) {
    const frame = Buffer.concat([
      Buffer.from(`${chunk.length.toString(16)}\r\n`),
      chunk,
      Buffer.from('\r\n'),
    ]);
    // Each write waits for the socket to take the last one (or for the answer), so the loop gives
    // the answer its turn to arrive.
    while (!over && !socket.destroyed) {
      await Promise.race([new Promise((resolve) => socket.write(frame, resolve)), answered]);
      bodyBytesSent += chunk.length;
    }
  }
  await closed;
  const [headers = '', body = ''] = answer.split('\r\n\r\n');
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(headers)?.[1]), headers, body, bodyBytesSent };
}

describe('bodies over the limit', () => {
  const big = 'x'.repeat(4096);

  it('answers 413 JSON for JSON, urlencoded and multipart bodies', async () => {
    const { story } = await serveFake({ bodyLimit: '1kb' });
    await expectError(await postRun(story, { message: big }), 413, 'PAYLOAD_TOO_LARGE');
    const form = await fetch(`${story}/runs`, {
      method: 'POST',
      body: new URLSearchParams({ message: big }),
    });
    await expectError(form, 413, 'PAYLOAD_TOO_LARGE');
    const multipart = new FormData();
    multipart.set('message', big);
    await expectError(
      await fetch(`${story}/runs`, { method: 'POST', body: multipart }),
      413,
      'PAYLOAD_TOO_LARGE',
    );
  });

  /** Posts text fields as a multipart body with no Content-Length (sent chunked). */
  const postChunkedMultipart = (story: string, fields: Array<[string, string]>) => {
    const parts = fields.map(
      ([name, value]) => `--B\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
    );
    return fetch(`${story}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=B' },
      body: new Blob([...parts, '--B--\r\n']).stream(),
      duplex: 'half',
    });
  };

  it('answers 413 for a multipart field over the limit even without a Content-Length', async () => {
    const { story } = await serveFake({ bodyLimit: 1024 });
    await expectError(await postChunkedMultipart(story, [['message', big]]), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('answers 413 for a chunked multipart body of many fields, each under the limit', async () => {
    const { story, model } = await serveFake({ bodyLimit: 1024 });
    const fields = ['message', 'a', 'b', 'c'].map((name): [string, string] => [name, 'x'.repeat(500)]);
    await expectError(await postChunkedMultipart(story, fields), 413, 'PAYLOAD_TOO_LARGE');
    expect(model.calls).toHaveLength(0);
  });

  it('answers 413 for a multipart or urlencoded body of more than 100 fields, saying so', async () => {
    const { story, model } = await serveFake();
    const fields = Array.from({ length: 101 }, (_, i): [string, string] => [`f${i}`, 'x']);
    const body = await expectError(await postChunkedMultipart(story, fields), 413, 'PAYLOAD_TOO_LARGE');
    expect(body.detail).toMatch(/more than 100 fields/);
    const form = await fetch(`${story}/runs`, { method: 'POST', body: new URLSearchParams(fields) });
    const formBody = await expectError(form, 413, 'PAYLOAD_TOO_LARGE');
    expect(formBody.detail).toBe('form body too large: more than 100 fields');
    expect(model.calls).toHaveLength(0);
  });

  it('takes a multipart or urlencoded body of exactly 100 fields', async () => {
    const { story } = await serveFake();
    const fields: [string, string][] = [
      ['message', 'hi'],
      ['background', 'true'],
      ...Array.from({ length: 98 }, (_, i): [string, string] => [`f${i}`, 'x']),
    ];
    expect((await postChunkedMultipart(story, fields)).status).toBe(202);
    const form = await fetch(`${story}/runs`, { method: 'POST', body: new URLSearchParams(fields) });
    expect(form.status).toBe(202);
  });

  it('answers 413 to a declared Content-Length over the limit before a byte of the body is sent', async () => {
    const { story, model } = await serveFake();
    const answer = await sendUntilAnswered(
      story,
      'POST /agents/story-writer-agent/runs HTTP/1.1\r\nContent-Type: application/json\r\n' +
        `Content-Length: ${4 * 1024 ** 2}`,
    );
    expect(answer.bodyBytesSent).toBe(0);
    expectRawError(answer, 413, { detail: 'request body too large', code: 'PAYLOAD_TOO_LARGE' });
    // Closed after the answer, rather than read to the end of the 4 MB.
    expect(answer.headers).toMatch(/^connection: close$/im);
    expect(model.calls).toHaveLength(0);
  });

  it('answers 413 without `100 Continue` to a client that waits for it before sending a body over the limit', async () => {
    const { story, model } = await serveFake();
    const answer = await sendUntilAnswered(
      story,
      'POST /agents/story-writer-agent/runs HTTP/1.1\r\nContent-Type: application/json\r\n' +
        `Content-Length: ${4 * 1024 ** 2}\r\nExpect: 100-continue`,
    );
    // Node would have sent `100 Continue` at once, and the client its 4 MB, only to be refused.
    expect(answer.headers).not.toMatch(/100 Continue/);
    expect(answer.bodyBytesSent).toBe(0);
    expectRawError(answer, 413, { detail: 'request body too large', code: 'PAYLOAD_TOO_LARGE' });
    expect(answer.headers).toMatch(/^connection: close$/im);
    expect(model.calls).toHaveLength(0);
    // Also on a route that reads no body, whose own answer would keep the connection alive.
    const stream = await sendUntilAnswered(
      story,
      `GET /agents/story-writer-agent/runs/some-run/events HTTP/1.1\r\nContent-Length: ${4 * 1024 ** 2}\r\nExpect: 100-continue`,
    );
    expect(stream.status).toBe(413);
    expect(stream.headers).toMatch(/^connection: close$/im);
  });

  it('answers a request refused before its body is read without `100 Continue`: the client keeps its body', async () => {
    const { story } = await serveFake({ securityKey: 's3cret' });
    const { hostname, port } = new URL(story);
    const body = JSON.stringify({ message: 'Hi', stream: false });
    const refused = async (path: string, headers: string) => {
      const socket = connect(Number(port), hostname);
      socket.write(
        `POST ${path} HTTP/1.1\r\n${headers}Content-Length: ${body.length}\r\nExpect: 100-continue\r\nHost: ${hostname}\r\n\r\n`,
      );
      let answer = '';
      for await (const chunk of socket) answer += (chunk as Buffer).toString('latin1');
      return answer;
    };
    const key = 'Authorization: Bearer s3cret\r\n';
    for (const [path, headers, status] of [
      ['/agents/story-writer-agent/runs', 'Content-Type: application/json\r\n', 401],
      ['/agents/nobody/runs', `${key}Content-Type: application/json\r\n`, 404],
      ['/agents/story-writer-agent/runs', `${key}Content-Type: text/plain\r\n`, 415],
    ] as const) {
      // The connection closes after the answer (the body, never asked for, may still come).
      const answer = await refused(path, headers);
      expect(answer, path).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(answer).not.toMatch(/100 Continue/);
    }
  });

  it('sends `100 Continue` to a client that waits for it before sending a body within the limit', async () => {
    const { story } = await serveFake();
    const { hostname, port } = new URL(story);
    const socket = connect(Number(port), hostname);
    const body = JSON.stringify({ stream: false });
    socket.write(
      'POST /agents/story-writer-agent/runs HTTP/1.1\r\nContent-Type: application/json\r\n' +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`,
    );
    const [interim] = (await once(socket, 'data')) as [Buffer];
    expect(interim.toString('latin1')).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    socket.end(body);
    let answer = '';
    for await (const chunk of socket) answer += (chunk as Buffer).toString('latin1');
    // The body was read: the run is refused for the field it lacks.
    expect(answer).toMatch(/^HTTP\/1\.1 422 /);
    expect(JSON.parse(answer.split('\r\n\r\n')[1]!)).toMatchObject({
      code: 'INVALID_INPUT',
      field: 'message',
    });
  });

  it('answers 413 to an endless chunked body while it is still being sent, and closes the connection', async () => {
    const { story, model } = await serveFake({ bodyLimit: '64kb' });
    const chunk = Buffer.alloc(16 * 1024, 'x');
    for (const type of [
      'application/json',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=B',
    ]) {
      const answer = await sendUntilAnswered(
        story,
        `POST /agents/story-writer-agent/runs HTTP/1.1\r\nContent-Type: ${type}\r\nTransfer-Encoding: chunked`,
        chunk,
      );
      expectRawError(answer, 413, { detail: 'request body too large', code: 'PAYLOAD_TOO_LARGE' });
      expect(answer.headers, type).toMatch(/^connection: close$/im);
      expect(answer.bodyBytesSent).toBeGreaterThan(64 * 1024);
    }
    expect(model.calls).toHaveLength(0);
  });

  it('closes the connection after an error answered before an endless body was read (an unknown agent)', async () => {
    const { url } = await serveFake();
    const answer = await sendUntilAnswered(
      url,
      'POST /agents/nobody/runs HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked',
      Buffer.alloc(16 * 1024, 'x'),
    );
    expect(answer.status).toBe(404);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'AGENT_NOT_FOUND' });
    expect(answer.headers).toMatch(/^connection: close$/im);
  });

  it('keeps the connection of an error answered before a small body was sent, and reads that body (no reset)', async () => {
    const { url } = await serveFake();
    const { hostname, port } = new URL(url);
    const socket = connect(Number(port), hostname);
    const received: string[] = [];
    let arrived: (() => void) | undefined;
    socket.on('data', (data: Buffer) => {
      received.push(data.toString('latin1'));
      arrived?.();
    });
    const answer = async (count: number) => {
      while (received.length < count) await new Promise<void>((resolve) => (arrived = resolve));
      return received[count - 1]!;
    };
    const body = `--B\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi\r\n--B--\r\n`;
    // The head first, as a client does that writes its body after: the answer comes before the body.
    socket.write(
      `POST /agents/nobody/runs HTTP/1.1\r\nHost: ${hostname}\r\n` +
        `Content-Type: multipart/form-data; boundary=B\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    const refused = await answer(1);
    expect(refused).toMatch(/^HTTP\/1\.1 404 /);
    expect(refused).not.toMatch(/^connection: close/im);
    // The body still goes out, and the connection serves the next request.
    socket.write(`${body}GET /health HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
    expect(await answer(2)).toMatch(/^HTTP\/1\.1 200 /);
    socket.destroy();
  });

  it('keeps the connection of an error answered to a request without a body', async () => {
    const { url } = await serveFake();
    const response = await fetch(`${url}/agents/nobody`);
    expect(response.status).toBe(404);
    expect(response.headers.get('connection')).toBe('keep-alive');
  });

  it('closes the connection after answering an endless body of another type, which it never reads', async () => {
    const { story } = await serveFake();
    const answer = await sendUntilAnswered(
      story,
      'POST /agents/story-writer-agent/runs HTTP/1.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked',
      Buffer.alloc(16 * 1024, 'x'),
    );
    expect(answer.status).toBe(415);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'INVALID_INPUT', field: 'content-type' });
    expect(answer.headers).toMatch(/^connection: close$/im);
  });

  it('answers 413 to an endless gzipped body, whose compressed bytes are counted', async () => {
    const { story } = await serveFake({ bodyLimit: '64kb' });
    // Zeros compress a thousandfold: the decoded body is over the limit long before the sent bytes are.
    const chunk = gzipSync(Buffer.alloc(1024 ** 2)).subarray(0, 16 * 1024);
    const answer = await sendUntilAnswered(
      story,
      'POST /agents/story-writer-agent/runs HTTP/1.1\r\nContent-Type: application/json\r\n' +
        'Content-Encoding: gzip\r\nTransfer-Encoding: chunked',
      chunk,
    );
    expectRawError(answer, 413, { detail: 'request body too large', code: 'PAYLOAD_TOO_LARGE' });
    expect(answer.headers).toMatch(/^connection: close$/im);
  });

  it('accepts a body under the limit', async () => {
    const { story, model } = await serveFake({ bodyLimit: '1kb' });
    const response = await postRun(story, { message: 'short', background: true });
    expect(response.status).toBe(202);
    await model.nextCall();
  });
});

describe("requests Node's HTTP parser refuses", () => {
  it('answers them in JSON: a malformed request 400, headers over the limit 431, chunk extensions 413', async () => {
    const { url } = await serveFake();
    expectRawError(await rawRequest(url, 'GET /agents HTTP/1.1\r\nContent-Length: abc'), 400, {
      detail: 'malformed HTTP request: Invalid character in Content-Length',
      code: 'INVALID_INPUT',
    });
    expectRawError(await rawRequest(url, 'G@T /agents HTTP/1.1'), 400, {
      detail: 'malformed HTTP request: Invalid method encountered',
      code: 'INVALID_INPUT',
    });
    const large = `GET /agents HTTP/1.1\r\nX-Large: ${'a'.repeat(20_000)}`;
    expectRawError(await rawRequest(url, large), 431, {
      detail: "the request line and headers are over the server's limit of 16384 bytes",
      code: 'PAYLOAD_TOO_LARGE',
    });
    // A chunk's extensions over Node's limit: the body is refused as it is read.
    const chunked = 'POST /agents/story-writer-agent/runs HTTP/1.1\r\nTransfer-Encoding: chunked';
    const extensions = `1;x=${'a'.repeat(20_000)}\r\na\r\n0\r\n\r\n`;
    expectRawError(await rawRequest(url, chunked, extensions), 413, {
      detail: "the body's chunk extensions are over the server's limit",
      code: 'PAYLOAD_TOO_LARGE',
    });
  });

  it('answers 408 in JSON for a request not received in time, on a server of your own', async () => {
    // Node's clocks made short, so that its request timeout comes within the test.
    const server = createServer({ headersTimeout: 50, requestTimeout: 50, connectionsCheckingInterval: 10 });
    server.on('clientError', answerClientError);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
      // Headers that never end.
      socket.write('GET /agents HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
      await new Promise((resolve) => socket.once('close', resolve));
      expect(answer).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
      expect(JSON.parse(answer.split('\r\n\r\n')[1]!)).toEqual({
        detail: 'the request was not received in time',
        code: 'INVALID_INPUT',
      });
    } finally {
      server.close();
    }
  });

  it("answers a proxy's CONNECT 404 in JSON, as any method without a route", async () => {
    const { url } = await serveFake();
    expectRawError(await rawRequest(url, 'CONNECT example.com:443 HTTP/1.1'), 404, {
      detail: 'no route for CONNECT example.com:443',
      code: 'NOT_FOUND',
    });
  });

  it('answers an HTTP/1.1 request without Host 400 in JSON, and closes the connection', async () => {
    const { url } = await serveFake();
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    socket.end('GET /health HTTP/1.1\r\n\r\n');
    let answer = '';
    for await (const chunk of socket) answer += (chunk as Buffer).toString('latin1');
    const [head = '', body = ''] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 400 /);
    expect(head).toMatch(/^connection: close$/im);
    expect(JSON.parse(body)).toEqual({
      detail: 'an HTTP/1.1 request must have a Host header',
      code: 'INVALID_INPUT',
    });
  });

  it('answers a request with two Host headers 400 in JSON (only the first was checked), and closes the connection', async () => {
    const { url } = await serveFake({ allowedHosts: ['runstate.example'] });
    for (const hosts of [
      ['127.0.0.1', 'evil.example'],
      ['runstate.example', 'runstate.example'],
    ]) {
      const socket = connect(Number(new URL(url).port), '127.0.0.1');
      socket.end(`GET /agents HTTP/1.1\r\n${hosts.map((host) => `Host: ${host}\r\n`).join('')}\r\n`);
      let answer = '';
      for await (const chunk of socket) answer += (chunk as Buffer).toString('latin1');
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      expect(head, hosts.join(', ')).toMatch(/^HTTP\/1\.1 400 /);
      expect(head).toMatch(/^connection: close$/im);
      expect(JSON.parse(body)).toEqual({
        detail: 'a request must have one Host header, not several',
        code: 'INVALID_INPUT',
      });
    }
  });

  it('answers an Expect it cannot meet 417 in JSON, and closes the connection', async () => {
    const { story } = await serveFake();
    const answer = await rawRequest(
      story,
      'POST /agents/story-writer-agent/runs HTTP/1.1\r\nExpect: 200-ok\r\nContent-Type: application/json\r\nContent-Length: 2',
      '{}',
    );
    expectRawError(answer, 417, {
      detail: "the expectation '200-ok' cannot be met (only 100-continue is known)",
      code: 'INVALID_INPUT',
    });
    expect(answer.headers).toMatch(/^connection: close$/im);
  });

  it('writes nothing into a stream in progress on the connection: it is closed instead', async () => {
    const { url, model } = await serveFake();
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    const body = JSON.stringify({ message: 'Hi', stream: true });
    socket.write(
      `POST /agents/story-writer-agent/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body}`,
    );
    const call = await model.nextCall();
    call.emit('Once');
    let read = '';
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      read += chunk.toString();
      // The stream has started: a malformed request follows on the same connection.
      if (read.includes('event: RunContent') && !socket.writableEnded) socket.end('G@T / HTTP/1.1\r\n\r\n');
    });
    await closed;
    await call.aborted;
    expect(read).toMatch(/^HTTP\/1\.1 200/);
    expect(read).toContain('event: RunContent');
    expect(read).not.toContain('INVALID_INPUT');
    expect(read).not.toContain('HTTP/1.1 400');
  });
});

describe('unexpected errors', () => {
  it('answer 500 {detail, code: INTERNAL} without the message or a stack trace, and are logged', async () => {
    const orchestrator = createOrchestrator();
    const broken = new Proxy(orchestrator, {
      get: (target, key, receiver): unknown =>
        key === 'listRuns'
          ? () => {
              throw new Error('secret internals');
            }
          : Reflect.get(target, key, receiver),
    });
    const agent = new Agent({ name: 'Broken', model: createFakeModel(), orchestrator: broken });
    const logged: unknown[] = [];
    const { url } = await serve({
      agents: [agent],
      logger: { error: (...args: unknown[]) => logged.push(args) },
    });
    const body = await expectError(await fetch(`${url}/agents/broken/runs`), 500, 'INTERNAL');
    expect(body).toEqual({ detail: 'internal server error', code: 'INTERNAL' });
    expect(logged).toHaveLength(1);
  });
});

describe('shutting down', () => {
  it('refuses new runs with 503 once the app is shut down', async () => {
    const { story, runstate } = await serveFake();
    await runstate.shutdown();
    const response = await postRun(story, { message: 'Hi' });
    await expectError(response, 503, 'SHUTTING_DOWN');
    expect(response.headers.get('retry-after')).toBe('1');
  });
});

describe('an app mounted in another express app', () => {
  it('answers its own errors as JSON there too, never the outer app’s HTML page with a stack trace', async () => {
    const { default: express } = await import('express');
    const parent = express();
    parent.use(
      '/api',
      createApp({
        agents: [new Agent({ name: 'Writer', model: createFakeModel(), orchestrator: createOrchestrator() })],
        logger: { error: () => undefined },
      }).app,
    );
    const server = createServer(parent);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
    try {
      const missing = await fetch(`${url}/agents/nobody`);
      expect(missing.status).toBe(404);
      expect(missing.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await missing.json()).toMatchObject({ code: 'AGENT_NOT_FOUND' });
      const malformed = await fetch(`${url}/agents/writer/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"message": ',
      });
      expect(malformed.status).toBe(400);
      expect(malformed.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await malformed.text()).not.toMatch(/<html|at .*\.(js|ts):\d+/i);
      // Named as the client asked for them, the mount's prefix included (and not their query).
      expect(await (await fetch(`${url}/nope?x=1`)).json()).toEqual({
        detail: 'no route for GET /api/nope',
        code: 'NOT_FOUND',
      });
      expect(await (await fetch(`${url}/agents/writer/runs`, { method: 'PUT' })).json()).toMatchObject({
        detail: expect.stringMatching(
          /^no route for PUT \/api\/agents\/writer\/runs: it answers /,
        ) as unknown,
      });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
