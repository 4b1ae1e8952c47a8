/**
 * The options of a measuring script (`npm run bench:*`): whole numbers ≥ 1, and lists of known
 * names. Anything else ends the script with one line naming it and exit code 2, as `npm run bench`
 * does, not a table of NaN or a stack trace.
 */
import { parseArgs } from 'node:util';
import { whole } from '../bench/config.js';

/** `numbers` (name → default) read as whole numbers; `lists` (name → default and the names it takes). */
export function readScriptOptions<N extends string, L extends string = never>(
  script: string,
  numbers: Record<N, string>,
  lists: Record<L, { default: string; choices: readonly string[] }> = {} as Record<L, never>,
): Record<N, number> & Record<L, Set<string>> {
  try {
    const options = Object.fromEntries([
      ...Object.entries(numbers).map(([name, value]) => [name, { type: 'string', default: value }]),
      ...Object.entries<{ default: string }>(lists).map(([name, list]) => [
        name,
        { type: 'string', default: list.default },
      ]),
    ]) as Record<string, { type: 'string'; default: string }>;
    const { values } = parseArgs({ options });
    const read: Record<string, number | Set<string>> = {};
    for (const name of Object.keys(numbers)) read[name] = whole(`--${name}`, values[name])!;
    for (const [name, { choices }] of Object.entries<{ choices: readonly string[] }>(lists)) {
      const items = (values[name] as string).split(',').map((item) => item.trim());
      const unknown = items.filter((item) => !choices.includes(item));
      if (unknown.length > 0 || items.length === 0)
        throw new Error(
          `--${name} takes ${choices.join(', ')} (comma-separated), got '${values[name] as string}'`,
        );
      read[name] = new Set(items);
    }
    return read as Record<N, number> & Record<L, Set<string>>;
  } catch (error) {
    process.stderr.write(`${script}: ${(error as Error).message}\n`);
    process.exit(2);
  }
}
