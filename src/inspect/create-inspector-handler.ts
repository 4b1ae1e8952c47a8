import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { RunstateError } from '../errors.js';
import { appRootOf } from '../server/app-root.js';
import { eventFrame, openEventStream } from '../server/event-stream.js';
import { foreignRequestError } from '../server/foreign-requests.js';
import { malformedRequest, methodNotAllowed, sendError } from '../server/http-errors.js';
import { parseQueryString, singleQueryValue } from '../server/query-string.js';
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
  listRuns: () => RunSummary[] | Promise<RunSummary[]>;
  /**
   * Serves `POST <mount>/runs/:run_id/cancel` when given: resolves with the 200 body, or throws a
   * `RunstateError` (`RUN_NOT_FOUND`, `RUN_ALREADY_FINISHED`), answered by the server's error map.
   */
  cancel: ((runId: string) => object | Promise<object>) | undefined;
  /**
   * The cancel URL template a page's snapshot names, given where `createApp` has its routes when
   * it mounted the handler (`undefined` elsewhere).
   */
  cancelUrl: (appRoot: string | undefined) => string;
  /**
   * On a server of its own, host names answered besides `localhost` and IP addresses (`undefined`:
   * any), as `allowedHostNames` gives them.
   */
  hosts: ReadonlySet<string> | undefined;
  /** Stripped from the path when the request was not routed by a framework; no trailing slash. */
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
const NO_NAMES: ReadonlySet<string> = new Set();
/** What a server of the inspector alone can be told of a refusal: it has no security key, no cors. */
const REMEDIES = {
  host: "Add it to createInspector's allowedHosts",
  origin: "only this server's own pages may (mount the inspector in createApp to allow others with cors)",
};
/** What a feed keeps for a reader whose socket is full, before it drops messages and resyncs. */
const MAX_QUEUED_BYTES = 1024 * 1024;
/** `''`: the mount itself, which redirects to the page. */
const PUBLIC_PATHS: readonly string[] = Object.freeze(['', ...Object.keys(ASSETS), ELK_PATH, '/graph.json']);
/** The paths read with GET (and HEAD): the public ones, the run list and the feed. */
const READ_PATHS: ReadonlySet<string> = new Set([...PUBLIC_PATHS, '/runs.json', '/feed']);

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
  const { graph, subscribe, listRuns, cancel, cancelUrl, hosts, basePath, heartbeatMs } = options;
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
      frame = eventFrame({ event: message.type, data: JSON.stringify(message) });
      frames.set(message, frame);
    }
    return frame;
  }

  function openFeed(req: IncomingMessage, res: ServerResponse, runId: string | undefined): void {
    const stream = openEventStream(res, { heartbeatMs, retryMs: 2000 });
    // A HEAD request got the headers only: nothing to follow.
    if (stream.over) return;
    // The feed cannot hold the inspector back, so while the socket is full its messages wait here,
    // up to a bound. Past it they are dropped, and once the socket drains the page gets a fresh
    // snapshot instead (summaries are idempotent, the detail is resent whole). A frame larger than
    // the socket's buffer fills it on its own, whatever the reader's speed: waiting for `drain` is
    // then the normal case, and must never resubscribe (that sent a new snapshot per drain, in a
    // loop a fast reader kept from ever yielding).
    let waiting: string[] | undefined;
    let waitingBytes = 0;
    let dropped = false;
    // Known only here, from the request: where the app that mounted the page has its routes.
    const pageCancelUrl = cancelUrl(appRootOf(req));
    const send = (message: FeedMessage): void => {
      // (A snapshot is made for each subscriber: changing it changes no other page's.)
      if (message.type === 'snapshot' && message.cancel_url !== pageCancelUrl) {
        message = { ...message, cancel_url: pageCancelUrl };
      }
      const frame = frameOf(message);
      if (waiting === undefined) {
        if (!stream.write(frame)) void flushWhenDrained();
      } else if (!dropped && waitingBytes + frame.length <= MAX_QUEUED_BYTES) {
        waiting.push(frame);
        waitingBytes += frame.length;
      } else {
        dropped = true;
        waiting = [];
      }
    };
    const flushWhenDrained = async (): Promise<void> => {
      waiting = [];
      waitingBytes = 0;
      while (await stream.drained()) {
        if (dropped) return resync();
        const frames: string[] = waiting ?? [];
        // Written until the socket is full again (that frame included); the rest wait for the next drain.
        const full: number = frames.findIndex((frame) => !stream.write(frame));
        waiting = full < 0 ? undefined : frames.slice(full + 1);
        if (waiting === undefined) return;
        waitingBytes = waiting.reduce((bytes, frame) => bytes + frame.length, 0);
      }
    };
    const resync = async (): Promise<void> => {
      // On a later turn of the event loop, never within the drain.
      await new Promise((resolve) => setImmediate(resolve));
      if (stream.over) return;
      dropped = false;
      waiting = undefined;
      unsubscribe();
      unsubscribe = subscribe(send, { runId });
    };
    let unsubscribe = subscribe(send, { runId });
    const end = (): void => {
      unsubscribe();
      feeds.delete(res);
      stream.end();
    };
    feeds.set(res, end);
    stream.onClientGone(end);
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

  function sendJson(res: ServerResponse, body: unknown): void {
    send(res, 200, 'application/json; charset=utf-8', JSON.stringify(body), { 'cache-control': 'no-store' });
  }

  /** Answers with what `produce` returns or resolves to, or with the error it throws. */
  function reply(
    res: ServerResponse,
    next: ((error?: unknown) => void) | undefined,
    produce: () => unknown,
  ): void {
    void Promise.resolve()
      .then(produce)
      .then(
        (body) => sendJson(res, body),
        (error: unknown) => fail(res, error, next),
      );
  }

  /** Errors go to the host app's error handler when mounted with one, else to the server's error map. */
  function fail(res: ServerResponse, error: unknown, next: ((error?: unknown) => void) | undefined): void {
    if (next) next(error);
    else sendError(res, error, { logger: console });
  }

  function serveAsset(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    next: ((error?: unknown) => void) | undefined,
  ): void {
    let file: Asset;
    try {
      file = asset(path);
    } catch (error) {
      // elkjs missing from node_modules, or the package's assets: say so, never crash the server.
      const detail = path === ELK_PATH ? 'elkjs is not installed (npm install elkjs)' : String(error);
      return fail(
        res,
        new RunstateError('INTERNAL', `runstate inspector: ${detail}`, { cause: error }),
        next,
      );
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
    const target = req.url ?? '/';
    try {
      // A path (origin form) is joined to the base as text: `new URL('//x', base)` would read
      // `//x` as a host (and `//` as a URL without one, a 400), where it is a path.
      url = new URL(
        target.startsWith('/') ? `http://inspector.invalid${target}` : target,
        'http://inspector.invalid',
      );
    } catch {
      // An absolute-form target that is no URL: on plain node:http a throw here would end the process.
      return fail(res, malformedRequest('the request target is not a valid URL'), next);
    }
    // On a plain node:http server of its own (no key), the page's data and cancels stay with pages
    // of this server: `localhost`, an IP address or a name of `allowedHosts`, and its own origin
    // (see refuseForeignRequests). Mounted in an app (`next`), the app's own settings and auth decide.
    const foreign = next ? undefined : foreignRequestError(req, hosts, NO_NAMES, REMEDIES);
    if (foreign) return fail(res, foreign, next);
    let path = url.pathname;
    // Plain node:http: the full path. A router (express `app.use('/inspect', …)`) strips its mount
    // and says so in `baseUrl`: stripping `basePath` again would serve `/inspect/inspect/` too.
    const routed = Boolean((req as { baseUrl?: string }).baseUrl);
    if (!routed && (path === basePath || path.startsWith(`${basePath}/`))) path = path.slice(basePath.length);
    const method = req.method ?? 'GET';
    const read = method === 'GET' || method === 'HEAD';

    // The path as the client sent it (a router strips its mount from `req.url`).
    const shown = new URL((req as { originalUrl?: string }).originalUrl ?? req.url ?? '/', url).pathname;
    if (read && (path === '' || path === '/')) {
      // The page uses relative URLs, so it must be served with its trailing slash.
      if (!shown.endsWith('/')) {
        res.writeHead(302, { location: `${shown}/${url.search}`, 'content-length': 0 });
        res.end();
        return;
      }
      // The mount with its slash is the page, whatever was stripped (`/` with a basePath of `/`).
      path = '/';
    }
    if (read && (path in ASSETS || path === ELK_PATH)) return serveAsset(req, res, path, next);
    if (read && path === '/graph.json') {
      return send(res, 200, 'application/json; charset=utf-8', graphJson, { 'cache-control': 'no-cache' });
    }
    if (read && path === '/runs.json') return reply(res, next, listRuns);
    if (read && path === '/feed') {
      if (closed) return fail(res, new RunstateError('SHUTTING_DOWN', 'the inspector is closed'), next);
      let run: string | undefined;
      try {
        // As the app's routes read a query: `run` sent twice, or not decodable, is refused.
        run = singleQueryValue(parseQueryString(url.search.slice(1)), 'run');
      } catch (error) {
        return fail(res, error, next);
      }
      return openFeed(req, res, run || undefined);
    }
    const cancelPath = /^\/runs\/([^/]+)\/cancel$/.exec(path);
    if (cancel && cancelPath && method === 'POST') {
      let runId: string;
      try {
        runId = decodeURIComponent(cancelPath[1]!);
      } catch {
        return fail(res, malformedRequest('the run id is not valid percent-encoding'), next);
      }
      return reply(res, next, () => cancel(runId));
    }
    // A path served here, asked with a method it does not answer: 405 with `Allow`, as the app's routes.
    const allowed = READ_PATHS.has(path) ? ['GET', 'HEAD'] : cancel && cancelPath ? ['POST'] : undefined;
    if (allowed) return fail(res, methodNotAllowed(method, shown, allowed), next);
    if (next) return next();
    fail(res, new RunstateError('NOT_FOUND', `${method} ${url.pathname} not found`), undefined);
  };

  const handler: InspectorHandler = Object.assign(handle, { publicPaths: PUBLIC_PATHS });
  return {
    handler,
    close() {
      closed = true;
      for (const end of feeds.values()) end();
    },
  };
}
