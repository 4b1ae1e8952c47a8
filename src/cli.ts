#!/usr/bin/env node
/**
 * The `runstate` command: `runstate serve` (the AgentOS-compatible HTTP server) and `runstate run`
 * (one streamed run in the terminal).
 *
 * Exit codes: 0 done, 1 failed (a failed run, a port in use), 2 bad usage or config file, 130 run
 * cancelled with Ctrl-C.
 *
 * @packageDocumentation
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { ToolConfirmation, ToolExecution } from '../machines/run-types.js';
import type { Agent } from './agent.js';
import { AnswerLines } from './answer-lines.js';
import { drainedOrClosed } from './drained-or-closed.js';
import { RunstateError } from './errors.js';
import { packageVersion } from './package-version.js';
import type { ChatModel } from './model/chat-model.js';
import { isOpenAIServer, OpenAIChat } from './model/openai-chat.js';
import { createInspector } from './inspect/create-inspector.js';
import { checkSecurityKey } from './server/bearer-auth.js';
import {
  configSchema,
  databaseUrlSchema,
  loadConfigFile,
  redisUrlSchema,
  storeLimitsOf,
  type RunstateConfig,
} from './server/config-file.js';
import { createAgents } from './server/create-agents.js';
import { loadToolsModule } from './server/tools-module.js';
import type { RunEvent, RunOutput, RunPausedEvent } from './runtime/run-events.js';
import {
  openStorage,
  storageOptionsFromEnv,
  type Storage,
  type StorageOptions,
} from './runtime/open-storage.js';
import { createApp } from './server/create-app.js';
import { startServer } from './server/start-server.js';

const USAGE = `Usage:
  runstate serve [--port 7777 | -p 7777] [--host 127.0.0.1] [--config runstate.config.json]
                 [--data-dir DIR | --database-url URL [--redis-url URL]]
  runstate run "<message>" [--agent <id>] [--config runstate.config.json]
  runstate --version

serve   Serves the agents over HTTP, AgentOS-compatible (PORT overrides the default port).
run     Streams one run of an agent to stdout (a reasoning model's reasoning and the tool calls to
        stderr, and a line there when the answer was cut: a token limit); Ctrl-C cancels it. A
        tool call that needs a confirmation is asked about on the terminal. The agent is --agent,
        else the first agent of the config file (story-writer-agent when it declares none).

Without --config, ./runstate.config.json is read when it exists; without an "agents" key in it,
the demo agents are served (story-writer-agent, essay-writer-agent, tool-demo-agent with tools),
on OpenAI when OPENAI_API_KEY is set and offline otherwise.

Runs are kept in memory unless --data-dir (RUNSTATE_DATA_DIR) keeps them on disk with PGlite, or
--database-url (DATABASE_URL) in PostgreSQL, shared by instances that also share --redis-url
(REDIS_URL) for cancels and live events. RUNSTATE_LEASE_MS: how long a silent instance owns its runs;
RUNSTATE_REDIS_PREFIX: the prefix of the Redis channels (instances that share it share runs).
RUNSTATE_SECURITY_KEY: the bearer token every request needs (the config's securityKey wins).`;

const DEFAULT_CONFIG_FILE = 'runstate.config.json';
const DEFAULT_PORT = 7777;

/** Bad usage: reported without a stack trace, exit code 2, with the usage text when it helps. */
class UsageError extends Error {
  constructor(
    message: string,
    readonly showUsage = true,
  ) {
    super(message);
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string', short: 'p' },
      host: { type: 'string' },
      config: { type: 'string', short: 'c' },
      agent: { type: 'string', short: 'a' },
      'data-dir': { type: 'string' },
      'database-url': { type: 'string' },
      'redis-url': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || command === 'help') return print(USAGE);
  if (values.version || command === 'version') return print(packageVersion());
  if (command === 'serve' || command === 'run') refuseOtherFlags(command, values);
  // A blank message too, as the HTTP API refuses it (422).
  if (command === 'run' && rest.join(' ').trim() === '')
    throw new UsageError('run needs a message: runstate run "<message>" [--agent <id>]');
  if (command === 'serve' && rest.length === 0) return serve(await readConfig(values.config), values);
  if (command === 'run' && rest.length > 0)
    return run(await readConfig(values.config), rest.join(' '), values.agent);
  throw new UsageError(command ? `unexpected arguments: ${positionals.join(' ')}` : 'missing command');
}

