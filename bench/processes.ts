import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

/**
 * Every client, the upstream and the runstate server run in processes of their own (clients in one
 * process disturb each other's JIT and GC). The parent sends tasks over Node's IPC channel and gets
 * one answer per task; a process may also send notices (the upstream reports socket closes).
 */

/** A task: a plain object with a `type`. */
export interface Task {
  type: string;
  [key: string]: unknown;
}

/** A notice from a process; the first one is `ready`. */
export interface Notice {
  type: string;
  [key: string]: unknown;
}

type FromChild =
  { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string } | { notice: Notice };

/** A running process of the benchmark. */
export interface BenchProcess {
  readonly name: string;
  /** What the process sent with its `ready` notice. */
  readonly ready: Notice;
  request<T>(task: Task): Promise<T>;
  onNotice(listener: (notice: Notice) => void): void;
  /** SIGTERM, then SIGKILL after 5 s. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();

/** Kills every process still running (on errors and Ctrl-C). */
export function killAll(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

/**
 * `BENCH_NODE_FLAGS` in the environment: Node and V8 flags for every process the bench starts (the
 * upstream, the clients, the server), such as `--single-threaded-gc` or `--trace-opt`, which
 * `NODE_OPTIONS` refuses. Split at spaces.
 */
const nodeFlags = process.env.BENCH_NODE_FLAGS?.split(' ').filter((flag) => flag !== '') ?? [];

/** Forks `entry` (plain JavaScript, see `compileForWorkers`) and waits for its `ready` notice. */
export function startProcess(
  entry: URL,
  name: string,
  args: string[] = [],
  profileDir?: string,
): Promise<BenchProcess> {
  const child = fork(fileURLToPath(entry), args, {
    // --expose-gc: a memory baseline is taken after a collection. A TypeScript entry runs through tsx.
    execArgv: [
      '--expose-gc',
      ...nodeFlags,
      ...(entry.pathname.endsWith('.ts') ? ['--import', 'tsx', '--conditions=runstate-source'] : []),
    ],
    env: profileDir ? { ...process.env, BENCH_PROFILE_DIR: profileDir } : process.env,
    serialization: 'advanced', // bigint timestamps survive
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  live.add(child);
  let nextId = 1;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  const listeners: ((notice: Notice) => void)[] = [];
  let dead: Error | undefined;

  return new Promise((resolveReady, rejectReady) => {
    const fail = (error: Error): void => {
      dead = error;
      for (const { reject } of pending.values()) reject(error);
      pending.clear();
      rejectReady(error);
    };
    child.once('exit', (code, signal) => {
      live.delete(child);
      fail(new Error(`${name} exited: ${signal ?? `code ${code}`}`));
    });
    child.once('error', fail);
    child.on('message', (raw) => {
      const message = raw as FromChild;
      if ('notice' in message) {
        if (message.notice.type === 'ready') resolveReady(handle(message.notice));
        else for (const listener of listeners) listener(message.notice);
        return;
      }
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (message.ok) waiter?.resolve(message.value);
      else waiter?.reject(new Error(`${name}: ${message.error}`));
    });

    const handle = (ready: Notice): BenchProcess => ({
      name,
      ready,
      request<T>(task: Task) {
        if (dead) return Promise.reject(dead);
        const id = nextId++;
        return new Promise<T>((resolve, reject) => {
          pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
          child.send({ id, task });
        });
      },
      onNotice: (listener) => void listeners.push(listener),
      stop() {
        if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
        return new Promise<void>((resolve) => {
          const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
          child.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          child.kill('SIGTERM');
        });
      },
    });
  });
}

/** Child side: sends a notice to the parent. */
export const notifyParent = (notice: Notice): void => void process.send?.({ notice } satisfies FromChild);

/**
 * Child side: answers the parent's tasks one at a time, in order, with `handle`; `meter` tasks
 * (see {@link meter}) are answered here. Exits when the parent goes away or sends SIGTERM.
 */
export function serveTasks(
  handle: (task: Task) => Promise<unknown>,
  onStop: () => Promise<void> = () => Promise.resolve(),
): void {
  let queue = Promise.resolve();
  process.on('message', (raw) => {
    const { id, task } = raw as { id: number; task: Task };
    queue = queue.then(async () => {
      try {
        const value = task.type === 'meter' ? await meter(task.action === 'start') : await handle(task);
        process.send?.({ id, ok: true, value } satisfies FromChild);
      } catch (error) {
        const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
        process.send?.({ id, ok: false, error: text } satisfies FromChild);
      }
    });
  });
  const stop = (): void => {
    onStop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('disconnect', stop);
}

/** What a process used between `meter start` and `meter stop`. */
export interface Usage {
  /** User + system CPU time. */
  cpuUs: number;
  /** The part of it spent in the kernel (socket reads and writes; on loopback, also the TCP work of the other end). */
  systemUs: number;
  /** RSS right after the collection at `start`. */
  baselineRssBytes: number;
  /** The process's RSS high-water mark (getrusage `maxrss`) at `stop`, since `start` on Linux. */
  maxRssBytes: number;
  /** 99th percentile of the event loop's delay between start and stop. */
  loopDelayP99Ms: number;
  /**
   * How many delays that percentile is of: one per turn of the loop that ran the monitor's timer.
   * A saturated loop turns seldom (a few dozen times in seconds), and then the 99th percentile is
   * the longest turn.
   */
  loopDelaySamples: number;
  /**
   * The process's `read` and `write` system calls (Linux's `/proc/self/io`; absent elsewhere):
   * mostly socket reads and writes, so chunks ÷ reads is how many chunks a socket read
   * brought. A client that falls behind finds more chunks waiting at each read.
   */
  readCalls?: number;
  writeCalls?: number;
  /**
   * The part of `cpuUs` spent on threads other than the main one (Linux's per-thread `schedstat`;
   * absent elsewhere): V8's optimizing compiler and its garbage collector's helpers, and libuv's
   * thread pool. What a warmed-up process still compiles, and what its allocation costs besides the
   * pauses of the main thread.
   */
  otherThreadsUs?: number;
}

/** `syscr` and `syscw` of `/proc/self/io`, or undefined where there is no such file. */
function systemCalls(): { reads: number; writes: number } | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/io', 'utf8');
  } catch {
    return undefined;
  }
  const count = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1]);
  const reads = count('syscr');
  const writes = count('syscw');
  return Number.isFinite(reads) && Number.isFinite(writes) ? { reads, writes } : undefined;
}

/**
 * CPU time of this process's threads other than the main one, in microseconds: the first field of
 * each `/proc/self/task/<tid>/schedstat` (nanoseconds on a CPU); undefined where there is none.
 */
function otherThreadsCpuUs(): number | undefined {
  const threads = threadCpuNs();
  if (!threads) return undefined;
  let ns = 0;
  for (const [thread, threadNs] of threads) if (thread !== 'main') ns += threadNs;
  return Number.isFinite(ns) ? ns / 1000 : undefined;
}

/**
 * Nanoseconds on a CPU of each thread of this process (`main` for the main one, the others by
 * thread id); undefined where there is no `/proc/self/task`.
 */
function threadCpuNs(): Map<string, number> | undefined {
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return undefined;
  }
  const threads = new Map<string, number>();
  for (const tid of tasks) {
    try {
      const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      threads.set(Number(tid) === process.pid ? 'main' : tid, ns);
    } catch {
      // The thread ended meanwhile (V8's and libuv's threads live as long as the process).
    }
  }
  return threads;
}

