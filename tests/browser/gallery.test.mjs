// Similar cases (issue 16): a teacher's gallery (`dermlip index --thumbnails`) searched in the
// browser equals `dermlip search` on the same files; the thumbnails are all fetched before any
// photo is compared; a gallery made by another model is refused; the widget shows them too.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, fixtureBytes, launch, newPage, openSite, startServer } from './harness.mjs';

const GALLERY = 'www/galleries/example/gallery.dlemb';
const IMAGE = 'images/chelsea_exif6_300x200.jpg';
const BIN = join(process.env.CARGO_TARGET_DIR || join(process.env.HOME, '.cache/dermlip/target'), 'debug/dermlip');

function nativeSearch(image, k, model = 'tiny-gelu') {
  const out = execFileSync(BIN, ['search', GALLERY, '--image', join('tests/fixtures', image), '--kind', 'image', '--top-k', String(k),
    '--model', join('tests/fixtures/models', model), '--json'], { cwd: ROOT, encoding: 'utf8' });
  return JSON.parse(out);
}

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (server) server.close();
});

async function choose(page, rel) {
  await page.setInputFiles('#file', { name: rel.split('/').pop(), mimeType: 'image/jpeg', buffer: Buffer.from(fixtureBytes(rel)) });
  await page.waitForFunction(() => document.querySelector('#results ol.predictions') && document.body.dataset.busy === 'false');
}

describe('similar cases on the site', () => {
  test('the example gallery gives the CLI\'s cases, in order, with captions and prefetched thumbnails', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await openSite(page, server.url, 'nosw');
    await page.click('#gallery-example');
    await page.waitForFunction(() => /Gallery loaded: 6 cases/.test(document.getElementById('gallery-status').textContent));
    assert.match(await page.textContent('#gallery-status'), /\(6 pictures\)/);
    // From here on, classifying a photo requests nothing: not the thumbnails, not anything.
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    await choose(page, IMAGE);
    const r = await page.evaluate(() => window.dermlipApp.state.result);
    const native = nativeSearch(IMAGE, 4);
    assert.deepEqual(r.similar.map((h) => h.id), native.map((h) => h.id));
    for (const [i, h] of native.entries()) {
      assert.ok(Math.abs(r.similar[i].score - h.score) < 1e-4, `${h.id}: ${r.similar[i].score} vs ${h.score}`);
      assert.equal(r.similar[i].caption, h.caption);
      assert.equal(r.similar[i].thumbnailUrl, new URL(h.thumbnail, `${server.url}${GALLERY}`).href);
    }
    const shown = await page.evaluate(() => [...document.querySelectorAll('#similar li')].map((li) => ({
      caption: li.querySelector('.caption').textContent,
      src: li.querySelector('img')?.getAttribute('src') || '',
      loaded: li.querySelector('img')?.naturalWidth > 0,
    })));
    assert.deepEqual(shown.map((s) => s.caption), native.map((h) => h.caption));
    for (const s of shown) assert.ok(s.src.startsWith('blob:') && s.loaded, JSON.stringify(s));
    assert.deepEqual(requests.filter((u) => !u.startsWith('blob:')), [], 'no request while classifying');
    await context.close();
  });

  test('a gallery made by another model is refused with a clear message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dermlip-other-gallery-'));
    try {
      const out = join(dir, 'g.dlemb');
      execFileSync(BIN, ['index', 'tests/fixtures/images/coffee_600x400_progressive.jpg', '--model', 'tests/fixtures/models/tiny-quickgelu', '--out', out], { cwd: ROOT });
      const context = await browser.newContext();
      const page = await newPage(context);
      await openSite(page, server.url, 'nosw');
      const err = await page.evaluate(async (bytes) => {
        try {
          await window.dermlipApp.state.model.loadGallery(new Uint8Array(bytes).buffer);
          return 'loaded';
        } catch (e) {
          return e.message;
        }
      }, [...readFileSync(out)]);
      assert.match(err, /made by another model \(tiny-quickgelu/);
      // Asking for similar cases with no gallery loaded is an error, not an empty answer.
      const noGallery = await page.evaluate(async (bytes) => {
        try {
          await window.dermlipApp.state.model.classify(new Uint8Array(bytes), 'pad6', { similar: 3 });
          return 'answered';
        } catch (e) {
          return e.message;
        }
      }, [...fixtureBytes(IMAGE)]);
      assert.match(noGallery, /similar cases need a gallery/);
      await context.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('similar cases in the widget', () => {
  test('the gallery attribute shows the similar cases with their pictures', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}www/embed-example.html?nosw`);
    await page.evaluate((src) => {
      document.body.insertAdjacentHTML('beforeend', `<dermlip-classifier id="g" loading="eager" reveal="auto" gallery="/www/galleries/example/gallery.dlemb" similar="2" src="${src}"></dermlip-classifier>`);
    }, `/tests/fixtures/${IMAGE}`);
    const result = await page.evaluate(() => new Promise((resolve, reject) => {
      const w = document.getElementById('g');
      w.addEventListener('dermlip-result', (e) => resolve(e.detail), { once: true });
      w.addEventListener('dermlip-error', (e) => reject(new Error(e.detail.message)), { once: true });
    }));
    const native = nativeSearch(IMAGE, 2);
    assert.deepEqual(result.similar.map((h) => h.id), native.map((h) => h.id));
    await page.waitForFunction(() => document.getElementById('g').shadowRoot.querySelectorAll('[part~="similar"] li img').length === 2);
    const srcs = await page.evaluate(() => [...document.getElementById('g').shadowRoot.querySelectorAll('[part~="similar"] li img')].map((i) => i.src));
    for (const s of srcs) assert.ok(s.startsWith('blob:'), s);
    await context.close();
  });

  test('a bad similar attribute is a bad attribute', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}www/embed-example.html?nosw`);
    const err = await page.evaluate(() => new Promise((resolve) => {
      document.body.insertAdjacentHTML('beforeend', '<dermlip-classifier id="b" loading="eager" reveal="auto" gallery="/www/galleries/example/gallery.dlemb" similar="99"></dermlip-classifier>');
      document.getElementById('b').addEventListener('dermlip-error', (e) => resolve(e.detail), { once: true });
    }));
    assert.equal(err.attribute, 'similar');
    await context.close();
  });
});
