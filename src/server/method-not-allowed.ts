import type { RequestHandler, Router } from 'express';
import { methodNotAllowed, requestedPath } from './http-errors.js';

/**
 * A route of a router, as express keeps it: the layer matches a path as the router matched it (any
 * case, an optional trailing slash), and its route has the methods it has handlers for.
 */
interface RouteLayer {
  match(path: string): unknown;
  route?: { methods: Record<string, boolean | undefined> };
}

/**
 * Answers a request whose path one of `routers` serves, with a method none of them answers: 405
 * with `Allow` (see {@link methodNotAllowed}), where express would go on to the 404 of an unknown
 * path. Placed after the routers, so it only sees what they did not answer. The routes are read
 * once, when this is made: routes added to the routers later are not known to it.
 */
export function refuseOtherMethods(routers: readonly Router[]): RequestHandler {
  const routes = routers.flatMap((router) =>
    (router as unknown as { stack: RouteLayer[] }).stack.filter((layer) => layer.route !== undefined),
  );
  return (req, _res, next) => {
    const allowed = new Set<string>();
    for (const layer of routes) {
      if (!layer.match(req.path)) continue;
      for (const [method, handled] of Object.entries(layer.route!.methods)) {
        if (handled && method !== '_all') allowed.add(method.toUpperCase());
      }
    }
    if (allowed.size === 0) return next();
    // Express answers a HEAD with the GET route.
    if (allowed.has('GET')) allowed.add('HEAD');
    throw methodNotAllowed(req.method, requestedPath(req), [...allowed].sort());
  };
}
