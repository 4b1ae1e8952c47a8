/**
 * `JSON.stringify` for a `json` or `jsonb` parameter. Two characters a string may hold are escapes
 * PostgreSQL's JSON refuses ("unsupported Unicode escape sequence"), and a refused write would
 * leave its run unstored:
 * - a lone surrogate (half of a UTF-16 pair: a client's `"\ud800"`, a model server's broken delta),
 *   which `JSON.stringify` writes as a `\udXXX` escape;
 * - NUL (`\u0000`), which a tool's output may hold (a binary file, a command's output), and a
 *   model's delta or arguments.
 *
 * Both are stored as U+FFFD, as `pg` stores a lone surrogate in a text column (its UTF-8 encoding
 * replaces it). The run's live events keep what came; the stored copy has the replacement.
 */
export function storedJson(value: unknown): string {
  const text = JSON.stringify(value);
  // Paired surrogates are written as characters, never escaped: an escape is a lone one.
  return text.includes('\\ud') || text.includes('\\u0000')
    ? text.replace(REFUSED_ESCAPE, replaceEscape)
    : text;
}

/** `\udXXX` in the surrogate range, or `\u0000`, after a run of backslashes (an even run is escaped text). */
const REFUSED_ESCAPE = /(\\+)u(?:d[89a-f][0-9a-f]{2}|0000)/g;

function replaceEscape(match: string, backslashes: string): string {
  return backslashes.length % 2 === 1 ? `${backslashes.slice(1)}\\ufffd` : match;
}
