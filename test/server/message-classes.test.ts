import { createServer, IncomingMessage, ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Socket } from 'node:net';
import express, { type Express } from 'express';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { expressMessageClasses } from '../../src/server/message-classes.js';
import { serve as serveApp, twoAgents } from '../support/app.js';

/** An app whose route answers with what express gave the request: its params, a header, its app. */
function echoApp(name: string): Express {
  const app = express();
  app.get('/items/:id', (req, res) => {
    res
      .status(201)
      .json({ id: req.params.id, header: req.get('x-test'), app: req.app.get('name') as string });
  });
  app.set('name', name);
  return app;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function serve(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function getItem(url: string): Promise<unknown> {
  const response = await fetch(`${url}/items/7`, { headers: { 'x-test': 'yes' } });
  expect(response.status).toBe(201);
  return response.json();
}

describe('expressMessageClasses', () => {
  it('makes requests and responses born with the app’s prototypes, express’s helpers on them', () => {
    const app = echoApp('a');
    const { IncomingMessage: Request, ServerResponse: Response } = expressMessageClasses(app);
    const request = new Request(new Socket());
    expect(Object.getPrototypeOf(request)).toBe(app.request);
    expect(request).toBeInstanceOf(IncomingMessage);
    const response = new Response(request);
    expect(Object.getPrototypeOf(response)).toBe(app.response);
    expect(response).toBeInstanceOf(ServerResponse);
    expect(typeof (response as unknown as { json: unknown }).json).toBe('function');
    // The app's own request properties and express's helpers are where they were.
    expect((request as unknown as { app: Express }).app).toBe(app);
    expect(typeof (request as unknown as { get: unknown }).get).toBe('function');
  });

  it('serves express’s helpers over a server made with the classes', async () => {
    const app = echoApp('a');
    const url = await serve(createServer(expressMessageClasses(app), app));
    await expect(getItem(url)).resolves.toEqual({ id: '7', header: 'yes', app: 'a' });
  });

  it('leaves app.listen() with Node’s own classes working', async () => {
    const app = echoApp('a');
    expressMessageClasses(app);
    const url = await serve(createServer(app));
    await expect(getItem(url)).resolves.toEqual({ id: '7', header: 'yes', app: 'a' });
  });

  it('leaves an app mounted in another one working: its requests see their own app', async () => {
    const child = echoApp('child');
    expressMessageClasses(child);
    const parent = express();
    parent.set('name', 'parent');
    parent.use('/child', child);
    parent.get('/whose', (req, res) => void res.json({ app: req.app.get('name') as string }));
    const url = await serve(createServer(expressMessageClasses(parent), parent));
    await expect(getItem(`${url}/child`)).resolves.toEqual({ id: '7', header: 'yes', app: 'child' });
    await expect((await fetch(`${url}/whose`)).json()).resolves.toEqual({ app: 'parent' });
  });

  it('is what startServer serves with: express changes no prototype of a request to the app', async () => {
    const { url } = await serveApp({ agents: twoAgents() });
    const realSetPrototypeOf = Object.setPrototypeOf;
    // For each request or response express sets the prototype of: whether that changed it.
    const changed: boolean[] = [];
    const setPrototypeOf = vi
      .spyOn(Object, 'setPrototypeOf')
      .mockImplementation((target: unknown, prototype: object | null) => {
        if (target instanceof IncomingMessage || target instanceof ServerResponse)
          changed.push(Object.getPrototypeOf(target) !== prototype);
        return realSetPrototypeOf(target, prototype) as unknown;
      });
    try {
      const response = await fetch(`${url}/agents/story-writer-agent`);
      expect(response.status).toBe(200);
      await response.json();
    } finally {
      setPrototypeOf.mockRestore();
    }
    expect(changed).toEqual([false, false]);
  });
});
