/**
 * The inspector page in a real browser: Debian's chromium driven by playwright-core. Every wait is
 * on a page condition, never a sleep. Install the browser with `apt-get install -y chromium`.
 */
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent.js';
import type { ChatModel } from '../../src/model/chat-model.js';
import { OfflineModel } from '../../src/model/offline-model.js';
import type { Tool } from '../../src/tools/tool.js';
import { createFakeModel } from '../../src/testing/fake-model.js';
import { createOrchestrator, type Orchestrator } from '../../src/runtime/create-orchestrator.js';
import { createApp } from '../../src/server/index.js';
import { createInspector, type Inspector } from '../../src/inspect/index.js';
import { CHROMIUM, CHROMIUM_ARGS, hasChromium, openPage, tempProfile } from '../support/chromium.js';
import { collect } from '../support/collect.js';
import { tool } from '../../src/tools/tool.js';
import { z } from 'zod';
import { confirmingTool } from '../support/confirming-tool.js';
import { startInspectorServer } from '../support/inspector-server.js';
import { listen } from '../support/listen.js';

const LONG_STORY = 'Write a very long story about a lighthouse keeper who learns to sail, in 3000 words';

let context: BrowserContext;
let removeProfile = () => {};

interface Target {
  url: string;
  /** Where the page is, under `url`: `/inspect/` unless mounted elsewhere. */
  pagePath?: string;
  orchestrator: Orchestrator;
  agent: Agent;
  close(): Promise<void>;
}

/**
 * The scenario of issue 5, against a server that mounts the inspector at /inspect. With a
 * `securityKey`, the page first asks for it (the feed answers 401) and the test types it.
 */
async function cancelFromThePage(target: Target, securityKey?: string): Promise<void> {
  const { page, errors, requests } = await openPage(context);
  try {
    await page.goto(`${target.url}${target.pagePath ?? '/inspect/'}`);
    if (securityKey) {
      await page.locator('#connection[data-state="locked"]').waitFor();
      const form = page.locator('#auth');
      await form.waitFor();
      expect(await page.locator('#auth-error').isHidden()).toBe(true);
      // A wrong key is refused, and asked for again.
      await page.locator('#auth-key').fill('not-the-key');
      await page.locator('#auth-key').press('Enter');
      await page.locator('#auth-error', { hasText: 'refused' }).waitFor();
      await page.locator('#auth-key').fill(securityKey);
      await page.locator('#auth button[type="submit"]').click();
      await form.waitFor({ state: 'hidden' });
      const stored: unknown = await page.evaluate('Object.values(sessionStorage)');
      expect(stored).toEqual([securityKey]);
    } else {
      expect(await page.locator('#auth').isHidden()).toBe(true);
    }
    await page.locator('#connection[data-state="live"]').waitFor();
    // Nothing ran yet: the page names the route that starts a run on this server.
    await page.locator('#runs-empty', { hasText: 'for example POST /agents/:agent_id/runs;' }).waitFor();
    // The chart is laid out by elkjs in the page.
    await page.locator('#chart svg g.node[data-path="streaming.attempt.receiving"]').waitFor();
    // Transitions without a target are written inside their state, never drawn as loops around it.
    expect(
      await page.locator('#chart g.node[data-path="streaming"] > .node-internal').allTextContents(),
    ).toEqual(['after runTimeout / raise TIMEOUT']);
    expect(
      await page
        .locator('#chart g.node[data-path="streaming.attempt.receiving"] > .node-internal')
        .allTextContents(),
    ).toEqual(['CHUNK / appendChunk, emitContent', 'after idleTimeout [silentSinceArmed] / raise TIMEOUT']);
    const drawn = await Promise.all(
      (await page.locator('#chart g.edge').all()).map((edge) => edge.getAttribute('data-edge')),
    );
    // The one loop drawn: the idle timer armed again by entering `receiving` again.
    expect(
      drawn.filter((id) => id?.includes('xstate.after.idleTimeout') || id?.includes('runTimeout')),
    ).toEqual(['run.streaming.attempt.receiving:xstate.after.idleTimeout.run.streaming.attempt.receiving:1']);

    const run = target.agent.run(LONG_STORY, { stream: true });
    const item = page.locator(`[data-run-id="${run.runId}"]`);
    await item.waitFor();
    await item.click();
    await page.locator('#run-id', { hasText: run.runId }).waitFor();
    await statusIs(page, 'streaming');
    // Chunks are flowing: the active leaf is `receiving`, inside `attempt`, inside `streaming`.
    await page.locator('#chart g.node.active[data-path="streaming.attempt.receiving"]').waitFor();
    expect(await activeStates(page)).toEqual([
      'streaming',
      'streaming.attempt',
      'streaming.attempt.receiving',
    ]);
    expect(await item.locator('.pill').textContent()).toBe('streaming');
    await page.locator('#run-chunks', { hasText: /^[1-9]\d*$/ }).waitFor(); // the page's CSP forbids eval

    await page.locator('#cancel').click();
    await statusIs(page, 'cancelled');
    await page.locator('#chart[data-status="cancelled"] g.node.active[data-path="cancelled"]').waitFor();
    expect(await activeStates(page)).toEqual(['cancelled']);
    expect(await page.locator('#chart g.edge.taken').getAttribute('data-edge')).toBe(
      'run.streaming:CANCEL:0',
    );
    await item.locator('.pill', { hasText: 'cancelled' }).waitFor();
    await page.locator('#log li[data-kind="end"]', { hasText: 'cancelled (reason: api)' }).waitFor();
    expect(await page.locator('#cancel').isDisabled()).toBe(true);
    expect(await page.locator('#notice').textContent()).toContain('Cancel accepted');
    expect((await page.locator('#content').textContent())?.length).toBeGreaterThan(0);

    // The cancel went through the server's route: the run is cancelled for real, reason `api`.
    const output = await run.result;
    expect(output).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });

    expect(await page.locator('#auth').isHidden()).toBe(true);
    // Chromium logs every 401 answer as a failed resource: those are the prompts' cause, not bugs.
    const refused = /status of 401/;
    expect(errors.filter((error) => !(securityKey && refused.test(error)))).toEqual([]);
    if (!securityKey) expect(errors).toEqual([]);
    const offsite = requests.filter((url) => !url.startsWith(`${target.url}/`) && !url.startsWith('data:'));
    expect(offsite).toEqual([]);
    // The key goes in a header, never in a URL.
    if (securityKey) expect(requests.filter((url) => url.includes(securityKey))).toEqual([]);
  } finally {
    await page.close();
  }
}

