import {
  context,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import type { TokenUsage, ToolExecution } from '../../machines/run-types.js';
import type { RunEvent, RunOutput, RunRecord, RunStatus } from '../runtime/run-events.js';
import type { RunAround, RunListener, RunNotice } from '../runtime/storage.js';
import { RunstateError } from '../errors.js';
import { checkOptionNames } from '../option-names.js';
import { packageVersion } from '../package-version.js';
import { checkMethods } from '../runtime/run-limits.js';
import { isToolName } from '../tools/tool.js';
import { stateLabel } from './create-prometheus-metrics.js';

/** Options of {@link createRunTracer}. */
export interface RunTracerOptions {
  /**
   * Where spans go. Default: the global provider (`trace.getTracerProvider()`), a no-op until the
   * application registers an OpenTelemetry SDK. runstate never starts one.
   */
  tracerProvider?: TracerProvider | undefined;
  /**
   * Record message content: the user's input and the answer (`gen_ai.input.messages`,
   * `gen_ai.output.messages`), tool arguments and results. Default `false`: content may be personal
   * or secret, and it is large.
   */
  recordContent?: boolean | undefined;
}

/** Traces runs with OpenTelemetry, fed by the orchestrator's notices. */
export interface RunTracer {
  /**
   * Subscribe it to an orchestrator:
   * `orchestrator.subscribe(tracer.listener, { causes: false, around: tracer.around })`.
   */
  readonly listener: RunListener;
  /**
   * Makes a model request's `chat` span, or a tool call's `execute_tool` span, the active context
   * while the request starts or the tool executes: the spans an HTTP client, a database client or
   * the tool itself makes are then its children. Give it with the listener (`subscribe`'s `around`).
   */
  readonly around: RunAround;
}

/** The tool name of a call that names none a tool can have (as the metrics' `tool` label). */
const NO_TOOL_NAME = '_other';

/** The instrumentation scope of the spans. */
const SCOPE = 'runstate';

const FINAL: ReadonlySet<RunStatus> = new Set(['completed', 'cancelled', 'failed']);

/** One model request in progress. */
interface ChatSpan {
  span: Span;
  /** `performance.now()` when it started. */
  startedAt: number;
  firstOutput: boolean;
  /** The run's usage when it started (see the state notice's `usage`); `undefined`: not told. */
  usageBefore: TokenUsage | null | undefined;
  /** What the request reported, from the notice of the run's final state; `undefined`: not told. */
  reported?: TokenUsage | null | undefined;
}

/** What the tracer keeps of a run while it is active. */
interface TracedRun {
  span: Span;
  /** The run span's context: the parent of its model requests and tool calls. */
  context: Context;
  model: string;
  provider: string;
  sessionId: string;
  chat: ChatSpan | undefined;
  chats: number;
  tools: Map<string, Span>;
}

/**
 * Creates a tracer of runs following the OpenTelemetry GenAI semantic conventions: an
 * `invoke_agent {agent}` span per run, a `chat {model}` client span per model request and an
 * `execute_tool {tool}` span per tool call. The run span's parent is the context active when the run
 * was created (`startRun` is synchronous), so a run started while handling a traced request belongs
 * to that trace.
 *
 * @example
 * ```ts
 * const tracer = createRunTracer();
 * // `around`: what a tool or the model's HTTP client traces is a child of its step's span.
 * orchestrator.subscribe(tracer.listener, { causes: false, around: tracer.around });
 * ```
 */
export function createRunTracer(options: RunTracerOptions = {}): RunTracer {
  checkRunTracerOptions(options, 'createRunTracer');
  const provider = options.tracerProvider;
  const recordContent = options.recordContent ?? false;
  // Resolved on first use: the application may register its SDK after creating the tracer.
  let tracer: Tracer | undefined;
  const getTracer = () =>
    (tracer ??= (provider ?? trace.getTracerProvider()).getTracer(SCOPE, packageVersion()));
  const runs = new Map<string, TracedRun>();

  /**
   * A run's span, from its creation; or from where it was taken back from the store (`taken`: a
   * pause continued on another instance or after a restart), as a span of the context that took it
   * (the continue's request), marked so.
   */
  function onCreated(run: RunRecord, taken = false): void {
    if (taken && runs.has(run.run_id)) return;
    const parent = context.active();
    // The conventions' well-known values are lower case: `openai` for Agno's `OpenAI` (the model's
    // `provider`, as the wire events keep it); other providers are lowered alike.
    const providerName = run.model_provider.toLowerCase();
    const attributes: Attributes = {
      'gen_ai.operation.name': 'invoke_agent',
      'gen_ai.agent.id': run.agent_id,
      'gen_ai.agent.name': run.agent_name,
      'gen_ai.conversation.id': run.session_id,
      'gen_ai.request.model': run.model,
      'gen_ai.provider.name': providerName,
      'runstate.run.id': run.run_id,
    };
    if (recordContent) attributes['gen_ai.input.messages'] = messages('user', run.run_input);
    if (taken) attributes['runstate.run.taken'] = true;
    const span = getTracer().startSpan(
      `invoke_agent ${run.agent_name}`,
      { kind: SpanKind.INTERNAL, attributes },
      parent,
    );
    // Not recorded (no SDK registered, the default, or sampled out): the run is not followed. Its
    // model requests and tool calls would be children of a span that is not recorded, so nothing of
    // it would be; this keeps the default setup's cost per run and per event to this check.
    if (!span.isRecording()) return;
    runs.set(run.run_id, {
      span,
      context: trace.setSpan(parent, span),
      model: run.model,
      provider: providerName,
      sessionId: run.session_id,
      chat: undefined,
      chats: 0,
      tools: new Map(),
    });
  }

  function startChat(run: TracedRun, usageBefore: TokenUsage | null | undefined): void {
    run.chats++;
    const span = getTracer().startSpan(
      `chat ${run.model}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'gen_ai.operation.name': 'chat',
          'gen_ai.request.model': run.model,
          'gen_ai.provider.name': run.provider,
          'gen_ai.request.stream': true,
          'gen_ai.conversation.id': run.sessionId,
        },
      },
      run.context,
    );
    run.chat = { span, startedAt: performance.now(), firstOutput: false, usageBefore };
  }

  /**
   * The request's time to its first output (reasoning, content, a tool call's arguments, or the
   * calls themselves when they came whole at its end), once.
   */
  function firstOutput(chat: ChatSpan): void {
    if (chat.firstOutput) return;
    chat.firstOutput = true;
    chat.span.setAttribute(
      'gen_ai.response.time_to_first_chunk',
      (performance.now() - chat.startedAt) / 1000,
    );
  }

  function onState(
    run: TracedRun,
    state: string,
    { status, error, usage, requestUsage }: Extract<RunNotice, { type: 'state' }>,
  ): void {
    // A model request is the machine's `streaming.attempt` state, entered once per request.
    if (state.startsWith('streaming.attempt')) {
      // `receiving`: the request's first chunk came (a tool call's arguments too: they are output).
      if (run.chat && state === 'streaming.attempt.receiving') return firstOutput(run.chat);
      // `requesting` again: a new request right after one whose tool calls all failed their checks
      // (the machine passed through the tools in one step; the notice's `requestUsage` is the new one's).
      if (run.chat && state === 'streaming.attempt.requesting') {
        firstOutput(run.chat);
        endChatForTools(run.chat, usage, undefined);
      } else if (run.chat) return;
      startChat(run, usage);
      return;
    }
    if (!run.chat) return;
    // In a final state, the 'finished' notice ends the request's span, with what it reported.
    if (FINAL.has(status)) {
      run.chat.reported = requestUsage;
      return;
    }
    if (state.endsWith('retrying')) {
      // While retrying, the machine's error is the failed request's (a retry may still be cancelled).
      run.chat.span.setAttribute('error.type', error?.code ?? '_OTHER');
      run.chat.span.setStatus({
        code: SpanStatusCode.ERROR,
        message: error?.message ?? 'failed before its first chunk',
      });
      run.chat.span.end();
    } else {
      // To the tools, or paused for a person: the request ended asking for tool calls. Calls that
      // came whole in its last chunk (no argument deltas, so never `receiving`) are its first
      // output, as the run's time to first token counts them.
      firstOutput(run.chat);
      endChatForTools(run.chat, usage, requestUsage);
    }
    run.chat = undefined;
  }

  function endChatForTools(
    chat: ChatSpan,
    usage: TokenUsage | null | undefined,
    reported: TokenUsage | null | undefined,
  ): void {
    chat.span.setAttributes(
      reported === undefined ? usedBetween(chat.usageBefore, usage) : usageOf(reported),
    );
    chat.span.setAttribute('gen_ai.response.finish_reasons', ['tool_calls']);
    chat.span.end();
  }

  function onEvent(run: TracedRun, event: RunEvent): void {
    switch (event.event) {
      case 'RunContent':
      case 'ReasoningStarted': {
        if (run.chat) firstOutput(run.chat);
        return;
      }
      case 'ToolCallStarted': {
        const { tool } = event;
        run.tools.set(tool.tool_call_id, startToolSpan(run, tool));
        return;
      }
      case 'ToolCallCompleted': {
        const { tool } = event;
        // A call that never ran (an unknown tool, invalid arguments, rejected by a person) has a
        // span too, which starts and ends here: one span per tool call.
        const span = run.tools.get(tool.tool_call_id) ?? startToolSpan(run, tool);
        run.tools.delete(tool.tool_call_id);
        if (recordContent && tool.result !== null) span.setAttribute('gen_ai.tool.call.result', tool.result);
        span.setAttribute('runstate.tool.status', tool.status);
        if (tool.tool_call_error) toolFailed(span, tool.status);
        span.end();
        return;
      }
    }
  }

  function startToolSpan(run: TracedRun, tool: ToolExecution): Span {
    // The model names the tool, maybe with kilobytes of a prompt's text: a name no tool can have
    // is neither a span's name nor its attribute.
    const name = isToolName(tool.tool_name) ? tool.tool_name : NO_TOOL_NAME;
    const attributes: Attributes = {
      'gen_ai.operation.name': 'execute_tool',
      'gen_ai.tool.name': name,
      'gen_ai.tool.call.id': tool.tool_call_id,
      'gen_ai.tool.type': 'function',
    };
    if (recordContent) attributes['gen_ai.tool.call.arguments'] = JSON.stringify(tool.tool_args);
    return getTracer().startSpan(
      `execute_tool ${name}`,
      { kind: SpanKind.INTERNAL, attributes },
      run.context,
    );
  }

  function onFinished(run: TracedRun, output: RunOutput): void {
    const { metrics } = output;
    const usage: Attributes = {};
    if (metrics.input_tokens !== null) usage['gen_ai.usage.input_tokens'] = metrics.input_tokens;
    if (metrics.output_tokens !== null) usage['gen_ai.usage.output_tokens'] = metrics.output_tokens;
    const finishReasons = output.finish_reason === null ? undefined : [output.finish_reason];

    const chat = run.chat;
    if (chat) {
      // The last request's own: what it reported, or else the run's, less what the requests before it used.
      if (chat.reported !== undefined) chat.span.setAttributes(usageOf(chat.reported));
      else if (chat.usageBefore !== undefined)
        chat.span.setAttributes(usedBetween(chat.usageBefore, metrics));
      else if (run.chats === 1) chat.span.setAttributes(usage);
      if (finishReasons) chat.span.setAttribute('gen_ai.response.finish_reasons', finishReasons);
      // A request that asked for tools once too often ended well: the run failed after it.
      if (output.error?.code === 'TOOL_ROUNDS_EXCEEDED')
        chat.span.setAttribute('gen_ai.response.finish_reasons', ['tool_calls']);
      else if (output.status === 'failed') failed(chat.span, output);
      chat.span.end();
    }
    // Calls still open when the run ended (running, queued, or awaiting a person's confirmation)
    // were cancelled with it: no ToolCallCompleted comes, and those that never started have a span too.
    for (const tool of output.tools) {
      if (tool.status !== 'cancelled') continue;
      const span = run.tools.get(tool.tool_call_id) ?? startToolSpan(run, tool);
      run.tools.delete(tool.tool_call_id);
      toolFailed(span, 'cancelled');
      span.end();
    }
    for (const span of run.tools.values()) {
      toolFailed(span, 'cancelled');
      span.end();
    }

    const span = run.span;
    span.setAttributes({ ...usage, 'runstate.run.status': output.status });
    if (finishReasons) span.setAttribute('gen_ai.response.finish_reasons', finishReasons);
    if (recordContent) {
      // An output message names why it ended; a run that never finished ends as its status says.
      const ended = output.finish_reason ?? output.status;
      span.setAttribute('gen_ai.output.messages', messages('assistant', output.content, ended));
    }
    if (output.status === 'cancelled') {
      // Not an error: the status stays unset, the reason is recorded.
      const reason = output.cancel_reason ?? 'unknown';
      span.setAttribute('runstate.run.cancel_reason', reason);
      span.addEvent('runstate.run.cancelled', { 'runstate.run.cancel_reason': reason });
    } else if (output.status === 'failed') failed(span, output);
    span.end();
  }

  /**
   * Paused here, then taken by another instance: the span ends here, marked so, and the rest of the
   * run is that instance's (its spans belong to the context it continues in).
   */
  function onLeft(run: TracedRun): void {
    run.chat?.span.end();
    for (const span of run.tools.values()) span.end();
    run.span.setAttribute('runstate.run.status', 'paused');
    run.span.addEvent('runstate.run.left', { 'runstate.run.taken_by': 'another instance' });
    run.span.end();
  }

  const listener: RunListener = (notice: RunNotice) => {
    if (notice.type === 'created') return onCreated(notice.run);
    if (notice.type === 'taken') return onCreated(notice.run, true);
    const runId = notice.type === 'finished' ? notice.run.run_id : notice.runId;
    const run = runs.get(runId);
    if (!run) return;
    switch (notice.type) {
      case 'left':
        runs.delete(runId);
        return onLeft(run);
      case 'state':
        return onState(run, stateLabel(notice.value), notice);
      case 'event':
        return onEvent(run, notice.event);
      case 'finished':
        runs.delete(runId);
        return onFinished(run, notice.run);
    }
  };
  const around: RunAround = (step, work) => {
    const run = runs.get(step.runId);
    const span = !run ? undefined : step.type === 'model' ? run.chat?.span : run.tools.get(step.toolCallId);
    // A run not recorded (no SDK, sampled out) has no spans here: its steps run as they are.
    if (!run || !span) return work();
    return context.with(trace.setSpan(run.context, span), work);
  };
  return { listener, around };
}

const RUN_TRACER_OPTIONS = ['tracerProvider', 'recordContent'];

/**
 * Refuses what {@link createRunTracer} cannot use, naming it as `what` (`createApp tracing`): a
 * misspelt `recordContnet` would be ignored, a provider that is none would fail every run.
 */
export function checkRunTracerOptions(options: unknown, what: string): asserts options is RunTracerOptions {
  checkOptionNames(options, RUN_TRACER_OPTIONS, what);
  const { tracerProvider, recordContent } = options as Record<string, unknown>;
  if (tracerProvider != null)
    checkMethods(tracerProvider, ['getTracer'], `${what}: tracerProvider`, 'an OpenTelemetry TracerProvider');
  if (recordContent != null && typeof recordContent !== 'boolean')
    throw new RunstateError('INVALID_INPUT', `${what}: recordContent must be true or false`);
}

/** A request's reported usage as span attributes; a count the server did not report is left out. */
function usageOf(reported: TokenUsage | null): Attributes {
  const attributes: Attributes = {};
  if (reported?.input_tokens != null) attributes['gen_ai.usage.input_tokens'] = reported.input_tokens;
  if (reported?.output_tokens != null) attributes['gen_ai.usage.output_tokens'] = reported.output_tokens;
  return attributes;
}

/**
 * What one request used: the run's usage after it, less the run's usage before it (for notices that
 * do not say what it reported). A count the server did not report (then every sum with it is
 * unknown) is left out.
 */
function usedBetween(
  before: TokenUsage | null | undefined,
  after: Pick<TokenUsage, 'input_tokens' | 'output_tokens'> | null | undefined,
): Attributes {
  const attributes: Attributes = {};
  if (!after || before === undefined) return attributes;
  const used = (name: 'input_tokens' | 'output_tokens'): number | null => {
    const total = after[name];
    if (total === null) return null;
    if (before === null) return total;
    const earlier = before[name];
    return earlier === null ? null : total - earlier;
  };
  const input = used('input_tokens');
  const output = used('output_tokens');
  if (input !== null) attributes['gen_ai.usage.input_tokens'] = input;
  if (output !== null) attributes['gen_ai.usage.output_tokens'] = output;
  return attributes;
}

function failed(span: Span, output: RunOutput): void {
  span.setAttribute('error.type', output.error?.code ?? '_OTHER');
  span.setStatus({ code: SpanStatusCode.ERROR, message: output.error?.message ?? 'failed' });
}

/** A tool call that did not complete: `status` (`failed`, `cancelled`) is low-cardinality, as `error.type` wants. */
function toolFailed(span: Span, status: string): void {
  span.setAttribute('runstate.tool.status', status);
  span.setAttribute('error.type', status);
  span.setStatus({ code: SpanStatusCode.ERROR, message: `tool call ${status}` });
}

/** Messages in the GenAI conventions' JSON form: one text part, and an output's `finish_reason`. */
function messages(role: 'user' | 'assistant', content: string, finishReason?: string): string {
  const parts = [{ type: 'text', content }];
  return JSON.stringify([
    finishReason === undefined ? { role, parts } : { role, parts, finish_reason: finishReason },
  ]);
}
