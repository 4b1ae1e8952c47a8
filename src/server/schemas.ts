import { z } from 'zod';
import { RUN_STATUSES } from '../../machines/run-types.js';
import { MAX_ID_LENGTH, unstorableCharacter } from '../runtime/create-orchestrator.js';
import { isFormBody } from './body-parsers.js';
import { sentMoreThanOnce, undecodable, UndecodableQueryValue } from './query-string.js';
import { invalidField } from './http-errors.js';

// Form fields (multipart, urlencoded) are strings, JSON has booleans: accept both, as Agno does. An
// empty form field (`stream=`) is an absent one, as FastAPI reads AgentOS's forms; so is a JSON
// `null` (clients that send every unset option as null, as pydantic's `model_dump()` does). The
// words are pydantic's, any case, which FastAPI reads AgentOS's form booleans with.
const FORM_BOOLEANS = {
  truthy: ['true', 't', '1', 'yes', 'y', 'on'],
  falsy: ['false', 'f', '0', 'no', 'n', 'off'],
};
/** `yes` → `[Yy][Ee][Ss]`: a word in any case, as a JSON Schema pattern (which takes no flags). */
const anyCase = (word: string) =>
  [...word].map((char) => (char.toUpperCase() === char ? char : `[${char.toUpperCase()}${char}]`)).join('');
const formBoolean = z.stringbool(FORM_BOOLEANS).meta({
  pattern: `^(${[...FORM_BOOLEANS.truthy, ...FORM_BOOLEANS.falsy].map(anyCase).join('|')})$`,
});
const givenFlag = z
  .union([z.boolean(), z.union([z.literal(''), z.null()]).transform(() => undefined), formBoolean], {
    error: 'must be true or false',
  })
  .optional();

/** A flag that takes `fallback` when absent. */
const flag = (fallback: boolean) =>
  givenFlag.transform((value) => value ?? fallback).meta({ default: fallback });

// `stream` of a run: absent is told apart from `true`, since a background run streams only when
// asked to (see createRunBody). The API document shows its default for a run that is not.
const streamFlag = givenFlag.meta({ default: true });

// Agno's Agent UI sends `session_id: ''` for a new conversation: empty means absent. An id is at
// most MAX_ID_LENGTH characters on every store alike (an index of PostgreSQL's refuses a longer one).
const optionalId = z
  .string({ error: 'must be a string' })
  .max(MAX_ID_LENGTH, { error: `must be at most ${MAX_ID_LENGTH} characters`, abort: true })
  // zod counts code points, the stores UTF-16 units (an emoji is two): the stores' count decides.
  .refine((id) => id.length <= MAX_ID_LENGTH, `must be at most ${MAX_ID_LENGTH} characters (UTF-16 units)`)
  .nullish()
  // What the API page's "Try it out" fills in: its own placeholder (`string`) would be taken as an id.
  .meta({ examples: [''] })
  .transform((value) => value || undefined);

/** A run status, as a query value or in a record. */
export const runStatus = z.enum(RUN_STATUSES);

/** Agno's run statuses (`RunStatus`), as its clients filter by them, and runstate's for each. */
export const AGNO_RUN_STATUSES = {
  PENDING: 'pending',
  RUNNING: 'streaming',
  COMPLETED: 'completed',
  PAUSED: 'paused',
  CANCELLED: 'cancelled',
  ERROR: 'failed',
} as const satisfies Record<string, z.output<typeof runStatus>>;

/** A status to filter by: runstate's own, or Agno's upper-case name of it. */
const statusFilter = z.union(
  [
    runStatus,
    z
      .enum(Object.keys(AGNO_RUN_STATUSES) as [keyof typeof AGNO_RUN_STATUSES])
      .transform((status) => AGNO_RUN_STATUSES[status]),
  ],
  { error: `must be one of ${[...runStatus.options, ...Object.keys(AGNO_RUN_STATUSES)].join(', ')}` },
);

// The fields that take a list, which a form sends as the field repeated (`session_ids=a&session_ids=b`):
// any other field of a form sent twice is refused by name (see refuseRepeats).
const listFields = new WeakSet<z.ZodType>();