/** Waits until the selected run's status, in the page's header, is `status`. */
async function statusIs(page: Page, status: string): Promise<void> {
  await page.locator('#run-status', { hasText: new RegExp(`^${status}$`) }).waitFor();
}

/** The `data-path` of every lit state of the chart, outermost first. */
async function activeStates(page: Page): Promise<string[]> {
  const nodes = await page.locator('#chart g.node.active').all();
  const paths = await Promise.all(nodes.map((node) => node.getAttribute('data-path')));
  return paths.map((path) => path ?? '').sort();
}

/** createApp's app with the inspector mounted as `runstate serve` mounts it (`mount` option). */
async function startAppWithInspector(
  securityKey = '',
  { model, tools, mountPath = '/inspect' }: { model?: ChatModel; tools?: Tool[]; mountPath?: string } = {},
): Promise<Target> {
  const inspector: Inspector = createInspector();
  const orchestrator = createOrchestrator();
  inspector.attach(orchestrator);
  const agent = new Agent({
    name: 'StorytellerAgent',
    model: model ?? new OfflineModel({ tokensPerSecond: 20 }),
    tools,
    orchestrator,
  });
  const runstate = createApp({ agents: [agent], securityKey, mount: { [mountPath]: inspector.handler } });
  const server = await listen(runstate.app);
  return {
    url: server.url,
    pagePath: `${mountPath}/`,
    orchestrator,
    agent,
    async close() {
      inspector.close(); // the feeds only watch: end them, or shutdown would wait for them
      await runstate.shutdown();
      await server.close();
    },
  };
}

const title = hasChromium
  ? 'the inspector page in chromium'
  : `the inspector page in chromium (SKIPPED: ${CHROMIUM} is missing; install it with: apt-get install -y chromium)`;

