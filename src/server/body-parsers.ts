import { isUtf8 } from 'node:buffer';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import busboy from 'busboy';
import express, { type RequestHandler } from 'express';
import { RunstateError } from '../errors.js';
import { decodedFormText, NO_UTF8_ESCAPES } from './query-string.js';
import {
  closesAfterAnswer,
  invalidField,
  malformedRequest,
  undecodableField,
  unsupportedMediaType,
} from './http-errors.js';

/** A size as express takes it: bytes, or a string such as `'1mb'`, `'500kb'`. */
export type BodyLimit = number | string;

const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** `'1mb'` → 1048576. Throws on anything else than a number with an optional b/kb/mb/gb unit. */
export function parseByteSize(limit: BodyLimit): number {
  if (typeof limit === 'number' && Number.isFinite(limit) && limit >= 0) return Math.floor(limit);
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(String(limit));
  if (!match) {
    throw new RunstateError(
      'INVALID_INPUT',
      `bodyLimit must be bytes, or a size like '1mb' (b, kb, mb, gb), got ${JSON.stringify(limit)}`,
    );
  }
  return Math.floor(Number(match[1]) * UNITS[(match[2] ?? 'b').toLowerCase()]!);
}

/** At most this many fields (and parts) in a form: a run takes a handful. */
const MAX_FORM_FIELDS = 100;

/**
 * The parser of the bodies that create runs: JSON, urlencoded and multipart/form-data (what Agno's
 * clients send), each bounded by `limit` (the whole body, with or without a Content-Length: refused
 * as soon as it is known to be over, and the connection closed after that answer). The media type
 * is read once and picks the one parser that reads the body (no body: `req.body` stays unset). Its
 * errors become runstate errors here, at the boundary: too large → `PAYLOAD_TOO_LARGE` (413);
 * another media type → 415 naming `content-type`; unreadable → 400 (naming the field whose name or
 * value cannot be decoded); a file part → 422 naming its field. The fields of a form are marked
 * ({@link isFormBody}): there, a field sent twice is an array.
 */
export function runBodyParser(limit: BodyLimit): RequestHandler {
  const maxBytes = parseByteSize(limit);
  // The type was matched once, below: each parser reads what it is handed.
  const type = () => true;
  const json = wrap(
    express.json({ limit: maxBytes, strict: true, type, verify: refuseNonUtf8Json }),
    maxBytes,
  );
  const urlencoded = markedAsForm(
    wrap(
      express.urlencoded({
        limit: maxBytes,
        extended: false,
        parameterLimit: MAX_FORM_FIELDS,
        type,
        verify: refuseUndecodableFields,
      }),
      maxBytes,
    ),
  );
  // A multipart body is read whole, as the other two are, then its fields are parsed from the
  // buffer in one call. Piping each request through a form parser's streams (multer) cost ~0.6 ms
  // of CPU per run more than a JSON body: a fifth of what starting a run over HTTP costs.
  const raw = wrap(express.raw({ type, limit: maxBytes }), maxBytes);
  const multipart: RequestHandler = (req, res, next) =>
    raw(req, res, (error?: unknown) => {
      // (No buffer: there was no body to read.)
      if (error !== undefined || !Buffer.isBuffer(req.body)) return next(error);
      parseFormFields(req.body, req.headers).then((fields) => {
        req.body = fields;
        formBodies.add(fields);
        next();
      }, next);
    });
  const parsers: Record<string, RequestHandler> = {
    'application/json': json,
    'application/x-www-form-urlencoded': urlencoded,
    'multipart/form-data': multipart,
  };
  const types = Object.keys(parsers);

  return (req, res, next) => {
    // Whatever its type: refused before a byte of it is read.
    const declared = declaredTooLarge(req, maxBytes);
    if (declared) {
      closeAfterAnswer(req, res);
      return next(declared);
    }
    // The media type as listed (parameters such as the boundary aside); `null` with no body.
    const matched = req.is(types);
    if (matched === false) {
      // An empty body is no body, whatever its headers (a PATCH sent with `Content-Length: 0`, or
      // chunked with nothing in it, as Node's and Python's clients send one).
      if (req.headers['content-length'] === '0') return next();
      const sent = req.headers['content-type'];
      const refused = unsupportedMediaType(
        `the body must be ${types.join(', ').replace(/, ([^,]*)$/, ' or $1')}` +
          ` (its Content-Type is ${sent ? `'${sent}'` : 'missing'})`,
      );
      if (sent === undefined) {
        return raw(req, res, (error?: unknown) => {
          const empty = !Buffer.isBuffer(req.body) || req.body.length === 0;
          if (error === undefined && empty) req.body = undefined;
          next(error ?? (empty ? undefined : refused));
        });
      }
      // A body of another type is never read: its fields would look missing, so it is named instead.
      closeAfterAnswer(req, res);
      return next(refused);
    }
    if (!matched) return next();
    return parsers[matched]!(req, res, next);
  };
}