/** `schema`, marked as a field that takes a list: a form may send it more than once. */
function listField<Schema extends z.ZodType>(schema: Schema): Schema {
  listFields.add(schema);
  return schema;
}

/**
 * A media field of Agno's run form (`images`, `audio`, `videos`, `files`, `input_files`): refused
 * with a 422 naming it rather than ignored, since the model would answer without what was sent.
 * Absent or empty (`''`, `[]`, `'[]'`, null) is fine.
 */
function refusedMedia(what: string) {
  // (A form field sent twice is an array: empty when each of its values is.)
  const empty = (value: unknown): boolean =>
    value === null || value === '' || value === '[]' || (Array.isArray(value) && value.every(empty));
  return listField(
    z
      .unknown()
      .refine(empty, `runstate does not take ${what}: runs take a text message only`)
      .optional()
      // An example the API page's "Try it out" fills in and the server takes (not its `string`).
      .meta({ description: `Refused (422) unless empty: runstate does not take ${what}.`, examples: [''] }),
  );
}

/** The body of `POST /agents/:agent_id/runs`. Unknown fields are ignored (clients send more). */
export const createRunBody = z.object({
  // Not blank, in checks the API document can show: `\S` matches what `trim()` keeps (`abort`: an
  // empty message gets one error, not two).
  message: z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .min(1, { error: 'must not be empty', abort: true })
    .regex(/\S/, 'must not be empty'),
  // Absent: `true`, or `false` for a `background` run (202 at once, as DESIGN has it); `true` with
  // `background` is AgentOS's resumable stream.
  stream: streamFlag,
  background: flag(false),
  session_id: optionalId,
  user_id: optionalId,
  on_disconnect: z
    .union(
      [z.union([z.literal(''), z.null()]).transform(() => 'cancel' as const), z.enum(['cancel', 'continue'])],
      {
        error: 'must be cancel or continue',
      },
    )
    .default('cancel'),
  images: refusedMedia('images'),
  audio: refusedMedia('audio'),
  videos: refusedMedia('videos'),
  files: refusedMedia('files'),
  input_files: refusedMedia('files'),
});

/** A validated run request. */
export type CreateRunBody = z.output<typeof createRunBody>;

/**
 * One entry of a continue's `tools` (`ToolAnswer`). Agno's client sends every call of the run (its
 * `ToolExecution` dicts, more fields than these): `confirmed` is null for the calls that wait for
 * nothing, which the orchestrator drops; a call that waits needs true or false (checked there, where
 * the calls are known).
 */
const toolConfirmation = z.object({
  tool_call_id: z.string({ error: 'must be a string' }),
  confirmed: z.boolean({ error: 'must be true or false' }).nullish(),
  confirmation_note: z
    .string()
    .nullish()
    .transform((note) => note ?? undefined),
});

/**
 * The body of `POST /agents/:agent_id/runs/:run_id/continue`, in Agno's form: `tools` is a JSON string
 * (a form field, parsed by the route) or, in a JSON body, the array itself; each answers one paused
 * call, or is a call of the run that waits for nothing (ignored).
 */
export const continueRunBody = z.object({
  // (A form's JSON string is parsed by the route: not JSON at all is a 400 there.)
  tools: z.array(toolConfirmation, {
    error: 'must be a JSON array of {tool_call_id, confirmed, confirmation_note?}',
  }),
  session_id: optionalId,
  stream: flag(true),
  background: flag(false),
});

// (Its `$schema` means nothing inside another schema.)
const { $schema: _dialect, ...toolsSchema } = z.toJSONSchema(continueRunBody.shape.tools, { io: 'input' });

/** `tools` as text, which the route parses before {@link continueRunBody} checks it. */
const toolsText = z.string().meta({
  description: 'The answers as JSON text (text that is not JSON at all is a 400).',
  contentMediaType: 'application/json',
  contentSchema: toolsSchema,
});

/** The continue body as JSON, for the API document: `tools` is the answers, or their JSON text. */
export const continueRunJson = continueRunBody.extend({
  tools: z.union([continueRunBody.shape.tools, toolsText]),
});

/** The continue body as a form, for the API document: a form's `tools` is the answers' JSON text. */
export const continueRunForm = continueRunBody.extend({ tools: toolsText });