/**
 * Writes `text` to stdout as a filter does: a reader that went away (`runstate --help | head -1`:
 * EPIPE) ends the command quietly; another failed write (a full disk) fails it, saying so.
 */
function print(text: string): number {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') return;
    console.error(`runstate: cannot write to stdout: ${error.code ?? error.message}`);
    process.exitCode = 1;
  });
  console.log(text);
  return 0;
}

/** Resolves once what was written to `stream` before has been handed to the system (or failed). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => stream.write('', () => resolve()));
}

/** The flags only one command takes: given to the other, they would be ignored without a word. */
const COMMAND_FLAGS: Record<string, readonly string[]> = {
  serve: ['port', 'host', 'data-dir', 'database-url', 'redis-url'],
  run: ['agent'],
};

function refuseOtherFlags(command: string, values: Record<string, unknown>): void {
  for (const [owner, flags] of Object.entries(COMMAND_FLAGS)) {
    const flag = owner === command ? undefined : flags.find((name) => values[name] !== undefined);
    if (flag)
      throw new UsageError(`--${flag} does not apply to ${command} (it is an option of ${owner})`, false);
  }
}

async function readConfig(path: string | undefined): Promise<RunstateConfig> {
  if (path === undefined && !existsSync(DEFAULT_CONFIG_FILE)) return configSchema.parse({});
  return loadConfigFile(path ?? DEFAULT_CONFIG_FILE);
}

function portOf(text: string, source: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535)
    throw new UsageError(`${source} must be a port number, got '${text}'`, false);
  return port;
}

/** Flags of `serve`, as parseArgs names them. */
interface ServeFlags {
  port?: string;
  host?: string;
  'data-dir'?: string;
  'database-url'?: string;
  'redis-url'?: string;
}

/** One source of storage settings, and the names it gives them (for messages). */
interface StorageSource extends Pick<StorageOptions, 'dataDir' | 'databaseUrl' | 'redisUrl'> {
  names: { dataDir: string; databaseUrl: string; redisUrl: string };
}

/**
 * Where runs are kept: flags, then the environment, then the config file. The first of them that
 * names a database (a data dir or a URL) decides it alone, so `--data-dir` works where `DATABASE_URL`
 * and `REDIS_URL` are set (Redis is taken from any source for PostgreSQL, for PGlite never). A URL it takes that is not one is refused here, by its name: connecting to it would report
 * an unreachable server.
 */
function storageOptionsOf(config: RunstateConfig, flags: ServeFlags): StorageOptions {
  const env = storageOptionsFromEnv();
  const sources: StorageSource[] = [
    {
      dataDir: flags['data-dir'],
      databaseUrl: flags['database-url'],
      redisUrl: flags['redis-url'],
      names: { dataDir: '--data-dir', databaseUrl: '--database-url', redisUrl: '--redis-url' },
    },
    { ...env, names: { dataDir: 'RUNSTATE_DATA_DIR', databaseUrl: 'DATABASE_URL', redisUrl: 'REDIS_URL' } },
    {
      dataDir: config.dataDir,
      databaseUrl: config.databaseUrl,
      redisUrl: config.redisUrl,
      names: { dataDir: 'dataDir', databaseUrl: 'databaseUrl', redisUrl: 'redisUrl' },
    },
  ];
  // A blank directory would be a directory named ' ' here, or memory for '' given on purpose.
  const blankDir = sources.find((source) => source.dataDir !== undefined && source.dataDir.trim() === '');
  if (blankDir)
    throw new UsageError(`${blankDir.names.dataDir} must name a directory, got '${blankDir.dataDir}'`, false);
  const database = sources.find((source) => source.dataDir || source.databaseUrl);
  if (database?.dataDir && database.databaseUrl) {
    const { dataDir, databaseUrl } = database.names;
    throw new UsageError(`set ${dataDir} or ${databaseUrl}, not both: runs are kept in one database`, false);
  }
  // PGlite is one process's: a Redis URL of another source (REDIS_URL set for the PostgreSQL
  // instances of this machine) does not apply to it; one given with the data dir is refused.
  if (database?.dataDir && database.redisUrl) {
    const { dataDir, redisUrl } = database.names;
    throw new UsageError(
      `${redisUrl} needs a database URL, not ${dataDir}: PGlite is one process's, and Redis links several instances of PostgreSQL (unset one)`,
      false,
    );
  }
  const redis = database?.dataDir ? undefined : sources.find((source) => source.redisUrl);
  checkUrl(database, 'databaseUrl', databaseUrlSchema);
  checkUrl(redis, 'redisUrl', redisUrlSchema);
  return {
    dataDir: database?.dataDir,
    databaseUrl: database?.databaseUrl,
    redisUrl: redis?.redisUrl,
    redisPrefix: env.redisPrefix,
    leaseMs: env.leaseMs,
    store: storeLimitsOf(config),
  };
}

