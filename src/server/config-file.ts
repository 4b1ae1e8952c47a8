import { MAX_TIMER_MS } from '../../machines/run-types.js';
import { readFile } from 'node:fs/promises';
import { allowedHostsSchema, originSchema } from './foreign-requests.js';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { agentIdFromName } from '../agent.js';
import { RunstateError } from '../errors.js';
import { MIN_TOKENS_PER_SECOND } from '../model/offline-model.js';
import { databaseUrlSchema, redisUrlSchema } from '../runtime/open-storage.js';
import { baseWithinCap, retryOverProblem } from '../runtime/run-limits.js';

const modelSchema = z.discriminatedUnion('provider', [
  z.strictObject({
    provider: z.literal('openai'),
    /** The model's name on the server (`gpt-5-mini`, `llama3.1`). */
    id: z.string().min(1),
    /** Any OpenAI-compatible server; default OpenAI (or `OPENAI_BASE_URL`). */
    baseURL: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
    /**
     * The environment variable that holds this model's key (`GROQ_API_KEY`); unset or empty, the
     * placeholder `not-needed` goes to the model's `baseURL`. Without it the model sends
     * `OPENAI_API_KEY`, as the openai SDK does, to any `baseURL`.
     */
    apiKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be the name of an environment variable')
      .optional(),
    temperature: z.number().min(0).max(2).optional(),
    /** Most tokens the model may generate (reasoning included); a run cut by it completes `length`. */
    maxTokens: z.number().int().positive().optional(),
    /** The body field of `maxTokens`. Default `max_completion_tokens` to OpenAI, `max_tokens` elsewhere. */
    maxTokensField: z.enum(['max_tokens', 'max_completion_tokens']).optional(),
    /** How long to wait for the response headers. Default: the SDK's, 10 minutes. */
    requestTimeoutMs: z.number().int().positive().max(MAX_TIMER_MS).optional(),
    /** More body fields for the server (`top_p`, `reasoning_effort`...); never overrides runstate's. */
    extraBody: z.record(z.string(), z.unknown()).optional(),
    /** Ask for the usage chunk (`stream_options`); `false` for a server that refuses it (Mistral's). */
    includeUsage: z.boolean().optional(),
    /** Send a reasoning model's reasoning back with its tool calls; `false` for a server that refuses it (Groq's). */
    sendReasoning: z.boolean().optional(),
  }),
  z.strictObject({
    provider: z.literal('offline'),
    id: z.string().min(1).optional(),
    tokensPerSecond: z
      .number()
      .min(MIN_TOKENS_PER_SECOND, `must be at least ${MIN_TOKENS_PER_SECOND} (a token every 1,000 s)`)
      .optional(),
  }),
]);

// Timers past 2^31-1 ms fire at once in Node: longer values would not mean "longer".
const milliseconds = z.number().int().min(0).max(MAX_TIMER_MS);
// A schema of its own, not `milliseconds` made positive: a negative value would then fail both
// lower bounds and be reported twice.
const positiveMilliseconds = z.number().int().positive().max(MAX_TIMER_MS);

/** Run limits, server-wide or per agent (which wins field by field). Defaults: the run machine's. */
const limitsSchema = z.strictObject({
  /** A run with no chunk for this long fails with `RUN_TIMEOUT`. Default 60,000. */
  idleTimeoutMs: positiveMilliseconds.optional(),
  /** A run streaming for longer than this fails with `RUN_TIMEOUT`. Default 600,000. */
  timeoutMs: positiveMilliseconds.optional(),
  /** Failed model requests before the first chunk (429, 5xx, connection errors). */
  retry: z
    .strictObject({
      /** Attempts in all, the first one included; 1 disables retries. Default 3. */
      maxAttempts: z.number().int().min(1).max(100).optional(),
      /** Backoff of the first retry, doubled on each one, with jitter. Default 500. */
      baseDelayMs: milliseconds.optional(),
      /** Upper bound of the backoff. Default 8,000. */
      maxDelayMs: milliseconds.optional(),
      /** A `retry-after` longer than this fails the run instead of waiting. Default 30,000. */
      maxRetryAfterMs: milliseconds.optional(),
    })
    // As the library refuses it (`runLimitsSchema`), named where the file has it.
    .refine(baseWithinCap, { error: 'must not be over maxDelayMs', path: ['baseDelayMs'] })
    .optional(),
  /** Model turns whose tool calls run, per run; one more fails it `TOOL_ROUNDS_EXCEEDED`. Default 10. */
  maxToolRounds: z.number().int().min(0).max(1_000).optional(),
  /** Tool calls of one turn running at once. Default 8. */
  maxConcurrentTools: z.number().int().min(1).max(1_000).optional(),
  /** How long a paused run waits for its answers before it fails `RUN_TIMEOUT`. Default 3,600,000. */
  pauseTimeoutMs: positiveMilliseconds.optional(),
  /** Earlier runs of a session sent to the model with a run (the last ones). Default: all kept. */
  maxHistoryRuns: z.number().int().min(0).optional(),
});

