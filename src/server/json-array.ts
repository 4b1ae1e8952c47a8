import type { ServerResponse } from 'node:http';
import pLimit from 'p-limit';
import { drainedOrClosed } from '../drained-or-closed.js';

/** About how much text is gathered before a write: few writes, and no string near V8's limit. */
const WRITE_SIZE = 64 * 1024;

/**
 * Lists answered at once by one app. A list's records are held until its client has read them
 * all: without a bound, clients that ask and never read (one connection each) would make the
 * server hold a list each, hundreds of megabytes, until it runs out of memory.
 */
export const LISTS_AT_ONCE = 16;

/** How long a list's client may read nothing before its connection is closed (its slot freed). */
export const LIST_STALL_MS = 20_000;

/**
 * Answers `200` with `items` as one JSON array, serialised an item at a time and written in pieces
 * of about 64 KB, waiting for `drain` when the socket's buffer is full; a client that reads nothing
 * for `stallMs` is cut off.
 *
 * Why not `res.json`: a list of run records holds each run's input (up to the body limit, 1 MB by
 * default), and a few hundred of them make one string longer than V8 allows (~512 MB), which
 * `JSON.stringify` refuses with a `RangeError`, a 500. Written in pieces, the list has no such
 * limit and the server never holds the whole text at once.
 */
export async function sendJsonArray(
  res: ServerResponse,
  items: readonly unknown[],
  stallMs = LIST_STALL_MS,
): Promise<void> {
  res.statusCode = 200;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  let text = '[';
  for (let i = 0; i < items.length; i++) {
    text += (i === 0 ? '' : ',') + JSON.stringify(items[i]);
    if (text.length < WRITE_SIZE) continue;
    if (!res.write(text) && res.writableNeedDrain && (await drainedOrClosed(res, stallMs)) === 'stalled')
      res.destroy();
    text = '';
    // The client went away (or was cut off): the rest would be written to nobody.
    if (res.destroyed) return;
  }
  res.end(text + ']');
}

/** Answers a request with a list loaded when its turn comes: see {@link listAnswers}. */
export type AnswerList = (res: ServerResponse, load: () => Promise<readonly unknown[]>) => Promise<void>;

/**
 * At most `atOnce` lists loaded and written at a time; the others wait their turn, and one whose
 * client went away meanwhile is not loaded at all. Store errors reach the caller (the route's
 * error answer).
 */
export function listAnswers(atOnce = LISTS_AT_ONCE, stallMs = LIST_STALL_MS): AnswerList {
  const limit = pLimit(atOnce);
  return async (res, load) => {
    // Behind an earlier answer on its connection (pipelined), a list has no socket yet: it waits for
    // one before it takes a slot, and its stall is counted from then, not while the other streams.
    if (!res.socket && !(await socketOrClosed(res))) return;
    await limit(async () => {
      if (res.destroyed) return;
      await sendJsonArray(res, await load(), stallMs);
    });
  };
}

/**
 * Resolves `true` once `res` has its socket, `false` if its connection closed first. Node 20 tells
 * a response queued behind another nothing when the connection drops, but destroys its request
 * (whose 'close' comes, otherwise, only after the response is over).
 */
function socketOrClosed(res: ServerResponse): Promise<boolean> {
  const { req } = res;
  if (req.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const given = () => settle(true);
    const closed = () => settle(false);
    const settle = (has: boolean) => {
      res.off('socket', given).off('close', closed);
      req.off('close', closed);
      resolve(has);
    };
    res.once('socket', given).once('close', closed);
    req.once('close', closed);
  });
}
