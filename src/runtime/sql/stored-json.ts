/**
 * `JSON.stringify` for a `json` or `jsonb` parameter. A lone surrogate (half of a UTF-16 pair: a
 * client's `"\ud800"`, a model server's broken delta) is written by `JSON.stringify` as a `\udXXX`
 * escape, which PostgreSQL's JSON parser refuses, and a refused write would leave its run unstored.
 * It is stored as U+FFFD, as `pg` stores one in a text column (its UTF-8 encoding replaces it).
 */
export function storedJson(value: unknown): string {
  const text = JSON.stringify(value);
  // Paired surrogates are written as characters, never escaped: an escape is a lone one.
  return text.includes('\\ud') ? text.replace(SURROGATE_ESCAPE, replaceLone) : text;
}

/** `\udXXX` in the surrogate range, after a run of backslashes (an even run is escaped text). */
const SURROGATE_ESCAPE = /(\\+)ud[89a-f][0-9a-f]{2}/g;

function replaceLone(match: string, backslashes: string): string {
  return backslashes.length % 2 === 1 ? `${backslashes.slice(1)}\\ufffd` : match;
}
