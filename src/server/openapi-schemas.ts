import { z } from 'zod';
import { CANCEL_REASONS } from '../../machines/run-types.js';
import { STATUS_BY_CODE } from './http-errors.js';
import { runStatus } from './schemas.js';

/*
 * What the server sends, in zod: run records, sessions, agents, errors and the wire events of a run
 * stream. The API document (`/openapi.json`) is generated from these; their output types are checked
 * against the runtime's types in test/server/openapi-schemas.test.ts, so neither can drift from the
 * other. Strict objects: a field the runtime adds without a schema fails that test too.
 */

const cancelReason = z.enum(CANCEL_REASONS).meta({
  description: 'Why the run was cancelled: over HTTP, from code, the client went away, or shutdown.',
});

/** Every error code, in the order of the one code-to-status map. */
export const errorCode = z.enum(Object.keys(STATUS_BY_CODE) as [keyof typeof STATUS_BY_CODE]);

const unixSeconds = z.number().meta({ description: 'Unix time in seconds.' });

const tokens = z
  .number()
  .int()
  .nullable()
  .meta({ description: 'null when the model server did not report it.' });

const runMetrics = z.strictObject({
  input_tokens: tokens,
  output_tokens: tokens,
  total_tokens: tokens,
  time_to_first_token: z
    .number()
    .nullable()
    .meta({ description: 'Seconds from the first model request to the first chunk; null without a chunk.' }),
  duration: z.number().meta({ description: 'Seconds from the first model request to the end.' }),
});

const runErrorData = z.strictObject({
  code: errorCode,
  message: z.string(),
  status: z
    .number()
    .int()
    .optional()
    .meta({ description: "The model server's HTTP status, if it answered." }),
  retryable: z.boolean(),
  retryAfterMs: z.number().optional().meta({ description: 'How long the model server asked to wait.' }),
});

const reasoningStep = z.strictObject({
  title: z.string().meta({ description: 'The first line of the reasoning, shortened.' }),
  reasoning: z.string(),
});

const reasoningSteps = z
  .array(reasoningStep)
  .meta({ description: "A reasoning model's phases of reasoning." });

const extraData = z
  .strictObject({ reasoning_steps: reasoningSteps })
  .meta({ description: "A reasoning model's phases of reasoning, as Agno's Agent UI shows them." });

const toolExecution = z
  .strictObject({
    tool_call_id: z.string(),
    tool_name: z.string(),
    tool_args: z
      .record(z.string(), z.unknown())
      .meta({ description: 'The arguments, as the model sent them.' }),
    result: z
      .string()
      .nullable()
      .meta({ description: 'What the model was told; null until the call is over.' }),
    content: z.string().nullable().meta({ description: 'The same as `result` (what the Agent UI reads).' }),
    tool_call_error: z.boolean().meta({ description: 'The model was told of an error.' }),
    status: z.enum([
      'awaiting_confirmation',
      'queued',
      'running',
      'completed',
      'failed',
      'rejected',
      'cancelled',
    ]),
    requires_confirmation: z.boolean(),
    confirmed: z.boolean().nullable(),
    confirmation_note: z.string().nullable(),
    metrics: z
      .strictObject({
        start_time: z.number(),
        end_time: z.number().nullable(),
        duration: z.number().nullable(),
      })
      .nullable()
      .meta({ description: 'Unix seconds and seconds; null for a call that never ran.' }),
    created_at: unixSeconds,
  })
  .meta({ description: "One tool call, with Agno's ToolExecution fields." });

const runRequirement = z
  .strictObject({
    id: z.string().meta({ description: "The call's `tool_call_id`." }),
    created_at: z.iso.datetime().meta({ description: 'When the call was asked for.' }),
    tool_execution: toolExecution,
  })
  .meta({ description: "A call the run waits for, as Agno's RunRequirement (`active_requirements`)." });

