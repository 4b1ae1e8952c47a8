import { RunstateError } from './errors.js';
import { checkChatModel, type ChatModel } from './model/chat-model.js';
import { OpenAIChat } from './model/openai-chat.js';
import {
  createOrchestrator,
  type ContinueRunRequest,
  type Orchestrator,
  type OrchestratorOptions,
  type RunHandle,
  type RunLimits,
  unstorableCharacter,
} from './runtime/create-orchestrator.js';
import {
  isTerminalEvent,
  type PausedRunOutput,
  type RunEvent,
  type RunOutput,
  type RunRecord,
} from './runtime/run-events.js';
import { checkMethods, checkOption, checkOptionNames, runLimitsSchema } from './runtime/run-limits.js';
import { settleRun } from './runtime/settle-run.js';
import { checkTools, type Tool } from './tools/tool.js';
import type { ToolAnswer } from './runtime/tool-answers.js';

/** Options of an {@link Agent}. */
export interface AgentOptions {
  /** Shown to users and carried by every event (`agent_name`). */
  name: string;
  /** Stable id used in the HTTP API; defaults to the name in kebab-case (`Story Writer` → `story-writer`). */
  id?: string | undefined;
  /** Default: `new OpenAIChat({ id: 'gpt-5-mini' })`, which runs offline when no `OPENAI_API_KEY` is set. */
  model?: ChatModel | undefined;
  description?: string | undefined;
  /** Sent to the model as the system message, after the description. */
  instructions?: string | string[] | undefined;
  /** Share one orchestrator between agents (as the server does). Default: a new one per agent. */
  orchestrator?: Orchestrator | undefined;
  /** Options of the agent's own orchestrator, when none is passed. */
  orchestratorOptions?: OrchestratorOptions | undefined;
  /**
   * Handed to every run actor of the agent: `@statelyai/inspect`'s `inspect`, or any observer of
   * inspection events (a function, or an object with `next`). runstate's built-in inspector is not
   * one: attach it to the agent's orchestrator (`inspector.attach(agent.orchestrator)`). With a
   * shared `orchestrator`, give it to that orchestrator instead (`createOrchestrator({ inspect })`):
   * it owns the actors.
   */
  inspect?: OrchestratorOptions['inspect'];
  /** Limits of this agent's runs (timeouts, retries). */
  limits?: RunLimits | undefined;
  /** Functions the model may call (see {@link tool}). */
  tools?: Tool[] | undefined;
  /** Model turns whose tool calls run (default 10); shorthand for `limits.maxToolRounds`. */
  maxToolRounds?: number | undefined;
}

/** The events of a stream that is still to come, read as they would be from the stream itself. */
function iterateOnceResolved(stream: Promise<RunStream>): AsyncIterator<RunEvent> {
  let events: Promise<AsyncIterator<RunEvent>> | undefined;
  const iterator = () => (events ??= stream.then((resolved) => resolved[Symbol.asyncIterator]()));
  return {
    next: async () => (await iterator()).next(),
    async return() {
      // Leaving the loop leaves the stream (a run it cancels); a refused continue has nothing to leave.
      const resolved = await iterator().catch(() => undefined);
      return (await resolved?.return?.()) ?? { done: true, value: undefined };
    },
  };
}

/** The options of `run()`: a misspelt `sessionId` would start a new conversation without a word. */
const RUN_OPTIONS = ['stream', 'sessionId', 'userId'] as const satisfies readonly (keyof AgentRunOptions)[];

/** The options of `continueRun()`: a misspelt `stream` would answer with the output instead. */
const CONTINUE_OPTIONS = ['tools', 'stream'] as const satisfies readonly (keyof ContinueRunOptions)[];

/** Refuses a `stream` flag that is no boolean: which answer it asked for cannot be told (`'false'` is truthy). */
function checkStreamFlag(stream: unknown, what: string): void {
  if (stream != null && typeof stream !== 'boolean')
    throw new RunstateError('INVALID_INPUT', `${what}'s stream must be true or false, got ${typeof stream}`);
}

