/**
 * The measuring scripts' two processes: a measured one (a server) and this one, which drives it and
 * asks for its CPU time around the work. Both sides speak over the fork's IPC channel:
 * `start` (a collection, then the baseline: answered `started`), `stop` (answered with the CPU used
 * since), `exit`, and whatever else a script adds.
 *
 * @packageDocumentation
 */
import { fork, type Serializable } from 'node:child_process';

/** CPU time in microseconds, as `process.cpuUsage()` gives it. */
export type Cpu = { user: number; system: number };

/**
 * In the measured process: answers `start` and `stop`; `exit` runs `onExit` (default: exits);
 * any other message goes to `onMessage`. Returns `reply`, which sends a message to the driver.
 */
export function answerCpuMeter(
  options: {
    onMessage?: (message: Serializable, reply: (message: Serializable) => void) => void;
    onExit?: () => unknown;
  } = {},
): (message: Serializable) => void {
  const reply = (message: Serializable) => void process.send!(message);
  let since = process.cpuUsage();
  process.on('message', (message: Serializable) => {
    if (message === 'start') {
      globalThis.gc?.();
      since = process.cpuUsage();
      reply('started');
    } else if (message === 'stop') {
      reply(process.cpuUsage(since));
    } else if (message === 'exit') {
      void Promise.resolve(options.onExit?.()).then(() => process.exit(0));
    } else {
      options.onMessage?.(message, reply);
    }
  });
  return reply;
}

/** The driver's handle on a measured process (see {@link forkMeasured}). */
export interface MeasuredProcess {
  /** The next message of the process, in the order they came (none is lost between two calls). */
  next<T>(): Promise<T>;
  send(message: Serializable): void;
  /** The process's CPU time while `work` runs (`start`, the work, `stop`). */
  measure(work: () => Promise<unknown>): Promise<Cpu>;
  /** Asks the process to exit. */
  exit(): void;
}

/**
 * Forks `script` with `args`, through tsx on runstate's sources, with `--expose-gc` and any `flags`
 * for Node (`--cpu-prof`).
 */
export function forkMeasured(script: string, args: string[], flags: string[] = []): MeasuredProcess {
  const child = fork(script, args, {
    execArgv: [...flags, '--expose-gc', '--import', 'tsx', '--conditions=runstate-source'],
  });
  const inbox: Serializable[] = [];
  let wake: (() => void) | undefined;
  child.on('message', (message) => {
    inbox.push(message);
    wake?.();
  });
  const next = async <T>(): Promise<T> => {
    while (inbox.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    return inbox.shift() as T;
  };
  const send = (message: Serializable) => void child.send(message);
  return {
    next,
    send,
    async measure(work) {
      send('start');
      await next<string>();
      await work();
      // The process answers after its last callbacks of the work ran: a round trip through its loop.
      send('stop');
      return next<Cpu>();
    },
    exit: () => send('exit'),
  };
}
