import { createRequire } from 'node:module';

let version: string | undefined;

/**
 * runstate's version, from its package.json. The package refers to itself by name (it has
 * `exports`, which list `./package.json`), so this works from the sources as from `dist/`.
 */
export function packageVersion(): string {
  version ??= (createRequire(import.meta.url)('runstate/package.json') as { version: string }).version;
  return version;
}
