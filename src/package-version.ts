import { createRequire } from 'node:module';

let version: string | undefined;

/**
 * runstate's version, from its package.json. The package refers to itself by name (it has
 * `exports`, which list `./package.json`), so this works from the sources as from `dist/`. Where it
 * cannot (a bundle that left the package.json out), `unknown`, once: the version only labels things
 * (the tracer's scope, the API document), and a run must not pay a failed lookup.
 */
export function packageVersion(): string {
  if (version === undefined) {
    try {
      version = (createRequire(import.meta.url)('runstate/package.json') as { version: string }).version;
    } catch {
      version = 'unknown';
    }
  }
  return version;
}
