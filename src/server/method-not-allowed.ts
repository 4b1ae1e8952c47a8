import type { RequestHandler, Router } from 'express';
import { methodNotAllowed } from './http-errors.js';

/** A route of a router, as express keeps it: its path and the methods it has handlers for. */
interface RouteLayer {
  route?: { path: unknown; methods: Record<string, boolean | undefined> };
}

/** A path of the app's routes and the methods it answers. */
interface ServedPath {
  pattern: RegExp;
  methods: Set<string>;
}

/**
 * Answers a request whose path one of `routers` serves, with a method none of them answers: 405
 * with `Allow` (see {@link methodNotAllowed}), where express would go on to the 404 of an unknown
 * path. Placed after the routers, so it only sees what they did not answer. The routes are read
 * once, when this is made: routes added to the routers later are not known to it.
 */
export function refuseOtherMethods(routers: readonly Router[]): RequestHandler {
  const served = servedPaths(routers);
  return (req, _res, next) => {
    const allowed = new Set<string>();
    for (const { pattern, methods } of served) {
      if (pattern.test(req.path)) for (const method of methods) allowed.add(method);
    }
    if (allowed.size === 0) return next();
    // Express answers a HEAD with the GET route.
    if (allowed.has('GET')) allowed.add('HEAD');
    throw methodNotAllowed(req.method, req.path, [...allowed].sort());
  };
}

function servedPaths(routers: readonly Router[]): ServedPath[] {
  const byPath = new Map<string, Set<string>>();
  for (const router of routers) {
    for (const { route } of (router as unknown as { stack: RouteLayer[] }).stack) {
      // (Routes of the app's own: plain paths with `:name` parameters, no patterns.)
      if (typeof route?.path !== 'string') continue;
      const methods = byPath.get(route.path) ?? new Set<string>();
      for (const [method, handled] of Object.entries(route.methods)) {
        if (handled && method !== '_all') methods.add(method.toUpperCase());
      }
      byPath.set(route.path, methods);
    }
  }
  return [...byPath].map(([path, methods]) => ({ pattern: pathPattern(path), methods }));
}

/** `/agents/:agent_id` → a pattern that matches it as express does: any case, an optional trailing slash. */
function pathPattern(path: string): RegExp {
  const segments = path
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  return new RegExp(`^${segments.join('/')}/?$`, 'i');
}
