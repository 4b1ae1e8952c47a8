import type { IncomingMessage, ServerResponse } from 'node:http';
import cors from 'cors';
import express, { type Express } from 'express';
import { z } from 'zod';
import type { Agent } from '../agent.js';
import { createPrometheusMetrics, type PrometheusMetrics } from '../observe/create-prometheus-metrics.js';
import {
  checkRunTracerOptions,
  createRunTracer,
  type RunTracerOptions,
} from '../observe/create-run-tracer.js';
import { AgentDirectory } from './agent-directory.js';
import { apiDocs } from './api-docs.js';
import { agentRoutes } from './agent-routes.js';
import { bearerAuth } from './bearer-auth.js';
import { handlePerConnection } from './handle-per-connection.js';
import { declaredTooLarge, parseByteSize, type BodyLimit } from './body-parsers.js';
import { parseQueryString } from './query-string.js';
import { errorHandler, malformedRequest, notFoundHandler, sendError } from './http-errors.js';
import { expressMessageClasses, type MessageClasses } from './message-classes.js';
import { RunstateError } from '../errors.js';
import { checkOption, checkOptionNames, positiveDuration } from '../runtime/run-limits.js';
import type { RouteContext } from './route-context.js';
import { runRoutes } from './run-routes.js';
import { refuseOtherMethods } from './method-not-allowed.js';
import { observeRoutes } from './observe-routes.js';
import { sessionRoutes } from './session-routes.js';
import { listAnswers } from './json-array.js';
import { trackResponses } from './track-responses.js';
import { allowedHostsSchema, originSchema, refuseForeignRequests } from './foreign-requests.js';
import { rememberAppRoot } from './app-root.js';

/** Origins allowed when none are configured: Agno's Agent UI on its default local port. */
export const DEFAULT_CORS_ORIGINS: readonly string[] = ['http://localhost:3000', 'http://127.0.0.1:3000'];

/**
 * A node:http handler that calls `next` for requests it does not serve (express middleware too).
 * Its `publicPaths`, relative to where it is mounted (`''` is the mount itself), are served without
 * a bearer token: static files only, never data (the inspector's page, script and chart).
 */
export type MountedHandler = ((
  req: IncomingMessage,
  res: ServerResponse,
  next: (error?: unknown) => void,
) => void) & { readonly publicPaths?: readonly string[] };

type NodeHandler = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void;

/** Options of {@link createApp}. Only `agents` is required. */
export interface CreateAppOptions {
  /** The agents served, by their `id`. Agents built for a server usually share one orchestrator. */
  agents: readonly Agent[];
  /**
   * Clients must send `Authorization: Bearer <securityKey>` (`GET /`, `/health`, the API document
   * and CORS preflights stay open). Default: `process.env.RUNSTATE_SECURITY_KEY`; empty or unset means no auth.
   */
  securityKey?: string | undefined;
  /** Origins allowed to call the API from a browser. Default {@link DEFAULT_CORS_ORIGINS}. */
  cors?: { origins: readonly (string | RegExp)[] | '*' } | undefined;
  /**
   * Without a security key, host names (the `Host` header) requests may name besides `localhost`
   * and IP addresses; others get a 403, which stops a web page from reading runs through a name it
   * points at this server (DNS rebinding). `'*'` for any. Without a key too, POSTs, PATCHes and
   * DELETEs from a page of an origin neither allowed by `cors` nor the server's own get a 403.
   * Default: none.
   */
  allowedHosts?: readonly string[] | '*' | undefined;
  /** Largest request body (JSON, urlencoded or multipart): bytes, or `'1mb'`. Default `'1mb'`. */
  bodyLimit?: BodyLimit | undefined;
  /** An idle event stream gets a `: ping` comment this often, so proxies keep it open. Default 15 s. */
  heartbeatMs?: number | undefined;
  /** Sent as every agent's `db_id`, which AgentOS clients pass back. Default `'runstate'`. */
  dbId?: string | undefined;
  /** Where unexpected errors (bugs, answered 500) are reported. Default `console`. */
  logger?: Pick<Console, 'error'> | undefined;
  /**
   * More handlers by path, such as the inspector page: `{ '/inspect': inspector.handler }`. They
   * come after CORS and auth (but for their `publicPaths`) and before the 404. `shutdown()` does not wait for their responses:
   * end long-lived ones (the inspector's feed) yourself.
   */
  mount?: Readonly<Record<string, MountedHandler>> | undefined;
  /**
   * Prometheus metrics of the runs, served at `GET /prometheus` (behind the security key). Pass a
   * set made with `createPrometheusMetrics({ registry })` to share your registry; `false` serves none.
   * Default: a set with a registry of its own.
   */
  metrics?: PrometheusMetrics | false | undefined;
  /**
   * OpenTelemetry spans of the runs (through `@opentelemetry/api`: nothing is recorded until the
   * application registers an SDK), each run's span a child of the request's `traceparent`. `false`
   * turns it off. Default `{}` (message content not recorded).
   */
  tracing?: RunTracerOptions | false | undefined;
}