const toolCallRequest = z.strictObject({
  id: z.string(),
  type: z.literal('function'),
  function: z.strictObject({ name: z.string(), arguments: z.string() }),
  extra_content: z.record(z.string(), z.unknown()).optional().meta({
    description: "What the server sent with the call, sent back with it (Gemini's thought_signature).",
  }),
});

const transcriptMessage = z.discriminatedUnion('role', [
  z.strictObject({
    role: z.literal('assistant'),
    content: z.string(),
    tool_calls: z.array(toolCallRequest),
    // The turn's reasoning, in the field the model streamed it in (DeepSeek needs it back).
    reasoning_content: z.string().optional(),
    reasoning: z.string().optional(),
    reasoning_details: z.array(z.record(z.string(), z.unknown())).optional().meta({
      description:
        "The turn's structured reasoning as the server streamed it (OpenRouter's), sent back as it is.",
    }),
  }),
  z.strictObject({ role: z.literal('tool'), tool_call_id: z.string(), content: z.string() }),
]);

const runFields = {
  run_id: z.string(),
  agent_id: z.string(),
  agent_name: z.string(),
  session_id: z.string(),
  user_id: z.string().nullable(),
  run_input: z.string(),
  input: z
    .strictObject({ input_content: z.string() })
    .meta({ description: "`run_input` as Agno's `RunOutput` has it (`RunInput`)." }),
  content: z.string().meta({ description: 'The content so far; all of it once the run is final.' }),
  reasoning_content: z.string().meta({ description: "The reasoning so far ('' without any)." }),
  reasoning_steps: reasoningSteps.optional(),
  extra_data: extraData.optional(),
  finish_reason: z
    .string()
    .nullable()
    .meta({ description: "The model's finish reason (`stop`, `length`...); null until it finished." }),
  model: z.string(),
  model_provider: z.string(),
  error: runErrorData.nullable(),
  cancel_reason: cancelReason.nullable(),
  tools: z.array(toolExecution).meta({ description: "The run's tool calls." }),
  messages: z
    .array(transcriptMessage)
    .optional()
    .meta({ description: 'With tool calls: the messages its tool rounds added, sent as history.' }),
  created_at: unixSeconds,
};

/** A run as `GET /agents/{agent_id}/runs/{run_id}` answers it. */
export const runRecord = z.strictObject({
  ...runFields,
  status: runStatus,
  metrics: runMetrics.nullable(),
  finished_at: unixSeconds.nullable(),
});

/** A finished run: the answer of a non-streamed run. */
export const runOutput = z.strictObject({
  ...runFields,
  status: z.enum(['completed', 'cancelled', 'failed']),
  metrics: runMetrics,
  finished_at: unixSeconds,
});

/** A run paused for a confirmation: the answer of a non-streamed run (or continue) that pauses. */
export const pausedRunOutput = z.strictObject({
  ...runFields,
  status: z.literal('paused'),
  requirements: z.array(runRequirement),
  metrics: runMetrics.meta({ description: 'The metrics up to the pause.' }),
  finished_at: z.null(),
});

/** A session, as AgentOS names its fields. */
export const sessionRecord = z.strictObject({
  session_id: z.string(),
  agent_id: z.string(),
  user_id: z.string().nullable(),
  session_name: z.string().meta({
    description: 'The first user message (its first 100 characters), or the name it was renamed to.',
  }),
  created_at: unixSeconds,
  updated_at: unixSeconds,
  run_ids: z.array(z.string()).meta({ description: 'Every run of the session, oldest first.' }),
});

/** One session, as AgentOS details it (`AgentSessionDetailSchema`): `GET /sessions/{session_id}`. */
export const sessionDetail = sessionRecord.extend({
  agent_session_id: z.string().meta({ description: 'The session id again, as AgentOS names it.' }),
});

/** A page of sessions: `GET /sessions`. */
export const sessionPage = z.strictObject({
  data: z.array(sessionRecord),
  meta: z.strictObject({
    page: z.number().int(),
    limit: z.number().int(),
    total_count: z.number().int(),
    total_pages: z.number().int(),
  }),
});

