/**
 * Where runstate's errors meet HTTP: the status of every error code, the JSON body `{detail, code}`,
 * and the one handler that writes it, and the answers to what Node's HTTP server refuses before
 * the app sees it. It imports node:http only, never express: the inspector (usable on plain
 * node:http) answers its errors through it too.
 *
 * @packageDocumentation
 */
import { maxHeaderSize, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../../machines/run-types.js';
import { RunstateError } from '../errors.js';

/**
 * The HTTP status of every error code: the one place where runstate's errors meet HTTP. A
 * `Record` over `ErrorCode`, so a new code does not compile until it has a status.
 */
export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  INVALID_INPUT: 422,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  AGENT_NOT_FOUND: 404,
  RUN_NOT_FOUND: 404,
  SESSION_NOT_FOUND: 404,
  RUN_ALREADY_FINISHED: 409,
  PAYLOAD_TOO_LARGE: 413,
  SHUTTING_DOWN: 503,
  MODEL_REQUEST_FAILED: 502,
  MODEL_STREAM_INCOMPLETE: 502,
  RUN_TIMEOUT: 504,
  RUN_LOST: 503,
  STORE_UNAVAILABLE: 503,
  // A run that asked for tools too often failed; as an answer to a request, it is the model's fault.
  TOOL_ROUNDS_EXCEEDED: 502,
  RUN_NOT_PAUSED: 409,
  INTERNAL: 500,
};

/** What an error adds to its HTTP answer beyond `{detail, code}`. */
interface HttpExtras {
  /** Fields of the JSON body (`field` of a 422, `status` of a 409). */
  body?: Record<string, unknown>;
  /** Overrides the code's status (a body that could not be read at all, 400; a 405, a 415). */
  status?: number;
  /** Headers of the answer (`Allow` of a 405). */
  headers?: Record<string, string>;
}

// RunstateError carries no HTTP data, and the core must not learn about HTTP: the few errors that
// answer with more than `{detail, code}` are made by the factories below, which note it here.
const extras = new WeakMap<RunstateError, HttpExtras>();

/** A request field failed validation: 422 `{detail, code: 'INVALID_INPUT', field}`. */
export function invalidField(field: string, detail: string): RunstateError {
  const error = new RunstateError('INVALID_INPUT', detail);
  extras.set(error, { body: { field } });
  return error;
}

/**
 * The body could not be read (malformed JSON or multipart, unsupported encoding): 400
 * `{detail, code: 'INVALID_INPUT'}`. Unlike a 422, no field can be named.
 */
export function malformedRequest(detail: string, cause?: unknown): RunstateError {
  const error = new RunstateError('INVALID_INPUT', detail, { cause });
  extras.set(error, { status: 400 });
  return error;
}

/**
 * A field of the body whose name or value cannot be decoded (a form's percent-escape that is no
 * UTF-8, a multipart part in a charset the server does not read): 400 `{detail, code:
 * 'INVALID_INPUT', field}`, as a body that cannot be read is, with the field named (as it was sent,
 * when its name is what cannot be decoded).
 */
export function undecodableField(field: string, detail: string, cause?: unknown): RunstateError {
  const error = new RunstateError('INVALID_INPUT', detail, { cause });
  extras.set(error, { status: 400, body: { field } });
  return error;
}

/**
 * A body of a media type the route does not read: 415 `{detail, code: 'INVALID_INPUT', field:
 * 'content-type'}`, rather than a 422 for fields that were sent, only in a form the route cannot read.
 */
export function unsupportedMediaType(detail: string): RunstateError {
  const error = new RunstateError('INVALID_INPUT', detail);
  extras.set(error, { status: 415, body: { field: 'content-type' } });
  return error;
}

/**
 * A path served, asked with a method it does not answer: 405 `{detail, code: 'NOT_FOUND'}` with the
 * methods it answers in `Allow`, as HTTP (and AgentOS) answers; the code is a missing route's, which
 * it is for that method.
 */
export function methodNotAllowed(method: string, path: string, allowed: readonly string[]): RunstateError {
  const error = new RunstateError(
    'NOT_FOUND',
    `no route for ${method} ${path}: it answers ${allowed.join(', ')}`,
  );
  extras.set(error, { status: 405, headers: { Allow: allowed.join(', ') } });
  return error;
}

/** The HTTP status an error answers with. */
export function httpStatusOf(error: RunstateError): number {
  return extras.get(error)?.status ?? STATUS_BY_CODE[error.code];
}

