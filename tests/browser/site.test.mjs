// The website in Debian's Chromium (headless, WebGPU on SwiftShader), served from localhost with
// the committed fixture model converted to a web bundle. Reference numbers: open_clip's (the
// fixture JSON written by tests/reference/make_fixtures.py) and the native CLI's.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import {
  BUNDLE, ROOT, artifactPath, classifyInPage, fixtureBytes, launch, nativeClassify, newPage, openSite, reference, startServer,
} from './harness.mjs';

const ref = reference('tiny-gelu');
const REF_IMAGES = ref.images.slice(0, 12);
const HAM_IMAGES = ['images/astronaut_512_q90_420.jpg', 'images/coffee_600x400_progressive.jpg', 'images/chelsea_palette_240x160.gif'];

let server;
before(async () => {
  server = await startServer();
});
after(() => server && server.close());

function maxDiff(a, b) {
  assert.equal(a.length, b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i])));
}

async function checkAgainstReferences(page) {
  const zs = ref.zero_shot;
  let worst = 0;
  for (const [i, img] of REF_IMAGES.entries()) {
    const r = await classifyInPage(page, fixtureBytes(img.file), zs.classnames, { topK: 3, templates: zs.templates });
    assert.equal(r.labelEmbeddings, 'text-tower');
    worst = Math.max(worst, maxDiff(r.probabilities, zs.probs[i]));
    assert.equal(r.predictions[0].index, zs.top1[i], img.file);
  }
  assert.ok(worst <= 1e-3, `max |Δprob| vs open_clip ${worst}`);

  const native = nativeClassify(HAM_IMAGES, ['--label-set', 'ham7', '--top-k', '7']);
  let worstNative = 0;
  for (const [i, img] of HAM_IMAGES.entries()) {
    const r = await classifyInPage(page, fixtureBytes(img), 'ham7', { topK: 7 });
    assert.equal(r.labelEmbeddings, 'precomputed');
    for (const p of native[i].predictions) worstNative = Math.max(worstNative, Math.abs(r.probabilities[p.index] - p.probability));
  }
  assert.ok(worstNative <= 1e-4, `max |Δprob| vs native CLI ${worstNative}`);
  return { worst, worstNative };
}

/** The paths of every request `context` makes from now on. */
function recordRequests(context) {
  const paths = new Set();
  context.on('request', (r) => paths.add(new URL(r.url()).pathname));
  return paths;
}

/** `DermLIP.load(bundle, options)` in `page`: the error message, or null when it loads. */
async function loadError(page, options, bundle = BUNDLE) {
  return page.evaluate(async ([bundle, opts]) => {
    const { DermLIP } = await import('/www/dermlip.js');
    try {
      (await DermLIP.load(`/${bundle}`, opts)).dispose();
      return null;
    } catch (e) {
      return e.message;
    }
  }, [bundle, options]);
}