/** An agent, as AgentOS lists it. */
export const agentResponse = z.strictObject({
  id: z.string(),
  name: z.string(),
  description: z.string().nullable(),
  model: z.strictObject({ name: z.string(), model: z.string(), provider: z.string() }),
  db_id: z.string(),
});

/** A model of `GET /models`, as AgentOS's `Model`. */
export const modelResponse = z.strictObject({ id: z.string(), provider: z.string() });

/** `GET /config`: AgentOS's configuration, as far as runstate has one. */
export const configResponse = z.strictObject({
  os_id: z.string(),
  name: z.string(),
  os_database: z.string().meta({ description: 'The database id every agent lists.' }),
  databases: z.array(z.string()),
  session: z.strictObject({
    dbs: z.array(
      z.strictObject({ db_id: z.string(), domain_config: z.strictObject({ display_name: z.string() }) }),
    ),
  }),
  agents: z.array(
    z.strictObject({
      id: z.string(),
      name: z.string(),
      description: z.string().nullable(),
      db_id: z.string(),
      model: z.strictObject({ id: z.string(), provider: z.string() }),
    }),
  ),
  teams: z.array(z.never()),
  workflows: z.array(z.never()),
  interfaces: z.array(z.never()),
});

/** `GET /`: what the server is, as AgentOS's home route answers. */
export const apiInfoResponse = z.strictObject({
  name: z.string(),
  description: z.string(),
  id: z.string().meta({ description: "The server's id, as `os_id` in `GET /config`." }),
  version: z.string().meta({ description: "runstate's version." }),
});

/** `GET /health`. */
export const healthResponse = z.strictObject({
  status: z.literal('ok'),
  /** When the server was made (ISO 8601, UTC): a restart shows as a new one. */
  instantiated_at: z.iso.datetime(),
});

/** The 202 answer of a run started with `background=true`. */
export const runAccepted = z.strictObject({
  run_id: z.string(),
  session_id: z.string(),
  status: z.literal('pending'),
});

/** The 202 answer of a continue in the background: the run as it stands once continued. */
export const continueAccepted = z.strictObject({
  run_id: z.string(),
  session_id: z.string(),
  status: runStatus,
});

/** The 200 answer of a cancel. */
export const cancelResult = z.strictObject({ run_id: z.string(), status: z.literal('cancelled') });

/** Every error answer: `{detail, code}`, and the fields some errors add. */
export const errorResponse = z.strictObject({
  detail: z.string().meta({ description: 'What went wrong, for a person.' }),
  code: errorCode,
  field: z.string().optional().meta({
    description:
      'The request field that failed validation (422), or whose name or value cannot be decoded (400).',
  }),
  run_id: z.string().optional().meta({ description: 'The run that already finished (409).' }),
  status: runStatus.optional().meta({ description: 'How that run finished (409).' }),
});

const eventBase = {
  run_id: z.string(),
  agent_id: z.string(),
  agent_name: z.string(),
  session_id: z.string(),
  created_at: unixSeconds,
  seq: z
    .number()
    .int()
    .min(1)
    .meta({ description: "Position in the run's event log: 1, 2, 3... (the SSE id)." }),
};

/** `RunStarted`: the run was accepted (it may still wait for a slot). */
export const runStartedEvent = z.strictObject({
  event: z.literal('RunStarted'),
  ...eventBase,
  model: z.string(),
  model_provider: z.string(),
  run_input: z
    .strictObject({ input_content: z.string() })
    .meta({ description: "The user's message, as Agno's `RunInput` (records keep it as a string)." }),
});

/** `RunContent`: one delta of the answer. */
export const runContentEvent = z.strictObject({
  event: z.literal('RunContent'),
  ...eventBase,
  content: z.string(),
  reasoning_content: z
    .string()
    .optional()
    .meta({ description: 'A reasoning delta (then `content` is empty).' }),
});