/** The names {@link AgentOptions} has. */
const AGENT_OPTIONS = [
  'name',
  'id',
  'model',
  'description',
  'instructions',
  'orchestrator',
  'orchestratorOptions',
  'inspect',
  'limits',
  'tools',
  'maxToolRounds',
] as const satisfies readonly (keyof AgentOptions)[];

/** Options of {@link Agent.continueRun}. */
export interface ContinueRunOptions {
  /**
   * An answer to every tool call the run waits for (Agno's form: `tool_call_id`, `confirmed`,
   * `confirmation_note`). Entries for calls that wait for nothing are ignored, so the paused run's
   * own `tools` may be sent back with the waiting calls' `confirmed` set.
   */
  tools: ToolAnswer[];
  /**
   * `true`: return the events from `RunContinued` on; otherwise a promise of the run's output at its
   * next pause or its end.
   */
  stream?: boolean | undefined;
}

/** Options of {@link Agent.run}. */
export interface AgentRunOptions {
  /**
   * `true`: return the events as they happen; otherwise a promise of the run's output once it ends,
   * or pauses for a confirmation.
   */
  stream?: boolean | undefined;
  /**
   * Continue a conversation: earlier turns of the session are sent to the model. Absent or empty
   * (`''`, as the HTTP API's `session_id` and Agno's): a new session, whose id the stream's
   * `sessionId` and the output's `session_id` tell.
   */
  sessionId?: string | undefined;
  userId?: string | undefined;
}

/**
 * The events of one run, as an async iterable. The run starts when `run()` is called, so `runId`
 * is known at once. Leaving the `for await` loop before the run ends cancels it (reason
 * `client_disconnect`), also for other loops over the same stream: the caller went away. (A
 * reader that only watches follows `await agent.orchestrator.events(runId)`.) A paused run is the exception: leaving
 * the loop at its `RunPaused` (to ask the person) leaves it waiting for `continueRun`.
 */
export interface RunStream extends AsyncIterable<RunEvent> {
  readonly runId: string;
  readonly sessionId: string;
  /** The run's output once it is final; never rejects. */
  readonly result: Promise<RunOutput>;
  /**
   * Resolves once the orchestrator's store recorded the run; rejects with its refusal
   * (`INVALID_INPUT` for a session of another agent), after which the run fails with that error.
   */
  readonly recorded: Promise<void>;
}

/**
 * An agent: a model with a name and instructions, whose runs are XState actors that can be
 * cancelled for real.
 *
 * @example
 * ```ts
 * const agent = new Agent({ name: 'StorytellerAgent', model: new OpenAIChat({ id: 'gpt-5-mini' }) });
 * let runId: string | undefined;
 * for await (const chunk of agent.run('Write a story', { stream: true })) {
 *   runId ??= chunk.run_id;
 *   if (chunk.event === RunEvent.runContent) process.stdout.write(chunk.content);
 * }
 * // elsewhere: agent.cancelRun(runId) → true when it cancelled an active run
 * ```
 */
export class Agent {
  readonly id: string;
  readonly name: string;
  readonly description: string | undefined;
  readonly instructions: string | undefined;
  readonly model: ChatModel;
  readonly orchestrator: Orchestrator;
  readonly tools: readonly Tool[];
  readonly #limits: RunLimits | undefined;

