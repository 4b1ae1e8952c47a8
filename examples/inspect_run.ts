/**
 * Watch an agent's runs move through their states.
 *
 * The orchestrator hands its `inspect` option to every run actor, so any xstate inspection observer
 * works (`@statelyai/inspect`'s inspectors; several at once with `combineInspectors`); runstate's
 * built-in inspector follows the orchestrator's runs (`attach`). With no OPENAI_API_KEY the agent
 * runs on the offline model.
 *
 *   npx tsx --conditions=runstate-source examples/inspect_run.ts            # offline: run, cancel, print what was seen
 *   npx tsx --conditions=runstate-source examples/inspect_run.ts --serve    # and the built-in page (offline), until Ctrl-C
 *   npx tsx --conditions=runstate-source examples/inspect_run.ts --serve --port 8000   # the page on another port (default 7778)
 *   npx tsx --conditions=runstate-source examples/inspect_run.ts --stately  # Stately's hosted UI, through a local relay (network)
 *   npx tsx --conditions=runstate-source examples/inspect_run.ts --sky      # Stately Sky, hosted (network)
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  createInspector as createStatelyInspector,
  createSkyInspector,
  createWebSocketInspector,
  type StatelyInspectionEvent,
} from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import { Agent, createInspector, OfflineModel, OpenAIChat, RunEvent } from 'runstate';

const { values } = readOptions();

/** The command line's options; a flag it does not know, one without its value, or --port without --serve exits 2. */
function readOptions() {
  try {
    const parsed = parseArgs({
      options: {
        serve: { type: 'boolean', default: false },
        stately: { type: 'boolean', default: false },
        sky: { type: 'boolean', default: false },
        port: { type: 'string' },
      },
    });
    // The port is the page's: without --serve there is none, and the flag would do nothing.
    if (parsed.values.port !== undefined && !parsed.values.serve) throw new Error('--port needs --serve');
    return { values: { ...parsed.values, port: parsed.values.port ?? '7778' } };
  } catch (error) {
    console.error((error as Error).message);
    process.exit(2);
  }
}

// A run's context holds all its content: keep it out of what is serialised for Stately's UI, which
// copies the whole snapshot on every event (a long run would be quadratic). Child actors have none.
const sanitizeContext = (context: Record<string, unknown> | undefined) => {
  const { content, ...rest } = context ?? {};
  return { ...rest, contentLength: typeof content === 'string' ? content.length : 0 };
};

// 1. runstate's built-in inspector: offline, coalesced, served at /inspect by `runstate serve`.
const builtIn = createInspector({ cancelRoute: 'inspector' });

// 2. A @statelyai/inspect inspector. Offline by default: its core with an adapter of our own, which
//    receives exactly the events Stately's UI would. `--stately` and `--sky` send them to that UI.
const statelyEvents = new Map<string, number>();
let stopStately = (): void => {};

function statelyInspector(): ReturnType<typeof createStatelyInspector> {
  if (values.sky) {
    // Needs the network: prints a https://stately.ai/registry/inspect/... link once connected.
    return createSkyInspector({ sanitizeContext });
  }
  if (values.stately) {
    // A relay on this machine (a WebSocket, and a page that embeds https://stately.ai/inspect, which
    // needs the network); the app sends to it over a local WebSocket.
    const relay = createInspectorServer({ port: 8080, autoOpen: false });
    const inspector = createWebSocketInspector({ url: 'ws://localhost:8080', sanitizeContext });
    stopStately = () => {
      inspector.stop();
      relay.stop();
    };
    console.log('Stately inspector: open http://localhost:8080 (it loads https://stately.ai/inspect)');
    return inspector;
  }
  const count = (event: StatelyInspectionEvent) =>
    statelyEvents.set(event.type, (statelyEvents.get(event.type) ?? 0) + 1);
  return createStatelyInspector({ send: count }, { sanitizeContext });
}

const agent = new Agent({
  name: 'StorytellerAgent',
  model: process.env.OPENAI_API_KEY
    ? new OpenAIChat({ id: 'gpt-5-mini' })
    : new OfflineModel({ tokensPerSecond: values.serve ? 15 : 400 }),
  // Every run actor is inspected by @statelyai/inspect (xstate's inspection events)...
  inspect: statelyInspector().inspect,
});
// ...and the built-in inspector follows the orchestrator's runs.
builtIn.attach(agent.orchestrator);

/** Streams a story and cancels it after `cancelAfter` chunks, so the run ends in `cancelled`. */
async function storyCancelledAfter(cancelAfter: number): Promise<string> {
  const run = agent.run('Write a long story about a lighthouse keeper who learns to sail.', { stream: true });
  let chunks = 0;
  for await (const event of run) {
    if (event.event === RunEvent.runContent && ++chunks === cancelAfter) agent.cancelRun(run.runId);
  }
  return run.runId;
}

if (values.serve) {
  // The built-in page on a plain node:http server. `runstate serve` mounts the same handler.
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    console.error(`--port must be a port number (0 to 65535), got ${JSON.stringify(values.port)}`);
    process.exit(2);
  }
  const server = createServer((req, res) => builtIn.handler(req, res));
  server.listen(port, '127.0.0.1');
  try {
    await once(server, 'listening');
  } catch (error) {
    const busy = (error as NodeJS.ErrnoException).code === 'EADDRINUSE';
    console.error(busy ? `port ${port} is already in use (try --port)` : (error as Error).message);
    process.exit(1);
  }
  const { port: listening } = server.address() as AddressInfo;
  console.log(`Built-in inspector: http://127.0.0.1:${listening}/inspect/ (offline). Ctrl-C to stop.`);
  // A new run every few seconds; cancel any of them from the page.
  const timer = setInterval(() => void agent.run('Write a story about a dragon who learns to code.'), 4000);
  void agent.run('Write a story about a dragon who learns to code.');
  process.once('SIGINT', () => {
    clearInterval(timer);
    builtIn.close();
    stopStately();
    server.close();
    void agent.orchestrator.shutdown();
  });
} else {
  const completed = await agent.run('Write a haiku about state machines in 17 words.');
  const cancelledId = await storyCancelledAfter(25);

  console.log('Runs seen by the built-in inspector:');
  for (const run of builtIn.listRuns()) {
    console.log(`  ${run.run_id.slice(0, 8)}  ${run.status.padEnd(9)} ${run.chunks} chunks`);
  }
  // Every state the cancelled run went through, from the inspector's log of it.
  const log: string[] = [];
  const unsubscribe = builtIn.subscribe(
    (message) => {
      if (message.type === 'detail') log.push(...message.log.map((entry) => `${entry.kind}: ${entry.text}`));
    },
    { runId: cancelledId },
  );
  unsubscribe();
  console.log(`\nLog of the cancelled run ${cancelledId.slice(0, 8)}:`);
  for (const line of log) console.log(`  ${line}`);
  console.log(`\nCompleted run: ${completed.status}, ${completed.content.split(/\s+/).length} words`);

  // @statelyai/inspect converts each event in a setTimeout of its own: let those run first.
  await delay(0);
  if (statelyEvents.size > 0) {
    const counts = [...statelyEvents].map(([type, count]) => `${type} ×${count}`).join(', ');
    console.log(`\n@statelyai/inspect received (offline adapter): ${counts}`);
    console.log('To see them in Stately’s hosted UI (needs the network): --stately, or --sky.');
  }
  console.log('To watch runs live in the built-in page (offline): --serve');
  builtIn.close();
  stopStately();
}