/** The fields of the forms the parsers read (see {@link isFormBody}). */
const formBodies = new WeakSet<object>();

/**
 * Whether `body` is the fields of a form (urlencoded or multipart), as {@link runBodyParser} read
 * them, rather than a JSON body: in a form, a field sent twice is an array of its values, where
 * a JSON array is one value.
 */
export function isFormBody(body: unknown): boolean {
  return typeof body === 'object' && body !== null && formBodies.has(body);
}

/** `parser` (a urlencoded one), with the fields it reads marked as a form's. */
function markedAsForm(parser: RequestHandler): RequestHandler {
  return (req, res, next) =>
    parser(req, res, (error?: unknown) => {
      const fields: unknown = req.body;
      if (error === undefined && typeof fields === 'object' && fields !== null) formBodies.add(fields);
      next(error);
    });
}

/**
 * body-parser's `verify` of a JSON body: refuses one whose bytes are no UTF-8 text (its charset
 * says UTF-8, or nothing). Decoded, such bytes would become U+FFFD, and the text kept (a message, a
 * session id) would not be what was sent, as a `\ud800` escape would not (refused too).
 */
function refuseNonUtf8Json(
  _req: IncomingMessage,
  _res: ServerResponse,
  body: Buffer,
  encoding: string | null,
): void {
  if (encoding === 'utf-8' && !isUtf8(body)) {
    throw malformedRequest(
      'malformed JSON body: it is not UTF-8 text (bytes that are no UTF-8; JSON is sent in UTF-8)',
    );
  }
}

const NOT_UTF8 = 'bytes that are no UTF-8; send UTF-8, or name its charset';

/**
 * body-parser's `verify` of a urlencoded body: refuses one with a name or value that cannot be
 * decoded (a malformed percent-escape, or escapes that are no UTF-8: `%FF`, `%ED%A0%80`, a lone
 * surrogate), naming its field. qs, which parses the body, keeps such a text as it was sent, every
 * escape of it, valid ones included: `caf%C3%A9%FF` would be stored as a message or a session id.
 * In latin1 (`charset=iso-8859-1`) every escape is a character, and qs decodes it so: nothing fails.
 * The pairs are split as qs splits them, at `&` and then at the first `=` (where qs splits a
 * `name[x]=` at its `]=`, an escape cannot hold either character, so the same escapes fail).
 */
function refuseUndecodableFields(
  _req: IncomingMessage,
  _res: ServerResponse,
  body: Buffer,
  encoding: string | null,
): void {
  if (encoding !== 'utf-8') return;
  // Bytes that are no UTF-8, sent as they are rather than escaped: the field that holds them. (A
  // `&` or `=` byte is never part of a longer UTF-8 sequence: the bytes split as the text does.)
  if (!isUtf8(body)) {
    for (let start = 0; start <= body.length;) {
      const end = body.indexOf('&', start) === -1 ? body.length : body.indexOf('&', start);
      const pair = body.subarray(start, end);
      if (!isUtf8(pair)) {
        const split = pair.indexOf('=');
        const name = (split === -1 ? pair : pair.subarray(0, split)).toString('utf8');
        throw undecodableField(name, `${name}: cannot be decoded (${NOT_UTF8})`);
      }
      start = end + 1;
    }
  }
  if (!body.includes('%')) return;
  for (const pair of body.toString('utf8').split('&')) {
    if (!pair.includes('%')) continue;
    const split = pair.indexOf('=');
    const name = split === -1 ? pair : pair.slice(0, split);
    const decodedName = decodedFormText(name);
    if (decodedName === undefined)
      throw undecodableField(name, `${name}: the name cannot be decoded (${NO_UTF8_ESCAPES})`);
    if (split !== -1 && decodedFormText(pair.slice(split + 1)) === undefined)
      throw undecodableField(decodedName, `${decodedName}: cannot be decoded (${NO_UTF8_ESCAPES})`);
  }
}

