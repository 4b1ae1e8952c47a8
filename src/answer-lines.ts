import { createInterface, type Interface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

/**
 * A person's answers on a stream (the terminal, or a pipe or file), a line each, read with one
 * interface for as long as it is needed. Lines that arrive before their question (piped answers: a
 * pipe's whole content comes in one read) wait for it, where a question asked afterwards with
 * readline's own `question()` would never see them.
 */
export class AnswerLines {
  readonly #lines: string[] = [];
  #waiting: ((line: string | undefined) => void) | undefined;
  #ended = false;
  readonly #reader: Interface;

  /** `onInterrupt`: Ctrl-C on a terminal (which readline takes from the process's own SIGINT). */
  constructor(input: Readable, output: Writable, onInterrupt: () => void) {
    this.#reader = createInterface({ input, output });
    this.#reader.on('line', (line) => {
      if (this.#waiting) this.#take(line);
      else this.#lines.push(line);
    });
    this.#reader.once('close', () => {
      this.#ended = true;
      this.#take(undefined);
    });
    this.#reader.on('SIGINT', onInterrupt);
  }

  /**
   * Shows `question` and resolves with the next line: one that came already, or the next one typed.
   * `undefined` once the input ended (nothing more will come), or when `stop` settles first.
   */
  async ask(question: string, stop: Promise<unknown>): Promise<string | undefined> {
    this.#reader.setPrompt(question);
    this.#reader.prompt();
    const waited = this.#lines.length > 0 || this.#ended ? undefined : this.#next();
    const line = waited ? await Promise.race([waited, stop.then(() => undefined)]) : this.#lines.shift();
    // Stopped first: the question is withdrawn, and a line typed later waits for the next one.
    this.#waiting = undefined;
    this.#reader.setPrompt('');
    return line;
  }

  /** Stops reading the input. */
  close(): void {
    this.#reader.close();
  }

  #next(): Promise<string | undefined> {
    return new Promise((resolve) => {
      this.#waiting = resolve;
    });
  }

  #take(line: string | undefined): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.(line);
  }
}