// Checked where storage is opened; re-exported for the CLI's messages, which name their source.
export { databaseUrlSchema, redisUrlSchema } from '../runtime/open-storage.js';

const agentSchema = z.strictObject({
  /** Used in URLs; default: the name in kebab-case. */
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, 'must be letters, digits, - and _ (it is used in URLs)')
    .optional(),
  name: z.string().min(1),
  description: z.string().optional(),
  instructions: z.union([z.string(), z.array(z.string())]).optional(),
  /** Default: `gpt-5-mini` on OpenAI when `OPENAI_API_KEY` is set, the offline model otherwise. */
  model: modelSchema.optional(),
  /** This agent's run limits, over the server's `limits`, field by field. */
  limits: limitsSchema.optional(),
  /**
   * Tools the model may call, by name: tools exported by the config's `toolsModule` (a tool's
   * `name`, or the name of the export that holds it).
   */
  tools: z.array(z.string().min(1)).optional(),
});

/** The schema of `runstate.config.json`. Unknown keys are errors: a typo must not pass silently. */
export const configSchema = z
  .strictObject({
    port: z.number().int().min(0).max(65535).optional(),
    // Blank, Node would listen on every interface: nobody means that by leaving it empty.
    host: z.string().regex(/\S/, 'must be a host name or address, not blank').optional(),
    securityKey: z
      .string()
      .min(1)
      .refine((key) => key === key.trim(), {
        error:
          'starts or ends with whitespace (a space, line break or no-break space): no client can send it',
      })
      .optional(),
    cors: z
      .strictObject({
        origins: z.union([z.literal('*'), z.array(originSchema)], {
          error: "must be '*' or a list of origins",
        }),
      })
      .optional(),
    /** Host names the API answers to besides `localhost` and IP addresses (`createApp`'s `allowedHosts`). */
    allowedHosts: allowedHostsSchema.optional(),
    maxConcurrentRuns: z.number().int().positive().optional(),
    /** Run limits of every agent (idle timeout, total timeout, retries); an agent's own `limits` win. */
    limits: limitsSchema.optional(),
    /**
     * How long finished runs are kept, in any store. Defaults: in memory 1,000 runs and one hour;
     * in a database (`dataDir`, `databaseUrl`) 10,000 runs and 30 days.
     */
    retention: z
      .strictObject({
        /** Finished runs kept at most, over all sessions; the oldest go first. */
        maxFinishedRuns: z.number().int().min(0).optional(),
        /** Finished runs are forgotten this long after they finished. */
        maxAgeMs: z.number().int().min(0).optional(),
      })
      .optional(),
    /** Sessions kept at most; the least recently used without an active run goes first, with its runs. */
    maxSessions: z.number().int().min(1).optional(),
    /** Runs kept per session (they are the history sent to the model); its oldest finished run goes first. */
    maxRunsPerSession: z.number().int().min(1).optional(),
    /**
     * Runs kept on disk with PGlite in this directory (one process), resolved relative to the config
     * file as `toolsModule` is. Default: in memory.
     */
    dataDir: z.string().regex(/\S/, 'must name a directory').optional(),
    /** Runs kept in PostgreSQL (`postgres://user:password@host:5432/db`), shared by instances. */
    databaseUrl: databaseUrlSchema.optional(),
    /** Cancels and live events across instances through Redis (`redis://host:6379`). */
    redisUrl: redisUrlSchema.optional(),
    /**
     * A JavaScript or TypeScript module (`./tools.js`, resolved relative to the config file) whose
     * exports are tools made with `tool()` (or arrays of them), which agents name in `tools`.
     */
    toolsModule: z.string().min(1).optional(),
    /** Default: the built-in demo agents. */
    agents: z.array(agentSchema).min(1).optional(),
  })
  .superRefine((config, ctx) => {
    // An agent's retry policy is the server's with the agent's fields over it, and the server's is
    // the defaults with its fields over them: one side's base may be over the other's cap (each
    // side alone is checked by `limitsSchema`).
    const retryOver = (problem: ReturnType<typeof retryOverProblem>, at: (string | number)[]) => {
      if (problem) ctx.addIssue({ code: 'custom', path: [...at, problem.field], message: problem.message });
    };
    retryOver(retryOverProblem(config.limits?.retry, undefined, ''), ['limits', 'retry']);
    config.agents?.forEach((agent, index) => {
      const problem = retryOverProblem(agent.limits?.retry, config.limits?.retry, "the server's");
      retryOver(problem, ['agents', index, 'limits', 'retry']);
    });
    const seen = new Set<string>();
    config.agents?.forEach((agent, index) => {
      if (agent.tools?.length && config.toolsModule === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['agents', index, 'tools'],
          message: 'names tools, but the config has no toolsModule to take them from',
        });
      const id = agent.id ?? agentIdFromName(agent.name);
      if (seen.has(id))
        ctx.addIssue({ code: 'custom', path: ['agents', index, 'id'], message: `duplicate agent id ${id}` });
      seen.add(id);
    });
  });

