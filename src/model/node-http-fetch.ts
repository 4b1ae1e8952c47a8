import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';

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

const DECOMPRESSORS: Record<string, (() => Readable & NodeJS.WritableStream) | undefined> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
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
 * rejects with the signal's reason (an `AbortError`) while the headers are still awaited.
 */
export function nodeHttpFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  const { body, signal } = init;
  if (input instanceof Request || !(body == null || typeof body === 'string' || body instanceof Uint8Array))
    return fetch(input, init);
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  const url = typeof input === 'string' ? new URL(input) : input;
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
      const init = {
        status: incoming.statusCode!,
        statusText: incoming.statusMessage,
        headers: headersOf(incoming),
      };
      const encoding = incoming.headers['content-encoding']?.toLowerCase();
      const decompress = encoding && encoding !== 'identity' ? DECOMPRESSORS[encoding] : undefined;
      if (encoding && encoding !== 'identity' && !decompress) {
        incoming.destroy();
        reject(new TypeError(`the server answered in an unknown content encoding: ${encoding}`));
        return;
      }
      const stream: Readable = decompress ? incoming.pipe(decompress()) : incoming;
      if (decompress) {
        // A failure of the socket reaches the reader through the decompressor.
        incoming.once('error', (error) => stream.destroy(error));
        stream.on('error', ignore);
        init.headers.delete('content-encoding');
      }
      if (init.status >= 400) {
        readWhole(stream).then((text) => resolve(new Response(text, init)), reject);
        return;
      }
      const ok = new Response(null, init);
      bodies.set(ok, stream);
      resolve(ok);
    }
  });
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