describe('WebGPU and CPU paths', () => {
  let browser;
  before(async () => {
    browser = await launch();
  });
  after(() => browser && browser.close());

  test('WebGPU classifies the fixture images as open_clip and the native CLI do', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    const info = await openSite(page, server.url, 'backend=webgpu&nosw');
    assert.equal(info.backend, 'webgpu');
    assert.equal(info.engine, 'webgpu');
    assert.equal(info.precision, 'f32', "precision 'auto' without shader-f16 (SwiftShader has none) computes in f32");
    const d = await checkAgainstReferences(page);
    console.log(`webgpu: max |Δprob| vs open_clip ${d.worst.toExponential(2)}, vs native ${d.worstNative.toExponential(2)}`);
    await context.close();
  });

  test("dermlip's WebGPU kernels (the default) and Burn's give open_clip's embeddings; an unknown kernels name is refused", async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}pkg/manifest.json`);
    const images = REF_IMAGES.slice(0, 2);
    const got = await page.evaluate(
      async ([bundle, files]) => {
        const { DermLIP } = await import('/www/dermlip.js');
        const out = {};
        for (const kernels of ['dermlip', 'burn']) {
          const model = await DermLIP.load(`/${bundle}`, { backend: 'webgpu', kernels });
          out[kernels] = [];
          for (const f of files) out[kernels].push(Array.from(await model.embedImage(new Blob([new Uint8Array(f)]))));
          await model.dispose();
        }
        return out;
      },
      [BUNDLE, images.map((img) => Array.from(fixtureBytes(img.file)))],
    );
    for (const [i, img] of images.entries()) {
      for (const kernels of ['dermlip', 'burn']) {
        const d = maxDiff(got[kernels][i], img.embedding);
        assert.ok(d <= 1e-4, `${img.file}, ${kernels} kernels: max |Δ| vs open_clip ${d}`);
      }
    }
    assert.match(await loadError(page, { backend: 'webgpu', kernels: 'fast' }), /unknown kernels "fast" \(dermlip, burn, linear, attention, layer-norm\)/);
    await context.close();
  });

  test('f16 without shader-f16, an unknown precision and f16 on the CPU are refused with a clear message', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}pkg/manifest.json`);
    assert.match(await loadError(page, { backend: 'webgpu', precision: 'f16' }), /no shader-f16 support; use f32/);
    assert.match(await loadError(page, { backend: 'cpu', precision: 'f64' }), /unknown precision "f64"/);
    assert.match(await loadError(page, { backend: 'cpu', precision: 'f16' }), /f16 needs WebGPU/);
    await context.close();
  });

  test('forced CPU classifies the fixture images as open_clip and the native CLI do', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    const requests = recordRequests(context);
    const info = await openSite(page, server.url, 'backend=cpu&nosw');
    assert.equal(info.backend, 'cpu');
    assert.equal(info.engine, 'cpu');
    assert.ok(requests.has('/pkg/dermlip_cpu_bg.wasm') && !requests.has('/pkg/dermlip_webgpu_bg.wasm'), 'only the CPU engine is downloaded');
    const d = await checkAgainstReferences(page);
    console.log(`cpu: max |Δprob| vs open_clip ${d.worst.toExponential(2)}, vs native ${d.worstNative.toExponential(2)}`);
    await context.close();
  });
});

