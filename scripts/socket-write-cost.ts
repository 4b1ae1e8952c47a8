/**
 * What one small socket write costs on this machine: 100 TCP connections on 127.0.0.1 to a reader
 * in another process, one SSE-sized write (a `RunContent` frame in an HTTP chunk) to each of them
 * per turn of the event loop, as the HTTP server writes one event per delta when each delta comes
 * in its own socket read. Prints the writer's CPU per write, in user space and in the kernel (which
 * on 127.0.0.1 includes the reader's side of TCP and waking it), against the same loop writing
 * nothing. The floor under the HTTP server's cost per event, whatever the server does around it.
 *
 *   npx tsx scripts/socket-write-cost.ts [--sockets 100] [--turns 500] [--rounds 3]
 *
 * See docs/performance.md, "Why the two earlier benchmarks disagreed", 7.
 */
import { fork } from 'node:child_process';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    reader: { type: 'boolean', default: false },
    sockets: { type: 'string', default: '100' },
    turns: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '3' },
  },
});

if (values.reader) {
  // Reads and drops everything, as a client reading the stream does with a chunk it has handled.
  const server = createServer((socket) => socket.on('data', () => undefined));
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as AddressInfo).port));
} else {
  const SOCKETS = Number(values.sockets);
  const TURNS = Number(values.turns);
  const reader = fork(fileURLToPath(import.meta.url), ['--reader'], { execArgv: ['--import', 'tsx'] });
  const port = await new Promise<number>((resolve) => reader.once('message', (m) => resolve(m as number)));
  const sockets = await Promise.all(
    Array.from(
      { length: SOCKETS },
      () =>
        new Promise<Socket>((resolve) => {
          const socket = createConnection({ port, host: '127.0.0.1', noDelay: true }, () => resolve(socket));
        }),
    ),
  );
  const event = {
    created_at: 1_764_590_000,
    event: 'RunContent',
    agent_id: 'paced',
    agent_name: 'paced',
    run_id: '7f1c2e2a-8d9c-4a51-bb8e-1d2f3a4b5c6d',
    session_id: '0a1b2c3d-4e5f-6789-abcd-ef0123456789',
    content: 'word ',
    content_type: 'str',
    seq: 12,
  };
  const frame = `id: 12\nevent: RunContent\ndata: ${JSON.stringify(event)}\n\n`;
  const chunk = `${Buffer.byteLength(frame).toString(16)}\r\n${frame}\r\n`;
  const variants: Record<string, (socket: Socket) => void> = {
    'a write': (socket) => socket.write(chunk),
    nothing: () => undefined,
  };
  const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
  const perWrite = (us: number) => `${(us / (SOCKETS * TURNS)).toFixed(2)} µs`;
  console.log(`CPU per write: ${SOCKETS} sockets, one write to each per turn, ${TURNS} turns`);
  console.log('| round | variant | user | kernel |');
  console.log('| ---: | --- | ---: | ---: |');
  for (let round = 0; round <= Number(values.rounds); round++) {
    for (const [name, write] of Object.entries(variants)) {
      const since = process.cpuUsage();
      for (let turn = 0; turn < TURNS; turn++) {
        await nextTurn();
        for (const socket of sockets) write(socket);
      }
      const { user, system } = process.cpuUsage(since);
      // Round 0 warms up.
      if (round > 0) console.log(`| ${round} | ${name} | ${perWrite(user)} | ${perWrite(system)} |`);
    }
  }
  for (const socket of sockets) socket.destroy();
  reader.kill();
}
