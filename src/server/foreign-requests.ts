import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { z } from 'zod';
import { RunstateError } from '../errors.js';

/** `allowedHosts`, as `createApp` and the config file take it: `'*'`, or names without a port. */
export const allowedHostsSchema = z.union(
  [z.literal('*'), z.array(z.string().regex(/^[^\s:/[\]]+$/, 'must be a host name, without a port'))],
  { error: "must be '*' or a list of host names" },
);

/**
 * An allowed origin as a browser sends it in `Origin` (`http://localhost:3000`): another spelling
 * (a trailing slash, no scheme, a default port, `'*'` in a list) is compared as it is written and
 * matches nothing, so every page of that origin would be refused without a word.
 */
export const originSchema = z.string().superRefine((text, ctx) => {
  const problem = originProblem(text);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

function originProblem(text: string): string | undefined {
  if (text === '*') return "'*' allows every origin on its own: write origins: '*', not a list holding it";
  // What a browser sends from a page of no origin of its own (a file:// page, a sandboxed frame).
  // Any site can make such a frame: allowing it is allowing every site, the user's choice to make.
  if (text === 'null') return undefined;
  if (text.trim().toLowerCase() === 'null')
    return `'${text}' is not an origin: the origin of no site is written null`;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    // Not a URL at all: below.
  }
  if (!url?.host)
    return `'${text}' is not an origin: a scheme and a host, and a port unless the default (http://localhost:3000)`;
  const origin = `${url.protocol}//${url.host}`;
  if (text !== origin) return `'${text}' matches no page: a browser sends its origin as '${origin}'`;
  return undefined;
}

/** Which hosts and origins {@link refuseForeignRequests} lets through. */
export interface ForeignRequestOptions {
  /**
   * Origins allowed to call the API from a browser (the CORS setting), besides the server's own:
   * `'*'` allows every one.
   */
  origins: readonly (string | RegExp)[] | '*';
  /** Host names a request may name besides `localhost` and IP addresses; `'*'` for any. */
  allowedHosts: readonly string[] | '*';
  /** With a security key, no page can send the token: neither is checked. */
  keyed: boolean;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Refuses, with a 403, what a web page on another site could make a browser send to a server that
 * has no security key:
 *
 * - a `Host` that names a host the server does not know: a page whose name was made to point at
 *   the server's address (127.0.0.1, a port Docker maps there, a LAN address) would read runs as
 *   its own origin (DNS rebinding). IP addresses and `localhost` are always answered, since a
 *   rebinding page has a name, and so is the health check; other names when listed (a server
 *   reached by a name behind a balancer) or with a security key;
 * - a `POST`, `PATCH` or `DELETE` from a page of an origin that is neither allowed (CORS) nor the
 *   server's own (its `Host`, or the `X-Forwarded-Host` a proxy sets). Forms are "simple" requests,
 *   sent with no preflight: without this, any page could start runs (spending the operator's
 *   tokens) or cancel them. CORS only decides whether the page may read the answer.
 *
 * With a security key neither applies: a page cannot send the token.
 */
export function refuseForeignRequests({ origins, allowedHosts, keyed }: ForeignRequestOptions) {
  const hosts = keyed ? undefined : allowedHostNames(allowedHosts);
  const allowedOrigins = keyed || origins === '*' ? undefined : originMatcher(origins);
  return (req: IncomingMessage, _res: ServerResponse, next: (error?: unknown) => void): void => {
    next(foreignRequestError(req, hosts, allowedOrigins));
  };
}

/**
 * The names {@link foreignRequestError} lets through besides `localhost` and IP addresses, as
 * `Host` headers are compared (lower case, no trailing dot); `undefined` for `'*'`: any.
 */
export function allowedHostNames(allowedHosts: readonly string[] | '*'): ReadonlySet<string> | undefined {
  return allowedHosts === '*' ? undefined : new Set(allowedHosts.map((host) => hostName(host)));
}

/** The origins `cors` allows, as the `cors` package matches them: a string exactly, a RegExp by a test. */
function originMatcher(origins: readonly (string | RegExp)[]): { has(origin: string): boolean } {
  const exact = new Set(origins.filter((origin) => typeof origin === 'string'));
  const patterns = origins.filter((origin) => origin instanceof RegExp);
  return {
    has: (origin) =>
      exact.has(origin) ||
      patterns.some((pattern) => {
        // (A global or sticky pattern keeps where its last test ended: each test starts afresh.)
        pattern.lastIndex = 0;
        return pattern.test(origin);
      }),
  };
}

/** What a refusal of {@link foreignRequestError} tells to do: what the server that refused can be told. */
export interface ForeignRequestRemedies {
  /** Ends the message of a refused host. */
  host: string;
  /** Ends the message of a refused origin. */
  origin: string;
}

const APP_REMEDIES: ForeignRequestRemedies = {
  host: 'Add it to allowedHosts, or set a security key',
  origin: 'that origin is not allowed (cors.origins)',
};

/** Why a request is refused, or `undefined`: the check of {@link refuseForeignRequests}. */
export function foreignRequestError(
  req: IncomingMessage,
  hosts: ReadonlySet<string> | undefined,
  allowedOrigins: { has(origin: string): boolean } | undefined,
  remedies: ForeignRequestRemedies = APP_REMEDIES,
): RunstateError | undefined {
  const host = req.headers.host;
  if (hosts && host !== undefined && !knownHost(hostName(host), hosts) && !isHealthCheck(req)) {
    return new RunstateError(
      'FORBIDDEN',
      `this server does not answer to the host ${JSON.stringify(host)}: a web page could read runs ` +
        `through a name that points here (DNS rebinding). ${remedies.host}`,
    );
  }
  const origin = req.headers.origin;
  if (
    allowedOrigins &&
    origin !== undefined &&
    !SAFE_METHODS.has(req.method ?? 'GET') &&
    !allowedOrigins.has(origin) &&
    !ownOrigin(origin, req)
  ) {
    return new RunstateError(
      'FORBIDDEN',
      `a ${req.method} from a page of ${origin} is refused: ${remedies.origin}`,
    );
  }
  return undefined;
}

/**
 * The name of a `Host` header, without its port (and an IPv6 address without its brackets). A
 * bracket left open (`[::1`) or followed by more than a port is no address: kept whole, it is no
 * name this server knows.
 */
function hostName(host: string): string {
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(host);
  const name = bracketed ? bracketed[1]! : host.startsWith('[') ? host : host.replace(/:\d*$/, '');
  return name.toLowerCase().replace(/\.$/, '');
}

function knownHost(name: string, hosts: ReadonlySet<string>): boolean {
  return name === 'localhost' || name.endsWith('.localhost') || isIP(name) !== 0 || hosts.has(name);
}

function isHealthCheck(req: IncomingMessage): boolean {
  // As express routes it: any case, a trailing slash.
  return /^\/health\/?$/i.test((req.url ?? '/').split('?', 1)[0]!);
}

/** The origin is the server's own: the host the page named (`Host`, or a proxy's forwarded one). */
function ownOrigin(origin: string, req: IncomingMessage): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // `null` (a sandboxed frame, a file) or no URL: no origin of this server
  }
  const forwarded = req.headers['x-forwarded-host'];
  const named = [req.headers.host, ...(typeof forwarded === 'string' ? forwarded.split(',') : [])];
  // `new URL` drops a scheme's default port: so does a `Host` of one, compared the same way.
  return named.some((host) => host !== undefined && sameHost(url, host.trim()));
}

function sameHost(origin: URL, host: string): boolean {
  try {
    return new URL(`${origin.protocol}//${host}`).host === origin.host;
  } catch {
    return false;
  }
}
