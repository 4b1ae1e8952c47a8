import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FeedMessage, RunSummary } from './feed-messages.js';
import type { MachineGraph } from './machine-graph.js';

/**
 * A node:http request handler, also usable as express middleware: `next` is called for paths it
 * does not serve (without `next`, it answers 404). `publicPaths` are its static files (relative to
 * the mount): the page, its script, style, elkjs and the chart. They hold no run data, so
 * `createApp` serves them without a bearer token; runs, the feed and cancel stay behind it.
 */
export type InspectorHandler = ((
  req: IncomingMessage,
  res: ServerResponse,
  next?: (error?: unknown) => void,
) => void) & { readonly publicPaths: readonly string[] };

/** What the handler serves from; {@link createInspector} provides it. */
export interface InspectorHandlerOptions {
  graph: MachineGraph;
  subscribe: (
    listener: (message: FeedMessage) => void,
    options?: { runId?: string | undefined },
  ) => () => void;
  listRuns: () => RunSummary[];
  /** Serves `POST <mount>/runs/:run_id/cancel` when given. */
  cancel: ((runId: string) => { status: number; body: object }) | undefined;
  /** Stripped from the path when the request was not routed by a framework. */
  basePath: string;
  heartbeatMs: number;
}

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer | undefined;
  cache: string;
}

// The page is an offline app: everything from this origin, nothing inline but the empty favicon.
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/inspector.js': { file: 'inspector.js', type: 'text/javascript; charset=utf-8' },
  '/inspector.css': { file: 'inspector.css', type: 'text/css; charset=utf-8' },
};
const ELK_PATH = '/vendor/elk.bundled.js';
/** `''`: the mount itself, which redirects to the page. */
const PUBLIC_PATHS: readonly string[] = Object.freeze(['', ...Object.keys(ASSETS), ELK_PATH, '/graph.json']);

/** Where the page's files are: next to this module in the sources, `src/inspect/assets` from `dist/`. */
function assetsDir(): string {
  const candidates = [
    new URL('./assets/', import.meta.url),
    new URL('../../../src/inspect/assets/', import.meta.url),
  ];
  for (const candidate of candidates) {
    const dir = fileURLToPath(candidate);
    if (existsSync(`${dir}index.html`)) return dir;
  }
  throw new Error('runstate inspector: its page (src/inspect/assets) is missing from the package');
}

/** elkjs's browser bundle (it defines `window.ELK`), served from the installed package. */
function elkBundlePath(): string {
  return createRequire(import.meta.url).resolve('elkjs/lib/elk.bundled.js');
}