function checkUrl(
  source: StorageSource | undefined,
  field: 'databaseUrl' | 'redisUrl',
  schema: typeof databaseUrlSchema,
): void {
  const url = source?.[field];
  const issue = url === undefined ? undefined : schema.safeParse(url).error?.issues[0];
  if (issue) throw new UsageError(`${source!.names[field]} ${issue.message}`, false);
}

async function serve(config: RunstateConfig, flags: ServeFlags): Promise<number> {
  const envPort = process.env.PORT || undefined;
  const port =
    flags.port !== undefined
      ? portOf(flags.port, '--port')
      : envPort !== undefined
        ? portOf(envPort, 'PORT')
        : (config.port ?? DEFAULT_PORT);
  // Blank, Node would listen on every interface: nobody means that by leaving it empty.
  if (flags.host?.trim() === '')
    throw new UsageError(`--host must be a host name or address, got '${flags.host}'`, false);
  const host = flags.host ?? config.host ?? '127.0.0.1';
  // The built-in inspector page at /inspect: the run machine's chart, live, with a cancel button.
  const inspector = createInspector();
  const securityKey = config.securityKey ?? (process.env.RUNSTATE_SECURITY_KEY || undefined);
  // Before anything starts: a key no client can send would refuse every request.
  if (securityKey !== undefined)
    checkSecurityKey(securityKey, config.securityKey === undefined ? 'RUNSTATE_SECURITY_KEY' : 'securityKey');
  // A signal during the start (PGlite takes seconds to open) stops the server once it has started,
  // the way a signal to a running one does: the data dir's lock and the instance's lease let go.
  // Node's default would end the process at once, holding both.
  let signalledAtStart: NodeJS.Signals | undefined;
  const atStart = (signal: NodeJS.Signals): void => {
    if (signalledAtStart) {
      console.error(`runstate: ${signal} again, exiting now`);
      process.exit(1);
    }
    signalledAtStart = signal;
    console.error(`\nrunstate: ${signal} while starting: it stops once started (again to exit now)`);
  };
  process.on('SIGINT', atStart);
  process.on('SIGTERM', atStart);
  // A start that fails ends the command: its signals are Node's again (a tools module's open handle
  // may keep the process alive until it exits; see `main`).
  const notStarting = (): void => {
    process.off('SIGINT', atStart);
    process.off('SIGTERM', atStart);
  };
  // Loaded before the storage opens (createAgents then finds it imported): a module whose top-level
  // await never settles is told only while nothing else keeps the process alive, as a database
  // pool's connections would (see loadToolsModule).
  let storage: Storage;
  let agents: Agent[];
  try {
    if (config.toolsModule !== undefined) await loadToolsModule(config.toolsModule);
    // An unreachable database or Redis stops the start here, with one line naming its host and port.
    storage = await openStorage(storageOptionsOf(config, flags));
    const opened = storage;
    // A tools module that fails to load, or lacks a tool an agent names, stops the start here.
    agents = await createAgents(config, {
      // In memory with the config's store limits, a memory store with them (`openStorage`).
      store: storage.store,
      cancelBus: storage.cancelBus,
      eventBus: storage.eventBus,
    }).catch(async (error: unknown) => {
      await opened.close();
      throw error;
    });
  } catch (error) {
    notStarting();
    throw error;
  }
  inspector.attach(agents[0]!.orchestrator);
  const runstate = createApp({
    agents,
    securityKey,
    cors: config.cors,
    allowedHosts: config.allowedHosts,
    mount: { '/inspect': inspector.handler },
  });

  let server;
  try {
    server = await startServer(runstate, { port, host });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      console.error(`runstate: port ${port} on ${host} is already in use (set --port or PORT)`);
    else console.error(`runstate: cannot listen on ${host}:${port}: ${(error as Error).message}`);
    // The orchestrator first: its lease keeper and bus subscriptions would meet a closed store, and
    // its instance's lease would stay taken until it ran out.
    await runstate.shutdown();
    inspector.close();
    await storage.close();
    notStarting();
    return 1;
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      console.error(`runstate: ${signal} again, exiting now`);
      process.exit(1);
    }
    stopping = true;
    const orchestrator = agents[0]?.orchestrator;
    const active = orchestrator?.activeCount ?? 0;
    const paused = orchestrator?.pausedCount ?? 0;
    // Paused runs outlive the process in a durable store (another instance, or this one restarted,
    // continues them); in memory they would be lost, so the shutdown cancels them too.
    const pausedNote = !paused
      ? ''
      : storage.store?.leases
        ? `; ${paused} paused, kept in storage`
        : ` and ${paused} paused`;
    console.error(
      `\nrunstate: ${signal}: shutting down (cancelling ${active} active run${active === 1 ? '' : 's'}${pausedNote})`,
    );
    // The close cancels the active runs before it first waits, so their ends are in the inspector's
    // feeds; which only watch: ended now, or they would hold the shutdown.
    const closed = server.close();
    inspector.close();
    void closed.then(
      // Its runs are final and stored: the storage closes last.
      () => storage.close().finally(() => process.exit(0)),
      (error: unknown) => {
        console.error(`runstate: shutdown failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  // `stop` first: a signal whose last listener goes is unwatched, and one already queued is lost.
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  notStarting();
  if (signalledAtStart) {
    stop(signalledAtStart);
    return new Promise<number>(() => undefined);
  }
  // Only now: whoever reads the banner may signal at once (a test, a process manager).
  console.log(banner(server.url, agents, securityKey, config.securityKey !== undefined, storage.description));
  return new Promise<number>(() => undefined); // serves until a signal exits the process
}

/**
 * How the banner names a model: `gpt-5-mini (OpenAI)`, `llama3.1 (at http://localhost:11434/v1)`
 * for another OpenAI-compatible server (its origin and path only: a key in the URL's user or query
 * stays out of the logs), an offline model once (its id is `offline` unless configured).
 */
function modelLabel(model: ChatModel): string {
  if (model.id === model.provider) return model.id;
  const server = model instanceof OpenAIChat ? serverOf(model.baseURL) : undefined;
  return server ? `${model.id} (at ${server})` : `${model.id} (${model.provider})`;
}

/** A base URL's origin and path, unless it is OpenAI's own (see `isOpenAIServer`). */
function serverOf(baseURL: string | undefined): string | undefined {
  if (baseURL === undefined || !URL.canParse(baseURL) || isOpenAIServer(baseURL)) return undefined;
  const url = new URL(baseURL);
  return `${url.origin}${url.pathname}`;
}

function banner(
  url: string,
  agents: readonly Agent[],
  securityKey: string | undefined,
  keyInConfig: boolean,
  storage: string,
): string {
  const base = url.replace('//0.0.0.0:', '//localhost:').replace('//[::]:', '//localhost:');
  const agent = agents.find((a) => a.id === 'story-writer-agent') ?? agents[0]!;
  const auth = !securityKey
    ? ''
    : keyInConfig
      ? ` -H 'Authorization: Bearer <securityKey from the config>'`
      : ` -H "Authorization: Bearer $RUNSTATE_SECURITY_KEY"`;
  const models = [...new Set(agents.map(({ model }) => modelLabel(model)))].join(', ');
  // Only a model that would use OpenAI with a key, not one configured as offline.
  const keyless = agents.some(({ model }) => model instanceof OpenAIChat && model.offline);
  const file = '/tmp/runstate-run.sse';
  // A field of the first frame written to the file (RunStarted), as the shell reads it.
  const field = (name: string) => `$(grep -om1 '"${name}":"[^"]*' ${file} | cut -d'"' -f4)`;
  return [
    `runstate listening on ${base}`,
    `  agents: ${agents.map((a) => a.id).join(', ')}`,
    `  model: ${models}${keyless ? ' (set OPENAI_API_KEY to use OpenAI)' : ''}`,
    `  auth: ${securityKey ? 'bearer token required' : 'none'}`,
    `  runs kept in: ${storage}`,
    `  inspector: ${base}/inspect`,
    '',
    `Start a streamed run of ${agent.id} (its first frame, RunStarted, carries the run_id):`,
    `  curl -sN${auth} ${base}/agents/${agent.id}/runs -F 'message=Write a long story about a lighthouse keeper' | tee ${file}`,
    // The agent too is read from the file: the tools run below is written there as well.
    'Cancel it, from another terminal:',
    `  curl -X POST${auth} ${base}/agents/${field('agent_id')}/runs/${field('run_id')}/cancel`,
    ...(agents.some((a) => a.id === 'tool-demo-agent')
      ? [
          'Tools: the offline model calls the tools a message names (add, slow_search, publish_note); the command above cancels it too:',
          `  curl -sN${auth} ${base}/agents/tool-demo-agent/runs -F 'message=slow search for lighthouses in 10 seconds' | tee ${file}`,
        ]
      : []),
  ].join('\n');
}

async function run(config: RunstateConfig, message: string, agentId: string | undefined): Promise<number> {
  const agents = await createAgents(config);
  const agent = agentId === undefined ? agents[0]! : agents.find((a) => a.id === agentId);
  if (!agent)
    throw new UsageError(`unknown agent '${agentId}'; agents: ${agents.map((a) => a.id).join(', ')}`, false);

  // The serve banner says it; a run's answer from the offline model, told nowhere, reads as a
  // broken model (its text is about the message's words, not an answer).
  if (agent.model instanceof OpenAIChat && agent.model.offline)
    console.error(
      `runstate: no OPENAI_API_KEY (or OPENAI_BASE_URL) is set: ${agent.id} answers with the offline model, not OpenAI`,
    );

  const stream = agent.run(message, { stream: true });
  const runId = stream.runId;
  // Ctrl-C cancels the run: the model request (or a running tool) is aborted and the loop below
  // gets RunCancelled.
  const cancel = () => agent.cancelRun(runId);
  process.on('SIGINT', cancel);
  // The reader of stdout or stderr went away (`| head`, `2>&1 | head`: EPIPE): the run is cancelled
  // as a client that left, and the command ends quietly, as a filter whose reader has enough does.
  // Any other failed write (a full disk: ENOSPC; EIO) lost the answer: the run is cancelled too, and
  // the command fails, saying so. (Kept to the process's end: a last write's error may come after
  // the loop.)
  let readerGone = false;
  let writeFailed: string | undefined;
  const onWriteError =
    (name: string) =>
    (error: NodeJS.ErrnoException): void => {
      readerGone = true;
      if (error.code !== 'EPIPE') writeFailed ??= `cannot write to ${name}: ${error.code ?? error.message}`;
      agent.orchestrator.cancelRun(runId, 'client_disconnect');
    };
  process.stdout.on('error', onWriteError('stdout'));
  process.stderr.on('error', onWriteError('stderr'));
  // How the command ends: a write that failed (told after it, once its turn comes) fails it.
  const exitCode = async (code: number): Promise<number> => {
    await flushed(process.stdout);
    if (writeFailed === undefined) return code;
    console.error(`runstate: ${writeFailed}; the answer is lost`);
    return 1;
  };
  // Made at the first pause, and kept: answers piped in ahead of their questions wait in it.
  let answerLines: AnswerLines | undefined;
  // Reasoning was written to stderr and its line is not ended yet.
  let reasoning = false;
  try {
    let events: AsyncIterable<RunEvent> = stream;
    for (;;) {
      let paused: RunPausedEvent | undefined;
      for await (const event of events) {
        if (event.event === 'RunContent') {
          // A reasoning model's thinking goes to stderr as it comes: stdout stays the answer, and a
          // model that thinks for minutes (or spends its token limit on it) does not look stuck.
          if (event.reasoning_content && !readerGone) {
            process.stderr.write(event.reasoning_content);
            reasoning = true;
          }
          if (readerGone) continue;
          // (A write past a full pipe waits; the pipe's reader going away ends the wait too.)
          if (!process.stdout.write(event.content)) await drainedOrClosed(process.stdout);
        } else if (event.event === 'ReasoningCompleted') {
          if (reasoning) process.stderr.write('\n');
          reasoning = false;
        } else if (event.event === 'ToolCallStarted') {
          // Tool calls go to stderr: stdout stays the answer, for a pipe.
          console.error(`[${event.tool.tool_name}] ${JSON.stringify(event.tool.tool_args)}`);
        } else if (event.event === 'ToolCallCompleted') {
          const { tool_name: name, tool_call_error: failed, result } = event.tool;
          console.error(`[${name}] ${failed ? '' : '→ '}${oneLine(result ?? '')}`);
        } else if (event.event === 'RunPaused') {
          paused = event;
        } else if (event.event === 'RunCompleted') {
          if (!readerGone) process.stdout.write('\n');
          // On stderr, as the tool calls: stdout stays the answer, cut as it is.
          if (event.finish_reason !== 'stop' && event.finish_reason !== 'tool_calls')
            console.error(`runstate: the answer is incomplete: ${cutBecause(event.finish_reason)}`);
          return await exitCode(0);
        } else if (event.event === 'RunCancelled') {
          if (readerGone) return await exitCode(0);
          console.error(`\nrunstate: run ${event.run_id} cancelled`);
          return 130;
        } else if (event.event === 'RunError') {
          console.error(`\nrunstate: run ${event.run_id} failed: ${event.code}: ${event.content}`);
          return 1;
        }
      }
      if (!paused) return 1;
      // The run waits for a person: ask on the terminal, then stream on from RunContinued. Asked
      // while the run can still end (its pause runs out, Ctrl-C cancels it): then its end is told.
      answerLines ??= new AnswerLines(process.stdin, process.stderr, cancel);
      let output: RunOutput | undefined;
      const ended = agent.orchestrator.result(runId).then((final) => (output = final));
      const answers = await askConfirmations(paused.tools, answerLines, ended);
      if (!answers) {
        if (output?.status === 'cancelled') {
          console.error(`\nrunstate: run ${runId} cancelled`);
          return 130;
        }
        if (output?.status === 'failed') {
          console.error(`\nrunstate: run ${runId} failed: ${output.error?.code}: ${output.error?.message}`);
          return 1;
        }
        await agent.orchestrator.requestCancel(runId, 'code').catch(() => undefined);
        console.error(`\nrunstate: no answer: run ${runId} cancelled`);
        return 130;
      }
      events = await agent.continueRun(runId, { tools: answers, stream: true });
    }
  } finally {
    process.off('SIGINT', cancel);
    answerLines?.close();
  }
}

/** Why a model stopped before its answer was whole, for a person (`finish_reason` as sent). */
function cutBecause(finishReason: string): string {
  if (finishReason === 'length') return 'the model reached its token limit (finish_reason: length)';
  if (finishReason === 'content_filter') return 'the model filtered it (finish_reason: content_filter)';
  return `the model stopped with finish_reason: ${finishReason}`;
}

/** A tool's result on one line of the terminal, shortened. */
function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

/**
 * Asks on the terminal whether each waiting tool call may run (`y` runs it, anything else rejects
 * it). `undefined` when stdin ends first (nobody is there to answer) or the run ended meanwhile.
 */
async function askConfirmations(
  calls: readonly ToolExecution[],
  answerLines: AnswerLines,
  ended: Promise<unknown>,
): Promise<ToolConfirmation[] | undefined> {
  const answers: ToolConfirmation[] = [];
  for (const call of calls.filter((c) => c.status === 'awaiting_confirmation')) {
    const answer = await answerLines.ask(
      `Run ${call.tool_name} ${JSON.stringify(call.tool_args)}? [y/N] `,
      ended,
    );
    if (answer === undefined) return undefined;
    // Typed on a terminal, the answer shows; piped in, it is written out, so the log reads the same.
    if (!process.stdin.isTTY) console.error(answer);
    answers.push({ tool_call_id: call.tool_call_id, confirmed: /^y(es)?$/i.test(answer.trim()) });
  }
  return answers;
}

void main(process.argv.slice(2))
  .catch((error: unknown) => {
    // parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes; a bad config file is INVALID_INPUT.
    const badArgs = (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') === true;
    const badConfig = error instanceof RunstateError && error.code === 'INVALID_INPUT';
    console.error(`runstate: ${(error as Error).message}`);
    if (badArgs || (error instanceof UsageError && error.showUsage)) console.error(`\n${USAGE}`);
    return badArgs || badConfig || error instanceof UsageError ? 2 : 1;
  })
  // The command is over (`serve` returns only when it could not start): it exits, once its output
  // is written, even while something keeps the event loop alive (a tools module's pool or timer).
  .then(async (code) => {
    process.exitCode = code;
    await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
    process.exit();
  });
