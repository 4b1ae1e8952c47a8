/**
 * The body of a `POST /agents/:agent_id/runs`, in each encoding the route takes. `multipart` is
 * what Agno's clients (its Agent UI's `FormData`) and the docs' `curl -F` send; `urlencoded` is
 * `curl -d`; `json` is what a client written for runstate may send.
 */
export const RUN_BODY_ENCODINGS = ['multipart', 'urlencoded', 'json'] as const;
export type RunBodyEncoding = (typeof RUN_BODY_ENCODINGS)[number];

/** A command line the bench cannot take: printed as its message alone, with no stack. */
export class BenchUsageError extends Error {
  override name = 'BenchUsageError';
}

/** `value` as an encoding; throws naming `flag` and the known encodings otherwise. */
export function parseRunBodyEncoding(flag: string, value: string): RunBodyEncoding {
  if ((RUN_BODY_ENCODINGS as readonly string[]).includes(value)) return value as RunBodyEncoding;
  throw new BenchUsageError(`unknown ${flag} '${value}' (known: ${RUN_BODY_ENCODINGS.join(', ')})`);
}

/** A streamed run's body asking for `message`, and its `Content-Type`. */
export function runBody(encoding: RunBodyEncoding, message: string): { body: string; contentType: string } {
  switch (encoding) {
    case 'json':
      return { body: JSON.stringify({ message, stream: true }), contentType: 'application/json' };
    case 'urlencoded':
      return {
        body: new URLSearchParams({ message, stream: 'true' }).toString(),
        contentType: 'application/x-www-form-urlencoded',
      };
    case 'multipart': {
      // A boundary as a browser makes one: it must not occur in the values (a bench's tags do not).
      const boundary = '----runstateBenchBoundary7MA4YWxkTrZu0gW';
      const field = (name: string, value: string) =>
        `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
      return {
        body: `${field('message', message)}${field('stream', 'true')}--${boundary}--\r\n`,
        contentType: `multipart/form-data; boundary=${boundary}`,
      };
    }
  }
}
