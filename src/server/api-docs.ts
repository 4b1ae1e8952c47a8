import { createRequire } from 'node:module';
import { Router } from 'express';
import { createOpenApiDocument, type OpenApiDocument } from './openapi.js';

/** Options of {@link apiDocs}. */
export interface ApiDocsOptions {
  /** Whether the app requires a bearer token (the document says so; the page offers to send one). */
  secured: boolean;
  /** Whether the app serves `GET /prometheus`. */
  prometheus: boolean;
}

// Swagger UI from the installed swagger-ui-dist: the page works offline, nothing from a CDN.
const VENDOR = {
  'swagger-ui.css': { file: 'swagger-ui-dist/swagger-ui.css', type: 'text/css; charset=utf-8' },
  'swagger-ui-bundle.js': {
    file: 'swagger-ui-dist/swagger-ui-bundle.js',
    type: 'text/javascript; charset=utf-8',
  },
} as const;

// Relative URLs: the page is `<base>/docs` and its files `<base>/docs/...`, wherever the app is mounted.
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>runstate API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
`;

// `validatorUrl: null`: Swagger UI would otherwise send the document to validator.swagger.io.
const INIT = `window.ui = SwaggerUIBundle({
  url: 'openapi.json',
  dom_id: '#swagger-ui',
  validatorUrl: null,
  deepLinking: true,
  tryItOutEnabled: false,
  presets: [SwaggerUIBundle.presets.apis],
});
`;

// Swagger UI styles its elements inline; it runs no code it did not load from here.
const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

/** How many texts of the API document are kept, each for a path the app is mounted at. */
const MOUNT_PATHS_KEPT = 8;

/**
 * `GET /openapi.json` (the API document, generated once) and `GET /docs` (Swagger UI for it, served
 * from the package). Neither holds run data: the app serves them without a bearer token.
 */
export function apiDocs(options: ApiDocsOptions): Router {
  const router = Router();
  let made: OpenApiDocument | undefined;
  // Its text by the path the app is mounted at, as the request names it (`''` at the root). Kept
  // for a few paths only: a mount matches paths in any case, or of any parameter, and each text is
  // ~150 KB.
  const texts = new Map<string, string>();
  const resolve = createRequire(import.meta.url).resolve;

  router.get('/openapi.json', (req, res) => {
    const mountedAt = req.baseUrl;
    let text = texts.get(mountedAt);
    if (text === undefined) {
      made ??= createOpenApiDocument(options);
      // An app mounted in another (`outer.use('/api', app)`) serves its routes under that path:
      // without a server there, the page's "Try it out" (and a client) would call the root's.
      text = JSON.stringify(mountedAt === '' ? made : { ...made, servers: [{ url: mountedAt }] });
      if (texts.size >= MOUNT_PATHS_KEPT) texts.delete(texts.keys().next().value!);
      texts.set(mountedAt, text);
    }
    res.type('application/json').send(text);
  });
  router.get('/docs', (req, res) => {
    // `/docs/` would resolve the page's relative URLs one level too deep.
    if (req.path.endsWith('/')) return res.redirect(301, '../docs');
    res.setHeader('content-security-policy', PAGE_CSP);
    res.type('html').send(PAGE);
  });
  // The page's own files, each a route of its own: asked with another method, a 405 (see
  // refuseOtherMethods); any other name under /docs is not served.
  router.get('/docs/init.js', (_req, res) => void res.type('text/javascript').send(INIT));
  for (const [name, vendor] of Object.entries(VENDOR)) {
    router.get(`/docs/${name}`, (_req, res) => {
      res.sendFile(resolve(vendor.file), { headers: { 'content-type': vendor.type }, maxAge: '1d' });
    });
  }
  return router;
}