  /**
   * @throws `RunstateError` `INVALID_INPUT` when given `orchestrator` with `inspect` or `orchestratorOptions`, two tools of
   * one name, a blank name (or, without an `id`, one with no letter or digit to make the id of),
   * `limits` or `maxToolRounds` out of range, or bad `orchestratorOptions`.
   */
  constructor(options: AgentOptions) {
    checkOptionNames(options, AGENT_OPTIONS, 'an Agent');
    if (typeof options.name !== 'string' || options.name.trim() === '') {
      throw new RunstateError('INVALID_INPUT', 'an agent needs a name: a string that is not blank');
    }
    this.name = options.name;
    this.id = options.id ?? agentIdFromName(options.name);
    // The id is the agent's path in the HTTP API (`/agents/:agent_id`) and in every run record.
    if (typeof this.id !== 'string' || this.id === '') {
      throw new RunstateError(
        'INVALID_INPUT',
        options.id === undefined
          ? `the id derived from the name '${options.name}' is empty: give a name with a letter or a digit, or an id`
          : 'an agent id must be a string that is not empty',
      );
    }
    // What a store cannot keep as it is (PostgreSQL's text holds no NUL) is refused here, whatever
    // the store, as in a run's input.
    const unstorable = unstorableCharacter(this.id) ?? unstorableCharacter(this.name);
    if (unstorable !== undefined) {
      throw new RunstateError('INVALID_INPUT', `an agent name or id must not contain ${unstorable}`);
    }
    if (options.model !== undefined) checkChatModel(options.model);
    this.model = options.model ?? new OpenAIChat({ id: 'gpt-5-mini' });
    if (options.description !== undefined && typeof options.description !== 'string')
      throw new RunstateError('INVALID_INPUT', 'description must be a string');
    this.description = options.description;
    const instructions = [options.instructions ?? []].flat();
    if (!instructions.every((line) => typeof line === 'string'))
      throw new RunstateError('INVALID_INPUT', 'instructions must be a string or an array of strings');
    this.instructions = instructions.length > 0 ? instructions.join('\n') : undefined;
    if (options.orchestrator !== undefined) {
      checkMethods(
        options.orchestrator,
        ['startRun', 'cancelRun', 'continueRun', 'events'],
        'orchestrator',
        'an orchestrator (createOrchestrator())',
      );
    }
    if (options.orchestrator && options.inspect) {
      throw new RunstateError(
        'INVALID_INPUT',
        'inspect is an option of the orchestrator that runs the agent: pass it to createOrchestrator({ inspect })',
      );
    }
    // Made for the orchestrator the agent creates: with one given, they would be ignored.
    if (options.orchestrator && options.orchestratorOptions) {
      throw new RunstateError(
        'INVALID_INPUT',
        'orchestratorOptions are for the orchestrator an agent makes itself: pass them to the createOrchestrator() given as orchestrator',
      );
    }
    // Callers untyped; checked here, before an orchestrator exists, rather than at each run.
    const tools: unknown = options.tools ?? [];
    checkTools(tools, `agent ${this.id}`);
    this.orchestrator =
      options.orchestrator ??
      createOrchestrator(
        options.inspect
          ? { ...options.orchestratorOptions, inspect: options.inspect }
          : options.orchestratorOptions,
      );
    this.tools = tools;
    if (options.maxToolRounds !== undefined) {
      checkOption(runLimitsSchema.shape.maxToolRounds, options.maxToolRounds, 'maxToolRounds');
    }
    if (options.limits !== undefined) checkOption(runLimitsSchema, options.limits, 'limits');
    this.#limits =
      options.maxToolRounds === undefined
        ? options.limits
        : { ...options.limits, maxToolRounds: options.maxToolRounds };
  }