/** The HTTP app of runstate and its shutdown. */
export interface RunstateApp {
  /** The express app: `app.listen(port)`, mount it in another app, or use {@link startServer}. */
  readonly app: Express;
  /**
   * The request and response classes for a server of your own: `http.createServer(serverOptions,
   * app)`, as {@link startServer} does. Express then has no prototype to change per request, which
   * saves about 85 µs of CPU per request (`app.listen()` works too, without that saving).
   */
  readonly serverOptions: MessageClasses;
  /**
   * The handler of a server's `checkContinue` event, for a server of your own:
   * `server.on('checkContinue', runstate.checkContinue)`, as {@link startServer} does. A client that
   * sends `Expect: 100-continue` waits for `100 Continue` before it sends its body; Node sends it at
   * once by default, so a body over `bodyLimit` would be uploaded only to be refused. This sends it
   * only for a `Content-Length` within the limit, then hands the request to `app`; a larger one is
   * answered 413 at once, without it, and the connection closed after that answer. (For a server
   * whose handler is `app`; an app mounted in another answers what its outer app sends.)
   */
  readonly checkContinue: (req: IncomingMessage, res: ServerResponse) => void;
  /**
   * Cancels every active run with reason `shutdown`, so each open stream sends `RunCancelled` and
   * ends; new runs are refused (503). Resolves once every response in progress is over. Stop the
   * HTTP server from accepting connections first ({@link startServer} does it all in order).
   */
  shutdown(): Promise<void>;
}

/** The names of {@link CreateAppOptions}: a misspelt one (`securityKy`) would serve with no key. */
const CREATE_APP_OPTIONS = [
  'agents',
  'securityKey',
  'cors',
  'allowedHosts',
  'bodyLimit',
  'heartbeatMs',
  'dbId',
  'logger',
  'mount',
  'metrics',
  'tracing',
] as const satisfies readonly (keyof CreateAppOptions)[];

/** The shape of {@link CreateAppOptions}, checked at `createApp` (each option's range where it is used). */
const createAppOptionsSchema = z.object(
  {
    agents: z
      .array(
        z.custom<Agent>((agent) => typeof agent === 'object' && agent !== null, 'must be an Agent'),
        {
          error: 'must be an array of agents',
        },
      )
      .min(1, 'must hold at least one agent'),
    // `null` is absent, as in JavaScript's optional options (`securityKey: process.env.KEY ?? null`).
    securityKey: z.string({ error: 'must be a string' }).nullish(),
    cors: z
      .strictObject(
        {
          // Origins as the `cors` package takes them: strings, or regular expressions.
          origins: z
            .union([z.literal('*'), z.array(z.union([originSchema, z.instanceof(RegExp)]))], {
              error: "must be an array of origins, or '*'",
            })
            .nullish(),
        },
        { error: 'must be { origins }' },
      )
      .nullish(),
    bodyLimit: z.union([z.number(), z.string()], { error: "must be bytes, or a size like '1mb'" }).nullish(),
    // Never empty: the Agent UI loads no sessions without one.
    dbId: z.string({ error: 'must be a string' }).min(1, 'must not be empty').nullish(),
    // Options of metrics are createPrometheusMetrics's: `{ prefix }` here would be lost.
    metrics: z
      .union(
        [
          z.literal(false),
          z.custom<PrometheusMetrics>(
            (metrics) =>
              typeof metrics === 'object' &&
              metrics !== null &&
              typeof (metrics as PrometheusMetrics).listener === 'function' &&
              typeof (metrics as PrometheusMetrics).countEventStreams === 'function',
          ),
        ],
        {
          error:
            'must be what createPrometheusMetrics() returns (createPrometheusMetrics({ prefix })), or false',
        },
      )
      .nullish(),
    mount: z
      .record(
        z.string(),
        z.custom<MountedHandler>((handler) => typeof handler === 'function', 'must be a handler function'),
      )
      .nullish(),
  },
  { error: 'must be an object with agents' },
);