describe.skipIf(!hasChromium)(title, () => {
  beforeAll(async () => {
    const profile = tempProfile();
    removeProfile = profile.remove;
    context = await chromium.launchPersistentContext(profile.dir, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      viewport: { width: 1440, height: 1000 },
    });
  });
  afterAll(async () => {
    await context?.close();
    removeProfile();
  });

  it('on a node:http server: a new run appears; cancel moves it from streaming to cancelled, chart lit', async () => {
    const server = await startInspectorServer();
    try {
      await cancelFromThePage(server);
    } finally {
      await server.close();
    }
  });

  it('mounted in createApp: the page cancels through the server’s POST /agents/:agent_id/runs/:run_id/cancel', async () => {
    const target = await startAppWithInspector();
    try {
      await cancelFromThePage(target);
    } finally {
      await target.close();
    }
  });

  it('mounted deeper in createApp (/debug/inspect): the page still cancels through the server’s route', async () => {
    const target = await startAppWithInspector('', { mountPath: '/debug/inspect' });
    try {
      await cancelFromThePage(target);
    } finally {
      await target.close();
    }
  });

  it('with a security key: the page asks for it, then follows and cancels runs with it as a bearer token', async () => {
    const target = await startAppWithInspector('browser-test-key');
    try {
      await cancelFromThePage(target, 'browser-test-key');
    } finally {
      await target.close();
    }
  });

  it('counts a paused run as active and cancels it through the server’s cancel route', async () => {
    const publish = confirmingTool('publish_note');
    const model = createFakeModel({
      onCall: (call) => call.callTools([{ id: 'call_p', name: 'publish_note' }]),
    });
    const target = await startAppWithInspector('', { model, tools: [publish] });
    try {
      const { page, errors } = await openPage(context);
      await page.goto(`${target.url}/inspect/`);
      await page.locator('#connection[data-state="live"]').waitFor();
      const run = target.agent.run('Publish a note', { stream: true });
      // Its stream ends at RunPaused: the run waits for a person.
      expect((await collect(run)).at(-1)?.event).toBe('RunPaused');
      const item = page.locator(`[data-run-id="${run.runId}"]`);
      await item.click();
      await statusIs(page, 'paused');
      await page.locator('#chart g.node.active[data-path="paused"]').waitFor();
      await page.locator('#counts', { hasText: /^1 active · 0 finished$/ }).waitFor();
      expect(await page.locator('#cancel').isEnabled()).toBe(true);

      await page.locator('#cancel').click();
      await statusIs(page, 'cancelled');
      await item.locator('.pill', { hasText: 'cancelled' }).waitFor();
      await page.locator('#counts', { hasText: /^0 active · 1 finished$/ }).waitFor();
      expect(await page.locator('#notice').textContent()).toContain('Cancel accepted');
      expect(await target.orchestrator.result(run.runId)).toMatchObject({
        status: 'cancelled',
        cancel_reason: 'api',
      });
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await target.close();
    }
  });

  it('with its own cancel route (no AgentOS routes): the empty list says to start runs from code', async () => {
    const server = await startInspectorServer({ inspector: { cancelRoute: 'inspector' } });
    try {
      const { page, errors } = await openPage(context);
      await page.goto(`${server.url}/inspect/`);
      await page.locator('#connection[data-state="live"]').waitFor();
      expect(await page.locator('#runs-empty').textContent()).toMatch(
        /^\s*No runs yet\. Start one: from your code, with agent\.run\(…\);\s+it shows up here live\.\s*$/,
      );
      expect(await page.locator('#runs-empty').isVisible()).toBe(true);
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await server.close();
    }
  });

  it('is one tab stop, a listbox: arrows, Home and End move among runs; Enter and Space choose', async () => {
    const model = createFakeModel(); // each call streams until the test ends it: the runs stay active
    const server = await startInspectorServer({ model });
    try {
      const runs = ['one', 'two', 'three'].map((input) => server.agent.run(input, { stream: true }));
      const { page, errors } = await openPage(context);
      await page.goto(`${server.url}/inspect/`);
      // Newest first; the newest chosen when nothing is.
      const [newest, middle, oldest] = runs
        .map((run) => page.locator(`[data-run-id="${run.runId}"]`))
        .reverse();
      await page.locator('#runs li[role="option"]').nth(2).waitFor();
      await newest!.and(page.locator('[aria-selected="true"]')).waitFor();
      expect(await page.locator('#runs').getAttribute('role')).toBe('listbox');
      const tabStops = () => page.locator('#runs li[tabindex="0"]').count();
      const focusedRun = () =>
        page.evaluate<string | null>("document.activeElement?.getAttribute('data-run-id') ?? null");
      const [newestId, middleId, oldestId] = runs.map((run) => run.runId).reverse();

      // Tab reaches the list once, at the chosen run; the next Tab leaves it for Cancel.
      expect(await tabStops()).toBe(1);
      await page.keyboard.press('Tab');
      expect(await focusedRun()).toBe(newestId);
      await page.keyboard.press('Tab');
      expect(await page.evaluate<string>('document.activeElement?.id')).toBe('cancel');
      await page.keyboard.press('Shift+Tab');
      expect(await focusedRun()).toBe(newestId);

      await page.keyboard.press('ArrowDown');
      expect(await focusedRun()).toBe(middleId);
      await page.keyboard.press('End');
      expect(await focusedRun()).toBe(oldestId);
      await page.keyboard.press('ArrowDown'); // past the end: stays
      expect(await focusedRun()).toBe(oldestId);
      await page.keyboard.press('Home');
      expect(await focusedRun()).toBe(newestId);
      await page.keyboard.press('ArrowDown');
      // Moving chooses nothing: the chosen run is still the newest, the tab stop where the arrows are.
      expect(await newest!.getAttribute('aria-selected')).toBe('true');
      expect(await middle!.getAttribute('tabindex')).toBe('0');
      expect(await tabStops()).toBe(1);

      await page.keyboard.press('Space');
      await page.locator('#run-id', { hasText: middleId! }).waitFor();
      expect(await middle!.getAttribute('aria-selected')).toBe('true');
      expect(await newest!.getAttribute('aria-selected')).toBe('false');
      await page.keyboard.press('ArrowUp');
      await page.keyboard.press('ArrowUp'); // past the start: stays
      expect(await focusedRun()).toBe(newestId);
      await page.keyboard.press('Enter');
      await page.locator('#run-id', { hasText: newestId! }).waitFor();
      expect(await oldest!.getAttribute('aria-selected')).toBe('false');
      expect(await tabStops()).toBe(1);
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await server.close();
    }
  });

  it('marks the run looked at when it is no longer followed (its orchestrator detached): no cancel, not counted', async () => {
    const server = await startInspectorServer();
    const other = createOrchestrator();
    const model = createFakeModel();
    const agent = new Agent({ name: 'Elsewhere', model, orchestrator: other });
    const detach = server.inspector.attach(other);
    try {
      const run = agent.run('hello', { stream: true });
      const call = await model.nextCall();
      call.emit('Once');
      const { page, errors } = await openPage(context);
      // The page's clock, to let time pass on it at will (it runs as usual until paused).
      await page.clock.install();
      await page.goto(`${server.url}/inspect/#run=${encodeURIComponent(run.runId)}`);
      await page.locator(`[data-run-id="${run.runId}"].selected .pill`, { hasText: 'streaming' }).waitFor();
      expect(await page.locator('#cancel').isDisabled()).toBe(false);
      call.emit(' upon');
      await page.locator('#log li.live').waitFor();
      detach();
      await page.locator('#notice', { hasText: 'no longer followed here' }).waitFor();
      expect(await page.locator('#cancel').isDisabled()).toBe(true);
      // What it shows is how it was: no live chunk row, a clock that stopped.
      expect(await page.locator('#log li.live').count()).toBe(0);
      const duration = await page.locator('#run-duration').textContent();
      await page.clock.runFor(3_000);
      expect(await page.locator('#run-duration').textContent()).toBe(duration);
      expect(await page.locator('#counts').textContent()).toBe('0 active · 0 finished');
      // Another run chosen: the one no longer followed leaves the list.
      const next = server.agent.run('hi', { stream: true });
      await page.locator(`[data-run-id="${next.runId}"]`).click();
      await page.locator(`[data-run-id="${run.runId}"]`).waitFor({ state: 'detached' });
      server.orchestrator.cancelRun(next.runId, 'code');
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await other.shutdown();
      await server.close();
    }
  });

  it.each([
    ['names a run the server does not know (a stale link, a restart)', '00000000-gone'],
    ['is not valid percent-encoding (a hand-made link)', '%E0'],
  ])('follows the newest run when the link %s', async (_, fragment) => {
    const server = await startInspectorServer();
    try {
      const { page, errors } = await openPage(context);
      await page.goto(`${server.url}/inspect/#run=${fragment}`);
      await page.locator('#connection[data-state="live"]').waitFor();
      const run = server.agent.run('hello', { stream: true });
      await page.locator(`[data-run-id="${run.runId}"].selected`).waitFor();
      await page.locator('#run-header').waitFor();
      server.orchestrator.cancelRun(run.runId, 'code');
      // Changed to another that is not valid either, on the open page: nothing breaks.
      // (The page's own listener came first: this one resolves after it ran.)
      await page.evaluate(
        "new Promise((resolve) => { addEventListener('hashchange', () => setTimeout(resolve), { once: true }); location.hash = '#run=%'; })",
      );
      await page.locator(`[data-run-id="${run.runId}"].selected`).waitFor();
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await server.close();
    }
  });

  it('lights the TIMEOUT a timer raised, and only it, when a run times out', async () => {
    const model = createFakeModel();
    const server = await startInspectorServer({ model });
    try {
      const { page, errors } = await openPage(context);
      await page.goto(`${server.url}/inspect/`);
      await page.locator('#chart svg g.node[data-path="streaming.attempt.receiving"]').waitFor();
      // Started with the page live, so that it sees the run stream, then fail: a model that never answers.
      const run = server.orchestrator.startRun({
        agentId: server.agent.id,
        agentName: server.agent.name,
        model,
        input: 'hello',
        limits: { timeoutMs: 2_000 },
      });
      await page.locator(`[data-run-id="${run.runId}"].selected`).waitFor();
      expect(await run.result).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });
      await page.locator('#chart[data-status="failed"] g.node.active[data-path="failed"]').waitFor();
      await page.locator('#log li[data-kind="event"]', { hasText: 'after runTimeout' }).waitFor();
      const taken = await page.locator('#chart g.edge.taken').all();
      expect(await Promise.all(taken.map((edge) => edge.getAttribute('data-edge')))).toEqual([
        'run.streaming:TIMEOUT:0',
      ]);
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await server.close();
    }
  });

  it('lights the last transition of a quick tool round, which the run list sees as one change', async () => {
    const add = tool({
      name: 'add',
      description: 'Adds two numbers',
      parameters: z.object({ a: z.number(), b: z.number() }),
      execute: ({ a, b }) => a + b,
    });
    const model = createFakeModel();
    const server = await startInspectorServer({ model, tools: [add] });
    try {
      const { page, errors } = await openPage(context);
      await page.goto(`${server.url}/inspect/`);
      await page.locator('#chart svg g.node[data-path="streaming.tools"]').waitFor();
      const run = server.agent.run('add 2 and 3', { stream: true });
      await page.locator(`[data-run-id="${run.runId}"].selected`).waitFor();
      await page.locator('#chart g.node.active[data-path="streaming.attempt.requesting"]').waitFor();
      (await model.nextCall()).callTools([{ id: 'call_a', name: 'add', arguments: { a: 2, b: 3 } }]);
      // The round is over once the model is asked again: `tools` came and went within a turn or two.
      await model.nextCall();
      await page.locator('#log li[data-kind="state"] .text', { hasText: /^streaming\.tools$/ }).waitFor();
      await page
        .locator('#log li[data-kind="state"] .text', { hasText: /^streaming\.attempt\.requesting$/ })
        .nth(1)
        .waitFor();
      await page.locator('#chart g.node.active[data-path="streaming.attempt.requesting"]').waitFor();
      const taken = await page.locator('#chart g.edge.taken').all();
      const edges = await Promise.all(taken.map((edge) => edge.getAttribute('data-edge')));
      expect(edges.length).toBeGreaterThan(0);
      for (const edge of edges) expect(edge).toMatch(/^run\.streaming\.tools:/);
      server.orchestrator.cancelRun(run.runId, 'code');
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await server.close();
    }
  });

  it('stops a run’s clock and its cancel while the feed is lost: what it shows is how things were', async () => {
    const model = createFakeModel();
    const server = await startInspectorServer({ model });
    try {
      const run = server.agent.run('hello', { stream: true });
      (await model.nextCall()).emit('Once');
      const { page } = await openPage(context);
      await page.goto(`${server.url}/inspect/#run=${encodeURIComponent(run.runId)}`);
      await page.locator('#connection[data-state="live"]').waitFor();
      await statusIs(page, 'streaming');
      expect(await page.locator('#cancel').isDisabled()).toBe(false);
      server.dropConnections();
      await page.locator('#connection[data-state="reconnecting"]').waitFor();
      expect(await page.locator('#cancel').isDisabled()).toBe(true);
      expect(await page.locator('#cancel').getAttribute('title')).toMatch(/^Not connected/);
      // Back: live again, and the cancel with it.
      await page.locator('#connection[data-state="live"]').waitFor();
      await page.locator('#cancel:not([disabled])').waitFor();
      server.orchestrator.cancelRun(run.runId, 'code');
      await collect(run);
      await page.close();
    } finally {
      await server.close();
    }
  });

  it('keeps the event log following its last line when the live RunContent row comes and goes', async () => {
    const model = createFakeModel();
    const server = await startInspectorServer({ model });
    try {
      const { page, errors } = await openPage(context);
      await page.goto(`${server.url}/inspect/`);
      await page.locator('#connection[data-state="live"]').waitFor();
      // A log a few lines high: it overflows at once.
      await page.evaluate("document.getElementById('log').style.maxHeight = '60px'");
      const run = server.orchestrator.startRun({
        agentId: server.agent.id,
        agentName: server.agent.name,
        model,
        input: 'hello',
      });
      await page.locator(`[data-run-id="${run.runId}"].selected`).waitFor();
      const call = await model.nextCall();
      call.emit('Once');
      await page.locator('#log li[data-kind="state"]', { hasText: 'streaming.attempt.receiving' }).waitFor();
      call.emit(' upon');
      await page.locator('#log li.live').waitFor();
      call.end();
      await page.locator('#log li[data-kind="end"]').waitFor();
      const atBottom: unknown = await page.evaluate(
        "(() => { const log = document.getElementById('log'); " +
          'return log.scrollHeight > log.clientHeight && log.scrollTop + log.clientHeight >= log.scrollHeight - 8; })()',
      );
      expect(atBottom).toBe(true);
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await server.close();
    }
  });

  it('times every log line of a run followed before the server knew it (a link to it, a restart)', async () => {
    const model = createFakeModel();
    const server = await startInspectorServer({ model, idGenerator: () => 'run-from-a-link' });
    try {
      const { page, errors } = await openPage(context);
      await page.goto(`${server.url}/inspect/#run=run-from-a-link`);
      await page.locator('#connection[data-state="live"]').waitFor();
      // Its log lines reach the page before its summary, which tells when it began.
      const run = server.agent.run('hello', { stream: true });
      const call = await model.nextCall();
      call.emit('Once');
      call.end();
      await collect(run);
      await page.locator('#log li[data-kind="end"]').waitFor();
      const times = await page.locator('#log li .t').allTextContents();
      expect(times.length).toBeGreaterThan(3);
      for (const time of times) expect(time).toMatch(/^\+\d+\.\d{3}$/);
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await server.close();
    }
  });

  it('shows runs that started before the page opened, and their final state', async () => {
    const server = await startInspectorServer();
    try {
      const run = server.agent.run('hello', { stream: true });
      server.orchestrator.cancelRun(run.runId, 'code');
      const { page, errors } = await openPage(context);
      await page.goto(`${server.url}/inspect/#run=${encodeURIComponent(run.runId)}`);
      await page.locator(`[data-run-id="${run.runId}"].selected .pill`, { hasText: 'cancelled' }).waitFor();
      await page.locator('#chart g.node.active[data-path="cancelled"]').waitFor();
      await page.locator('#log li[data-kind="end"]', { hasText: 'cancelled (reason: code)' }).waitFor();
      expect(await page.locator('#cancel').isDisabled()).toBe(true);
      // Its last transition is lit too, though its log came before the chart was laid out.
      await page.locator('#chart g.edge.taken').first().waitFor();
      const taken = await page.locator('#chart g.edge.taken').all();
      expect(await Promise.all(taken.map((edge) => edge.getAttribute('data-edge')))).toEqual([
        expect.stringMatching(/:CANCEL:\d+$/),
      ]);
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await server.close();
    }
  });
});