describe('a model whose output is not finite', () => {
  test('is refused with a clear message instead of becoming probabilities', async () => {
    // The fixture bundle with NaN LayerNorm weights before the projection (sha256 updated).
    const rel = 'www/models/nan-test/';
    const dir = join(ROOT, rel);
    rmSync(dir, { recursive: true, force: true });
    cpSync(join(ROOT, BUNDLE), dir, { recursive: true });
    const file = join(dir, 'image.safetensors');
    const buf = readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    const tensor = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'))['visual.ln_post.weight'];
    assert.equal(tensor.dtype, 'F32');
    for (let o = 8 + n + tensor.data_offsets[0]; o < 8 + n + tensor.data_offsets[1]; o += 4) buf.writeFloatLE(NaN, o);
    writeFileSync(file, buf);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    manifest.files.find((f) => f.path === 'image.safetensors').sha256 = createHash('sha256').update(buf).digest('hex');
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    const browser = await launch();
    try {
      const page = await newPage(await browser.newContext());
      await page.goto(`${server.url}pkg/manifest.json`);
      // The warm-up pass already sees NaN: the load fails, no engine answers with it.
      assert.match(await loadError(page, { backend: 'cpu' }, rel), /non-finite values \(NaN or infinity\)/);
      assert.equal(await loadError(page, { backend: 'cpu' }), null, 'a good model still loads');
    } finally {
      await browser.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('an open_clip checkpoint URL', () => {
  test('loads directly and classifies as open_clip does', async () => {
    const browser = await launch();
    try {
      const page = await newPage(await browser.newContext());
      // A same-origin file outside www/models/ is not the site's own bundle: a link to it asks first
      // (consent.test.mjs); the visitor agrees.
      await page.goto(`${server.url}index.html?model=tests/fixtures/models/tiny-gelu/open_clip_model.safetensors&nosw`);
      await page.waitForFunction(() => document.body.dataset.state === 'consent');
      await page.click('#consent-yes');
      const info = await openSite(page, server.url, 'model=tests/fixtures/models/tiny-gelu/open_clip_model.safetensors&nosw');
      assert.equal(info.labelSets, null, 'no precomputed label sets');
      const zs = ref.zero_shot;
      let worst = 0;
      for (const [i, img] of REF_IMAGES.slice(0, 4).entries()) {
        const r = await classifyInPage(page, fixtureBytes(img.file), zs.classnames, { topK: 1, templates: zs.templates });
        worst = Math.max(worst, maxDiff(r.probabilities, zs.probs[i]));
      }
      assert.ok(worst <= 1e-3, `max |Δprob| vs open_clip ${worst}`);
      const ham = await classifyInPage(page, fixtureBytes(HAM_IMAGES[0]), 'ham7', { topK: 7 });
      assert.equal(ham.labelEmbeddings, 'text-tower');
      const native = nativeClassify([HAM_IMAGES[0]], ['--label-set', 'ham7', '--top-k', '7'])[0];
      for (const p of native.predictions) assert.ok(Math.abs(ham.probabilities[p.index] - p.probability) <= 1e-4);
    } finally {
      await browser.close();
    }
  });
});

describe('the PanDerm + PubMedBERT model', () => {
  test('its bundle classifies as the native CLI does (precomputed and custom labels)', async () => {
    const browser = await launch();
    try {
      const page = await newPage(await browser.newContext());
      const info = await openSite(page, server.url, 'model=www/models/panderm/&backend=webgpu&nosw');
      assert.equal(info.backend, 'webgpu');
      const custom = ['melanoma', 'nevus', 'psoriasis', 'acne'];
      const nativeHam = nativeClassify(HAM_IMAGES, ['--label-set', 'ham7', '--top-k', '7'], 'tiny-panderm');
      const nativeCustom = nativeClassify(HAM_IMAGES, ['--labels', custom.join(','), '--top-k', '4'], 'tiny-panderm');
      let worst = 0;
      for (const [i, img] of HAM_IMAGES.entries()) {
        const ham = await classifyInPage(page, fixtureBytes(img), 'ham7', { topK: 7 });
        assert.equal(ham.labelEmbeddings, 'precomputed');
        for (const p of nativeHam[i].predictions) worst = Math.max(worst, Math.abs(ham.probabilities[p.index] - p.probability));
        const mine = await classifyInPage(page, fixtureBytes(img), custom, { topK: 4 });
        assert.equal(mine.labelEmbeddings, 'text-tower');
        for (const p of nativeCustom[i].predictions) worst = Math.max(worst, Math.abs(mine.probabilities[p.index] - p.probability));
      }
      assert.ok(worst <= 1e-4, `max |Δprob| vs native CLI ${worst}`);
      console.log(`panderm webgpu: max |Δprob| vs native ${worst.toExponential(2)}`);
    } finally {
      await browser.close();
    }
  });
});

describe('with only a software WebGPU adapter', () => {
  test('automatic mode prefers the CPU (SwiftShader is much slower) and says why', async () => {
    const browser = await launch();
    try {
      const context = await browser.newContext();
      const page = await newPage(context);
      const requests = recordRequests(context);
      const info = await openSite(page, server.url, 'nosw');
      assert.equal(info.backend, 'cpu');
      assert.equal(info.engine, 'cpu');
      assert.ok(!requests.has('/pkg/dermlip_webgpu_bg.wasm'), 'the WebGPU engine is not downloaded');
      assert.match(info.fallbackReason, /software/);
      assert.match(await page.textContent('#model-status'), /software/);
    } finally {
      await browser.close();
    }
  });
});

describe('without WebGPU', () => {
  test('automatic mode falls back to the CPU and says so', async () => {
    const browser = await launch({ webgpu: false });
    try {
      const context = await browser.newContext();
      const page = await newPage(context);
      const requests = recordRequests(context);
      const info = await openSite(page, server.url, 'nosw');
      assert.equal(info.backend, 'cpu');
      assert.equal(info.engine, 'cpu');
      assert.ok(!requests.has('/pkg/dermlip_webgpu_bg.wasm'), 'the WebGPU engine is not downloaded');
      assert.ok(info.fallbackReason, 'a reason is reported');
      assert.match(await page.textContent('#model-status'), /CPU/);
      const r = await classifyInPage(page, fixtureBytes(HAM_IMAGES[0]), 'ham7', { topK: 3 });
      assert.equal(r.predictions.length, 3);
    } finally {
      await browser.close();
    }
  });
});

describe('the site', () => {
  let browser;
  before(async () => {
    browser = await launch();
  });
  after(() => browser && browser.close());

  test('after loading, classifying makes no network request', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await openSite(page, server.url, 'nosw');
    const requests = [];
    context.on('request', (r) => requests.push(r.url()));
    for (const img of HAM_IMAGES) {
      await page.setInputFiles('#file', { name: img.split('/').pop(), mimeType: 'image/jpeg', buffer: Buffer.from(fixtureBytes(img)) });
      await page.waitForFunction(() => document.querySelector('#results ol.predictions') && document.body.dataset.busy === 'false');
    }
    // Concept tags and a built-in set that needs nothing more: still nothing on the network.
    await page.selectOption('#label-set', 'pad6');
    await page.waitForFunction(() => document.body.dataset.busy === 'false' && /PAD/.test(document.querySelector('#results').textContent));
    assert.deepEqual(requests.filter((u) => !u.startsWith('blob:')), []);
    assert.ok(await page.locator('#concepts .tags li').count() > 0, 'concept tags are shown');
    await page.screenshot({ path: artifactPath('result-view.png'), fullPage: true });
    await page.setViewportSize({ width: 360, height: 800 });
    await page.screenshot({ path: artifactPath('result-view-360px.png'), fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling at 360 px (overflow ${overflow}px)`);
    await context.close();
  });

  test('a reload loads the weights from the cache; a tampered cached file is refetched', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    const first = await openSite(page, server.url, 'nosw');
    assert.ok(first.bytesDownloaded > 0);
    // One finished progress bar per downloaded file, sized from the manifest.
    const bars = await page.$$eval('#progress progress', (els) => els.map((e) => [e.max, e.value]));
    assert.ok(bars.length >= 5, `progress bars: ${bars.length}`);
    for (const [max, value] of bars) assert.equal(value, max);

    const requests = [];
    context.on('request', (r) => requests.push(new URL(r.url()).pathname));
    const second = await openSite(page, server.url, 'nosw');
    assert.equal(second.bytesDownloaded, 0, 'nothing downloaded on the second visit');
    const weightFiles = requests.filter((p) => p.startsWith(`/${BUNDLE}`) && !p.endsWith('manifest.json'));
    assert.deepEqual(weightFiles, []);
    const before = await classifyInPage(page, fixtureBytes(HAM_IMAGES[0]), 'ham7', { topK: 7 });

    // Tamper with the cached image tower.
    await page.evaluate(async (url) => {
      const cache = await caches.open('dermlip-models-v1');
      const hit = await cache.match(url);
      const bytes = new Uint8Array(await hit.arrayBuffer());
      bytes[bytes.length - 1] ^= 0xff;
      await cache.put(url, new Response(bytes));
    }, `${server.url}${BUNDLE}image.safetensors`);
    requests.length = 0;
    const third = await openSite(page, server.url, 'nosw');
    assert.ok(requests.includes(`/${BUNDLE}image.safetensors`), 'the tampered file is downloaded again');
    assert.equal(third.bytesDownloaded, (await (await fetch(`${server.url}${BUNDLE}manifest.json`)).json()).files.find((f) => f.role === 'image-tower').bytes);
    const after = await classifyInPage(page, fixtureBytes(HAM_IMAGES[0]), 'ham7', { topK: 7 });
    assert.deepEqual(after.probabilities, before.probabilities);
    await context.close();
  });

  test('bad input gets a clear message and the page keeps working', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await openSite(page, server.url, 'nosw');
    const pick = async (name, buffer) => {
      await page.setInputFiles('#file', { name, mimeType: 'image/jpeg', buffer });
      await page.waitForFunction(() => document.body.dataset.busy === 'false');
    };
    const message = () => page.textContent('#error');

    await pick('notes.jpg', Buffer.from('these are my notes, not a photo'));
    assert.match(await message(), /not a photo this page can read/);

    const jpeg = Buffer.from(fixtureBytes('images/coffee_600x400_progressive.jpg'));
    await pick('cut.jpg', jpeg.subarray(0, Math.floor(jpeg.length / 3)));
    assert.match(await message(), /could not be read|corrupt or truncated/);

    await pick('huge.png', png50mp());
    assert.match(await message(), /50\.00 megapixels.*limit of 40\.00 megapixels/);

    await pick('ok.jpg', jpeg);
    assert.equal(await page.isHidden('#error'), true);
    assert.ok(await page.locator('#results ol.predictions li').count() >= 1);
    await context.close();
  });

  test('works offline after the first visit (service worker + cache)', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await openSite(page, server.url, '');
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.reload(); // now controlled by the service worker, which has the shell
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout: 180_000 });
    await context.setOffline(true);
    const info = await openSite(page, server.url, '');
    assert.equal(info.bytesDownloaded, 0);
    const r = await classifyInPage(page, fixtureBytes(HAM_IMAGES[1]), 'ham7', { topK: 2 });
    assert.equal(r.predictions.length, 2);
    await context.close();
  });
});

/** A real 8000×6250 (50 MP) black PNG, built here so the repo holds no large file. */
function png50mp() {
  const [w, h] = [8000, 6250];
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc((w * 3 + 1) * h); // filter byte 0 + black pixels
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
