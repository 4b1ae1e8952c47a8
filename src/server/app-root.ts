import type { IncomingMessage, ServerResponse } from 'node:http';

/** Where the app that routed each request is mounted, for the handlers it mounts. */
const roots = new WeakMap<IncomingMessage, string>();

/**
 * Middleware that remembers where the app is mounted (`req.baseUrl`: `''` at the root of a server,
 * `/api` in an app that mounted it there), before a handler mounted deeper is called with its own
 * mount stripped: the inspector's page, at any path, then knows where the AgentOS routes are.
 */
export function rememberAppRoot(
  req: IncomingMessage,
  _res: ServerResponse,
  next: (error?: unknown) => void,
): void {
  roots.set(req, (req as { baseUrl?: string }).baseUrl ?? '');
  next();
}

/** The path `createApp`'s routes start at for this request (`''`: the root), or `undefined` outside it. */
export function appRootOf(req: IncomingMessage): string | undefined {
  return roots.get(req);
}