/**
 * Runs a body-parser parser with the body bounded as it arrives. body-parser answers a body over
 * its limit only once it has read the rest ("dumps" it, to keep the connection usable), so an
 * endless chunked body would be read forever. A body without a Content-Length is counted here as it
 * arrives (alongside the parser, which stays in charge of decoding and parsing) and refused the
 * moment it passes `maxBytes`. The compressed bytes of an encoded body are counted: a lower bound of
 * the decoded size, which the parser bounds itself. `next` is called once: the parser's own answer
 * after a refusal (its error once the connection closes, or never) is dropped.
 */
function wrap(parser: RequestHandler, maxBytes: number): RequestHandler {
  return (req, res, next) => {
    let received = 0;
    let settled = false;
    const settle = (error?: unknown) => {
      if (settled) return;
      settled = true;
      req.off('data', count);
      if (error !== undefined) closeAfterAnswer(req, res);
      next(error);
    };
    const count = (chunk: Buffer) => {
      received += chunk.length;
      if (received > maxBytes) settle(tooLarge());
    };
    // With a Content-Length, Node delivers no more than it says, and it was checked already.
    if (req.headers['content-length'] === undefined) req.on('data', count);
    void parser(req, res, (error?: unknown) =>
      settle(error === undefined ? undefined : fromBodyParserError(error)),
    );
  };
}

/**
 * The 413 of a request whose `Content-Length` is over `maxBytes`, known before a byte of its body is
 * read (the body parsers, and the answer to `Expect: 100-continue`); `undefined` when within it or
 * when none is declared.
 */
export function declaredTooLarge(req: IncomingMessage, maxBytes: number): RunstateError | undefined {
  return Number(req.headers['content-length']) > maxBytes ? tooLarge() : undefined;
}

function tooLarge(cause?: unknown): RunstateError {
  return new RunstateError('PAYLOAD_TOO_LARGE', 'request body too large', { cause });
}

/**
 * A request answered before its body was read to the end has its connection closed after the
 * answer (`Connection: close`) when the rest could be long (see {@link closesAfterAnswer}).
 */
function closeAfterAnswer(req: IncomingMessage, res: ServerResponse): void {
  if (closesAfterAnswer(req) && !res.headersSent) res.setHeader('Connection', 'close');
}

/**
 * The text fields of a multipart/form-data body, a repeated name as an array (as the urlencoded
 * parser does). Rejects with a runstate error: a file part (422, naming its field), more than
 * {@link MAX_FORM_FIELDS} fields (413), a part in a charset it does not read (400, naming its
 * field), a body busboy cannot read (400).
 */
function parseFormFields(body: Buffer, headers: IncomingHttpHeaders): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      // `fieldSize`: busboy cuts longer values silently (at 1 MB by default); no value is longer
      // than the body, which `limit` already bounds. `parts`: busboy reports the limit when the
      // count reaches it (`fields` when it goes past it), so a form of 100 fields would be refused.
      const limits = { fields: MAX_FORM_FIELDS, parts: MAX_FORM_FIELDS + 1, fieldSize: body.length };
      parser = busboy({ headers, limits });
    } catch (error) {
      // No boundary, or a content type busboy does not take.
      reject(malformedMultipart(error));
      return;
    }
    const fields = Object.create(null) as Record<string, unknown>;
    let failure: RunstateError | undefined;
    parser.on('field', (name, value: string | undefined) => {
      // busboy hands a part in a charset it does not read (any but UTF-8, UTF-16LE, latin1 and
      // ASCII) over as `undefined`: dropped, a `session_id` so sent would start a new session.
      if (value === undefined) {
        failure ??= undecodableField(
          name,
          `multipart body: field '${name}' is in a charset this server does not read (send UTF-8)`,
        );
        return;
      }
      const earlier = fields[name];
      if (earlier === undefined) fields[name] = value;
      else if (Array.isArray(earlier)) earlier.push(value);
      else fields[name] = [earlier, value];
    });
    parser.on('file', (name, file, { filename }) => {
      // A form's file input left empty sends a part with no file name and no bytes: no upload, so
      // a page's form with an optional file input still starts its run. Any other file is refused.
      let bytes = 0;
      file.on('data', (chunk: Buffer) => (bytes += chunk.length));
      file.on('end', () => {
        if (bytes > 0 || filename)
          failure ??= invalidField(name, 'file uploads are not supported; send text fields only');
      });
    });
    const tooMany = () => {
      failure ??= new RunstateError(
        'PAYLOAD_TOO_LARGE',
        `multipart body too large: more than ${MAX_FORM_FIELDS} fields`,
      );
    };
    parser.on('fieldsLimit', tooMany);
    parser.on('partsLimit', tooMany);
    parser.on('error', (error) => reject(failure ?? malformedMultipart(error)));
    parser.on('close', () => {
      failure ??= notUtf8Field(body, fields);
      if (failure === undefined) resolve(fields);
      else reject(failure);
    });
    parser.end(body);
  });
}

