/**
 * The /docs page in a real browser (Debian's chromium, driven by playwright-core): it loads from the
 * server alone, renders the document and calls the API, with no console error. Every wait is on a
 * page condition.
 */
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS, hasChromium, openPage, tempProfile } from '../support/chromium.js';
import { serveFake } from '../support/app.js';

let context: BrowserContext;
let removeProfile = () => {};

const title = hasChromium
  ? 'the /docs page in chromium'
  : `the /docs page in chromium (SKIPPED: ${CHROMIUM} is missing; install it with: apt-get install -y chromium)`;

describe.skipIf(!hasChromium)(title, () => {
  beforeAll(async () => {
    const profile = tempProfile();
    removeProfile = profile.remove;
    context = await chromium.launchPersistentContext(profile.dir, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
    });
  });
  afterAll(async () => {
    await context?.close();
    removeProfile();
  });

  it('renders every operation from the server alone, with no console error, and runs one', async () => {
    // With a key: the page and the document stay open.
    const { url } = await serveFake({ securityKey: 'sesame' });
    const { page, errors, requests } = await openPage(context);
    try {
      const response = await page.goto(`${url}/docs`);
      expect(response?.status()).toBe(200);
      // Swagger UI names each operation's block after its tag and operation id.
      await page.locator('#operations-Agents-cancel_agent_run').waitFor();
      for (const id of ['create_agent_run', 'get_agent_run', 'list_agent_runs', 'stream_agent_run_events']) {
        await page.locator(`#operations-Agents-${id}`).waitFor();
      }
      await page.locator('button.authorize').waitFor();

      // Try GET /health from the page.
      await page.locator('#operations-Core-health_check .opblock-summary').click();
      await page.locator('#operations-Core-health_check button.try-out__btn').click();
      await page.locator('#operations-Core-health_check button.execute').click();
      await page
        .locator('#operations-Core-health_check .live-responses-table .response-col_status', {
          hasText: '200',
        })
        .waitFor();

      expect(errors).toEqual([]);
      const origins = new Set(requests.map((request) => new URL(request).origin));
      expect(origins).toEqual(new Set([url]));
    } finally {
      await page.close();
    }
  });

  it("starts a run from the page with the values the page fills in: each content type's", async () => {
    const { url, model } = await serveFake();
    const { page, errors } = await openPage(context);
    const sent: string[] = [];
    page.on('request', (request) => {
      if (request.method() === 'POST') sent.push(request.postData() ?? '');
    });
    try {
      await page.goto(`${url}/docs`);
      const op = page.locator('#operations-Agents-create_agent_run');
      await op.locator('.opblock-summary').click();
      await op.locator('button.try-out__btn').click();
      await op.locator('tr[data-param-name="agent_id"] input').fill('story-writer-agent');
      for (const type of ['multipart/form-data', 'application/x-www-form-urlencoded', 'application/json']) {
        await op.locator('.opblock-section-request-body .content-type-wrapper select').selectOption(type);
        if (type === 'application/json') {
          const body = op.locator('.body-param textarea');
          const json = JSON.parse(await body.inputValue()) as Record<string, unknown>;
          await body.fill(JSON.stringify({ ...json, message: 'Hello' }));
        } else {
          await op.locator('.opblock-section-request-body input[placeholder="message"]').fill('Hello');
        }
        await op.locator('button.execute').click();
        // The run starts (the model is asked), or the server refuses what the page sent.
        const status = op.locator('.live-responses-table tbody .response-col_status').last();
        const started = await Promise.race([
          model.nextCall(),
          status.waitFor().then(async () => {
            const body = await op
              .locator('.live-responses-table tbody .response-col_description')
              .last()
              .innerText();
            throw new Error(`${type}: ${await status.innerText()} for ${sent.at(-1)}: ${body}`);
          }),
        ]);
        started.emit('Hi');
        started.end();
        await op.locator('.live-responses-table .response-col_status', { hasText: '200' }).waitFor();
        await op.locator('button.btn-clear').click();
      }
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);

  it('sends /docs/ to /docs, where its relative URLs resolve', async () => {
    const { url } = await serveFake();
    const response = await fetch(`${url}/docs/`, { redirect: 'manual' });
    expect(response.status).toBe(301);
    expect(new URL(response.headers.get('location')!, `${url}/docs/`).href).toBe(`${url}/docs`);
  });
});
