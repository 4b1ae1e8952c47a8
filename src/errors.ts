import type { ErrorCode, RunErrorData } from '../machines/run-types.js';

export type { ErrorCode, RunErrorData };

/** Options of a {@link RunstateError}. */
export interface RunstateErrorOptions {
  cause?: unknown;
  /** Upstream HTTP status, for model errors. */
  status?: number | undefined;
  retryable?: boolean | undefined;
  retryAfterMs?: number | undefined;
  /** Facts about what went wrong, as plain data (`{ run_id, status }` of a run that already finished). */
  details?: Readonly<Record<string, unknown>> | undefined;
}

/**
 * The one error type of runstate. `code` says what went wrong, in a way code (and the HTTP error map)
 * can switch on; `cause` keeps the original error.
 *
 * @example
 * ```ts
 * try {
 *   await orchestrator.requestCancel(runId);
 * } catch (error) {
 *   if (error instanceof RunstateError && error.code === 'RUN_ALREADY_FINISHED') console.log(error.details);
 *   else throw error;
 * }
 * ```
 */
export class RunstateError extends Error {
  override readonly name = 'RunstateError';
  readonly code: ErrorCode;
  readonly status: number | undefined;
  readonly isRetryable: boolean;
  readonly retryAfterMs: number | undefined;
  /** Facts about what went wrong, as plain data; an HTTP error answer adds them to its body. */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options: RunstateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.isRetryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details;
  }

  /** The serialisable form a run keeps in its machine context. */
  toData(): RunErrorData {
    const data: RunErrorData = { code: this.code, message: this.message, retryable: this.isRetryable };
    if (this.status !== undefined) data.status = this.status;
    if (this.retryAfterMs !== undefined) data.retryAfterMs = this.retryAfterMs;
    return data;
  }
}

/** Turns anything thrown into the serialisable error a run keeps. Unknown errors are not retried. */
export function toRunErrorData(error: unknown): RunErrorData {
  if (error instanceof RunstateError) return error.toData();
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'MODEL_REQUEST_FAILED', message, retryable: false };
}

/**
 * An error's message for a one-line log, with its cause's when it has one: a `STORE_UNAVAILABLE`
 * says which database, its cause why (`sorry, too many clients already`, a connection timeout).
 */
export function messageWithCause(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error ? error.cause : undefined;
  return cause instanceof Error && cause.message !== '' ? `${message}: ${cause.message}` : message;
}