/**
 * A multipart field whose bytes were no UTF-8 (busboy decodes them to U+FFFD, and the text kept
 * would not be what was sent). Looked for only in a body that is not UTF-8 throughout, where a part
 * in latin1 (which decodes every byte) may be the reason instead. A U+FFFD that was sent (its bytes
 * EF BF BD, valid UTF-8) leaves the text's UTF-8 in the body as it is; a replaced one does not.
 */
function notUtf8Field(body: Buffer, fields: Record<string, unknown>): RunstateError | undefined {
  if (isUtf8(body)) return undefined;
  for (const [name, value] of Object.entries(fields)) {
    const values: unknown[] = Array.isArray(value) ? value : [value];
    const replaced = (text: unknown) =>
      typeof text === 'string' && text.includes('\uFFFD') && !body.includes(Buffer.from(text));
    if (values.some(replaced))
      return undecodableField(name, `multipart body: field '${name}' cannot be decoded (${NOT_UTF8})`);
  }
  return undefined;
}

function malformedMultipart(error: unknown): RunstateError {
  return malformedRequest(`malformed multipart body: ${(error as Error).message}`, error);
}

/** body-parser's errors carry a `type` naming what went wrong. */
function fromBodyParserError(error: unknown): unknown {
  // A refusal of `verify`'s, handed back as it was thrown (body-parser marks it 403, which the
  // error handler ignores for a runstate error).
  if (error instanceof RunstateError) return error;
  const type = (error as { type?: unknown } | null)?.type;
  switch (type) {
    case 'entity.too.large':
      return tooLarge(error);
    case 'parameters.too.many':
      return new RunstateError(
        'PAYLOAD_TOO_LARGE',
        `form body too large: more than ${MAX_FORM_FIELDS} fields`,
        { cause: error },
      );
    case 'entity.parse.failed':
      return (
        notAnObject(error) ?? malformedRequest(`malformed JSON body: ${(error as Error).message}`, error)
      );
    // The header at fault is named, as for a body not compressed as it says.
    case 'encoding.unsupported':
      return undecodableField('content-encoding', (error as Error).message, error);
    case 'charset.unsupported':
      return undecodableField('content-type', (error as Error).message, error);
    case 'request.aborted':
    case 'request.size.invalid':
      return malformedRequest((error as Error).message, error);
    default:
      // zlib's, for a body that is not in its Content-Encoding ("incorrect header check"): said so.
      if (isZlibError(error)) {
        return undecodableField(
          'content-encoding',
          `the body cannot be decoded as its Content-Encoding says: ${(error as Error).message}`,
          error,
        );
      }
      return error;
  }
}

/**
 * An error of node:zlib's decoding a body not compressed as declared, or cut: gzip and deflate's
 * (`Z_DATA_ERROR`, `Z_BUF_ERROR`) and brotli's (`ERR__ERROR_FORMAT_PADDING_2`: `ERR_` and brotli's
 * own name of the error), each with the library's negative `errno`.
 */
function isZlibError(error: unknown): boolean {
  const { code, errno } = (error ?? {}) as { code?: unknown; errno?: unknown };
  return typeof errno === 'number' && typeof code === 'string' && /^(Z_|ERR__ERROR_)/.test(code);
}

/**
 * A JSON body that is valid JSON but no object or array (`null`, `5`, `"hi"`), which body-parser's
 * strict mode refuses as a syntax error ("Unexpected token 'n'"): a 422 naming the body, as an
 * array gets, rather than a 400 that calls it malformed.
 */
function notAnObject(error: unknown): RunstateError | undefined {
  const body = (error as { body?: unknown } | null)?.body;
  if (typeof body !== 'string') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof value === 'object' && value !== null) return undefined;
  return invalidField('body', `body: must be a JSON object, not ${value === null ? 'null' : typeof value}`);
}