/** The JSON body of an error answer: `{detail, code}` and the error's extra fields. */
export function errorBody(error: RunstateError): Record<string, unknown> {
  return { detail: error.message, code: error.code, ...error.details, ...extras.get(error)?.body };
}

/** Options of {@link errorHandler} and {@link sendError}. */
export interface ErrorHandlerOptions {
  /** Where unexpected errors (bugs: answered 500 without details) are reported. */
  logger: Pick<Console, 'error'>;
}

/**
 * Answers a request with an error: every thrown error becomes `{detail, code}` with the status of
 * its code. Anything that is not a {@link RunstateError} is a bug: answered 500 without its message
 * (no stack trace or internals leak to clients) and reported to the logger. A response whose
 * headers are already sent (a stream that started) cannot turn into an error answer: it is closed.
 */
export function sendError(res: ServerResponse, thrown: unknown, { logger }: ErrorHandlerOptions): void {
  let error = thrown instanceof RunstateError ? thrown : fromExpressError(thrown);
  if (!error) {
    logger.error('runstate: unexpected error while serving a request', thrown);
    error = new RunstateError('INTERNAL', 'internal server error', { cause: thrown });
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = httpStatusOf(error);
  const body = JSON.stringify(errorBody(error));
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  };
  Object.assign(headers, extras.get(error)?.headers);
  if (status === 401) headers['WWW-Authenticate'] = 'Bearer';
  if (status === 503) headers['Retry-After'] = '1';
  if (closesAfterAnswer(res.req)) headers.Connection = 'close';
  res.writeHead(status, headers);
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/**
 * Up to this size, a body an answer leaves unread is read to its end and dropped (Node does it once
 * the answer is sent), and the connection is kept. Closing it instead resets a connection the
 * client is still writing its body to, and the reset can take the answer with it: Node's `fetch`
 * posting a small form to an unknown agent, or with a wrong key, saw `EPIPE` and no answer.
 */
const DRAINED_BODY_BYTES = 64 * 1024;

/**
 * Whether an answer to `req`, which has not read its body to the end, closes the connection: for a
 * body of no known end (chunked: an endless upload), one declared over {@link DRAINED_BODY_BYTES},
 * or one the client may never send (it waits for `100 Continue`), Node would otherwise read the rest,
 * however long, to find the next request on the connection. A smaller body is read and dropped.
 * (A request without a body is not `complete` either while its handler runs in the turn that parsed
 * its head.)
 */
export function closesAfterAnswer(req: IncomingMessage): boolean {
  if (req.complete) return false;
  if (req.headers['transfer-encoding'] !== undefined || req.headers.expect !== undefined) return true;
  return Number(req.headers['content-length'] ?? 0) > DRAINED_BODY_BYTES;
}

/** The app's one error handler (express error middleware): {@link sendError}. */
export function errorHandler(
  options: ErrorHandlerOptions,
): (thrown: unknown, req: IncomingMessage, res: ServerResponse, next: unknown) => void {
  // Four parameters: express takes a function for error middleware by its length. With three, the
  // app's errors went past it to `createApp`'s fallback, and, mounted in another app, to that
  // app's handler (express's HTML page, with the stack trace).
  return (thrown, _req, res, _next) => sendError(res, thrown, options);
}

/**
 * Express's own client errors keep their meaning and status: `http-errors` objects marked `expose`,
 * and the router's URIError (status 400) for a path that cannot be decoded. Anything else is not
 * recognised.
 */
function fromExpressError(thrown: unknown): RunstateError | undefined {
  if (typeof thrown !== 'object' || thrown === null) return undefined;
  const { status, expose, message } = thrown as { status?: unknown; expose?: unknown; message?: unknown };
  if (expose !== true && !(thrown instanceof URIError)) return undefined;
  if (typeof status !== 'number' || status < 400 || status >= 500) return undefined;
  const detail = typeof message === 'string' ? message : 'bad request';
  if (status === 404) return new RunstateError('NOT_FOUND', detail);
  if (status === 413) return new RunstateError('PAYLOAD_TOO_LARGE', detail);
  if (status === 400) return malformedRequest(detail, thrown);
  // Another client error of express's parts, its status kept: the static files' 416 (a range past
  // the end) and 412 (a failed `If-Match`).
  const error = new RunstateError('INVALID_INPUT', detail, { cause: thrown });
  extras.set(error, { status });
  return error;
}

/** Answers every request no route matched: 404 JSON, never express's HTML page. */
export function notFoundHandler(req: IncomingMessage & { originalUrl?: string }): never {
  throw new RunstateError('NOT_FOUND', `no route for ${req.method} ${requestedPath(req)}`);
}

/**
 * The path of a request as its client sent it, without its query: with the prefix of an app this
 * one is mounted in (`app.use('/api', ...)`), which express's `req.path` leaves out.
 */
export function requestedPath(req: IncomingMessage & { originalUrl?: string }): string {
  const url = req.originalUrl ?? req.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * Answers a request that Node's HTTP parser refused, so that it never reached the app (a malformed
 * request line or header, headers over Node's size limit, a request not received in time), as the
 * app answers bad input: JSON `{detail, code}` and the status Node would send (400, 413, 431 or 408),
 * where Node's own answer has no body. Then closes the connection, as Node does. A `clientError`
 * listener of a `node:http` server: `startServer` registers it; register it on a server of
 * your own with `server.on('clientError', answerClientError)`.
 *
 * @example
 * ```ts
 * const server = http.createServer(runstate.serverOptions, runstate.app);
 * server.on('clientError', answerClientError);
 * server.on('connect', answerConnect);
 * server.on('checkExpectation', answerExpectation);
 * ```
 */
export function answerClientError(error: Error & { code?: string; reason?: string }, socket: Duplex): void {
  // Node's own check: no answer to a client that is gone, or behind an answer that started on this
  // connection (a pipelined request after a streamed one), whose bytes the client is still reading.
  const inFlight = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (error.code !== 'ECONNRESET' && socket.writable && !inFlight?.headersSent) {
    writeRawAnswer(socket, clientErrorAnswer(error));
  }
  socket.destroy(error);
}

/**
 * Answers a request whose `Expect` header asks for something other than `100-continue` (which no
 * server can meet): 417 `{detail, code: 'INVALID_INPUT'}`, where Node's own 417 has no body; the
 * connection is closed after it. A `checkExpectation` listener of a `node:http` server: `startServer`
 * registers it.
 *
 * @example
 * ```ts
 * server.on('checkExpectation', answerExpectation);
 * ```
 */
export function answerExpectation(req: IncomingMessage, res: ServerResponse): void {
  const body = JSON.stringify({
    detail: `the expectation '${String(req.headers.expect)}' cannot be met (only 100-continue is known)`,
    code: 'INVALID_INPUT',
  });
  res.shouldKeepAlive = false;
  res.writeHead(417, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

/**
 * Answers a `CONNECT` request (a proxy's tunnel, which Node hands to a `connect` listener instead of
 * the app, and without one closes with no answer) as the app answers any method it has no route
 * for: 404 `{detail, code: 'NOT_FOUND'}`. `startServer` registers it.
 *
 * @example
 * ```ts
 * server.on('connect', answerConnect);
 * ```
 */
export function answerConnect(req: IncomingMessage, socket: Duplex): void {
  writeRawAnswer(socket, {
    status: 404,
    code: 'NOT_FOUND',
    detail: `no route for CONNECT ${req.url ?? ''}`,
  });
  // Its client may go on sending (a tunnel's bytes): nothing more is read.
  socket.end(() => socket.destroy());
}

interface RawAnswer {
  status: number;
  code: ErrorCode;
  detail: string;
}

/** An error answer written on a connection no `ServerResponse` owns; the connection then closes. */
function writeRawAnswer(socket: Duplex, { status, code, detail }: RawAnswer): void {
  const body = JSON.stringify({ detail, code });
  socket.write(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function clientErrorAnswer(error: Error & { code?: string; reason?: string }): RawAnswer {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        code: 'PAYLOAD_TOO_LARGE',
        detail: `the request line and headers are over the server's limit of ${maxHeaderSize} bytes`,
      };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return {
        status: 413,
        code: 'PAYLOAD_TOO_LARGE',
        detail: "the body's chunk extensions are over the server's limit",
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status: 408,
        code: 'INVALID_INPUT',
        detail: 'the request was not received in time',
      };
    default:
      return {
        status: 400,
        code: 'INVALID_INPUT',
        // llhttp's reason ("Invalid header value char"), without Node's "Parse Error: " prefix.
        detail: `malformed HTTP request: ${error.reason ?? error.message}`,
      };
  }
}