/**
 * Creates the AgentOS-compatible HTTP app: health, agents, runs (streamed over SSE, cancellable,
 * resumable), sessions; JSON errors `{detail, code}`; optional bearer auth; CORS.
 *
 * @example
 * ```ts
 * import { Agent, OpenAIChat, createOrchestrator } from 'runstate';
 * import { createApp, startServer } from 'runstate/server';
 *
 * const orchestrator = createOrchestrator();
 * const agent = new Agent({ name: 'Story Writer Agent', model: new OpenAIChat({ id: 'gpt-5-mini' }), orchestrator });
 * const server = await startServer(createApp({ agents: [agent] }), { port: 7777 });
 * // curl -N http://127.0.0.1:7777/agents/story-writer-agent/runs -F message='Tell me a story'
 * process.once('SIGTERM', () => void server.close());
 * ```
 */
export function createApp(options: CreateAppOptions): RunstateApp {
  // What types do not reach (JavaScript, options read from elsewhere) fails here, named, rather
  // than as a TypeError or on the first request.
  // Names first: a misspelt `agnets` is named as such, not as `agents` missing.
  if (typeof options === 'object' && options !== null)
    checkOptionNames(options, CREATE_APP_OPTIONS, 'createApp');
  checkOption(createAppOptionsSchema, options, 'options');
  const agents = new AgentDirectory(options.agents);
  const context: RouteContext = {
    agents,
    dbId: options.dbId ?? 'runstate',
    heartbeatMs: checkOption(positiveDuration.optional(), options.heartbeatMs, 'heartbeatMs') ?? 15_000,
    bodyLimit: options.bodyLimit ?? '1mb',
    answerList: listAnswers(),
  };
  const maxBodyBytes = parseByteSize(context.bodyLimit); // a wrong limit fails here, not on the first request
  const securityKey = options.securityKey ?? process.env.RUNSTATE_SECURITY_KEY;
  const origins = options.cors?.origins ?? DEFAULT_CORS_ORIGINS;
  const allowedHosts = checkOption(allowedHostsSchema.optional(), options.allowedHosts, 'allowedHosts') ?? [];
  const responses = trackResponses();
  const metrics = options.metrics === false ? undefined : (options.metrics ?? createPrometheusMetrics());
  if (options.tracing != null && options.tracing !== false)
    checkRunTracerOptions(options.tracing, 'createApp tracing');
  const tracer = options.tracing === false ? undefined : createRunTracer(options.tracing ?? {});
  // Neither reads the causes of state changes: the runs they watch go uninspected (cheaper per chunk).
  // The tracer's spans are the active context of the model requests and tool calls (`around`).
  const unsubscribe = agents.orchestrators.flatMap((orchestrator) => [
    ...(metrics ? [orchestrator.subscribe(metrics.listener, { causes: false })] : []),
    ...(tracer ? [orchestrator.subscribe(tracer.listener, { causes: false, around: tracer.around })] : []),
  ]);

  const app = express();
  const serverOptions = expressMessageClasses(app);
  app.use(requireHost);
  app.use(handlePerConnection);
  app.disable('x-powered-by');
  app.set('query parser', parseQueryString);
  // Run records change while a run streams: no 304s to polling clients.
  app.disable('etag');
  // Before auth: preflights carry no credentials. `authorization` is named because `*` in
  // Access-Control-Allow-Headers does not cover it.
  app.use(
    cors({
      origin: origins === '*' ? '*' : [...origins],
      methods: ['GET', 'POST', 'PATCH', 'DELETE'],
      allowedHeaders: ['content-type', 'authorization', 'last-event-id'],
      maxAge: 600,
    }),
  );
  // After CORS, so that an allowed page reads why it was refused.
  app.use(refuseForeignRequests({ origins, allowedHosts, keyed: Boolean(securityKey) }));
  // The API document and its page hold no run data: open, before auth.
  const docs = apiDocs({ secured: Boolean(securityKey), prometheus: metrics !== undefined });
  app.use(docs);
  const mounts = Object.entries(options.mount ?? {});
  if (securityKey) {
    // Exact paths: a mount's static files open, the rest of it (its data) behind the token.
    const openPaths = mounts.flatMap(([path, handler]) =>
      (handler.publicPaths ?? []).map((file) => `${path.replace(/\/+$/, '')}${file}` || '/'),
    );
    app.use(bearerAuth({ securityKey, openPaths: ['/', '/health', ...openPaths] }));
  }
  // A handler mounted at any depth (`/debug/inspect`) learns where this app's routes are.
  if (mounts.length > 0) app.use(rememberAppRoot);
  for (const [path, handler] of mounts) app.use(path, handler);
  // Only runstate's own responses are waited for on shutdown (see `mount`).
  app.use(responses.middleware);
  const observe = observeRoutes({ metrics, traceContext: tracer !== undefined });
  const routes = [agentRoutes(context), runRoutes(context), sessionRoutes(context)];
  app.use(observe);
  app.use(refuseNulInPath);
  for (const router of routes) app.use(router);
  // A path served, asked with a method it does not answer: 405 with `Allow`, not the 404 below.
  app.use(refuseOtherMethods([docs, observe, ...routes]));
  app.use(notFoundHandler);
  const errors = { logger: options.logger ?? console };
  app.use(errorHandler(errors));

  // Express's router skips every middleware, CORS, auth and the 404 above included, for a request
  // target it cannot parse (`GET http://[::1/agents`), and answers with its HTML page. When the app
  // is the server's handler (no `next`), such requests are answered here instead, as JSON: 401 when
  // a key is configured (nothing is served to an unauthenticated client), 400 otherwise. Mounted in
  // another app, the outer app's router met the target first.
  // `handle` is how express runs every request (`app.listen` and `app(req, res)` call it); its
  // types leave it out.
  const internals = app as unknown as { handle: NodeHandler };
  const routerHandle = internals.handle.bind(app);
  internals.handle = (req, res, next) => {
    const unparsable = (error?: unknown) =>
      sendError(
        res,
        error ??
          (securityKey
            ? new RunstateError('UNAUTHORIZED', 'missing or invalid bearer token')
            : malformedRequest('the request target cannot be parsed')),
        errors,
      );
    routerHandle(req, res, next ?? unparsable);
  };

  return {
    app,
    serverOptions,
    checkContinue(req, res) {
      // Not told to send a body no route reads: answered here, before any route could answer with
      // headers of its own (an event stream keeps its connection alive). The client may send the
      // body all the same (it need not wait for the 100 forever): the connection closes after.
      const declared = declaredTooLarge(req, maxBodyBytes);
      if (declared) {
        res.setHeader('Connection', 'close');
        sendError(res, declared, errors);
        return;
      }
      // Told to go on once a route starts reading the body: a request refused before (a wrong
      // token, an unknown agent, a body of another media type) is answered without the client
      // uploading what would be dropped. (Node closes the connection after an answer that left the
      // `100` unsent: the body that may still come is never taken for the next request.)
      req.once('resume', () => {
        if (!res.headersSent) res.writeContinue();
      });
      app(req, res);
    },
    async shutdown() {
      await Promise.all(agents.orchestrators.map((orchestrator) => orchestrator.shutdown()));
      await responses.idle();
      // After the shutdown: the runs it cancelled are counted and their spans ended.
      for (const stop of unsubscribe) stop();
    },
  };
}