const loopDelay = monitorEventLoopDelay({ resolution: 5 });
let started:
  | {
      cpu: NodeJS.CpuUsage;
      rss: number;
      calls: ReturnType<typeof systemCalls>;
      otherThreadsUs: number | undefined;
    }
  | undefined;
/** With `--cpu-prof`, the V8 profiler runs between `meter start` and `stop`: the measurement, nothing else. */
const profileDir = process.env.BENCH_PROFILE_DIR;
let profiler: Session | undefined;

/**
 * With `BENCH_TURNS=1`, the turns of the event loop longer than 100 ms between `meter start` and
 * `stop` are printed (`turns <process>: <start ms>+<length ms>/<CPU ms> …`): where the loop-delay
 * p99 comes from, and how much of the process's CPU such a turn took (the process's, so its GC and
 * compiler threads count too, and it can exceed the length). Measured with a 5 ms interval timer,
 * which is itself a little work per turn.
 */
const turnsWatched = process.env.BENCH_TURNS === '1';
let longTurns: { timer: NodeJS.Timeout; turns: string[] } | undefined;

function watchTurns(): void {
  const origin = performance.now();
  let last = origin;
  let lastCpu = process.cpuUsage();
  const turns: string[] = [];
  const timer = setInterval(() => {
    const now = performance.now();
    const cpu = process.cpuUsage();
    if (now - last > 100) {
      const used = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000;
      turns.push(`${(last - origin).toFixed(0)}+${(now - last).toFixed(0)}/${used.toFixed(0)}`);
    }
    last = now;
    lastCpu = cpu;
  }, 5);
  longTurns = { timer, turns };
}

