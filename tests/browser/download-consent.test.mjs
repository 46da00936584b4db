// Consent before bytes (issue 16): the site and the widget show the model's size (from its
// manifest) and download it only on a click; the widget's `loading="lazy|eager"` and
// `reveal="interaction|auto"` (as <model-viewer> names them) choose when; Save-Data is honoured
// (never a download by itself); a model already in the Cache API loads without asking. Every
// request of the browser context is recorded: before the click none may be for a model file (any
// file the manifest lists) or a wasm engine.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLE, ROOT, launch, newPage, startServer } from './harness.mjs';
import { formatBytes } from '../../www/model-info.js';

const LOAD_TIMEOUT = 180_000;
const IMAGE = 'tests/fixtures/images/astronaut_512_q90_420.jpg';

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

const MANIFEST = JSON.parse(readFileSync(join(ROOT, BUNDLE, 'manifest.json'), 'utf8'));
const MODEL_FILES = MANIFEST.files.map((f) => `/${BUNDLE}${f.path}`);
const FIRST_BYTES = MANIFEST.files.filter((f) => !['text-tower', 'tokenizer'].includes(f.role)).reduce((n, f) => n + f.bytes, 0);
const mb = formatBytes; // the page's own formatting (632 kB, 90.1 MB)

/** A context whose requests (paths) are recorded; `saveData`: navigator.connection.saveData is true. */
async function recordedContext({ saveData = false } = {}) {
  const context = await browser.newContext();
  const paths = [];
  context.on('request', (r) => paths.push(new URL(r.url()).pathname));
  if (saveData) {
    await context.addInitScript(() => {
      const connection = { saveData: true, effectiveType: '4g', downlink: 10, addEventListener() {}, removeEventListener() {} };
      Object.defineProperty(Navigator.prototype, 'connection', { get: () => connection, configurable: true });
    });
  }
  return { context, paths };
}

/** The model and engine bytes among the recorded requests. */
const modelBytes = (paths) => paths.filter((p) => MODEL_FILES.includes(p) || p.endsWith('.wasm') || /^\/pkg\/dermlip_.*\.js$/.test(p));

const state = (page) => page.evaluate(() => document.body.dataset.state);

describe('the site', () => {
  test('shows the size, requests no model or engine byte before the click; progress after it; a second visit loads from the cache unasked', async () => {
    const { context, paths } = await recordedContext();
    const page = await newPage(context);
    await page.goto(`${server.url}index.html?nosw`);
    await page.waitForFunction(() => document.body.dataset.state === 'ask');
    assert.match(await page.textContent('#download-text'), new RegExp(`^The model is ${mb(FIRST_BYTES).replace('.', '\\.')} `));
    assert.equal(await page.textContent('#download-button'), `Download the model (${mb(FIRST_BYTES)})`);
    assert.equal(await page.locator('#save-data-note').isHidden(), true);
    await page.waitForTimeout(1000);
    assert.deepEqual(modelBytes(paths), [], 'no model or engine byte before the click');
    assert.ok(paths.includes(`/${BUNDLE}manifest.json`), 'only the manifest, for the size');
    assert.equal(await state(page), 'ask');

    await page.click('#download-button');
    await page.waitForFunction(() => document.querySelectorAll('#progress progress').length > 0, null, { timeout: LOAD_TIMEOUT });
    assert.equal(await page.locator('#download').isHidden(), true);
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout: LOAD_TIMEOUT });
    assert.equal(await state(page), 'ready', await page.textContent('#model-status'));
    for (const f of MODEL_FILES.filter((p) => !/text\.safetensors$/.test(p))) assert.ok(paths.includes(f), `${f} downloaded after the click`);
    assert.ok(paths.some((p) => p.endsWith('.wasm')), 'the engine after the click');

    // Second visit: cached, so no question and nothing downloaded.
    paths.length = 0;
    await page.goto(`${server.url}index.html?nosw`);
    await page.waitForFunction(() => ['ready', 'error', 'ask'].includes(document.body.dataset.state), null, { timeout: LOAD_TIMEOUT });
    assert.equal(await state(page), 'ready', 'loaded without a click');
    assert.equal(await page.evaluate(() => window.dermlipApp.state.model.info.bytesDownloaded), 0);
    assert.deepEqual(paths.filter((p) => MODEL_FILES.includes(p) && !p.endsWith('manifest.json')), []);
    await context.close();
  });

  test('Save-Data: still asks, and says why', async () => {
    const { context, paths } = await recordedContext({ saveData: true });
    const page = await newPage(context);
    await page.goto(`${server.url}index.html?nosw`);
    await page.waitForFunction(() => document.body.dataset.state === 'ask');
    assert.equal(await page.evaluate(() => navigator.connection.saveData), true);
    assert.equal(await page.locator('#save-data-note').isVisible(), true);
    await page.waitForTimeout(1000);
    assert.deepEqual(modelBytes(paths), []);
    await context.close();
  });
});