/** Creates the inspector's HTTP handler and a `close` that ends its open feeds. */
export function createInspectorHandler(options: InspectorHandlerOptions): {
  handler: InspectorHandler;
  close(): void;
} {
  const { graph, subscribe, listRuns, cancel, basePath, heartbeatMs } = options;
  const assets = new Map<string, Asset>();
  // Each open feed and what stops it (its heartbeat, its subscription): `close` runs it before `end`.
  const feeds = new Map<ServerResponse, () => void>();
  const frames = new WeakMap<FeedMessage, string>();
  let closed = false;
  const graphJson = Buffer.from(JSON.stringify(graph));

  // Read on first use and kept: the files are small but elkjs's bundle, which is gzipped once.
  function asset(path: string): Asset {
    let found = assets.get(path);
    if (found) return found;
    if (path === ELK_PATH) {
      const body = readFileSync(elkBundlePath());
      const cache = 'public, max-age=86400';
      found = { type: 'text/javascript; charset=utf-8', body, gzip: gzipSync(body), cache };
    } else {
      const { file, type } = ASSETS[path]!;
      found = { type, body: readFileSync(`${assetsDir()}${file}`), gzip: undefined, cache: 'no-cache' };
    }
    assets.set(path, found);
    return found;
  }

  /** Serialises a message once, however many feeds it goes to. */
  function frameOf(message: FeedMessage): string {
    let frame = frames.get(message);
    if (frame === undefined) {
      frame = `event: ${message.type}\ndata: ${JSON.stringify(message)}\n\n`;
      frames.set(message, frame);
    }
    return frame;
  }

  function openFeed(req: IncomingMessage, res: ServerResponse, runId: string | undefined): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    let blocked = false;
    let unsubscribe = (): void => {};
    // A slow reader is not buffered for: while its socket is full, messages are dropped, and once
    // it drains it gets a fresh snapshot (summaries are idempotent, the detail is resent whole).
    const send = (message: FeedMessage): void => {
      if (blocked) return;
      if (!res.write(frameOf(message))) {
        blocked = true;
        res.once('drain', resync);
      }
    };
    const resync = (): void => {
      blocked = false;
      unsubscribe();
      unsubscribe = subscribe(send, { runId });
    };
    unsubscribe = subscribe(send, { runId });
    const heartbeat = setInterval(() => {
      if (!blocked) res.write(': ping\n\n');
    }, heartbeatMs).unref();
    const end = (): void => {
      clearInterval(heartbeat);
      unsubscribe();
      res.off('drain', resync);
      feeds.delete(res);
    };
    feeds.set(res, end);
    res.once('close', end);
    req.once('close', end);
  }

  function send(
    res: ServerResponse,
    status: number,
    type: string,
    body: Buffer | string,
    headers = {},
  ): void {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }

  function sendJson(res: ServerResponse, status: number, body: unknown): void {
    send(res, status, 'application/json; charset=utf-8', JSON.stringify(body), {
      'cache-control': 'no-store',
    });
  }

  function serveAsset(req: IncomingMessage, res: ServerResponse, path: string): void {
    let file: Asset;
    try {
      file = asset(path);
    } catch (error) {
      // elkjs missing from node_modules, or the package's assets: say so, never crash the server.
      const detail = path === ELK_PATH ? 'elkjs is not installed (npm install elkjs)' : String(error);
      return sendJson(res, 500, { detail: `runstate inspector: ${detail}`, code: 'INTERNAL' });
    }
    const gzip = file.gzip && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const headers: Record<string, string> = {
      'cache-control': file.cache,
      'x-content-type-options': 'nosniff',
      vary: 'accept-encoding',
    };
    if (path === '/') headers['content-security-policy'] = CSP;
    if (gzip) headers['content-encoding'] = 'gzip';
    send(res, 200, file.type, gzip ? file.gzip! : file.body, headers);
  }

  const handle = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void): void => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://inspector.invalid');
    } catch {
      // An absolute-form target that is no URL: on plain node:http a throw here would end the process.
      return sendJson(res, 400, { detail: 'the request target is not a valid URL', code: 'INVALID_INPUT' });
    }
    let path = url.pathname;
    // Plain node:http: the full path. A router (express `app.use('/inspect', …)`) strips its mount.
    if (path === basePath || path.startsWith(`${basePath}/`)) path = path.slice(basePath.length);
    const method = req.method ?? 'GET';
    const read = method === 'GET' || method === 'HEAD';

    if (path === '' || (path === '/' && read)) {
      // The page uses relative URLs, so it must be served with its trailing slash.
      const shown = new URL((req as { originalUrl?: string }).originalUrl ?? req.url ?? '/', url).pathname;
      if (!shown.endsWith('/')) {
        res.writeHead(302, { location: `${shown}/${url.search}`, 'content-length': 0 });
        res.end();
        return;
      }
    }
    if (read && (path in ASSETS || path === ELK_PATH)) return serveAsset(req, res, path);
    if (read && path === '/graph.json') {
      return send(res, 200, 'application/json; charset=utf-8', graphJson, { 'cache-control': 'no-cache' });
    }
    if (read && path === '/runs.json') return sendJson(res, 200, listRuns());
    if (method === 'GET' && path === '/feed') {
      if (closed) return sendJson(res, 503, { detail: 'the inspector is closed', code: 'SHUTTING_DOWN' });
      return openFeed(req, res, url.searchParams.get('run') || undefined);
    }
    const cancelPath = /^\/runs\/([^/]+)\/cancel$/.exec(path);
    if (cancel && cancelPath && method === 'POST') {
      let runId: string;
      try {
        runId = decodeURIComponent(cancelPath[1]!);
      } catch {
        return sendJson(res, 400, {
          detail: 'the run id is not valid percent-encoding',
          code: 'INVALID_INPUT',
        });
      }
      const { status, body } = cancel(runId);
      return sendJson(res, status, body);
    }
    if (next) return next();
    sendJson(res, 404, { detail: `${method} ${url.pathname} not found`, code: 'NOT_FOUND' });
  };

  const handler: InspectorHandler = Object.assign(handle, { publicPaths: PUBLIC_PATHS });
  return {
    handler,
    close() {
      closed = true;
      for (const [res, end] of feeds) {
        end(); // first, so that no heartbeat is written after the end
        res.end();
      }
    },
  };
}
