/**
 * Writes docs/img/inspector.png: the built-in inspector page in Debian's chromium (headless, driven
 * by playwright-core; nothing is downloaded), with a few runs that ended every way and one streaming.
 *
 *   npx tsx --conditions=runstate-source scripts/inspector-screenshot.ts [--out docs/img/inspector.png]
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { Agent } from '../src/agent.js';
import { RunstateError } from '../src/errors.js';
import type { ChatModel, ModelChunk } from '../src/model/chat-model.js';
import { OfflineModel } from '../src/model/offline-model.js';
import { CHROMIUM, CHROMIUM_ARGS, tempProfile } from '../test/support/chromium.js';
import { startInspectorServer } from '../test/support/inspector-server.js';

const { values } = parseArgs({ options: { out: { type: 'string', default: 'docs/img/inspector.png' } } });
if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  process.exit(1);
}

/** A model whose connection drops after a few words, so one run ends in `failed`. */
const flaky: ChatModel = {
  id: 'flaky-model',
  provider: 'offline',
  async *stream(): AsyncIterable<ModelChunk> {
    for (const word of ['The', ' upstream', ' went']) yield { type: 'delta', content: word };
    await Promise.resolve();
    throw new RunstateError('MODEL_REQUEST_FAILED', 'the connection was reset by the model server');
  },
};

const server = await startInspectorServer({ model: new OfflineModel({ tokensPerSecond: 25 }) });
const profile = tempProfile();
const context = await chromium.launchPersistentContext(profile.dir, {
  executablePath: CHROMIUM,
  args: CHROMIUM_ARGS,
  viewport: { width: 1440, height: 1270 },
  deviceScaleFactor: 1,
});
try {
  const { orchestrator } = server;
  const researcher = new Agent({
    name: 'ResearchAgent',
    model: new OfflineModel({ tokensPerSecond: 2000 }),
    orchestrator,
  });
  const unreliable = new Agent({ name: 'FlakyAgent', model: flaky, orchestrator });

  const page = await context.newPage();
  await page.goto(`${server.url}/inspect/`);
  await page.locator('#connection[data-state="live"]').waitFor();

  await researcher.run('Summarise the history of state machines in 60 words.');
  const story = server.agent.run('Write a story about a dragon who learns to code.', { stream: true });
  let words = 0;
  for await (const event of story)
    if (event.event === 'RunContent' && ++words === 12) orchestrator.cancelRun(story.runId, 'api');
  await unreliable.run('Explain backpressure in 100 words.');

  const live = server.agent.run('Write a long story about a lighthouse keeper who learns to sail.', {
    stream: true,
  });
  await page.locator(`[data-run-id="${live.runId}"]`).click();
  await page.locator('#chart g.node.active[data-path="streaming.attempt.receiving"]').waitFor();
  // Locators, not waitForFunction: the page's CSP forbids evaluating strings.
  await page.locator('#run-chunks', { hasText: /^([7-9]\d|[1-9]\d{2,})$/ }).waitFor();

  mkdirSync(dirname(values.out), { recursive: true });
  await page.screenshot({ path: values.out });
  console.log(`wrote ${values.out}`);
} finally {
  await context.close();
  profile.remove();
  await server.close();
}
