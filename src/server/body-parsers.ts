import { Transform, type Readable, type Writable } from 'node:stream';
import express, { type RequestHandler } from 'express';
import multer from 'multer';
import { RunstateError } from '../errors.js';
import { invalidField, malformedRequest } from './http-errors.js';

/** A size as express takes it: bytes, or a string such as `'1mb'`, `'500kb'`. */
export type BodyLimit = number | string;

const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** `'1mb'` → 1048576. Throws on anything else than a number with an optional b/kb/mb/gb unit. */
export function parseByteSize(limit: BodyLimit): number {
  if (typeof limit === 'number' && Number.isFinite(limit) && limit >= 0) return Math.floor(limit);
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(String(limit));
  if (!match) throw new TypeError(`invalid body limit: ${String(limit)}`);
  return Math.floor(Number(match[1]) * UNITS[(match[2] ?? 'b').toLowerCase()]!);
}

/**
 * Parsers of the bodies that create runs: JSON, urlencoded and multipart/form-data (what Agno's
 * clients send), each bounded by `limit`. Their errors become runstate errors here, at the boundary:
 * too large → `PAYLOAD_TOO_LARGE` (413); unreadable → 400; a file part → 422 naming its field.
 */
export function runBodyParsers(limit: BodyLimit): RequestHandler[] {
  const maxBytes = parseByteSize(limit);
  const json = express.json({ limit: maxBytes, strict: true });
  const urlencoded = express.urlencoded({ limit: maxBytes, extended: false, parameterLimit: 100 });
  // Only text fields: runs take no files. multer bounds each field and their number, not the whole
  // body: the bytes are counted on their way to the parser, whether a Content-Length was sent or not.
  const multipart = multer({
    limits: { fieldSize: maxBytes, fields: 100, parts: 100, files: 0 },
    streamHandler: pipeWithin(maxBytes),
  } as multer.Options).none();

  return [
    wrap(json, fromBodyParserError),
    wrap(urlencoded, fromBodyParserError),
    wrap(multipart, fromMultipartError),
  ];
}

function wrap(parser: RequestHandler, convert: (error: unknown) => unknown): RequestHandler {
  return (req, res, next) => {
    void parser(req, res, (error?: unknown) => next(error === undefined ? undefined : convert(error)));
  };
}

/** body-parser's errors carry a `type` naming what went wrong. */
function fromBodyParserError(error: unknown): unknown {
  const type = (error as { type?: unknown } | null)?.type;
  switch (type) {
    case 'entity.too.large':
    case 'parameters.too.many':
      return new RunstateError('PAYLOAD_TOO_LARGE', 'request body too large', { cause: error });
    case 'entity.parse.failed':
      return malformedRequest(`malformed JSON body: ${(error as Error).message}`, error);
    case 'encoding.unsupported':
    case 'charset.unsupported':
    case 'request.aborted':
    case 'request.size.invalid':
      return malformedRequest((error as Error).message, error);
    default:
      return error;
  }
}

const TOO_LARGE_MULTIPART = new Set([
  'LIMIT_FIELD_VALUE',
  'LIMIT_FIELD_COUNT',
  'LIMIT_PART_COUNT',
  'LIMIT_FIELD_KEY',
]);

function fromMultipartError(error: unknown): unknown {
  if (error instanceof RunstateError) return error; // from pipeWithin
  if (error instanceof multer.MulterError) {
    if (TOO_LARGE_MULTIPART.has(error.code)) {
      return new RunstateError('PAYLOAD_TOO_LARGE', `multipart body too large: ${error.message}`, {
        cause: error,
      });
    }
    if (error.code === 'LIMIT_UNEXPECTED_FILE' || error.code === 'LIMIT_FILE_COUNT') {
      return invalidField(error.field ?? 'files', 'file uploads are not supported; send text fields only');
    }
    return malformedRequest(`malformed multipart body: ${error.message}`, error);
  }
  // Everything else multer passes on comes from busboy reading a broken body.
  if (error instanceof Error) return malformedRequest(`malformed multipart body: ${error.message}`, error);
  return error;
}

/**
 * multer's `streamHandler` (the option is newer than its types): pipes the request into the parser
 * through a byte count, and fails the parse with `PAYLOAD_TOO_LARGE` once the body is past
 * `maxBytes`. The rest of the body is read off and discarded, so that the client gets the 413.
 */
function pipeWithin(maxBytes: number) {
  return (req: Readable, parser: Writable): void => {
    let received = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        received += chunk.length;
        if (received <= maxBytes) return callback(null, chunk);
        callback(new RunstateError('PAYLOAD_TOO_LARGE', `request body too large: over ${maxBytes} bytes`));
      },
    });
    counter.once('error', (error) => {
      parser.destroy(error);
      req.resume();
    });
    req.pipe(counter).pipe(parser);
  };
}
