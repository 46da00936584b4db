// Which models load without asking (docs/deploy.md): the site's own bundles and pinned ones do; a
// model named by a link (`?model=`, or a widget with model-from="link") waits for the visitor's
// consent, names its host and repository, and is marked "third-party model" once loaded. The tests
// marked (no build) need neither the wasm engines nor the bundles; the others need both.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLE, ROOT, launch, newPage, openSite, startServer } from './harness.mjs';

const STRANGER = 'https://huggingface.co/stranger/DermLIP-lookalike/resolve/main/web/';
const CHECKPOINT = 'tests/fixtures/models/tiny-gelu/open_clip_model.safetensors';
const LOAD_TIMEOUT = 180_000;

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launch({ webgpu: false });
});
after(async () => {
  if (browser) await browser.close();
  if (server) server.close();
});

/** A context whose requests to the hub are recorded and answered 404 (nothing leaves the machine). */
async function hubContext() {
  const context = await browser.newContext();
  const hub = [];
  await context.route(/^https:\/\/([a-z0-9-]+\.)?(huggingface|hf)\.co\//, (r) => {
    hub.push(r.request().url());
    return r.fulfill({ status: 404, body: 'not here' });
  });
  return { context, hub };
}

const bodyState = (page) => page.evaluate(() => document.body.dataset.state);

