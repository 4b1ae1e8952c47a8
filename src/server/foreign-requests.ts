import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { RunstateError } from '../errors.js';

/** Which hosts and origins {@link refuseForeignRequests} lets through. */
export interface ForeignRequestOptions {
  /** Origins allowed to call the API from a browser (the CORS setting): `'*'` allows every one. */
  origins: readonly string[] | '*';
  /**
   * Host names the API answers to besides `localhost` and IP addresses: `'*'` for any (a server
   * with a security key, or behind a proxy that checks it).
   */
  allowedHosts: readonly string[] | '*';
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Refuses, with a 403, what a web page on another site could make a browser send:
 *
 * - a request whose `Host` names a host the server does not know (DNS rebinding: a page of
 *   `evil.example`, whose name then points at 127.0.0.1, reading runs as its own origin). IP
 *   addresses and `localhost` are always answered: a rebinding page has a name;
 * - a `POST`, `PATCH` or `DELETE` from a page of an origin that is neither allowed (CORS) nor the
 *   server's own. Forms are "simple" requests, sent with no preflight: without this, any page
 *   could start runs (spending the operator's tokens) or cancel them. CORS only decides whether
 *   the page may read the answer.
 *
 * `/health` is answered to any host (a balancer's health check names the service as it likes).
 */
export function refuseForeignRequests({ origins, allowedHosts }: ForeignRequestOptions) {
  const hosts = allowedHosts === '*' ? undefined : new Set(allowedHosts.map((host) => host.toLowerCase()));
  const allowedOrigins = origins === '*' ? undefined : new Set(origins);
  return (req: IncomingMessage, _res: ServerResponse, next: (error?: unknown) => void): void => {
    const host = req.headers.host;
    if (hosts && host !== undefined && !knownHost(hostName(host), hosts) && pathOf(req) !== '/health') {
      return next(
        new RunstateError(
          'FORBIDDEN',
          `this server does not answer to the host ${JSON.stringify(host)}: a web page could read runs ` +
            'through a name that points here (DNS rebinding). Add it to allowedHosts, or set a security key',
        ),
      );
    }
    const origin = req.headers.origin;
    if (
      allowedOrigins &&
      origin !== undefined &&
      !SAFE_METHODS.has(req.method ?? 'GET') &&
      !allowedOrigins.has(origin) &&
      !sameOrigin(origin, host)
    ) {
      return next(
        new RunstateError(
          'FORBIDDEN',
          `a ${req.method} from a page of ${origin} is refused: that origin is not allowed (cors.origins)`,
        ),
      );
    }
    next();
  };
}

/** The name of a `Host` header, without its port (and an IPv6 address without its brackets). */
function hostName(host: string): string {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '');
  return name.toLowerCase().replace(/\.$/, '');
}

function knownHost(name: string, hosts: ReadonlySet<string>): boolean {
  return name === 'localhost' || name.endsWith('.localhost') || isIP(name) !== 0 || hosts.has(name);
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host.toLowerCase();
  } catch {
    return false; // `null` (a sandboxed frame, a file) or no URL: no origin of this server
  }
}

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?', 1)[0]!;
}
