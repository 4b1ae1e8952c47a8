import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { constants as zlibConstants, createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';

/**
 * The bodies of the responses {@link nodeHttpFetch} made, by response: read as node streams by
 * `readChatCompletionStream`, never as web streams.
 */
const bodies = new WeakMap<Response, Readable>();

/** The node stream of a successful response {@link nodeHttpFetch} made, or `undefined` for any other response. */
export function nodeBodyOf(response: Response): Readable | undefined {
  return bodies.get(response);
}

/**
 * The connections to model servers, kept alive between requests. Node's global agents keep at most
 * 256 idle connections to a host: when more runs than that end together (a burst of runs, many
 * streams at once), every connection past 256 is closed, and as many new ones are opened for the
 * next runs. These keep up to 4,096, each closed after 5 s unused (as the global agents do), the
 * most recently used taken first (`lifo`), so the others are the ones that time out.
 */
const AGENT_OPTIONS = { keepAlive: true, maxFreeSockets: 4_096, timeout: 5_000, scheduling: 'lifo' } as const;
const httpAgent = new HttpAgent(AGENT_OPTIONS);
const httpsAgent = new HttpsAgent(AGENT_OPTIONS);

/**
 * A response runstate cannot read however often it asks (an encoding it has no decoder for, too many
 * redirects): the SDK reports it as a connection error, and this says not to send it again.
 */
export class UnreadableResponseError extends TypeError {}

/** What `fetch` follows by default, and how many times (the fetch standard's limit). */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 20;
/** What a reason phrase may hold (RFC 9112: tab, space, visible ASCII, obs-text), as `Response` checks it. */
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** The headers of a body, dropped with it when a redirect turns a `POST` into a `GET`. */
const BODY_HEADERS = [
  'content-type',
  'content-length',
  'content-encoding',
  'content-language',
  'content-location',
];

// A body cut short (an error page a proxy compressed on the fly, an empty one with a gzip header) is
// read as far as it goes, as `fetch` reads it, rather than failing the answer: the status and
// headers of a 429 or a 502 are what matter. A cut stream is still told by its missing `[DONE]`.
const LENIENT_ZLIB = { finishFlush: zlibConstants.Z_SYNC_FLUSH };
const LENIENT_BROTLI = { finishFlush: zlibConstants.BROTLI_OPERATION_FLUSH };
const DECOMPRESSORS: Record<string, (() => Readable & NodeJS.WritableStream) | undefined> = {
  gzip: () => createGunzip(LENIENT_ZLIB),
  'x-gzip': () => createGunzip(LENIENT_ZLIB),
  deflate: () => createInflate(LENIENT_ZLIB),
  br: () => createBrotliDecompress(LENIENT_BROTLI),
};

/**
 * A `fetch` for the openai SDK (`new OpenAI({ fetch: nodeHttpFetch })`) over `node:http` and
 * `node:https`, with keep-alive agents of its own (see `AGENT_OPTIONS`). Why: a model's stream is
 * read a socket read at a time for its whole length, and undici's fetch hands each read through web
 * streams and several promises; a node stream hands it over in one `data` event. At 1,000 paced streams that is about a
 * fifth less CPU per chunk and ~90 KB less memory per stream (docs/performance.md).
 *
 * What it covers is what `OpenAIChat` sends: a string or byte body (else it defers to the global
 * `fetch`). A successful response has no web body: its node stream is read through
 * {@link nodeBodyOf}. A failed one (status ≥ 400) is read whole, so that the SDK reads its error body
 * as from any `fetch`. An abort of `init.signal` destroys the request and its socket at once, and
 * rejects with the signal's reason (an `AbortError`) while the headers are still awaited. Redirects
 * are followed as `fetch` follows them (a base URL behind an `http` → `https` or path redirect).
 */
export function nodeHttpFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  const { body } = init;
  if (
    input instanceof Request ||
    !(body == null || typeof body === 'string' || body instanceof Uint8Array) ||
    (init.redirect !== undefined && init.redirect !== 'follow')
  )
    return fetch(input, init);
  return send(typeof input === 'string' ? new URL(input) : input, init as SendInit, 0);
}

/** What {@link send} takes: a body it writes itself. */
type SendInit = Omit<RequestInit, 'body'> & { body?: string | Uint8Array | null | undefined };

