import { z } from 'zod';
import type { ErrorCode } from '../../machines/run-types.js';
import { packageVersion } from '../package-version.js';
import { STATUS_BY_CODE } from './http-errors.js';
import {
  agentResponse,
  apiInfoResponse,
  cancelResult,
  configResponse,
  errorResponse,
  healthResponse,
  modelResponse,
  reasoningCompletedEvent,
  toolCallStartedEvent,
  toolCallCompletedEvent,
  toolCallErrorEvent,
  runPausedEvent,
  runContinuedEvent,
  reasoningStartedEvent,
  runAccepted,
  continueAccepted,
  runCancelledEvent,
  runCompletedEvent,
  runContentEvent,
  runErrorEvent,
  runEvent,
  runOutput,
  pausedRunOutput,
  runRecord,
  runStartedEvent,
  sessionDetail,
  sessionPage,
  sessionRecord,
} from './openapi-schemas.js';
import {
  continueRunForm,
  resumeRunBody,
  continueRunJson,
  createRunBody,
  deleteSessionsBody,
  listRunsQuery,
  getRunQuery,
  listSessionsQuery,
  MAX_SESSION_PAGE_SIZE,
  renameSessionBody,
  resumeHeader,
  resumeQuery,
  sessionQuery,
  sessionRunsQuery,
  updateSessionBody,
} from './schemas.js';

/** A JSON Schema (2020-12, OpenAPI 3.1's dialect). */
export type JsonSchema = z.core.JSONSchema.JSONSchema & {
  discriminator?: { propertyName: string; mapping: Record<string, string> };
};

/** What {@link createOpenApiDocument} makes: an OpenAPI 3.1 document, typed as far as runstate fills it. */
export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  /** Only as an app mounted in another serves it (`GET /openapi.json`): the path it is mounted at. */
  servers?: Array<{ url: string }>;
  tags: Array<{ name: string; description: string }>;
  paths: Record<string, Partial<Record<OperationMethod, OperationObject>>>;
  components: {
    schemas: Record<string, JsonSchema>;
    securitySchemes?: Record<string, { type: 'http'; scheme: 'bearer'; description: string }>;
  };
}

