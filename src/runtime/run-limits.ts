/**
 * What a run's limits and an orchestrator's options may be, checked where they come in (an
 * orchestrator's options, an agent's, a run's): a limit that is not a number in range would not
 * fail loudly later, it would make runs hang (`maxConcurrentTools: 0`) or end at once
 * (`idleTimeoutMs: NaN`).
 *
 * @packageDocumentation
 */
import { z } from 'zod';
import { DEFAULT_RUN_LIMITS } from '../../machines/run.machine.js';
import { RunstateError } from '../errors.js';
import { checkOptionNames, checkOptionsObject } from '../option-names.js';

export { checkOptionNames, checkOptionsObject };

/** A number that `ok` takes, described as `expected` in the error (with what was given). */
export const numberWhere = (ok: (n: number) => boolean, expected: string) =>
  z.custom<number>((value) => typeof value === 'number' && ok(value), {
    error: ({ input }) =>
      `expected ${expected}, got ${typeof input === 'string' ? JSON.stringify(input) : String(input)}`,
  });
// Durations: the machine clamps those past what a timer holds (2^31-1 ms), and so does every timer
// set from an option (`clampDelay`), so a very long limit, `Infinity` included, stays very long.
export const duration = numberWhere((n) => n >= 0, 'milliseconds ≥ 0');
export const positiveDuration = numberWhere((n) => n > 0, 'milliseconds > 0');
export const count = (min: number) =>
  numberWhere((n) => (Number.isInteger(n) || n === Infinity) && n >= min, `a whole number ≥ ${min}`);

/**
 * Whether a retry policy's backoff base is within its cap, where both are set. The delays grow from
 * the base up to the cap: a base over it means nothing.
 */
export function baseWithinCap(retry: {
  baseDelayMs?: number | undefined;
  maxDelayMs?: number | undefined;
}): boolean {
  return (
    retry.baseDelayMs === undefined || retry.maxDelayMs === undefined || retry.baseDelayMs <= retry.maxDelayMs
  );
}

/**
 * Where a retry policy set over another, field by field (an agent's over the server's, a run's over
 * the orchestrator's; the run machine's defaults under both), puts a backoff base over the cap, one
 * from each side (each side alone is checked by {@link baseWithinCap}): the field of `own` at fault
 * and why, naming `whose` the other side is; `undefined` when within. A base set where neither side
 * sets a cap is checked against the default cap (with none, a base of 20 s would back off 8 s); a cap
 * alone is within whatever base (each delay is then the cap).
 */
export function retryOverProblem(
  own: { baseDelayMs?: number | undefined; maxDelayMs?: number | undefined } | undefined,
  base: { baseDelayMs?: number | undefined; maxDelayMs?: number | undefined } | undefined,
  whose: string,
): { field: 'baseDelayMs' | 'maxDelayMs'; message: string } | undefined {
  if (own === undefined || (own.baseDelayMs === undefined) === (own.maxDelayMs === undefined))
    return undefined;
  const retry = {
    baseDelayMs: own.baseDelayMs ?? base?.baseDelayMs,
    maxDelayMs: own.maxDelayMs ?? base?.maxDelayMs ?? DEFAULT_RUN_LIMITS.retry.maxDelayMs,
  };
  if (baseWithinCap(retry)) return undefined;
  const other = own.baseDelayMs === undefined ? base?.baseDelayMs : base?.maxDelayMs;
  const owner = other === undefined ? 'the default ' : `${whose} limits.retry.`;
  return own.baseDelayMs === undefined
    ? {
        field: 'maxDelayMs',
        message: `${retry.maxDelayMs} is under ${owner}baseDelayMs (${retry.baseDelayMs})`,
      }
    : {
        field: 'baseDelayMs',
        message: `${retry.baseDelayMs} is over ${owner}maxDelayMs (${retry.maxDelayMs})`,
      };
}

/**
 * An xstate machine (what `createMachine` makes: its definition is walked), refused with `message`
 * when it is anything else.
 */
export const stateMachine = <Machine>(message: string) =>
  z.custom<Machine>(
    (machine) =>
      typeof machine === 'object' && machine !== null && 'root' in machine && 'implementations' in machine,
    message,
  );

/** Every limit of a run (`RunLimits`); a field left out or `undefined` keeps its default. */
export const runLimitsSchema = z.strictObject({
  idleTimeoutMs: positiveDuration.optional(),
  timeoutMs: positiveDuration.optional(),
  retry: z
    .strictObject({
      maxAttempts: count(1).optional(),
      baseDelayMs: duration.optional(),
      maxDelayMs: duration.optional(),
      maxRetryAfterMs: duration.optional(),
    })
    .refine(baseWithinCap, { error: 'baseDelayMs must not be over maxDelayMs', path: ['baseDelayMs'] })
    .optional(),
  // 0: a turn that calls a tool fails the run (`TOOL_ROUNDS_EXCEEDED`).
  maxToolRounds: count(0).optional(),
  maxConcurrentTools: count(1).optional(),
  pauseTimeoutMs: positiveDuration.optional(),
  // 0: no earlier run of the session is sent.
  maxHistoryRuns: count(0).optional(),
});

/** How many runs stream at once in one orchestrator: a whole number ≥ 1, or `Infinity`. */
export const maxConcurrentRunsSchema = count(1);

/**
 * `value` when `schema` takes it; otherwise throws `INVALID_INPUT` naming `what` and each problem
 * (`limits.idleTimeoutMs: Invalid input: expected number, received NaN`), with the first problem's
 * place in `details.field` (`limits.idleTimeoutMs`), as the HTTP server's 422 names it.
 */
export function checkOption<Schema extends z.ZodType>(
  schema: Schema,
  value: unknown,
  what: string,
): z.output<Schema> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const fields = result.error.issues.map((issue) => [what, ...issue.path.map(String)].join('.'));
  const problems = result.error.issues.map((issue, i) => `${fields[i]}: ${issue.message}`);
  throw new RunstateError('INVALID_INPUT', problems.join('; '), { details: { field: fields[0] } });
}

/**
 * `value` when it is an object with every one of `methods` (a store, a bus): anything else would
 * fail later, at a run, as a raw `TypeError`. Throws `INVALID_INPUT` naming `what` and `expected`.
 */
export function checkMethods(
  value: unknown,
  methods: readonly string[],
  what: string,
  expected: string,
): void {
  const has = (name: string) => typeof (value as Record<string, unknown>)[name] === 'function';
  if (typeof value !== 'object' || value === null || !methods.every(has))
    throw new RunstateError('INVALID_INPUT', `${what} must be ${expected}`);
}
