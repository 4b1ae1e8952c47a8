/**
 * How many new connections a busy server takes in per turn of its event loop: a server whose every
 * turn does 5 ms of work (as a server streaming to many clients does), and a client process that
 * opens 500 connections to it at once. Prints the turns it took to accept them all and the most
 * accepted in one turn. libuv (1.45 and later: Node 20 and 22) accepts one connection per listening
 * socket per turn; with `--sockets N` the server listens on N sockets of one port
 * (`listen({ reusePort: true })`, Node 22.12 and later; Node 20 refuses the second socket with
 * `EADDRINUSE`).
 *
 *   npx tsx scripts/accept-rate.ts [--connections 500] [--sockets 1]
 *
 * Run it with another Node (`/path/to/node --import tsx scripts/accept-rate.ts`) to compare
 * versions. See docs/performance.md, "How it is measured" (connecting in the batch).
 */
import { fork } from 'node:child_process';
import { createServer, connect, type AddressInfo, type ListenOptions } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    client: { type: 'string' },
    connections: { type: 'string', default: '500' },
    sockets: { type: 'string', default: '1' },
  },
});
const CONNECTIONS = Number(values.connections);

if (values.client) {
  for (let i = 0; i < CONNECTIONS; i++) connect(Number(values.client), '127.0.0.1');
} else {
  const SOCKETS = Number(values.sockets);
  let accepted = 0;
  let thisTurn = 0;
  let turns = 0;
  let most = 0;
  const onConnection = () => {
    accepted++;
    thisTurn++;
  };
  // `reusePort` is Node 22.12's; Node 20 ignores the option.
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const server = createServer(onConnection);
      server.once('error', reject);
      const options: ListenOptions & { reusePort?: boolean } = { port, host: '127.0.0.1' };
      if (SOCKETS > 1) options.reusePort = true;
      server.listen(options, () => resolve((server.address() as AddressInfo).port));
    });
  const port = await listen(0);
  try {
    for (let i = 1; i < SOCKETS; i++) await listen(port);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    console.error(
      `Node ${process.version} cannot listen on one port with several sockets (reusePort: Node 22.12 and later)`,
    );
    process.exit(1);
  }
  const client = fork(
    fileURLToPath(import.meta.url),
    ['--client', String(port), '--connections', String(CONNECTIONS)],
    {
      execArgv: process.execArgv,
    },
  );
  const turn = () => {
    const busyUntil = performance.now() + 5;
    while (performance.now() < busyUntil);
    turns++;
    most = Math.max(most, thisTurn);
    thisTurn = 0;
    if (accepted < CONNECTIONS && turns < 20 * CONNECTIONS) {
      setImmediate(turn);
      return;
    }
    console.log(
      `Node ${process.version} (libuv ${process.versions.uv}), ${SOCKETS} listening socket(s): ` +
        `${accepted} connections in ${turns} turns, at most ${most} in one`,
    );
    client.kill();
    process.exit(0);
  };
  setImmediate(turn);
}