/** An operation of {@link OpenApiDocument}. */
export interface OperationObject {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  parameters?: ParameterObject[];
  requestBody?: { required: boolean; content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, ResponseObject>;
  /** Present when the app has a security key: `[]` for the open routes. */
  security?: Array<Record<string, string[]>>;
}

/** A path, query or header parameter. */
export interface ParameterObject {
  name: string;
  in: 'path' | 'query' | 'header';
  required: boolean;
  description?: string | undefined;
  schema: JsonSchema;
}

/** A response of an operation. */
export interface ResponseObject {
  description: string;
  content?: Record<string, { schema: JsonSchema }>;
}

type MediaType = 'application/json' | 'text/event-stream' | 'text/html' | 'text/plain';

/** A success answer of an operation: its description and its bodies by media type. */
interface SuccessSpec {
  description: string;
  content?: Partial<Record<MediaType, z.ZodType | JsonSchema>>;
}

/** The methods of the document's operations, as OpenAPI names them (lower case). */
export type OperationMethod = 'get' | 'post' | 'patch' | 'delete';

/** One route as the API document describes it. The path is written as express writes it. */
export interface OperationSpec {
  method: OperationMethod;
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  query?: z.ZodObject;
  headers?: z.ZodObject;
  /** A body accepted as multipart/form-data, urlencoded and JSON. */
  body?: z.ZodType;
  /** The body as the two forms send it, where that differs from `body` (a form's values are text). */
  formBody?: z.ZodType;
  /** The body may be left out (every field of it is optional). */
  optionalBody?: boolean;
  success: Record<number, SuccessSpec>;
  /**
   * The error codes the route answers with; their statuses come from the one code-to-status map.
   * (A path parameter that cannot be decoded is a 400 on every route that has one.)
   */
  errors?: readonly ErrorCode[];
  /** The body may be unreadable (400) or too large (413). */
  readsBody?: boolean;
  /** Served without a bearer token even when a security key is set. */
  open?: boolean;
  /** Served only when the app serves Prometheus metrics. */
  prometheus?: boolean;
}

const json = (schema: z.ZodType | JsonSchema) => ({ 'application/json': schema });
const TEXT: JsonSchema = { type: 'string' };

/**
 * `event_index`, which the events of a resumable stream have (`background=true` with `stream`, a
 * background continue, `/resume`): the document's event schemas allow it on every stream, since they
 * refuse any other field.
 */
const eventIndex = z.number().int().min(0).optional().meta({
  description: "On a resumable stream's events only: `seq - 1`, what `/resume` takes as `last_event_index`.",
});

// One extended schema per event schema, so that each component and the union refer to the same one.
const documentedEvents = new Map(
  runEvent.options.map((option) => [option as z.ZodObject, option.extend({ event_index: eventIndex })]),
);

/** An event's schema as the document shows it: with `event_index` (see {@link eventIndex}). */
function documented(event: z.ZodObject): z.ZodObject {
  return documentedEvents.get(event)!;
}

/** Any event of a stream, as the document shows it. */
const documentedRunEvent = z.discriminatedUnion(
  'event',
  runEvent.options.map((option) => documentedEvents.get(option)!) as unknown as typeof runEvent.options,
);

/**
 * Every route of the app, in the order the document lists them. A new route goes here too:
 * test/server/openapi.test.ts fails while the app serves a route this list lacks.
 */
export const OPERATIONS: readonly OperationSpec[] = [
  {
    method: 'get',
    path: '/',
    operationId: 'get_api_info',
    summary: 'API information',
    description: "What the server is: its name, id and version (AgentOS's home route).",
    tag: 'Core',
    success: { 200: { description: 'The API information.', content: json(apiInfoResponse) } },
    open: true,
  },
  {
    method: 'get',
    path: '/health',
    operationId: 'health_check',
    summary: 'Health check',
    tag: 'Core',
    success: { 200: { description: 'The server is up.', content: json(healthResponse) } },
    open: true,
  },
  {
    method: 'get',
    path: '/config',
    operationId: 'get_config',
    summary: 'The configuration of the server',
    description:
      "AgentOS's configuration, as far as runstate has one: the agents (AgentOS's agent summary, " +
      'whose `model` is `{id, provider}`) and the database id their sessions are in.',
    tag: 'Core',
    success: { 200: { description: 'The configuration.', content: json(configResponse) } },
  },
  {
    method: 'get',
    path: '/models',
    operationId: 'get_models',
    summary: 'List the models',
    description: "Each model of the agents once, as `{id, provider}` (AgentOS's model list).",
    tag: 'Core',
    success: { 200: { description: 'The models.', content: json(z.array(modelResponse)) } },
  },
  {
    method: 'get',
    path: '/agents',
    operationId: 'get_agents',
    summary: 'List the agents',
    tag: 'Agents',
    success: { 200: { description: 'Every agent served.', content: json(z.array(agentResponse)) } },
  },
  {
    method: 'get',
    path: '/agents/:agent_id',
    operationId: 'get_agent',
    summary: 'Get an agent',
    tag: 'Agents',
    success: { 200: { description: 'The agent.', content: json(agentResponse) } },
    errors: ['AGENT_NOT_FOUND'],
  },
  {
    method: 'get',
    path: '/teams',
    operationId: 'get_teams',
    summary: 'List the teams (always empty)',
    description: 'runstate runs agents only; AgentOS clients ask for teams anyway and want an array.',
    tag: 'Core',
    success: { 200: { description: 'An empty list.', content: json(z.array(z.never())) } },
  },
  {
    method: 'get',
    path: '/workflows',
    operationId: 'get_workflows',
    summary: 'List the workflows (always empty)',
    description: 'runstate runs agents only; AgentOS clients ask for workflows anyway and want an array.',
    tag: 'Core',
    success: { 200: { description: 'An empty list.', content: json(z.array(z.never())) } },
  },
  {
    method: 'post',
    path: '/agents/:agent_id/runs',
    operationId: 'create_agent_run',
    summary: 'Run an agent',
    description:
      'Starts a run. With `stream` (the default) the answer is an event stream: each frame is ' +
      '`id: <seq>`, `event: <name>` and one `data:` line holding the event as JSON; it ends after the ' +
      'one terminal event (`RunCompleted`, `RunCancelled` or `RunError`), or at `RunPaused`. With ' +
      '`stream=false` the answer is the finished run, or the paused run (`status: "paused"`, the calls ' +
      'that wait in `tools`) when a tool needs a confirmation. With `background=true` the run goes on ' +
      'whatever the client does: with `stream` the answer is a resumable stream (each event with its ' +
      '`event_index`, for `POST …/resume`), and with `stream=false` it is 202 at once. Otherwise a ' +
      'client that goes away cancels the run unless `on_disconnect` is `continue`.',
    tag: 'Agents',
    body: createRunBody,
    readsBody: true,
    success: {
      200: {
        description: 'The run: its events as a stream, or with `stream=false` the finished (or paused) run.',
        content: {
          'text/event-stream': documentedRunEvent,
          'application/json': z.union([runOutput, pausedRunOutput]),
        },
      },
      202: { description: 'Started in the background (`background=true`).', content: json(runAccepted) },
    },
    errors: ['AGENT_NOT_FOUND', 'INVALID_INPUT', 'SHUTTING_DOWN', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'post',
    path: '/agents/:agent_id/runs/:run_id/cancel',
    operationId: 'cancel_agent_run',
    summary: 'Cancel a run',
    description:
      'Moves an active run to `cancelled` and aborts its model request at once. Idempotent: a run ' +
      'already cancelled answers 200 again; a run that finished otherwise answers 409 with its status.',
    tag: 'Agents',
    success: { 200: { description: 'The run is cancelled.', content: json(cancelResult) } },
    // 503 SHUTTING_DOWN: a paused run waits in the store, and a closing instance takes none back
    // (the cancel went on the bus to the instance that paused it);
    // a cancel waiting for a run held elsewhere is let go at a shutdown (sent, and recorded).
    errors: [
      'AGENT_NOT_FOUND',
      'RUN_NOT_FOUND',
      'RUN_ALREADY_FINISHED',
      'SHUTTING_DOWN',
      'STORE_UNAVAILABLE',
    ],
  },
  {
    method: 'post',
    path: '/agents/:agent_id/runs/:run_id/continue',
    operationId: 'continue_agent_run',
    summary: 'Continue a paused run',
    description:
      "Answers the tool calls a paused run waits for (`RunPaused.tools`), in Agno's form: `tools` is " +
      'a JSON array (a JSON string in a form) of `{tool_call_id, confirmed, confirmation_note?}`, one ' +
      'per pending call. Confirmed calls run; rejected ones do not, and the model is told. With ' +
      '`stream` (the default) the answer is the event stream from `RunContinued` on (`seq` goes on from ' +
      '`RunPaused`) to the next pause or the end; otherwise the run at that point (finished, or paused ' +
      'again). With `background=true` the run goes on whatever the client does: with `stream` the ' +
      'stream is resumable (each event has its `event_index`), and with `stream=false` the answer is ' +
      '202 at once. A run that is not paused answers 409 `RUN_NOT_PAUSED`.',
    tag: 'Agents',
    body: continueRunJson,
    formBody: continueRunForm,
    readsBody: true,
    success: {
      200: {
        description:
          'The run from `RunContinued` on, or with `stream=false` the finished (or paused again) run.',
        content: {
          'text/event-stream': documentedRunEvent,
          'application/json': z.union([runOutput, pausedRunOutput]),
        },
      },
      202: {
        description: 'Continued in the background (`background=true`, `stream=false`).',
        content: json(continueAccepted),
      },
    },
    errors: [
      'AGENT_NOT_FOUND',
      'RUN_NOT_FOUND',
      'RUN_NOT_PAUSED',
      'INVALID_INPUT',
      'SHUTTING_DOWN',
      'STORE_UNAVAILABLE',
    ],
  },
  {
    method: 'get',
    path: '/agents/:agent_id/runs/:run_id',
    operationId: 'get_agent_run',
    summary: 'Get a run',
    tag: 'Agents',
    query: getRunQuery,
    success: { 200: { description: 'The run, active or finished.', content: json(runRecord) } },
    errors: ['AGENT_NOT_FOUND', 'RUN_NOT_FOUND', 'INVALID_INPUT', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/agents/:agent_id/runs',
    operationId: 'list_agent_runs',
    summary: 'List the runs of an agent',
    tag: 'Agents',
    query: listRunsQuery,
    success: { 200: { description: 'The runs, oldest first.', content: json(z.array(runRecord)) } },
    errors: ['AGENT_NOT_FOUND', 'SESSION_NOT_FOUND', 'INVALID_INPUT', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/agents/:agent_id/runs/:run_id/events',
    operationId: 'stream_agent_run_events',
    summary: "Replay and follow a run's events",
    description:
      'Sends the events after `Last-Event-ID` (what EventSource sends on reconnect) or `?after=`, ' +
      'then the live ones until the terminal event. A reader going away does not cancel the run.',
    tag: 'Agents',
    query: resumeQuery,
    headers: resumeHeader,
    success: {
      200: {
        description: 'The events, as on the run stream.',
        content: { 'text/event-stream': documentedRunEvent },
      },
      204: {
        description:
          'The run is final and its last event is the one named: nothing will come (an EventSource stops reconnecting).',
      },
    },
    errors: ['AGENT_NOT_FOUND', 'RUN_NOT_FOUND', 'INVALID_INPUT', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'post',
    path: '/agents/:agent_id/runs/:run_id/resume',
    operationId: 'resume_agent_run_stream',
    summary: 'Resume a run stream',
    description:
      "AgentOS's reconnect to a resumable stream (`background=true` with `stream`): the events after " +
      '`last_event_index` (the `event_index` of the last event received; `-1` or absent: from the ' +
      'first), then the live ones until the terminal event, each with its `event_index` (`seq - 1`). ' +
      'With `session_id`, a run of another session is not found. A reader going away does not ' +
      'cancel the run.',
    tag: 'Agents',
    body: resumeRunBody,
    optionalBody: true,
    readsBody: true,
    success: {
      200: {
        description: 'The events, as on the run stream, each with `event_index`.',
        content: { 'text/event-stream': documentedRunEvent },
      },
    },
    errors: ['AGENT_NOT_FOUND', 'RUN_NOT_FOUND', 'INVALID_INPUT', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/sessions',
    operationId: 'get_sessions',
    summary: 'List sessions',
    tag: 'Sessions',
    query: listSessionsQuery,
    success: { 200: { description: 'A page of sessions.', content: json(sessionPage) } },
    errors: ['INVALID_INPUT', 'NOT_FOUND', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/sessions/:session_id',
    operationId: 'get_session_by_id',
    summary: 'Get a session',
    tag: 'Sessions',
    query: sessionQuery,
    success: { 200: { description: 'The session.', content: json(sessionDetail) } },
    errors: ['SESSION_NOT_FOUND', 'NOT_FOUND', 'INVALID_INPUT', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'patch',
    path: '/sessions/:session_id',
    operationId: 'update_session',
    summary: 'Update a session',
    description:
      "AgentOS's update, of what runstate keeps: `session_name`. A `session_state`, `metadata` or " +
      '`summary` that is not null is refused (422): runstate keeps none. Other fields are ignored.',
    tag: 'Sessions',
    query: sessionQuery,
    body: updateSessionBody,
    // No body renames nothing and answers the session.
    optionalBody: true,
    readsBody: true,
    success: { 200: { description: 'The session.', content: json(sessionDetail) } },
    errors: ['SESSION_NOT_FOUND', 'NOT_FOUND', 'INVALID_INPUT', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'post',
    path: '/sessions/:session_id/rename',
    operationId: 'rename_session',
    summary: 'Rename a session',
    tag: 'Sessions',
    query: sessionQuery,
    body: renameSessionBody,
    readsBody: true,
    success: { 200: { description: 'The renamed session.', content: json(sessionDetail) } },
    errors: ['SESSION_NOT_FOUND', 'NOT_FOUND', 'INVALID_INPUT', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/sessions/:session_id/runs',
    operationId: 'get_session_runs',
    summary: 'List the runs of a session',
    description: 'Oldest first, the run in progress included.',
    tag: 'Sessions',
    query: sessionRunsQuery,
    success: { 200: { description: 'The runs.', content: json(z.array(runRecord)) } },
    errors: ['SESSION_NOT_FOUND', 'NOT_FOUND', 'INVALID_INPUT', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/sessions/:session_id/runs/:run_id',
    operationId: 'get_session_run',
    summary: 'Get a run of a session',
    description: 'The run in progress with its content so far.',
    tag: 'Sessions',
    query: sessionQuery,
    success: { 200: { description: 'The run.', content: json(runRecord) } },
    errors: ['SESSION_NOT_FOUND', 'RUN_NOT_FOUND', 'NOT_FOUND', 'INVALID_INPUT', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'delete',
    path: '/sessions/:session_id',
    operationId: 'delete_session',
    summary: 'Delete a session',
    description:
      'Forgets the session and its runs, and cancels its active runs. 204 whether or not there was ' +
      'such a session, as AgentOS answers.',
    tag: 'Sessions',
    query: sessionQuery,
    success: { 204: { description: 'Deleted, or there was no such session.' } },
    // 503 SHUTTING_DOWN: the delete waited for a run held elsewhere to end, and nothing was forgotten.
    errors: ['NOT_FOUND', 'INVALID_INPUT', 'SHUTTING_DOWN', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'delete',
    path: '/sessions',
    operationId: 'delete_sessions',
    summary: 'Delete sessions',
    description:
      "AgentOS's bulk delete: `session_ids`, and `session_types` (one per id; 400 when the lengths " +
      'differ). Unknown ids are no error.',
    tag: 'Sessions',
    query: sessionQuery,
    body: deleteSessionsBody,
    readsBody: true,
    success: { 204: { description: 'Deleted.' } },
    errors: ['NOT_FOUND', 'INVALID_INPUT', 'SHUTTING_DOWN', 'STORE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/prometheus',
    operationId: 'get_prometheus_metrics',
    summary: 'Prometheus metrics',
    description:
      "Runs, their states, durations, tokens, cancels and retries, in Prometheus's text format. " +
      "AgentOS's `/metrics` is its JSON usage totals; this is for a Prometheus scraper.",
    tag: 'Core',
    success: {
      200: { description: 'The exposition text (version 0.0.4).', content: { 'text/plain': TEXT } },
    },
    prometheus: true,
  },
  {
    method: 'get',
    path: '/openapi.json',
    operationId: 'get_openapi',
    summary: 'This document',
    tag: 'Core',
    success: { 200: { description: 'OpenAPI 3.1.', content: json({ type: 'object' }) } },
    open: true,
  },
  {
    method: 'get',
    path: '/docs',
    operationId: 'get_docs',
    summary: 'An interactive page for this document',
    tag: 'Core',
    success: { 200: { description: 'An HTML page, served offline.', content: { 'text/html': TEXT } } },
    open: true,
  },
];

/** Descriptions of parameters, by name: the same name means the same thing on every route. */
const PARAMETER_DESCRIPTIONS: Record<string, string> = {
  agent_id: 'The agent, as `GET /agents` lists it.',
  run_id: 'The run, as `RunStarted` names it.',
  session_id: 'The session (conversation).',
  status: 'Only runs with this status.',
  after: 'Only events after this `seq`.',
  'last-event-id': 'Only events after this `seq`; wins over `after`.',
  type: 'The kind of component; runstate has agents only.',
  component_id: 'Only sessions of this agent.',
  user_id: 'Only sessions of this user.',
  db_id: 'The database id every agent lists; another one answers 404.',
  limit: `Sessions per page, at most ${MAX_SESSION_PAGE_SIZE} (default 20).`,
  page: 'The page, from 1.',
  sort_order: 'The order of `sort_by`: `desc` (the default) or `asc`.',
};

/** Descriptions of the fields of a run request (the body of `create_agent_run`). */
const BODY_DESCRIPTIONS: Record<string, string> = {
  message: 'The user message.',
  stream:
    'Answer with an event stream (the default, but with `background` only when given) or with the finished run.',
  background:
    'The run goes on whatever the client does: 202 at once (follow it at its events route), or with ' +
    "`stream=true` AgentOS's resumable stream, each event with its `event_index` (see `/resume`).",
  session_id: 'Continue this session (its history is sent to the model); empty starts a new one.',
  user_id: 'Who asks; kept on the run and the session.',
  on_disconnect: 'What a client going away does to the run: `cancel` it (default) or let it `continue`.',
};

/** Names of the document's components, in the order they are listed. */
const OUTPUT_COMPONENTS: ReadonlyArray<[string, z.ZodType]> = [
  ['Agent', agentResponse],
  ['ApiInfo', apiInfoResponse],
  ['Health', healthResponse],
  ['RunRecord', runRecord],
  ['RunOutput', runOutput],
  ['PausedRunOutput', pausedRunOutput],
  ['RunAccepted', runAccepted],
  ['CancelResult', cancelResult],
  ['SessionRecord', sessionRecord],
  ['SessionDetail', sessionDetail],
  ['Config', configResponse],
  ['SessionPage', sessionPage],
  ['Error', errorResponse],
  ['RunEvent', documentedRunEvent],
  ['RunStartedEvent', documented(runStartedEvent)],
  ['RunContentEvent', documented(runContentEvent)],
  ['ReasoningStartedEvent', documented(reasoningStartedEvent)],
  ['ReasoningCompletedEvent', documented(reasoningCompletedEvent)],
  ['ToolCallStartedEvent', documented(toolCallStartedEvent)],
  ['ToolCallCompletedEvent', documented(toolCallCompletedEvent)],
  ['ToolCallErrorEvent', documented(toolCallErrorEvent)],
  ['RunPausedEvent', documented(runPausedEvent)],
  ['RunContinuedEvent', documented(runContinuedEvent)],
  ['RunCompletedEvent', documented(runCompletedEvent)],
  ['RunCancelledEvent', documented(runCancelledEvent)],
  ['RunErrorEvent', documented(runErrorEvent)],
];
const INPUT_COMPONENTS: ReadonlyArray<[string, z.ZodType]> = [
  ['CreateRunRequest', createRunBody],
  ['ContinueRunRequest', continueRunJson],
  ['ContinueRunForm', continueRunForm],
  ['ResumeRunRequest', resumeRunBody],
  ['RenameSessionRequest', renameSessionBody],
  ['UpdateSessionRequest', updateSessionBody],
  ['DeleteSessionsRequest', deleteSessionsBody],
];

/** Options of {@link createOpenApiDocument}. */
export interface OpenApiDocumentOptions {
  /** Whether the app requires a bearer token: the document then says so on every closed route. */
  secured: boolean;
  /** Whether the app serves `GET /prometheus`. Default `true`. */
  prometheus?: boolean | undefined;
}

/**
 * The OpenAPI 3.1 document of the app, generated from the zod schemas its routes validate requests
 * with and those of what it sends (`openapi-schemas.ts`).
 *
 * @example
 * ```ts
 * // The document a client generator reads, without starting a server (`GET /openapi.json` serves it).
 * writeFileSync('openapi.json', JSON.stringify(createOpenApiDocument({ secured: true }), null, 2));
 * ```
 */
export function createOpenApiDocument(options: OpenApiDocumentOptions): OpenApiDocument {
  const { secured, prometheus = true } = options;
  const outputs = componentSchemas(OUTPUT_COMPONENTS, 'output');
  const inputs = componentSchemas(INPUT_COMPONENTS, 'input');
  addDescriptions(inputs.schemas.CreateRunRequest, BODY_DESCRIPTIONS);
  // What the page's "Try it out" fills in (its own `string` is no index); zod leaves a union's
  // examples out of its JSON Schema.
  const lastEventIndex = inputs.schemas.ResumeRunRequest?.properties?.last_event_index;
  if (typeof lastEventIndex === 'object') lastEventIndex.examples = [-1];
  // Client generators pick the event's type by its `event` field.
  const mapping = Object.fromEntries(
    documentedRunEvent.options.map((option) => [option.shape.event.value, outputs.refer(option).$ref ?? '']),
  );
  outputs.schemas.RunEvent = {
    ...outputs.schemas.RunEvent,
    discriminator: { propertyName: 'event', mapping },
  };

  const paths: OpenApiDocument['paths'] = {};
  for (const operation of OPERATIONS) {
    if (operation.prometheus && !prometheus) continue;
    const path = operation.path.replace(/:(\w+)/g, '{$1}');
    paths[path] ??= {};
    paths[path][operation.method] = operationObject(operation, { secured, outputs, inputs });
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'runstate',
      version: packageVersion(),
      description:
        'An AgentOS-compatible API for agent runs: each run streamed over server-sent events, ' +
        'cancellable for real, resumable by `seq`. Errors are `{detail, code}`.',
    },
    tags: [
      { name: 'Core', description: 'Health, and this document.' },
      { name: 'Agents', description: 'Agents and their runs.' },
      { name: 'Sessions', description: 'Conversations: the runs of one session share their history.' },
    ],
    paths,
    components: {
      schemas: { ...outputs.schemas, ...inputs.schemas },
      ...(secured && {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'The security key the server was started with (`RUNSTATE_SECURITY_KEY`).',
          },
        },
      }),
    },
  };
}

interface Components {
  schemas: Record<string, JsonSchema>;
  /** A reference to a schema that is a component, or the schema inline. */
  refer(schema: z.ZodType | JsonSchema): JsonSchema;
}

/** Converts named schemas to JSON Schema 2020-12 (OpenAPI 3.1's dialect), referring to each other. */
function componentSchemas(named: ReadonlyArray<[string, z.ZodType]>, io: 'input' | 'output'): Components {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of named) registry.add(schema, { id });
  const uri = (id: string) => `#/components/schemas/${id}`;
  const converted = z.toJSONSchema(registry, { io, uri, override: keepDefault }).schemas;
  const schemas: Record<string, JsonSchema> = {};
  for (const [id] of named) {
    // Each component is a standalone JSON Schema: its `$schema` and `$id` mean nothing inside OpenAPI.
    const { $schema: _dialect, $id: _id, ...schema } = converted[id]!;
    schemas[id] = schema;
  }
  return {
    schemas,
    refer(schema) {
      if (!(schema instanceof z.ZodType)) return schema;
      const id = registry.get(schema)?.id;
      if (id !== undefined) return { $ref: uri(id) };
      // A list of components refers to them, rather than copying them into its own `$defs`.
      if (schema instanceof z.ZodArray)
        return { type: 'array', items: this.refer(schema.element as z.ZodType) };
      const { $schema: _dialect, ...inline } = z.toJSONSchema(schema, { io, override: keepDefault });
      return inline;
    },
  };
}

/**
 * zod leaves a default out of an input JSON Schema (`.default()`'s, and its metadata's when the
 * schema transforms its value: a form's flag, `stream=yes` → `true`): put back, since a request
 * without the field gets it.
 */
function keepDefault({ zodSchema, jsonSchema }: { zodSchema: unknown; jsonSchema: JsonSchema }): void {
  if (jsonSchema.default !== undefined) return;
  const given =
    zodSchema instanceof z.ZodDefault
      ? zodSchema.def.defaultValue
      : z.globalRegistry.get(zodSchema as z.ZodType)?.default;
  if (given !== undefined) jsonSchema.default = given;
}

function addDescriptions(schema: JsonSchema | undefined, descriptions: Record<string, string>): void {
  for (const [name, property] of Object.entries(schema?.properties ?? {})) {
    if (typeof property === 'object') property.description ??= descriptions[name];
  }
}

function operationObject(
  operation: OperationSpec,
  { secured, outputs, inputs }: { secured: boolean; outputs: Components; inputs: Components },
): OperationObject {
  const parameters: ParameterObject[] = [
    ...[...operation.path.matchAll(/:(\w+)/g)].map(([, name = '']) => ({
      name,
      in: 'path' as const,
      required: true,
      description: PARAMETER_DESCRIPTIONS[name],
      schema: { type: 'string' as const },
    })),
    ...objectParameters(operation.query, 'query'),
    ...objectParameters(operation.headers, 'header'),
  ];
  const responses: Record<string, ResponseObject> = {};
  for (const [status, success] of Object.entries(operation.success)) {
    responses[status] = {
      description: success.description,
      ...(success.content && {
        content: Object.fromEntries(
          Object.entries(success.content).map(([type, schema]) => [type, { schema: outputs.refer(schema) }]),
        ),
      }),
    };
  }
  const closed = secured && !operation.open;
  for (const [status, codes] of errorStatuses(operation, closed, secured)) {
    responses[status] = {
      description: codes.join(', '),
      content: { 'application/json': { schema: outputs.refer(errorResponse) } },
    };
  }
  return {
    operationId: operation.operationId,
    summary: operation.summary,
    ...(operation.description && { description: operation.description }),
    tags: [operation.tag],
    ...(parameters.length > 0 && { parameters }),
    ...(operation.body && {
      requestBody: {
        required: !operation.optionalBody,
        // What Agno clients send (multipart), what curl -d sends, and JSON: the same fields, as
        // text in a form.
        content: {
          'multipart/form-data': { schema: inputs.refer(operation.formBody ?? operation.body) },
          'application/x-www-form-urlencoded': { schema: inputs.refer(operation.formBody ?? operation.body) },
          'application/json': { schema: inputs.refer(operation.body) },
        },
      },
    }),
    responses,
    ...(secured && { security: closed ? [{ bearer: [] }] : [] }),
  };
}

/** The error answers of an operation by status, each with the codes that answer it. */
function errorStatuses(operation: OperationSpec, closed: boolean, secured: boolean): Map<number, string[]> {
  const statuses = new Map<number, string[]>();
  const add = (status: number, code: string) => statuses.set(status, [...(statuses.get(status) ?? []), code]);
  const unreadable: string[] = [
    ...(operation.path.includes(':') ? ['a path parameter cannot be decoded'] : []),
    ...(operation.query
      ? ['a query parameter it reads cannot be decoded (`field` names it), or more than 1,000 parameters']
      : []),
    ...(operation.readsBody
      ? ['the body cannot be read, or a field of a form cannot be decoded (`field` names it)']
      : []),
  ];
  // Answered by `startServer` (and `requireHost`) for any route, before a route sees the request.
  unreadable.push('a malformed request line or header, or no `Host` header');
  add(400, `INVALID_INPUT (${unreadable.join(', or ')})`);
  if (closed) add(STATUS_BY_CODE.UNAUTHORIZED, 'UNAUTHORIZED');
  // Answered by `refuseForeignRequests` for any route but the health check; with a security key
  // it refuses nothing (a page of a foreign origin cannot send the token, nor a rebinding attack).
  if (operation.path !== '/health' && !secured)
    add(
      STATUS_BY_CODE.FORBIDDEN,
      'FORBIDDEN (a `Host` name the server does not answer to, or a POST, PATCH or DELETE from a page of an origin not allowed)',
    );
  for (const code of operation.errors ?? []) add(STATUS_BY_CODE[code], code);
  add(
    STATUS_BY_CODE.PAYLOAD_TOO_LARGE,
    operation.readsBody
      ? 'PAYLOAD_TOO_LARGE'
      : 'PAYLOAD_TOO_LARGE (`Expect: 100-continue` with a `Content-Length` over the body limit)',
  );
  if (operation.readsBody)
    add(415, 'INVALID_INPUT (the body is of another media type; `field`: content-type)');
  // Answered by `startServer` for any route, before the app sees the request.
  add(408, 'INVALID_INPUT (the request was not received in time)');
  add(431, "PAYLOAD_TOO_LARGE (the request line and headers are over the server's limit)");
  add(417, 'INVALID_INPUT (an `Expect` header other than `100-continue`)');
  add(STATUS_BY_CODE.INTERNAL, 'INTERNAL (a bug; no details are sent)');
  return new Map([...statuses].sort(([a], [b]) => a - b));
}

/** The properties of a query or header schema, as OpenAPI parameters. */
function objectParameters(schema: z.ZodObject | undefined, where: 'query' | 'header'): ParameterObject[] {
  if (!schema) return [];
  const converted = z.toJSONSchema(schema, { io: 'input' });
  return Object.entries(converted.properties ?? {}).map(([name, property]) => ({
    name: where === 'header' ? headerName(name) : name,
    in: where,
    required: converted.required?.includes(name) ?? false,
    description: PARAMETER_DESCRIPTIONS[name],
    // A query value or a header is never null: only the string types are documented.
    schema: typeof property === 'object' ? withoutNull(property) : {},
  }));
}

function headerName(name: string): string {
  return name === 'last-event-id' ? 'Last-Event-ID' : name;
}

function withoutNull(schema: JsonSchema): JsonSchema {
  if (Array.isArray(schema.anyOf)) {
    const { anyOf, ...rest } = schema;
    const kept = anyOf.filter((each) => typeof each !== 'object' || each.type !== 'null');
    return kept.length === 1 && typeof kept[0] === 'object'
      ? { ...rest, ...kept[0] }
      : { ...rest, anyOf: kept };
  }
  if (!Array.isArray(schema.type)) return schema;
  const types = schema.type.filter((type) => type !== 'null');
  return { ...schema, type: types.length === 1 ? types[0] : types };
}
