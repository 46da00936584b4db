// Honest model (issue 16): the bundle's manifest says what it serves (`model_card`, written by
// `dermlip convert --fixture` / `--model-card FILE`, docs/web-bundle.md). A test fixture gets a
// persistent "demo model" banner on the site and in the widget; a bundle marked real gets none, and
// the model card page is reachable from the page. The "real" and "old" bundles are copies of the
// fixture bundle with the manifest changed, served by Playwright routes under www/models/ (so they
// count as the site's own bundles).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLE, ROOT, launch, newPage, openSite, startServer } from './harness.mjs';

const LOAD_TIMEOUT = 180_000;
const BANNER = /Demo model — random weights — results are meaningless/;
const REAL_CARD = {
  name: 'DermLIP test copy (marked real)',
  source: 'a copy of the fixture bundle, made by model-card.test.mjs',
  licence: 'CC BY-NC 4.0',
  weights: 'real',
  accuracy: [{ benchmark: 'HAM10000 (7 classes), zero-shot', label_set: 'ham7', metric: 'accuracy', value: 0.682, reference: 'Derm1M (ICCV 2025), poster "Result I"' }],
};

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

const manifest = () => JSON.parse(readFileSync(join(ROOT, BUNDLE, 'manifest.json'), 'utf8'));

/** Serves the fixture bundle at www/models/NAME/ with its manifest changed by `edit`. */
async function copyBundle(context, name, edit) {
  const m = manifest();
  edit(m);
  const text = JSON.stringify(m, null, 2);
  await context.route(`${server.url}www/models/${name}/**`, (r) => {
    const file = new URL(r.request().url()).pathname.split('/').pop();
    if (file === 'manifest.json') return r.fulfill({ status: 200, contentType: 'application/json', body: text });
    return r.fulfill({ status: 200, contentType: 'application/octet-stream', body: readFileSync(join(ROOT, BUNDLE, file)) });
  });
  return `www/models/${name}/`;
}

const widgetPage = (body) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title>
<script type="module" src="/www/dermlip-widget.js"></script></head><body>${body}</body></html>`;

async function openWidget(context, name, html) {
  const url = `${server.url}__card/${name}`;
  await context.route(url, (r) => r.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html }));
  const p = await newPage(context);
  await p.goto(url);
  return p;
}

describe('the model card in the manifest', () => {
  test('the fixture bundle says it is a fixture (dermlip convert --fixture)', () => {
    const card = manifest().model_card;
    assert.equal(card.weights, 'fixture');
    assert.match(card.name, /tiny-gelu/);
  });
});

describe('the site', () => {
  test('a fixture bundle: the demo-model banner shows before the download and stays after it', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}index.html?nosw`);
    await page.waitForFunction(() => document.body.dataset.state === 'ask');
    const banner = page.locator('#model-banner');
    assert.equal(await banner.isVisible(), true);
    assert.match(await banner.textContent(), BANNER);
    assert.equal(await page.evaluate(() => document.body.dataset.weights), 'fixture');
    await openSite(page, server.url, 'nosw');
    assert.equal(await banner.isVisible(), true, 'still there once the model is ready');
    assert.match(await banner.textContent(), BANNER);
    assert.match(await page.textContent('#model-about'), /tiny-gelu \(test fixture\)/);
    // The card page says the same.
    await page.click('#model-banner a.model-card-link');
    await page.waitForFunction(() => document.body.dataset.card, null, { timeout: LOAD_TIMEOUT });
    assert.equal(await page.evaluate(() => document.body.dataset.card), 'fixture');
    assert.match(await page.textContent('#model-banner'), BANNER);
    await context.close();
  });

  test('a bundle marked real: no banner; the model card is reachable and tells use, accuracy, limits, licence', async () => {
    const context = await browser.newContext();
    const bundle = await copyBundle(context, 'real-copy', (m) => {
      m.model_card = REAL_CARD;
    });
    const page = await newPage(context);
    const info = await openSite(page, server.url, `nosw&model=${encodeURIComponent(bundle)}`);
    assert.deepEqual(info.modelCard, REAL_CARD, 'the worker reports the card');
    assert.equal(await page.evaluate(() => document.body.dataset.weights), 'real');
    assert.equal(await page.locator('#model-banner').isHidden(), true);
    assert.match(await page.textContent('#model-about'), /DermLIP test copy \(marked real\).*CC BY-NC 4\.0/);
    await page.click('#model-about a.model-card-link');
    await page.waitForURL(/www\/model-card\.html\?model=/);
    await page.waitForFunction(() => document.body.dataset.card, null, { timeout: LOAD_TIMEOUT });
    assert.equal(await page.evaluate(() => document.body.dataset.card), 'real');
    assert.equal(await page.locator('#model-banner').isHidden(), true);
    assert.equal(await page.textContent('#card-name'), REAL_CARD.name);
    assert.equal(await page.textContent('#card-licence'), 'CC BY-NC 4.0');
    assert.match(await page.textContent('#card-accuracy'), /HAM10000.*0\.6820/);
    const text = await page.textContent('main');
    assert.match(text, /Intended use/);
    assert.match(text, /Not a diagnosis/);
    assert.match(text, /Skin tone/);
    assert.match(text, /Dermoscopy vs clinical photos/);
    assert.match(text, /CC BY-NC 4\.0/);
    // The paper's figures, as docs: HAM10000 and PAD-UFES-20 for both released checkpoints.
    const paper = await page.textContent('#paper-accuracy');
    for (const v of ['0.6820', '0.6274', '0.6074', '0.6247']) assert.ok(paper.includes(v), v);
    await context.close();
  });

  test('an old bundle without a model card still loads, shown as unverified', async () => {
    const context = await browser.newContext();
    const bundle = await copyBundle(context, 'old-copy', (m) => {
      delete m.model_card;
    });
    const page = await newPage(context);
    const info = await openSite(page, server.url, `nosw&model=${encodeURIComponent(bundle)}`);
    assert.equal(info.modelCard, null);
    assert.equal(await page.evaluate(() => document.body.dataset.weights), 'unknown');
    assert.match(await page.textContent('#model-banner'), /Unverified model/);
    await context.close();
  });
});