function send(url: URL, init: SendInit, redirects: number): Promise<Response> {
  const { body, signal } = init;
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  const headers: Record<string, string> = {};
  // The SDK hands a `Headers` already checked: copying it into a new one would check each again.
  const given = init.headers instanceof Headers ? init.headers : new Headers(init.headers);
  for (const [name, value] of given) headers[name] = value;
  if (body != null) headers['content-length'] = String(Buffer.byteLength(body));

  return new Promise<Response>((resolve, reject) => {
    const request =
      url.protocol === 'https:'
        ? httpsRequest(url, { method: init.method ?? 'GET', headers, agent: httpsAgent })
        : httpRequest(url, { method: init.method ?? 'GET', headers, agent: httpAgent });
    let response: IncomingMessage | undefined;
    const onAbort = () => {
      const reason = abortReason(signal!);
      request.destroy(reason);
      response?.destroy(reason);
      reject(reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const settle = () => signal?.removeEventListener('abort', onAbort);
    request.once('error', (error) => {
      settle();
      reject(error);
    });
    // Node hands a `101 Switching Protocols` to 'upgrade' listeners only, and without one neither
    // answers nor fails the request: the run would wait for its idle timeout.
    request.once('upgrade', (incoming, socket) => {
      socket.destroy();
      settle();
      reject(new UnreadableResponseError(`the server switched protocols (${incoming.statusCode})`));
    });
    request.once('response', (incoming) => {
      response = incoming;
      incoming.once('close', settle);
      // Until a reader listens (or when none ever does: a run cancelled meanwhile), a failure of the
      // body must not be an uncaught 'error'.
      incoming.on('error', ignore);
      try {
        answer(incoming);
      } catch (error) {
        // A status `Response` refuses (below 200): nothing to read.
        incoming.destroy();
        reject(error instanceof Error ? error : new TypeError(String(error)));
      }
    });
    request.end(body ?? undefined);

    function answer(incoming: IncomingMessage): void {
      const location = incoming.headers.location;
      if (REDIRECTS.has(incoming.statusCode!) && location !== undefined) {
        // Read off, so that the connection goes back to the pool.
        incoming.resume();
        settle();
        resolve(redirect(url, init, incoming.statusCode!, location, redirects));
        return;
      }
      const status = incoming.statusCode!;
      // Node's parser takes any three digits; `Response` only 200–599 (below 200 is thrown below).
      if (status > 599) {
        incoming.destroy();
        reject(
          new UnreadableResponseError(`the server answered with an HTTP status out of range: ${status}`),
        );
        return;
      }
      const meta = {
        status,
        // A reason phrase `Response` refuses (a control character) says nothing the status does not.
        statusText: REASON_PHRASE.test(incoming.statusMessage ?? '') ? incoming.statusMessage : '',
        headers: headersOf(incoming),
      };
      const encoding = incoming.headers['content-encoding']?.toLowerCase();
      const decompress = encoding && encoding !== 'identity' ? DECOMPRESSORS[encoding] : undefined;
      if (encoding && encoding !== 'identity' && !decompress) {
        incoming.destroy();
        reject(
          new UnreadableResponseError(`the server answered in an unknown content encoding: ${encoding}`),
        );
        return;
      }
      const stream: Readable = decompress ? incoming.pipe(decompress()) : incoming;
      if (decompress) {
        // A failure of the socket reaches the reader through the decompressor, and a reader that
        // stops early (at `[DONE]`, on an error) closes the socket through it: destroying the
        // decompressor alone would leave the response open, the server writing into it.
        incoming.once('error', (error) => stream.destroy(error));
        stream.once('close', () => {
          if (!incoming.complete) incoming.destroy();
        });
        stream.on('error', ignore);
        meta.headers.delete('content-encoding');
      }
      if (meta.status >= 400) {
        // (`Response` built inside the chain: whatever it throws fails the fetch, not the process.)
        readWhole(stream)
          .then((text) => new Response(text, meta))
          .then(resolve, reject);
        return;
      }
      const ok = new Response(null, meta);
      bodies.set(ok, stream);
      resolve(ok);
    }
  });
}

/**
 * The request a redirect asks for, as `fetch` makes it: 307 and 308 repeat the method and body, the
 * others turn a `POST` into a bodiless `GET` (303 any method but `HEAD`); a redirect to another
 * origin drops the `Authorization` header, which was meant for the first one.
 */
function redirect(
  from: URL,
  init: SendInit,
  status: number,
  location: string,
  redirects: number,
): Promise<Response> {
  if (redirects >= MAX_REDIRECTS) {
    return Promise.reject(
      new UnreadableResponseError(`more than ${MAX_REDIRECTS} redirects, the last to ${location}`),
    );
  }
  let to: URL;
  try {
    to = new URL(location, from);
  } catch {
    return Promise.reject(new UnreadableResponseError(`a redirect to an invalid location: ${location}`));
  }
  const headers = new Headers(init.headers);
  let method = init.method ?? 'GET';
  let body = init.body;
  if ((status === 303 && method !== 'HEAD') || ((status === 301 || status === 302) && method === 'POST')) {
    method = 'GET';
    body = undefined;
    for (const name of BODY_HEADERS) headers.delete(name);
  }
  if (to.origin !== from.origin) headers.delete('authorization');
  return send(to, { ...init, method, body, headers }, redirects + 1);
}

function ignore(): void {}

function headersOf(incoming: IncomingMessage): Headers {
  const headers = new Headers();
  const raw = incoming.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  return headers;
}

async function readWhole(stream: Readable): Promise<string> {
  let text = '';
  stream.setEncoding('utf8');
  for await (const piece of stream) text += piece as string;
  return text;
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException('This operation was aborted', 'AbortError');
}
