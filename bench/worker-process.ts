import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The benchmark runs every client, the fake upstream and the runstate server in processes of their
 * own (clients in one process disturb each other's JIT and GC). The parent drives them over Node's
 * IPC channel: it sends tasks and gets one answer per task; a worker may also send notices (the
 * fake upstream reports socket closes that way).
 */

/** A task sent to a worker: a plain object with a `type`. */
export interface WorkerTask {
  type: string;
}

type FromWorker =
  | { kind: 'answer'; id: number; ok: true; value: unknown }
  | { kind: 'answer'; id: number; ok: false; error: string }
  | { kind: 'notice'; notice: { type: string } };

type ToWorker = { id: number; task: WorkerTask };

/** A running worker process. */
export interface Worker {
  readonly name: string;
  readonly pid: number;
  /** What the worker sent with its `ready` notice. */
  readonly ready: Record<string, unknown>;
  /** Sends a task and resolves with the worker's answer; rejects if it failed or the worker died. */
  request<T>(task: WorkerTask): Promise<T>;
  /** Listens to the worker's notices (other than `ready`). */
  onNotice(listener: (notice: { type: string } & Record<string, unknown>) => void): void;
  /** Ends the worker: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Options of {@link startWorker}. */
export interface StartWorkerOptions {
  /** Shown in errors. */
  name: string;
  args?: string[];
  /** Extra Node flags, e.g. `--cpu-prof`. */
  nodeFlags?: string[];
  /** How long to wait for the `ready` notice. Default 30 s. */
  readyTimeoutMs?: number;
}

const live = new Set<ChildProcess>();

/** Ends every worker still running (the parent calls it on exit and on errors). */
export function stopAllWorkers(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

/**
 * Forks `entry` (a JavaScript module: see `compileForWorkers`) and waits for its `ready` notice.
 * `--expose-gc` lets workers collect garbage before they take a memory baseline.
 */
export function startWorker(entry: URL, options: StartWorkerOptions): Promise<Worker> {
  const child = fork(fileURLToPath(entry), options.args ?? [], {
    execArgv: ['--expose-gc', ...(options.nodeFlags ?? [])],
    serialization: 'advanced', // structured clone: bigint timestamps survive
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  live.add(child);
  let nextId = 1;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  const listeners: ((notice: { type: string } & Record<string, unknown>) => void)[] = [];
  let exited: Error | undefined;

  return new Promise<Worker>((resolveReady, rejectReady) => {
    const timer = setTimeout(
      () => fail(new Error(`${options.name} sent no ready notice`)),
      options.readyTimeoutMs ?? 30_000,
    );
    function fail(error: Error): void {
      clearTimeout(timer);
      exited = error;
      for (const { reject } of pending.values()) reject(error);
      pending.clear();
      rejectReady(error);
      child.kill('SIGKILL');
    }
    child.once('exit', (code, signal) => {
      live.delete(child);
      fail(new Error(`${options.name} (pid ${child.pid}) exited: ${signal ?? `code ${code}`}`));
    });
    child.once('error', fail);
    child.on('message', (raw) => {
      const message = raw as FromWorker;
      if (message.kind === 'notice') {
        const notice = message.notice as { type: string } & Record<string, unknown>;
        if (notice.type === 'ready') {
          clearTimeout(timer);
          resolveReady(worker(notice));
        } else for (const listener of listeners) listener(notice);
        return;
      }
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (message.ok) waiter?.resolve(message.value);
      else waiter?.reject(new Error(`${options.name}: ${message.error}`));
    });

    function worker(ready: Record<string, unknown>): Worker {
      return {
        name: options.name,
        pid: child.pid ?? -1,
        ready,
        request<T>(task: WorkerTask): Promise<T> {
          if (exited) return Promise.reject(exited);
          const id = nextId++;
          return new Promise<T>((resolve, reject) => {
            pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
            child.send({ id, task } satisfies ToWorker);
          });
        },
        onNotice(listener) {
          listeners.push(listener);
        },
        stop(graceMs = 5_000) {
          if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
          return new Promise<void>((resolve) => {
            const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
            child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            child.kill('SIGTERM');
          });
        },
      };
    }
  });
}

/** Worker side: sends a notice to the parent (the first one must be `ready`). */
export function notifyParent(notice: { type: string } & Record<string, unknown>): void {
  process.send?.({ kind: 'notice', notice } satisfies FromWorker);
}

/**
 * Worker side: answers the parent's tasks with `handle`, one at a time in arrival order, and exits
 * when the parent goes away or sends SIGTERM (after `onStop`).
 */
export function serveTasks(
  handle: (task: WorkerTask) => Promise<unknown>,
  onStop: () => Promise<void> = () => Promise.resolve(),
): void {
  let queue = Promise.resolve();
  process.on('message', (raw) => {
    const { id, task } = raw as ToWorker;
    queue = queue.then(async () => {
      try {
        const value = await handle(task);
        process.send?.({ kind: 'answer', id, ok: true, value } satisfies FromWorker);
      } catch (error) {
        const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
        process.send?.({ kind: 'answer', id, ok: false, error: text } satisfies FromWorker);
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

/** Nanoseconds on CLOCK_MONOTONIC, which every process of this machine shares. */
export const monotonicNs = (): bigint => process.hrtime.bigint();

/** Microseconds between two {@link monotonicNs} readings. */
export const elapsedUs = (from: bigint, to: bigint): number => Number(to - from) / 1000;
