import { z } from 'zod';
import { invalidField } from './http-errors.js';

// Form fields (multipart, urlencoded) are strings, JSON has booleans: accept both, as Agno does.
const flag = z.union([z.boolean(), z.stringbool()], { error: 'must be true or false' });

// Agno's Agent UI sends `session_id: ''` for a new conversation: empty means absent.
const optionalId = z
  .string({ error: 'must be a string' })
  .nullish()
  .transform((value) => value || undefined);

/** A run status, as a query value or in a record. */
export const runStatus = z.enum(['pending', 'streaming', 'paused', 'completed', 'cancelled', 'failed']);

/** The body of `POST /agents/:agent_id/runs`. Unknown fields are ignored (clients send more). */
export const createRunBody = z.object({
  message: z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .refine((message) => message.trim() !== '', 'must not be empty'),
  stream: flag.default(true),
  background: flag.default(false),
  session_id: optionalId,
  user_id: optionalId,
  on_disconnect: z.enum(['cancel', 'continue']).default('cancel'),
});

/** A validated run request. */
export type CreateRunBody = z.output<typeof createRunBody>;

const toolConfirmation = z.object({
  tool_call_id: z.string({ error: 'must be a string' }),
  confirmed: z.boolean({ error: 'must be true or false' }),
  confirmation_note: z
    .string()
    .nullish()
    .transform((note) => note ?? undefined),
});

/**
 * The body of `POST /agents/:agent_id/runs/:run_id/continue`, in Agno's form: `tools` is a JSON string
 * (a form field, parsed by the route) or, in a JSON body, the array itself; each answers one paused call.
 */
export const continueRunBody = z.object({
  // (A form's JSON string is parsed by the route: not JSON at all is a 400 there.)
  tools: z.array(toolConfirmation, {
    error: 'must be a JSON array of {tool_call_id, confirmed, confirmation_note?}',
  }),
  session_id: optionalId,
  stream: flag.default(true),
});

/** The query of `GET /agents/:agent_id/runs`. */
export const listRunsQuery = z.object({
  session_id: optionalId,
  status: runStatus.optional(),
});

/** A sequence number as a query value or header: a whole number, 0 or more. */
const seq = z
  .string({ error: 'must be a whole number' })
  .regex(/^\d+$/, 'must be a whole number')
  .transform(Number)
  .optional();

/** Where a replay resumes: after `Last-Event-ID` (what EventSource sends on reconnect) or `?after=`. */
export const resumeQuery = z.object({ after: seq });
/** @see resumeQuery */
export const resumeHeader = z.object({ 'last-event-id': seq });

const pageNumber = z
  .string()
  .regex(/^[1-9]\d*$/, 'must be a whole number, 1 or more')
  .transform(Number)
  .optional();

/** The query of `GET /sessions`, as AgentOS takes it. */
export const listSessionsQuery = z.object({
  type: z.enum(['agent', 'team', 'workflow']).default('agent'),
  component_id: optionalId,
  user_id: optionalId,
  db_id: optionalId,
  limit: pageNumber,
  page: pageNumber,
  sort_order: z.enum(['asc', 'desc']).default('desc'),
});

/** The query of the other session routes. */
export const sessionQuery = z.object({ db_id: optionalId });

/**
 * Validates request input. Throws a 422 naming the first failing field (`message`, `stream`...),
 * with every problem in `detail`.
 */
export function parseInput<Schema extends z.ZodType>(schema: Schema, input: unknown): z.output<Schema> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const fieldOf = (path: readonly PropertyKey[]) => (path.length > 0 ? path.map(String).join('.') : 'body');
  const detail = issues.map((issue) => `${fieldOf(issue.path)}: ${issue.message}`).join('; ');
  throw invalidField(fieldOf(issues[0]?.path ?? []), detail);
}
