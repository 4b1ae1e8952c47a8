/**
 * The checks of an options object every public constructor and function makes: an object, and no
 * option name it does not know.
 *
 * @packageDocumentation
 */
import { RunstateError } from './errors.js';

/** Refuses options that are no object (`null`, a string): reading them would throw a `TypeError`. */
export function checkOptionsObject(options: unknown, what: string): asserts options is object {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new RunstateError(
      'INVALID_INPUT',
      `${what} takes an object of options, got ${options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options}`,
    );
  }
}

/**
 * Refuses an option name `what` does not have, naming it: a misspelt one (`databaseURL`,
 * `maxConcurrentRun`) would otherwise be ignored without a word, and its setting lost. TypeScript
 * catches it in an object literal only; an options object built elsewhere, or JavaScript, reaches here.
 */
export function checkOptionNames(options: unknown, known: readonly string[], what: string): void {
  checkOptionsObject(options, what);
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    const near = known.find((option) => option.toLowerCase() === name.toLowerCase());
    throw new RunstateError(
      'INVALID_INPUT',
      `${what} has no option "${name}"${near ? ` (did you mean "${near}"?)` : `: its options are ${known.join(', ')}`}`,
    );
  }
}
