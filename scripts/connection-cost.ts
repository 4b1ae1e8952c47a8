/**
 * What a client's connection costs a server, apart from any request on it: the server's CPU per
 * connection accepted (1,000 opened at once by this process, no request sent) and per connection
 * closed, for the runstate server (`createApp` + `startServer`) and for a bare `node:http` server,
 * each in a process of its own, in rounds that alternate. The bench's HTTP client opens one
 * connection per run (see docs/performance.md, "How it is measured"), so the server's figures there
 * include this once per run.
 *
 *   npx tsx --conditions=runstate-source scripts/connection-cost.ts [--connections 1000] [--rounds 2]
 */
import { createServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { answerCpuMeter, forkMeasured, type Cpu } from './cpu-meter.js';

const { values } = parseArgs({
  options: {
    server: { type: 'string' },
    connections: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '2' },
  },
});

async function server(kind: string): Promise<void> {
  let url: string;
  if (kind === 'runstate') {
    const { Agent, OfflineModel } = await import('../src/index.js');
    const { createApp, startServer } = await import('../src/server/index.js');
    // No run is started: the agent is there for the app to have one.
    const agent = new Agent({ name: 'idle', id: 'idle', model: new OfflineModel() });
    const listening = await startServer(createApp({ agents: [agent] }), { port: 0 });
    // As the bench's server: connections outlast the measurement.
    listening.server.keepAliveTimeout = 60_000;
    url = listening.url;
  } else {
    const bare = createServer((_request, response) => response.end());
    bare.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;
  }
  answerCpuMeter()(url);
}

async function driver(): Promise<void> {
  const CONNECTIONS = Number(values.connections);
  const perConnection = ({ user, system }: Cpu) =>
    `${((user + system) / CONNECTIONS).toFixed(0)} µs (kernel ${(system / CONNECTIONS).toFixed(0)})`;
  console.log(`server CPU per connection, ${CONNECTIONS} at once, no request on them`);
  console.log('| round | server | accepted | closed |');
  console.log('| ---: | --- | ---: | ---: |');
  for (let round = 1; round <= Number(values.rounds); round++) {
    for (const kind of ['runstate', 'node:http']) {
      const child = forkMeasured(fileURLToPath(import.meta.url), ['--server', kind]);
      const url = new URL(await child.next<string>());
      let sockets: Socket[] = [];
      const open = async () => {
        sockets = await Promise.all(
          Array.from(
            { length: CONNECTIONS },
            () =>
              new Promise<Socket>((resolve, reject) => {
                const socket = connect(Number(url.port), url.hostname, () => resolve(socket));
                socket.once('error', reject);
              }),
          ),
        );
      };
      // The server has seen each close once the socket's `close` came here after its FIN.
      const close = () =>
        Promise.all(sockets.map((socket) => new Promise((resolve) => socket.once('close', resolve).end())));
      // A first round of connections warms the server's code up.
      await open();
      await close();
      const accepted = await child.measure(open);
      const closed = await child.measure(close);
      console.log(`| ${round} | ${kind} | ${perConnection(accepted)} | ${perConnection(closed)} |`);
      child.exit();
    }
  }
}

await (values.server ? server(values.server) : driver());