/** `ReasoningStarted`: `RunContent` events with `reasoning_content` follow. */
export const reasoningStartedEvent = z.strictObject({
  event: z.literal('ReasoningStarted'),
  ...eventBase,
});

/** `ReasoningCompleted`: the phase's whole reasoning, and every phase so far. */
export const reasoningCompletedEvent = z.strictObject({
  event: z.literal('ReasoningCompleted'),
  ...eventBase,
  content: extraData.meta({ description: "Every phase so far, as Agno's `ReasoningSteps`." }),
  content_type: z.literal('ReasoningSteps'),
  reasoning_content: z.string(),
  extra_data: extraData,
});

/** `RunCompleted` (terminal): `content` is the whole answer. */
export const runCompletedEvent = z.strictObject({
  event: z.literal('RunCompleted'),
  ...eventBase,
  content: z.string(),
  reasoning_content: z.string(),
  finish_reason: z.string().meta({ description: '`stop`, `length` (the token limit cut the answer)...' }),
  status: z.literal('completed'),
  metrics: runMetrics,
  tools: z.array(toolExecution),
  reasoning_steps: reasoningSteps.optional(),
  extra_data: extraData.optional(),
});

/** `ToolCallStarted`: a tool call started running. */
export const toolCallStartedEvent = z.strictObject({
  event: z.literal('ToolCallStarted'),
  ...eventBase,
  tool: toolExecution,
});

/** `ToolCallCompleted`: a tool call is over (`tool.tool_call_error` when the model was told of an error). */
export const toolCallCompletedEvent = z.strictObject({
  event: z.literal('ToolCallCompleted'),
  ...eventBase,
  tool: toolExecution,
  content: z
    .string()
    .meta({ description: "What the model was told: the call's `tool.result`, as Agno sends it." }),
});

/** `ToolCallError`: follows the `ToolCallCompleted` of a call that ended in an error. */
export const toolCallErrorEvent = z.strictObject({
  event: z.literal('ToolCallError'),
  ...eventBase,
  tool: toolExecution,
  error: z.string(),
});

/** `RunPaused`: the run waits for a person to confirm the calls in `tools`; the stream ends here. */
export const runPausedEvent = z.strictObject({
  event: z.literal('RunPaused'),
  ...eventBase,
  status: z.literal('paused'),
  tools: z.array(toolExecution),
  requirements: z.array(runRequirement),
});

/** `RunContinued`: the first event after a continue, with the answered calls. */
export const runContinuedEvent = z.strictObject({
  event: z.literal('RunContinued'),
  ...eventBase,
  tools: z.array(toolExecution),
});

/** `RunCancelled` (terminal): `content` is what streamed before the cancel. */
export const runCancelledEvent = z.strictObject({
  event: z.literal('RunCancelled'),
  ...eventBase,
  content: z.string(),
  reason: cancelReason,
  status: z.literal('cancelled'),
  reasoning_steps: reasoningSteps.optional(),
  extra_data: extraData.optional(),
});

/** `RunError` (terminal): `content` is the error message. */
export const runErrorEvent = z.strictObject({
  event: z.literal('RunError'),
  ...eventBase,
  content: z.string(),
  code: errorCode,
  error_type: errorCode,
  status: z.literal('failed'),
  reasoning_steps: reasoningSteps.optional(),
  extra_data: extraData.optional(),
});

/** Any event of a run, by its `event` name. Exactly one terminal event ends a run, and it is the last. */
export const runEvent = z.discriminatedUnion('event', [
  runStartedEvent,
  runContentEvent,
  reasoningStartedEvent,
  reasoningCompletedEvent,
  toolCallStartedEvent,
  toolCallCompletedEvent,
  toolCallErrorEvent,
  runPausedEvent,
  runContinuedEvent,
  runCompletedEvent,
  runCancelledEvent,
  runErrorEvent,
]);
