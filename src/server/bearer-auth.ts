import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { RunstateError } from '../errors.js';

/** Options of {@link bearerAuth}. */
export interface BearerAuthOptions {
  /** The token clients must send as `Authorization: Bearer <key>`. */
  securityKey: string;
  /**
   * Paths served without a token, matched exactly (case and trailing slash included): `/health`, so
   * probes need no secret, and the static files of mounted pages.
   */
  openPaths?: readonly string[];
}

/**
 * Requires `Authorization: Bearer <securityKey>`; throws `UNAUTHORIZED` (401) otherwise. CORS
 * preflights never carry credentials, so they are answered before this runs.
 */
export function bearerAuth({ securityKey, openPaths = [] }: BearerAuthOptions): RequestHandler {
  const expected = digest(securityKey);
  const open = new Set(openPaths);
  return (req, _res, next) => {
    if (open.has(req.path)) return next();
    const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    // Compare digests of equal length in constant time: no timing hint about the key.
    if (!match?.[1] || !timingSafeEqual(digest(match[1].trim()), expected)) {
      throw new RunstateError('UNAUTHORIZED', 'missing or invalid bearer token');
    }
    next();
  };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
