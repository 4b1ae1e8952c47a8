import { AsyncResource } from 'node:async_hooks';
import { setImmediate } from 'node:timers';

/** A send asked for, with the async context of the code that asked for it. */
interface WaitingSend {
  send: () => Promise<void>;
  context: AsyncResource;
}

/** The sends asked for since the last batch was taken. */
let waiting: WaitingSend[] = [];

/**
 * Runs `send` in a later turn of the event loop than this one, together with every other send asked
 * for in this turn. Where many runs start together (a loop of `agent.run()`, a burst of `POST .../runs`),
 * the work of their requests (the SDK building each, its socket's connect and first write: about as
 * much again as starting the runs) is then not added to the turn that started them, which every timer
 * and socket of the process waits for; the loop turns once in between. A single request goes out
 * microseconds later than it would have.
 *
 * The batch is taken in a check phase (this turn's, or the next one's when asked for in a check
 * phase) and sent in the next turn's, after its timers and I/O: what is asked for in that next turn
 * goes with the batch after. `setImmediate` is imported from `node:timers`: that binding is not the
 * global a test's fake timers replace, so faked time never holds a request back. Each send runs in
 * the async context of its caller (an `AsyncLocalStorage` store, OpenTelemetry's active context),
 * not in that of whoever asked first.
 */
export function sendInLaterTurn(send: () => Promise<void>): void {
  waiting.push({ send, context: new AsyncResource('runstate.request') });
  if (waiting.length === 1) setImmediate(takeBatch);
}

function takeBatch(): void {
  const batch = waiting;
  waiting = [];
  setImmediate(sendBatch, batch);
}

function sendBatch(batch: WaitingSend[]): void {
  for (const { send, context } of batch) void context.runInAsyncScope(send);
}
