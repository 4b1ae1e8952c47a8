import { IncomingMessage, ServerResponse, type ServerOptions } from 'node:http';
import type { Express } from 'express';

/** The request and response classes of a node:http server (`http.createServer(options, app)`). */
export type MessageClasses = Required<Pick<ServerOptions, 'IncomingMessage' | 'ServerResponse'>>;

/**
 * Request and response classes whose instances are born with `app`'s express prototypes, and makes
 * those prototypes `app.request` and `app.response`.
 *
 * Why: express gives each request its helpers (`res.json`, `req.params`...) by changing the
 * prototype of its `req` and `res` (`Object.setPrototypeOf`), per request. V8 makes that costly for
 * everything that touches them afterwards, Node's own HTTP code included (`writeHead` alone cost more
 * than express's router). Through runstate's app a request cost the server 140–173 µs of CPU that way,
 * 63–71 µs with these classes, and 37–40 µs on bare node:http (`scripts/request-overhead.ts`,
 * docs/performance.md). For a message that already has the prototype, express's call changes
 * nothing and V8 returns at once.
 *
 * The new prototypes are what `app.request` and `app.response` were (their own properties, the same
 * parents), so an app mounted in another one, or served by `app.listen()` with Node's classes, works
 * as before.
 */
export function expressMessageClasses(app: Express): MessageClasses {
  class Request extends IncomingMessage {}
  class Response extends ServerResponse {}
  const prototypes = app as unknown as { request: object; response: object };
  prototypes.request = adopt(Request.prototype, prototypes.request);
  prototypes.response = adopt(Response.prototype, prototypes.response);
  // (Node's generic `ServerResponse` type takes no subclass fixed to one request type.)
  return { IncomingMessage: Request, ServerResponse: Response as typeof ServerResponse };
}

/** `target`, made what `source` is: its own properties, its prototype. */
function adopt(target: object, source: object): object {
  Object.defineProperties(target, Object.getOwnPropertyDescriptors(source));
  Object.setPrototypeOf(target, Object.getPrototypeOf(source) as object);
  return target;
}