/** A validated config file. */
export type RunstateConfig = z.output<typeof configSchema>;
/** One agent of a config file. */
export type AgentConfig = z.output<typeof agentSchema>;
/** Run limits of a config file. */
export type LimitsConfig = z.output<typeof limitsSchema>;
/** The store limits of a config file, as `createMemoryRunStore` and `openStorage`'s `store` take them. */
export type StoreLimitsConfig = Pick<RunstateConfig, 'retention' | 'maxSessions' | 'maxRunsPerSession'>;

/** The store limits a config sets; `undefined` when it sets none (each store keeps its defaults). */
export function storeLimitsOf(config: RunstateConfig): StoreLimitsConfig | undefined {
  const { retention, maxSessions, maxRunsPerSession } = config;
  if (retention === undefined && maxSessions === undefined && maxRunsPerSession === undefined)
    return undefined;
  return { retention, maxSessions, maxRunsPerSession };
}

/**
 * Reads and validates a config file. Throws `INVALID_INPUT` with a message that names the file and
 * every failing field by its path (`agents.0.model.provider: ...`).
 */
export async function loadConfigFile(path: string): Promise<RunstateConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new RunstateError('INVALID_INPUT', `cannot read config file ${path}: ${(error as Error).message}`);
  }
  return parseConfig(text, path);
}

/**
 * ` (line 3, column 5)` for the `position N` of a `JSON.parse` error: Node 20's message names only
 * the offset (22's names the line too), hard to find in a file; empty when it names none or both.
 */
function lineOfPosition(text: string, error: Error): string {
  const position = /\bposition (\d+)/.exec(error.message)?.[1];
  if (position === undefined || /\bline \d/.test(error.message)) return '';
  // Offsets count from the text JSON.parse read, after a byte order mark.
  const before = text.slice(text.charCodeAt(0) === 0xfeff ? 1 : 0).slice(0, Number(position));
  const lines = before.split('\n');
  return ` (line ${lines.length}, column ${lines.at(-1)!.length + 1})`;
}

/**
 * Validates the text of a config file; `source` is its path (it names the file in messages, and a
 * relative `toolsModule` or `dataDir` is resolved against its directory: the file names them, not
 * the directory runstate happens to start in).
 */
export function parseConfig(text: string, source: string): RunstateConfig {
  let json: unknown;
  try {
    // A byte order mark (Notepad and some editors save JSON with one) is no JSON, and invisible.
    json = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (error) {
    throw new RunstateError(
      'INVALID_INPUT',
      `config file ${source} is not valid JSON: ${(error as Error).message}${lineOfPosition(text, error as Error)}`,
    );
  }
  const result = configSchema.safeParse(json);
  if (result.success) {
    const config = { ...result.data };
    if (config.toolsModule !== undefined) config.toolsModule = resolve(dirname(source), config.toolsModule);
    if (config.dataDir !== undefined) config.dataDir = resolve(dirname(source), config.dataDir);
    return config;
  }
  const lines = result.error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
    return `  ${path}: ${issue.message}`;
  });
  throw new RunstateError('INVALID_INPUT', `invalid config file ${source}:\n${lines.join('\n')}`);
}
