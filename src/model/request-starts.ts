import { setImmediate } from 'node:timers';

/** The sends asked for since the last batch went out. */
let waiting: (() => Promise<void>)[] = [];

/**
 * Runs `send` in a later turn of the event loop than this one, together with every other send asked
 * for meanwhile. Where many runs start together (a loop of `agent.run()`, a burst of `POST .../runs`),
 * the work of their requests (the SDK building each, its socket's connect and first write: about as
 * much again as starting the runs) is then not added to the turn that started them, which every timer
 * and socket of the process waits for; the loop turns once in between. A single request goes out
 * microseconds later than it would have.
 *
 * Two immediates: the first runs in this turn's check phase (the same turn, where it was asked for in
 * an I/O or timer callback or a promise of one), the second in the next turn's, after its timers and
 * I/O. Imported from `node:timers`: that binding is not the global a test's fake timers replace, so
 * faked time never holds a request back.
 */
export function sendInLaterTurn(send: () => Promise<void>): void {
  waiting.push(send);
  if (waiting.length === 1) setImmediate(() => setImmediate(sendWaiting));
}

function sendWaiting(): void {
  const batch = waiting;
  waiting = [];
  for (const send of batch) void send();
}