/**
 * The body of `POST /agents/:agent_id/runs/:run_id/resume`, as AgentOS takes it: `last_event_index`
 * is the `event_index` of the last event the client received (`-1`, empty or absent: none), a
 * form's text or a JSON number; `session_id`, when given, must be the run's.
 */
const EVENT_INDEX = 'must be a whole number, -1 or more';

export const resumeRunBody = z.object({
  // Worded alike whether it came as a form's text or a JSON number.
  last_event_index: z
    .union(
      [
        z.literal('').transform(() => undefined),
        z
          .number()
          .refine((value) => Number.isInteger(value) && value >= -1, EVENT_INDEX)
          .meta({ type: 'integer', minimum: -1 }),
        z
          .string()
          .regex(/^(-1|0|[1-9]\d*)$/, EVENT_INDEX)
          .transform(Number),
      ],
      { error: EVENT_INDEX },
    )
    .nullish()
    .refine(
      (value) => value == null || value <= Number.MAX_SAFE_INTEGER,
      `must be at most ${Number.MAX_SAFE_INTEGER}`,
    )
    .transform((value) => value ?? -1),
  session_id: optionalId,
});

/** The query of `GET /agents/:agent_id/runs`. */
export const listRunsQuery = z.object({
  session_id: optionalId,
  status: statusFilter.optional(),
});

/** The query of `GET /agents/:agent_id/runs/:run_id`: with `session_id`, a run of another session is not found. */
export const getRunQuery = z.object({ session_id: optionalId });

/**
 * A whole number from `min` to `max` as a query value or header; `max` is at most the largest safe
 * integer, past which `Number()` rounds digits off or makes them `Infinity` (`null` once in JSON).
 */
function wholeNumber(min: 0 | 1, max = Number.MAX_SAFE_INTEGER) {
  const expected =
    max === Number.MAX_SAFE_INTEGER
      ? `must be a whole number, ${min} or more`
      : `must be a whole number from ${min} to ${max}`;
  return z
    .string({ error: expected })
    .regex(min === 0 ? /^\d+$/ : /^[1-9]\d*$/, expected)
    .transform(Number)
    .refine((value) => value <= max, `must be at most ${max}`)
    .optional();
}

/** A sequence number as a query value or header: a whole number, 0 or more. */
const seq = wholeNumber(0);

/** Where a replay resumes: after `Last-Event-ID` (what EventSource sends on reconnect) or `?after=`. */
export const resumeQuery = z.object({ after: seq });
/** @see resumeQuery */
export const resumeHeader = z.object({ 'last-event-id': seq });

/** The most sessions `GET /sessions` answers in one page. */
export const MAX_SESSION_PAGE_SIZE = 1000;

/** AgentOS's session types (`type`); runstate runs agents only, so it has agent sessions only. */
const sessionType = z
  .enum(['agent', 'team', 'workflow'], { error: 'must be agent, team or workflow' })
  .default('agent');

/** The query of `GET /sessions`, as AgentOS takes it. */
export const listSessionsQuery = z.object({
  type: sessionType,
  component_id: optionalId,
  user_id: optionalId,
  db_id: optionalId,
  limit: wholeNumber(1, MAX_SESSION_PAGE_SIZE),
  page: wholeNumber(1),
  sort_by: z
    .enum(['created_at', 'updated_at'], { error: 'must be created_at or updated_at' })
    .default('created_at'),
  sort_order: z.enum(['asc', 'desc'], { error: 'must be asc or desc' }).default('desc'),
  /** Sessions whose name holds this, in any case (AgentOS's search). */
  session_name: z
    .string({ error: 'must be a string' })
    .max(MAX_ID_LENGTH, { error: `must be at most ${MAX_ID_LENGTH} characters` })
    .optional(),
});

/**
 * The query of the other session routes: with `user_id`, another user's session is not found, and
 * with a `type` other than `agent`, any session (runstate has no team or workflow sessions).
 */
export const sessionQuery = z.object({ type: sessionType, db_id: optionalId, user_id: optionalId });