/**
 * An HTTP/1.1 request without `Host`, which HTTP/1.1 requires, or one with several (RFC 9112, 3.2):
 * a 400 in JSON, and the connection closed, as Node answers the first (with no body) when its
 * `requireHostHeader` is on; `startServer` turns that off so that this answers.
 */
function requireHost(req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void {
  if (req.httpVersion === '1.1' && req.headers.host === undefined) {
    res.setHeader('Connection', 'close');
    return next(malformedRequest('an HTTP/1.1 request must have a Host header'));
  }
  // Node keeps the first of two: a proxy that goes by the last would route by a name never checked.
  if (req.headers.host !== undefined && hostHeaders(req.rawHeaders) > 1) {
    res.setHeader('Connection', 'close');
    return next(malformedRequest('a request must have one Host header, not several'));
  }
  next();
}

function hostHeaders(rawHeaders: readonly string[]): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') count++;
  }
  return count;
}

/**
 * A path with an encoded NUL (`%00`): its ids can name nothing (PostgreSQL's text cannot even hold
 * one), so it is a 400 before any route reads it from a store.
 */
function refuseNulInPath(req: IncomingMessage, _res: ServerResponse, next: (error?: unknown) => void): void {
  const path = req.url?.split('?', 1)[0] ?? '';
  next(/%00/i.test(path) ? malformedRequest('the path must not contain a NUL character (%00)') : undefined);
}
