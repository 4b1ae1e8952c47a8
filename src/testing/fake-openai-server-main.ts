/**
 * Runs the fake OpenAI server in its own process, for benchmarks and manual tests:
 *
 * ```sh
 * tsx src/testing/fake-openai-server-main.ts --port 0   # or PORT=0; 0 picks a free port
 * {"url":"http://127.0.0.1:41234/v1"}
 * ```
 *
 * It prints one JSON line with the base URL on stdout, then serves until SIGTERM or SIGINT. Clients
 * choose each answer through the model name (see `parseFakeModel`), e.g. `fake?chunks=10000`.
 *
 * @packageDocumentation
 */
import { parseArgs } from 'node:util';
import { createFakeOpenAIServer } from './fake-openai-server.js';

const { values } = parseArgs({ options: { port: { type: 'string' } } });
const port = Number(values.port ?? process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`invalid port: ${values.port ?? process.env.PORT}\n`);
  process.exit(2);
}

const server = await createFakeOpenAIServer({ port });
process.stdout.write(`${JSON.stringify({ url: server.url })}\n`);

const stop = (): void => {
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