  /**
   * Streams a run: its events, from `RunStarted` to exactly one terminal event.
   *
   * @throws `RunstateError` `SHUTTING_DOWN` (synchronously) after the orchestrator's `shutdown()`:
   * there is no run, so no stream to return; `INVALID_INPUT` (synchronously) for an input that is
   * not a string or is blank, a `sessionId` or `userId` that is not one, or a `stream` that is not a
   * boolean (with either form). A session of another agent is refused by the store:
   * the stream ends with `RunError` (`INVALID_INPUT`) and `result` is that failed output.
   */
  run(input: string, options: AgentRunOptions & { stream: true }): RunStream;
  /**
   * Runs to the end and resolves with the output, whatever its status (check `status`), or with the
   * paused run (`status: 'paused'`, the calls that wait in `tools`) when a tool that
   * `requiresConfirmation` pauses it: answer with {@link Agent.continueRun}. Never throws
   * synchronously: rejects with `RunstateError` `SHUTTING_DOWN` after the orchestrator's
   * `shutdown()`, `INVALID_INPUT` for a session of another agent (or input that is not a string, or
   * is blank),
   * or the store's error when it cannot record the run.
   */
  run(
    input: string,
    options?: AgentRunOptions & { stream?: false | undefined },
  ): Promise<RunOutput | PausedRunOutput>;
  /** Either of the above, as `options.stream` says (options forwarded, a `stream` flag of type `boolean`). */
  run(input: string, options?: AgentRunOptions): RunStream | Promise<RunOutput | PausedRunOutput>;
  run(input: string, options?: AgentRunOptions): RunStream | Promise<RunOutput | PausedRunOutput> {
    // (`null` from a JavaScript caller is no options, as `undefined` is.)
    options ??= {};
    // Which of the two it asked for cannot be told: refused before either.
    checkStreamFlag(options.stream, 'agent.run');
    if (!options.stream) {
      try {
        const handle = this.#start(input, options);
        return handle.recorded.then(() => settleRun(this.orchestrator, handle.runId, handle.events()));
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
    }
    return this.#stream(this.#start(input, options));
  }

  /**
   * Answers the tool calls a paused run waits for (`RunPaused.tools`) and resumes it: a confirmed
   * call runs, a rejected one does not and the model is told so. A paused run waits in the
   * orchestrator's store, so any process sharing it continues it, also after a restart. With
   * `stream: true`, the events from `RunContinued` on (`seq` continues from `RunPaused`), up to the
   * next pause or the end: iterate the call itself, or await it for the {@link RunStream}; otherwise with the output at the next pause
   * (`status: 'paused'`) or the end. Rejects `RUN_NOT_FOUND` (unknown run, another agent's),
   * `RUN_NOT_PAUSED` when the run does not wait (it never paused, ended, was continued already, or
   * its pause ran out), `INVALID_INPUT` for answers that do not match the pending calls, an option
   * it does not have (a misspelt `stream`) or a `stream` that is not `true` or `false`, and
   * `SHUTTING_DOWN` once the orchestrator shuts down (the run is then left paused, or cancelled with
   * the shutdown when it had been taken).
   *
   * @example
   * ```ts
   * let paused: RunPausedEvent | undefined;
   * for await (const event of agent.run('publish the post', { stream: true })) {
   *   if (event.event === 'RunPaused') paused = event;
   * }
   * const tools = paused!.tools.map((t) => ({ tool_call_id: t.tool_call_id, confirmed: true }));
   * for await (const event of agent.continueRun(paused!.run_id, { tools, stream: true })) console.log(event.event);
   * ```
   */
  continueRun(
    runId: string,
    options: ContinueRunOptions & { stream: true },
  ): Promise<RunStream> & AsyncIterable<RunEvent>;
  continueRun(
    runId: string,
    options: ContinueRunOptions & { stream?: false | undefined },
  ): Promise<RunOutput | PausedRunOutput>;
  continueRun(runId: string, options: ContinueRunOptions): Promise<RunStream | RunOutput | PausedRunOutput> {
    try {
      checkOptionNames(options, CONTINUE_OPTIONS, 'agent.continueRun');
      checkStreamFlag(options.stream, 'agent.continueRun');
    } catch (error) {
      // A rejection, never a throw, as for a refused answer; iterable as a stream would be.
      const refused = Promise.reject(error instanceof Error ? error : new Error(String(error)));
      return Object.assign(refused, { [Symbol.asyncIterator]: () => iterateOnceResolved(refused) });
    }
    const continued = this.orchestrator.continueRun(runId, options.tools, this.#request());
    if (!options.stream)
      return continued.then((handle) => settleRun(this.orchestrator, runId, handle.events()));
    const stream = continued.then((handle) => this.#stream(handle));
    // Iterable as it is, like `run()`'s stream: `for await (const e of agent.continueRun(...))`
    // reads the same events as awaiting it first, and a refusal rejects the loop's first step.
    return Object.assign(stream, { [Symbol.asyncIterator]: () => iterateOnceResolved(stream) });
  }

  #stream(handle: RunHandle): RunStream {
    const orchestrator = this.orchestrator;
    return {
      runId: handle.runId,
      sessionId: handle.sessionId,
      result: handle.result,
      recorded: handle.recorded,
      [Symbol.asyncIterator]() {
        const events = handle.events()[Symbol.asyncIterator]();
        // The loop is over once the run's final record is stored, as the HTTP server ends a stream:
        // what follows it (the session's next run, on any instance of a shared store) reads the run
        // final. Only after a terminal event: a paused run's stream ends at its pause.
        let ended = false;
        const storedAtEnd = (
          step: IteratorResult<RunEvent>,
        ): IteratorResult<RunEvent> | Promise<IteratorResult<RunEvent>> => {
          if (!step.done) {
            ended = isTerminalEvent(step.value);
            return step;
          }
          return ended ? handle.result.then(() => step) : step;
        };
        // Written out rather than a generator: a generator's `finally` does not run when the loop is
        // left before its first step, and the run must be cancelled then too.
        return {
          next: () => events.next().then(storedAtEnd),
          async return(): Promise<IteratorResult<RunEvent>> {
            // A no-op when the run is already final. A paused run waits for a continue, not a reader.
            const cancelled =
              !orchestrator.isPaused(handle.runId) &&
              orchestrator.cancelRun(handle.runId, 'client_disconnect');
            // Left at its end, or ended by this cancel: over once stored, as at the end of the loop.
            if (ended || cancelled) await handle.result;
            await events.return?.();
            return { done: true, value: undefined };
          },
        };
      },
    };
  }

  /** What every run of this agent is given (a paused one too, wherever it is continued). */
  #request(): ContinueRunRequest {
    return {
      agentId: this.id,
      agentName: this.name,
      model: this.model,
      instructions: [this.description, this.instructions].filter(Boolean).join('\n\n') || undefined,
      limits: this.#limits,
      tools: this.tools,
    };
  }

  #start(input: string, options: AgentRunOptions): RunHandle {
    checkOptionNames(options, RUN_OPTIONS, 'agent.run');
    return this.orchestrator.startRun({
      ...this.#request(),
      input,
      sessionId: options.sessionId,
      userId: options.userId,
    });
  }

