import type { ServerResponse } from 'node:http';
import { drainedOrClosed } from '../drained-or-closed.js';

/** About how much text is gathered before a write: few writes, and no string near V8's limit. */
const WRITE_SIZE = 64 * 1024;

/**
 * Answers `200` with `items` as one JSON array, serialised an item at a time and written in pieces
 * of about 64 KB, waiting for `drain` when the socket's buffer is full.
 *
 * Why not `res.json`: a list of run records holds each run's input (up to the body limit, 1 MB by
 * default), and a few hundred of them make one string longer than V8 allows (~512 MB), which
 * `JSON.stringify` refuses with a `RangeError`, a 500. Written in pieces, the list has no such
 * limit and the server never holds the whole text at once.
 */
export async function sendJsonArray(res: ServerResponse, items: readonly unknown[]): Promise<void> {
  res.statusCode = 200;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  let text = '[';
  for (let i = 0; i < items.length; i++) {
    text += (i === 0 ? '' : ',') + JSON.stringify(items[i]);
    if (text.length < WRITE_SIZE) continue;
    if (!res.write(text)) await drainedOrClosed(res);
    text = '';
    // The client went away: the rest would be written to nobody.
    if (res.destroyed) return;
  }
  res.end(text + ']');
}