describe('the widget', () => {
  const part = (p, id, name) => p.locator(`#${id}`).locator(`[part~="${name}"]`);

  test('a fixture bundle: the banner shows before and after the download', async () => {
    const context = await browser.newContext();
    const p = await openWidget(context, 'fixture.html', widgetPage('<dermlip-classifier id="w" backend="cpu"></dermlip-classifier>'));
    await part(p, 'w', 'load-button').waitFor({ state: 'visible' });
    assert.equal(await part(p, 'w', 'model-banner').isVisible(), true);
    assert.match(await part(p, 'w', 'model-banner').textContent(), BANNER);
    await part(p, 'w', 'load-button').click();
    await p.waitForFunction(() => document.getElementById('w').info, null, { timeout: LOAD_TIMEOUT });
    assert.equal(await part(p, 'w', 'model-banner').isVisible(), true);
    assert.match(await part(p, 'w', 'model-card-link').getAttribute('href'), /\/www\/model-card\.html\?model=/);
    await context.close();
  });

  test('in German too', async () => {
    const context = await browser.newContext();
    const p = await openWidget(context, 'de.html', widgetPage('<dermlip-classifier id="w" lang="de" backend="cpu"></dermlip-classifier>'));
    await part(p, 'w', 'load-button').waitFor({ state: 'visible' });
    assert.match(await part(p, 'w', 'model-banner').textContent(), /Demo-Modell/);
    assert.match(await part(p, 'w', 'load-button').textContent(), /Modell herunterladen \(\d/);
    await context.close();
  });

  test('a bundle marked real: no banner, the model card link is there', async () => {
    const context = await browser.newContext();
    const bundle = await copyBundle(context, 'real-copy', (m) => {
      m.model_card = REAL_CARD;
    });
    const p = await openWidget(context, 'real.html', widgetPage(`<dermlip-classifier id="w" model="/${bundle}" backend="cpu" reveal="auto" loading="eager"></dermlip-classifier>`));
    await p.waitForFunction(() => document.getElementById('w').info, null, { timeout: LOAD_TIMEOUT });
    assert.equal(await part(p, 'w', 'model-banner').isHidden(), true);
    const href = await part(p, 'w', 'model-card-link').getAttribute('href');
    const card = await newPage(context);
    await card.goto(href);
    await card.waitForFunction(() => document.body.dataset.card, null, { timeout: LOAD_TIMEOUT });
    assert.equal(await card.evaluate(() => document.body.dataset.card), 'real');
    assert.equal(await card.textContent('#card-name'), REAL_CARD.name);
    await context.close();
  });
});