  /**
   * Cancels an active run of this agent that this process runs, at once: the model request (or a
   * running tool) is aborted before this returns. A run this process paused is cancelled too: it
   * waits in the store, so it ends `cancelled` a moment later (`getRun` waits for it). `true` when
   * this call cancelled the run; `false` for an unknown run, another agent's, one already final, or
   * one another instance runs or paused (the orchestrator's `requestCancel` reaches those). Never
   * throws.
   */
  cancelRun(runId: string): boolean {
    return this.orchestrator.cancelRun(runId, 'code', { agentId: this.id });
  }

  /**
   * The run's record (status, content so far, metrics), or `undefined` for an unknown run or
   * another agent's. Rejects only when the orchestrator's store fails.
   */
  async getRun(runId: string): Promise<RunRecord | undefined> {
    const run = await this.orchestrator.getRun(runId);
    return run?.agent_id === this.id ? run : undefined;
  }
}

/**
 * `Story Writer Agent` → `story-writer-agent`, as AgentOS derives ids from names.
 *
 * @example
 * ```ts
 * agentIdFromName('Story Writer Agent'); // 'story-writer-agent'
 * new Agent({ name: 'Story Writer Agent', model }).id; // the same
 * ```
 */
export function agentIdFromName(name: string): string {
  return name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}
