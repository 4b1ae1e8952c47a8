import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { RunstateError } from '../errors.js';

/** Options of {@link bearerAuth}. */
export interface BearerAuthOptions {
  /** The token clients must send as `Authorization: Bearer <key>`. See {@link checkSecurityKey}. */
  securityKey: string;
  /**
   * Paths served without a token, matched exactly (case and trailing slash included): `/health`, so
   * probes need no secret, `/` (what the server is, as AgentOS leaves it open), and the static files of mounted pages.
   */
  openPaths?: readonly string[];
}

/**
 * Throws `INVALID_INPUT` for a key that no client could ever send: one with a control character, or
 * with leading or trailing whitespace (HTTP strips it from a header value, and the check is exact, so it would refuse every
 * request). Called when the app is created, so a wrong key stops the server at start.
 */
export function checkSecurityKey(securityKey: string, source = 'the security key'): void {
  if (securityKey !== securityKey.trim()) {
    throw new RunstateError(
      'INVALID_INPUT',
      `${source} starts or ends with whitespace (a space, line break or no-break space): no client can send it; remove it`,
    );
  }
  // No header value can hold a control character (HTTP refuses NUL, CR and LF in one).
  if (hasControlCharacter(securityKey)) {
    throw new RunstateError(
      'INVALID_INPUT',
      `${source} holds a control character (a NUL, a line break...): no client can send it; remove it`,
    );
  }
}

/** A C0 control character but the tab (which a header value may hold), or DEL. */
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if ((code < 0x20 && code !== 0x09) || code === 0x7f) return true;
  }
  return false;
}

// The scheme is case-insensitive; between it and the token only ASCII spaces (RFC 6750's `1*SP`),
// never what a Unicode-aware `\s` would also accept.
const BEARER = /^bearer +(.+)$/i;

/**
 * Requires `Authorization: Bearer <securityKey>`, compared exactly (no trimming, byte for byte) and
 * in constant time; throws `UNAUTHORIZED` (401) otherwise. CORS preflights never carry
 * credentials, so they are answered before this runs.
 */
export function bearerAuth({ securityKey, openPaths = [] }: BearerAuthOptions): RequestHandler {
  checkSecurityKey(securityKey);
  const expected = digest(Buffer.from(securityKey, 'utf8'));
  const open = new Set(openPaths);
  return (req, _res, next) => {
    // Open to reads only: another method on an open path is a route like any other (401, then 404).
    if (open.has(req.path) && (req.method === 'GET' || req.method === 'HEAD')) return next();
    const token = BEARER.exec(req.headers.authorization ?? '')?.[1];
    // Node reads header bytes as latin1: back to the bytes the client sent, so a UTF-8 key matches.
    // Digests have equal lengths, so the comparison gives no timing hint about the key (nor its length).
    if (token === undefined || !timingSafeEqual(digest(Buffer.from(token, 'latin1')), expected)) {
      throw new RunstateError('UNAUTHORIZED', 'missing or invalid bearer token');
    }
    next();
  };
}

function digest(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}