describe('the widget', () => {
  const html = (body) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title>
<script type="module" src="/www/dermlip-widget.js"></script></head><body>${body}</body></html>`;
  const part = (p, id, name) => p.locator(`#${id}`).locator(`[part~="${name}"]`);

  async function open(context, name, body) {
    const url = `${server.url}__bytes/${name}`;
    await context.route(url, (r) => r.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html(body) }));
    const p = await newPage(context);
    await p.addInitScript(() => {
      const log = [];
      Object.defineProperty(window, '__events', { value: log });
      for (const type of ['dermlip-ready', 'dermlip-progress', 'dermlip-result', 'dermlip-error']) {
        document.addEventListener(type, (e) => log.push({ type, id: e.target.id }));
      }
    });
    await p.goto(url);
    return p;
  }
  const count = (p, type) => p.evaluate((type) => window.__events.filter((e) => e.type === type).length, type);

  test('default (loading="lazy", reveal="interaction"): looked up only near the viewport, downloaded only on a click; progress after it; cached next time', async () => {
    const { context, paths } = await recordedContext();
    const body = `<div style="height:4000px">lecture text</div><dermlip-classifier id="w" backend="cpu" src="/${IMAGE}"></dermlip-classifier>`;
    const p = await open(context, 'lazy.html', body);
    await p.waitForTimeout(1000);
    assert.ok(!paths.includes(`/${BUNDLE}manifest.json`), 'out of view: not even the manifest');
    await p.locator('#w').scrollIntoViewIfNeeded();
    await part(p, 'w', 'load-button').waitFor({ state: 'visible' });
    assert.equal(await part(p, 'w', 'load-button').textContent(), `Download the model (${mb(FIRST_BYTES)})`);
    assert.match(await part(p, 'w', 'ask').textContent(), /only when you ask/);
    await p.waitForTimeout(1000);
    assert.deepEqual(modelBytes(paths), [], 'no model or engine byte before the click');
    assert.equal(await count(p, 'dermlip-progress'), 0);

    await part(p, 'w', 'load-button').click();
    await p.waitForFunction(() => window.__events.some((e) => e.type === 'dermlip-progress'), null, { timeout: LOAD_TIMEOUT });
    await p.waitForFunction(() => window.__events.some((e) => e.type === 'dermlip-result' || e.type === 'dermlip-error'), null, { timeout: LOAD_TIMEOUT });
    assert.ok(await count(p, 'dermlip-result') >= 1);
    assert.equal(await part(p, 'w', 'ask').isHidden(), true);

    // Second visit: the model is in the Cache API, so it loads without a click.
    paths.length = 0;
    await p.reload();
    await p.locator('#w').scrollIntoViewIfNeeded();
    await p.waitForFunction(() => window.__events.some((e) => e.type === 'dermlip-result' || e.type === 'dermlip-error'), null, { timeout: LOAD_TIMEOUT });
    assert.ok(await count(p, 'dermlip-result') >= 1, 'classified without a click');
    assert.equal(await p.evaluate(() => document.getElementById('w').info.bytesDownloaded), 0);
    await context.close();
  });

  test('reveal="auto" loading="eager" downloads at once (eager stays available)', async () => {
    const { context, paths } = await recordedContext();
    const p = await open(context, 'eager.html', `<div style="height:4000px"></div><dermlip-classifier id="w" backend="cpu" reveal="auto" loading="eager"></dermlip-classifier>`);
    await p.waitForFunction(() => document.getElementById('w').info, null, { timeout: LOAD_TIMEOUT });
    assert.ok(paths.includes(`/${BUNDLE}image.safetensors`));
    assert.equal(await part(p, 'w', 'ask').isHidden(), true);
    await context.close();
  });

  test('Save-Data: reveal="auto" loading="eager" still waits for a click', async () => {
    const { context, paths } = await recordedContext({ saveData: true });
    const p = await open(context, 'save-data.html', '<dermlip-classifier id="w" backend="cpu" reveal="auto" loading="eager"></dermlip-classifier>');
    await part(p, 'w', 'load-button').waitFor({ state: 'visible' });
    assert.match(await part(p, 'w', 'ask').textContent(), /save data/);
    await p.waitForTimeout(1500);
    assert.deepEqual(modelBytes(paths), [], 'nothing downloaded by itself');
    await part(p, 'w', 'load-button').click();
    await p.waitForFunction(() => document.getElementById('w').info, null, { timeout: LOAD_TIMEOUT });
    await context.close();
  });

  test('one click downloads the shared model for every widget that uses it', async () => {
    const { context } = await recordedContext();
    const p = await open(context, 'two.html',
      '<dermlip-classifier id="a" backend="cpu"></dermlip-classifier><div style="height:4000px"></div><dermlip-classifier id="b" backend="cpu"></dermlip-classifier>');
    await part(p, 'a', 'load-button').click();
    await p.waitForFunction(() => ['a', 'b'].every((id) => document.getElementById(id).info), null, { timeout: LOAD_TIMEOUT });
    await context.close();
  });

  test('a wrong loading or reveal value is named', async () => {
    const { context } = await recordedContext();
    const p = await open(context, 'bad.html', '<dermlip-classifier id="w" reveal="sometimes"></dermlip-classifier>');
    await p.waitForFunction(() => window.__events.some((e) => e.type === 'dermlip-error'));
    assert.match(await part(p, 'w', 'error').textContent(), /Unknown reveal "sometimes"\. Use interaction or auto\./);
    await context.close();
  });
});