/** The query of `GET /sessions/:session_id/runs`: runs created in a window (Unix seconds, inclusive). */
export const sessionRunsQuery = sessionQuery.extend({
  created_after: wholeNumber(0),
  created_before: wholeNumber(0),
});

/** The longest session name, in characters (code points): as long as a name taken from a message. */
export const MAX_SESSION_NAME_LENGTH = 100;

/** A session's new name: not blank (the Agent UI lists sessions by it), and not longer than that. */
const sessionName = z
  .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
  .regex(/\S/, 'must not be blank')
  .refine(
    (name) => [...name].length <= MAX_SESSION_NAME_LENGTH,
    `must be at most ${MAX_SESSION_NAME_LENGTH} characters`,
  )
  // (JSON Schema counts code points too.) The example is what the API page's "Try it out" fills in
  // (from the pattern alone it would make up a name of one random character).
  .meta({ maxLength: MAX_SESSION_NAME_LENGTH, examples: ['My session'] });

/** The body of `POST /sessions/:session_id/rename`, as AgentOS takes it. */
export const renameSessionBody = z.object({ session_name: sessionName });

/**
 * A session field of AgentOS's update that runstate has no place for: refused (422) when set, since
 * AgentOS would keep it and a client would read it back. Empty (`''`, as a form sends a field left
 * empty) is unset, as null is.
 */
function unkeptSessionField(what: string) {
  return z
    .unknown()
    .refine((value) => value == null || value === '', `runstate keeps no session ${what}`)
    .optional()
    .meta({
      description: `Refused (422) unless null or empty: runstate keeps no session ${what}.`,
      examples: [''],
    });
}

/**
 * The body of `PATCH /sessions/:session_id`, AgentOS's `UpdateSessionRequest`: runstate keeps a
 * session's name only. Unknown fields are ignored, as AgentOS does.
 */
export const updateSessionBody = z.object({
  session_name: sessionName.nullish(),
  session_state: unkeptSessionField('state'),
  metadata: unkeptSessionField('metadata'),
  summary: unkeptSessionField('summary'),
});

/** The most sessions one `DELETE /sessions` deletes: each is a store round trip. */
export const MAX_SESSIONS_PER_DELETE = 1_000;

/** A field given once (a form's, or a JSON string) is a list of one. */
const oneOrMany = (value: unknown) => (typeof value === 'string' ? [value] : value);

/** The body of `DELETE /sessions`, AgentOS's `DeleteSessionRequest`: a type for each id. */
export const deleteSessionsBody = z.object({
  session_ids: listField(
    z.preprocess(
      oneOrMany,
      z
        .array(z.string({ error: 'must be a session id (a string)' }).min(1, 'must not hold an empty id'), {
          error: 'must be an array of session ids',
        })
        .min(1, 'must not be empty')
        .max(MAX_SESSIONS_PER_DELETE, `must hold at most ${MAX_SESSIONS_PER_DELETE} ids`),
    ),
  ),
  session_types: listField(
    z.preprocess(
      oneOrMany,
      z
        .array(z.enum(['agent', 'team', 'workflow'], { error: 'must be agent, team or workflow' }), {
          error: 'must be an array of agent, team or workflow',
        })
        .min(1, 'must not be empty'),
    ),
  ),
});

/**
 * Validates request input (a body, a query string's parameters). Throws a 422 naming the first
 * failing field (`message`, `stream`...), with every problem in `detail`. A field the schema knows,
 * sent in a bracket form (`user_id[]=a`, `session_id[x]=a`, as `qs` and jQuery write arrays and
 * objects), is refused: it would not be read as that field, and a field dropped in silence starts a
 * new session, replays a stream from its start, or widens a filter.
 */