function reportTurns(): void {
  if (!longTurns) return;
  clearInterval(longTurns.timer);
  process.stderr.write(`turns ${processName()}: ${longTurns.turns.join(' ') || 'none over 100 ms'}\n`);
  longTurns = undefined;
}

/**
 * With `BENCH_THREADS=1`, each measured process prints the CPU time of each of its threads between
 * `meter start` and `stop` (`threads <process>: main <ms> <tid> <ms> …`, Linux's per-thread
 * `schedstat`): the main thread against V8's workers (its optimizing compiler, its collector's
 * helpers) and libuv's. It also writes `meter start <pid>` and `meter stop <pid>` to stdout, where
 * V8's traces go (`BENCH_NODE_FLAGS=--trace-opt`), to cut the measured window out of a trace.
 */
const threadsReported = process.env.BENCH_THREADS === '1';
let threadsAtStart: Map<string, number> | undefined;

function reportThreads(): void {
  if (!threadsAtStart) return;
  const parts = [...(threadCpuNs() ?? [])].map(
    ([thread, ns]) => `${thread} ${((ns - (threadsAtStart!.get(thread) ?? 0)) / 1e6).toFixed(0)}`,
  );
  process.stdout.write(`meter stop ${process.pid}\n`);
  process.stderr.write(`threads ${processName()}: ${parts.join(' ')} (ms)\n`);
  threadsAtStart = undefined;
}

/** The bench's name for this process: a client's kind, or `server`. */
const processName = (): string =>
  process.argv[2]?.startsWith('{') ? 'server' : (process.argv[2] ?? 'process');

/**
 * Sets the process's RSS high-water mark (what `maxRSS` reads) back to its RSS now, on Linux: else
 * a warm-up batch as large as the measured one would have set it, and the measured batch's peak
 * would not show. Elsewhere the mark stays the process's whole life's.
 */
function resetPeakRss(): void {
  if (process.platform !== 'linux') return;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // (A kernel without it, before 4.0: the mark stays the life's.)
  }
}

/** `start`: collects garbage, takes the baseline, watches the event loop. `stop`: what was used since. */
async function meter(start: boolean): Promise<Usage | undefined> {
  if (start) {
    if (profileDir) {
      profiler = new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.start');
    }
    globalThis.gc?.();
    resetPeakRss();
    loopDelay.reset();
    loopDelay.enable();
    if (turnsWatched) watchTurns();
    started = {
      cpu: process.cpuUsage(),
      rss: process.memoryUsage.rss(),
      calls: systemCalls(),
      otherThreadsUs: otherThreadsCpuUs(),
    };
    // (Linux only: elsewhere there is no per-thread figure to print.)
    threadsAtStart = threadsReported ? threadCpuNs() : undefined;
    if (threadsAtStart) process.stdout.write(`meter start ${process.pid}\n`);
    return undefined;
  }
  if (!started) throw new Error('meter stop without a start');
  loopDelay.disable();
  // Before the profile is written, which is writes of its own.
  const calls = systemCalls();
  const otherThreadsUs = otherThreadsCpuUs();
  reportTurns();
  reportThreads();
  if (profiler && profileDir) {
    const { profile } = await profiler.post('Profiler.stop');
    profiler.disconnect();
    writeFileSync(join(profileDir, `${process.pid}-${Date.now()}.cpuprofile`), JSON.stringify(profile));
  }
  const { user, system } = process.cpuUsage(started.cpu);
  const usage: Usage = {
    cpuUs: user + system,
    systemUs: system,
    baselineRssBytes: started.rss,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    loopDelaySamples: loopDelay.count,
  };
  if (calls && started.calls) {
    usage.readCalls = calls.reads - started.calls.reads;
    usage.writeCalls = calls.writes - started.calls.writes;
  }
  if (otherThreadsUs !== undefined && started.otherThreadsUs !== undefined) {
    usage.otherThreadsUs = otherThreadsUs - started.otherThreadsUs;
  }
  started = undefined;
  return usage;
}

/** Nanoseconds on CLOCK_MONOTONIC, which every process of this machine shares. */
export const monotonicNs = (): bigint => process.hrtime.bigint();