describe('the site', () => {
  test("(no build) a link to a stranger's model asks first, names whose it is, and loads nothing until then", async () => {
    const { context, hub } = await hubContext();
    const page = await newPage(context);
    await page.goto(`${server.url}index.html?nosw&model=${encodeURIComponent(STRANGER)}`);
    await page.waitForFunction(() => document.body.dataset.state === 'consent');
    const box = page.locator('#consent');
    assert.equal(await box.isVisible(), true);
    const text = await box.textContent();
    assert.match(text, /huggingface\.co/);
    assert.match(text, /stranger\/DermLIP-lookalike/);
    assert.match(text, /not this site's/);
    assert.equal(await page.locator('#model-source').isHidden(), true);
    await page.waitForTimeout(500);
    assert.deepEqual(hub, [], 'no request to the hub before the visitor answers');
    assert.equal(await bodyState(page), 'consent');

    // "Use this site's model": the link's model is dropped, the site's own loads instead.
    await page.click('#consent-no');
    await page.waitForFunction(() => document.body.dataset.state !== 'consent');
    assert.equal(new URL(page.url()).searchParams.has('model'), false);
    assert.equal(await page.inputValue('#model-url'), 'www/models/default/');
    assert.equal(await box.isHidden(), true);
    await page.waitForTimeout(500);
    assert.deepEqual(hub, [], 'declining loads nothing from the hub');
    await context.close();
  });

  test('(no build) consenting loads the model from the link (then refused here: the hub is offline in tests)', async () => {
    const { context, hub } = await hubContext();
    const page = await newPage(context);
    await page.goto(`${server.url}index.html?nosw&model=${encodeURIComponent(STRANGER)}`);
    await page.waitForFunction(() => document.body.dataset.state === 'consent');
    await page.click('#consent-yes');
    await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: LOAD_TIMEOUT });
    assert.match(await page.textContent('#model-status'), /manifest\.json: HTTP 404/);
    assert.ok(hub.some((u) => u === `${STRANGER}manifest.json`), `the manifest was requested: ${hub}`);
    const remembered = await page.evaluate(() => JSON.parse(localStorage.getItem('dermlip-model-consent')));
    assert.deepEqual(remembered, [STRANGER]);
    await context.close();
  });

  test('(no build) a non-http(s) model URL is refused without asking', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}index.html?nosw&model=${encodeURIComponent('data:application/json,{}')}`);
    await page.waitForFunction(() => document.body.dataset.state === 'error');
    assert.match(await page.textContent('#model-status'), /only http\(s\) model URLs/);
    assert.equal(await page.locator('#consent').isHidden(), true);
    await context.close();
  });

  test("the site's own bundle loads without asking and is not marked", async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await openSite(page, server.url, `nosw&model=${encodeURIComponent(BUNDLE)}`);
    assert.equal(await page.locator('#model-source').isHidden(), true);
    assert.equal(await page.locator('#consent').isHidden(), true);
    await context.close();
  });

  test('an accepted third-party model is marked once loaded, and a reload does not ask again', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}index.html?nosw&model=${encodeURIComponent(CHECKPOINT)}`);
    await page.waitForFunction(() => document.body.dataset.state === 'consent');
    assert.match(await page.textContent('#consent'), /tests\/fixtures\/models\/tiny-gelu/);
    await page.click('#consent-yes');
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout: LOAD_TIMEOUT });
    assert.equal(await bodyState(page), 'ready', await page.textContent('#model-status'));
    const note = page.locator('#model-source');
    assert.equal(await note.isVisible(), true);
    const host = new URL(server.url).host;
    assert.match(await note.textContent(), new RegExp(`^Third-party model: ${host.replace(/\./g, '\\.')}/tests/fixtures/models/tiny-gelu`));
    const info = await openSite(page, server.url, `nosw&model=${encodeURIComponent(CHECKPOINT)}`);
    assert.equal(info.labelSets, null);
    assert.equal(await note.isVisible(), true, 'still marked after the reload');
    await context.close();
  });

  test('a pinned bundle loads only with the manifest sha256 it is pinned to', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}pkg/manifest.json`);
    const pin = createHash('sha256').update(readFileSync(join(ROOT, BUNDLE, 'manifest.json'))).digest('hex');
    const load = (manifestSha256) => page.evaluate(async ([bundle, manifestSha256]) => {
      const { DermLIP } = await import('/www/dermlip.js');
      try {
        (await DermLIP.load(`/${bundle}`, { backend: 'cpu', manifestSha256 })).dispose();
        return null;
      } catch (e) {
        return e.message;
      }
    }, [BUNDLE, manifestSha256]);
    assert.match(await load('0'.repeat(64)), /manifest\.json is not the pinned one/);
    assert.equal(await load(pin), null);
    await context.close();
  });
});

describe('the widget', () => {
  const page = (body) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title>
<script type="module" src="/www/dermlip-widget.js"></script></head><body>${body.replaceAll('<dermlip-classifier ', '<dermlip-classifier reveal="auto" loading="eager" ')}</body></html>`;

  async function open(context, name, html) {
    const url = `${server.url}__consent/${name}`;
    await context.route(url, (r) => r.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html }));
    const p = await newPage(context);
    await p.goto(url);
    return p;
  }

  test('(no build) model-from="link": a third-party model waits for consent inside the widget', async () => {
    const { context, hub } = await hubContext();
    const p = await open(context, 'link.html', page(`<dermlip-classifier id="w" model="${STRANGER}" model-from="link"></dermlip-classifier>`));
    const consent = p.locator('#w').locator('[part~="consent"]');
    await consent.waitFor({ state: 'visible' });
    assert.match(await consent.textContent(), /huggingface\.co.*stranger\/DermLIP-lookalike/);
    await p.waitForTimeout(500);
    assert.deepEqual(hub, [], 'nothing requested before consent');
    assert.equal(await p.locator('#w').locator('[part~="source"]').isHidden(), true);
    await p.locator('#w').locator('[part~="consent-button"]').click();
    await p.waitForFunction(() => document.getElementById('w').shadowRoot.querySelector('[part~="error"]').textContent.includes('404'), null, { timeout: LOAD_TIMEOUT });
    assert.ok(hub.includes(`${STRANGER}manifest.json`), 'loaded after consent');
    assert.equal(await consent.isHidden(), true);
    await context.close();
  });

  test('(no build) a model the page itself names loads without asking', async () => {
    const { context, hub } = await hubContext();
    const p = await open(context, 'page.html', page(`<dermlip-classifier id="w" model="${STRANGER}"></dermlip-classifier>`));
    await p.waitForFunction(() => document.getElementById('w').shadowRoot.querySelector('[part~="error"]').textContent.includes('404'), null, { timeout: LOAD_TIMEOUT });
    assert.ok(hub.includes(`${STRANGER}manifest.json`));
    assert.equal(await p.locator('#w').locator('[part~="consent"]').isHidden(), true);
    await context.close();
  });

  test('a third-party model is marked in the widget once loaded; its own model is not', async () => {
    const context = await browser.newContext();
    const p = await open(context, 'marked.html', page(
      `<dermlip-classifier id="a" model="/${CHECKPOINT}" backend="cpu"></dermlip-classifier><dermlip-classifier id="b" backend="cpu"></dermlip-classifier>`));
    await p.waitForFunction(() => ['a', 'b'].every((id) => document.getElementById(id).info), null, { timeout: LOAD_TIMEOUT });
    const source = (id) => p.locator(`#${id}`).locator('[part~="source"]');
    assert.equal(await source('a').isVisible(), true);
    assert.match(await source('a').textContent(), /^Third-party model: .*\/tests\/fixtures\/models\/tiny-gelu$/);
    assert.equal(await source('b').isHidden(), true);
    await context.close();
  });
});