export function parseInput<Schema extends z.ZodType>(schema: Schema, input: unknown): z.output<Schema> {
  // Worded as a body of `null` or `5` is (by the JSON parser's check), not in zod's words.
  if (Array.isArray(input)) throw invalidField('body', 'body: must be a JSON object, not array');
  if (schema instanceof z.ZodObject && typeof input === 'object' && input !== null) {
    for (const key of Object.keys(input)) {
      const bracket = key.indexOf('[');
      const name = key.slice(0, bracket);
      if (bracket > 0 && Object.hasOwn(schema.shape, name))
        throw invalidField(name, `${name}: must be sent as ${name}=value, once (not ${key})`);
    }
  }
  const unstorable = unstorablePath(input);
  if (unstorable !== undefined) {
    const field = unstorable.path.join('.') || 'body';
    throw invalidField(field, `${field}: must not contain ${unstorable.what}`);
  }
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const fieldOf = (path: readonly PropertyKey[]) => (path.length > 0 ? path.map(String).join('.') : 'body');
  const detail = issues.map((issue) => `${fieldOf(issue.path)}: ${issue.message}`).join('; ');
  throw invalidField(fieldOf(issues[0]?.path ?? []), detail);
}

/**
 * Validates a query string's parameters ({@link parseInput}). A parameter the route reads, sent
 * twice (`?type=agent&type=agent`), is refused by name: which of two values counts would be a guess
 * (FastAPI takes the last; a proxy or a client library may have added one). One it does not read
 * is ignored, as AgentOS ignores it.
 */
export function parseQuery<Schema extends z.ZodType>(schema: Schema, query: unknown): z.output<Schema> {
  refuseUndecodable(schema, query);
  refuseRepeats(schema, query);
  return parseInput(schema, query);
}

/**
 * Validates a request body ({@link parseInput}; none at all is every field absent). In a form
 * (urlencoded or multipart), a field the route reads once, sent twice, is refused by name as a
 * query's parameter is; a field that takes a list (`session_ids`) is sent once for each item. A
 * JSON body's key sent twice cannot be told: `JSON.parse` keeps the last. `prepare` turns the
 * fields into what `schema` reads (a form's JSON text parsed), after that check.
 */
export function parseBody<Schema extends z.ZodType>(
  schema: Schema,
  body: unknown,
  prepare: (fields: unknown) => unknown = (fields) => fields,
): z.output<Schema> {
  if (isFormBody(body)) refuseRepeats(schema, body);
  return parseInput(schema, prepare(body ?? {}));
}

/**
 * Refuses a parameter of `schema` whose value cannot be decoded ({@link UndecodableQueryValue}),
 * naming it: a 400, as a form's field that cannot be decoded is. One the route does not read is
 * ignored, as its other parameters are.
 */
function refuseUndecodable(schema: z.ZodType, query: unknown): void {
  if (!(schema instanceof z.ZodObject) || typeof query !== 'object' || query === null) return;
  for (const [name, value] of Object.entries(query)) {
    if (!Object.hasOwn(schema.shape, name)) continue;
    if ([value].flat().some((item) => item instanceof UndecodableQueryValue)) throw undecodable(name);
  }
}

/**
 * Refuses a field of `schema` sent more than once (an array, where a query or a form has one for a
 * name it was given twice), unless it takes a list: which of two values counts would be a guess.
 */
function refuseRepeats(schema: z.ZodType, fields: unknown): void {
  if (!(schema instanceof z.ZodObject) || typeof fields !== 'object' || fields === null) return;
  const shape = schema.shape as Record<string, z.ZodType>;
  for (const [name, value] of Object.entries(fields))
    if (Array.isArray(value) && Object.hasOwn(shape, name) && !listFields.has(shape[name]!))
      throw sentMoreThanOnce(name, value.length);
}

/**
 * Where `input` holds a string no store can keep alike: one with a NUL character (U+0000), which
 * PostgreSQL's text cannot store (the memory store could), or a lone surrogate (half of a UTF-16
 * pair, which JSON can carry as `"\ud800"` but which is no Unicode text). Refused for every store
 * alike. `undefined` when nowhere.
 */
function unstorablePath(input: unknown, path: string[] = []): { path: string[]; what: string } | undefined {
  if (typeof input === 'string') return unstorableText(input, path);
  if (typeof input !== 'object' || input === null || path.length > 8) return undefined;
  for (const [key, value] of Object.entries(input)) {
    const found = unstorableText(key, [...path, key]) ?? unstorablePath(value, [...path, key]);
    if (found) return found;
  }
  return undefined;
}

function unstorableText(text: string, path: string[]): { path: string[]; what: string } | undefined {
  const what = unstorableCharacter(text);
  return what === undefined ? undefined : { path, what };
}
