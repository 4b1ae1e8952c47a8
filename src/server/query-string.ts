/**
 * A query string read as express's default (Node's `querystring`) reads one, but for what it reads
 * wrong: an escape it cannot decode, and parameters past its limit. Without express or the body
 * parsers, so that the inspector (part of `runstate`, not of `runstate/server`) reads its feed's
 * query as the app's routes read theirs.
 *
 * @packageDocumentation
 */
import { invalidField, malformedRequest, undecodableField } from './http-errors.js';

export const NO_UTF8_ESCAPES = 'a percent-escape that is malformed or not UTF-8';

/**
 * Most parameters a query string may hold, as many as Node's `querystring` (express's default)
 * reads; it dropped those past it without a word, a route's filter among them.
 */
const MAX_QUERY_PARAMETERS = 1_000;

/**
 * A query parameter's value that cannot be decoded (a percent-escape that is malformed or no
 * UTF-8), kept as it was sent: refused where the route reads that parameter (`parseQuery`, {@link singleQueryValue}).
 */
export class UndecodableQueryValue {
  constructor(readonly sent: string) {}
}

/**
 * Express's `query parser`: a query string as its default (`querystring`) reads it (`+` is a space,
 * a name given twice an array of its values), but where that puts U+FFFD in place of an escape it
 * cannot decode (`?user_id=%FF` and `?user_id=%C0` would both list the sessions of a user
 * `\uFFFD`), the value is an {@link UndecodableQueryValue}, which the route refuses with a 400 if
 * it reads the parameter, as a form's field is refused. A name that cannot be decoded is no
 * parameter a route reads: it is left out.
 */
export function parseQueryString(text: string | null): Record<string, QueryValue | QueryValue[]> {
  const query = Object.create(null) as Record<string, QueryValue | QueryValue[]>;
  let count = 0;
  // (`null`: a URL with no `?`.)
  for (const pair of text?.split('&') ?? []) {
    if (pair === '') continue;
    if (++count > MAX_QUERY_PARAMETERS)
      throw malformedRequest(
        `the query string holds more than ${MAX_QUERY_PARAMETERS.toLocaleString('en-US')} parameters`,
      );
    const split = pair.indexOf('=');
    const name = decodedFormText(split === -1 ? pair : pair.slice(0, split));
    if (name === undefined) continue;
    const sent = split === -1 ? '' : pair.slice(split + 1);
    const value = decodedFormText(sent) ?? new UndecodableQueryValue(sent);
    const had = query[name];
    if (Array.isArray(had)) had.push(value);
    else query[name] = had === undefined ? value : [had, value];
  }
  return query;
}

/** A query parameter's value as {@link parseQueryString} reads it. */
export type QueryValue = string | UndecodableQueryValue;

/** A form's name or value decoded as qs decodes it in UTF-8; `undefined` when it cannot be. */
export function decodedFormText(text: string): string | undefined {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

/**
 * The one value of the query parameter `name`, as a route reads one: a 400 naming it when it
 * cannot be decoded, a 422 when it was sent more than once (which of two counts would be a guess).
 */
export function singleQueryValue(
  query: Record<string, QueryValue | QueryValue[]>,
  name: string,
): string | undefined {
  const value = query[name];
  if (Array.isArray(value)) throw sentMoreThanOnce(name, value.length);
  if (value instanceof UndecodableQueryValue) throw undecodable(name);
  return value;
}

/** The 400 of a parameter or field whose value cannot be decoded. */
export function undecodable(name: string): Error {
  return undecodableField(name, `${name}: cannot be decoded (${NO_UTF8_ESCAPES})`);
}

/** The 422 of a parameter or field that takes one value, sent `times` times. */
export function sentMoreThanOnce(name: string, times: number): Error {
  return invalidField(name, `${name}: must be sent once (it was sent ${times} times)`);
}
