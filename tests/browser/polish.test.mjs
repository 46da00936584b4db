// Polish (issue 16): the PWA manifest's icons (installable), the keyboard focus ring on the photo
// buttons, dark mode from prefers-color-scheme. None of these need the wasm engines or a bundle.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, newPage, startServer } from './harness.mjs';

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

describe('the web app manifest', () => {
  test('(no build) is linked, and its PNG icons (192, 512, maskable) resolve with the sizes they declare', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}index.html?nosw`);
    const href = await page.evaluate(() => document.querySelector('link[rel="manifest"]').href);
    const icons = await page.evaluate(async (href) => {
      const manifest = await (await fetch(href)).json();
      return Promise.all(manifest.icons.map(async (icon) => {
        const url = new URL(icon.src, href).href;
        const r = await fetch(url);
        const out = { ...icon, status: r.status, contentType: r.headers.get('content-type') };
        if (icon.type === 'image/png') {
          const bmp = await createImageBitmap(await r.blob());
          out.actual = `${bmp.width}x${bmp.height}`;
        }
        return out;
      }));
    }, href);
    for (const i of icons) {
      assert.equal(i.status, 200, i.src);
      assert.equal(i.contentType.split(';')[0], i.type, i.src);
      if (i.type === 'image/png') assert.equal(i.actual, i.sizes, `${i.src} is ${i.sizes}`);
    }
    const png = icons.filter((i) => i.type === 'image/png');
    const purposes = (i) => (i.purpose || 'any').split(/\s+/);
    for (const size of ['192x192', '512x512']) {
      assert.ok(png.some((i) => i.sizes === size && purposes(i).includes('any')), `a ${size} icon`);
    }
    assert.ok(png.some((i) => purposes(i).includes('maskable')), 'a maskable icon');
    const manifest = await page.evaluate(async (href) => (await fetch(href)).json(), href);
    for (const key of ['name', 'short_name', 'start_url', 'display']) assert.ok(manifest[key], key);
    await context.close();
  });
});

describe('keyboard focus', () => {
  test('(no build) each hidden file input rings its own button: "Choose a photo", then "Take a photo"', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}index.html?nosw`);
    const outlines = () => page.evaluate(() => Object.fromEntries(['file', 'camera'].map((id) => {
      const label = document.querySelector(`label[for="${id}"]`);
      return [id, getComputedStyle(label).outlineStyle];
    })));
    await page.focus('#drop');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'file');
    assert.deepEqual(await outlines(), { file: 'solid', camera: 'none' });
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'camera');
    assert.deepEqual(await outlines(), { file: 'none', camera: 'solid' });
    await context.close();
  });
});

describe('dark mode', () => {
  const colours = (page) => page.evaluate(() => {
    const root = getComputedStyle(document.documentElement);
    const panel = getComputedStyle(document.querySelector('main > section'));
    return { background: root.backgroundColor, color: root.color, scheme: root.colorScheme, panel: panel.backgroundColor };
  });

  test('(no build) prefers-color-scheme: dark changes the computed colours; light keeps the light ones', async () => {
    const seen = {};
    for (const colorScheme of ['light', 'dark']) {
      const context = await browser.newContext({ colorScheme });
      const page = await newPage(context);
      await page.goto(`${server.url}index.html?nosw`);
      seen[colorScheme] = await colours(page);
      await context.close();
    }
    assert.equal(seen.light.background, 'rgb(251, 250, 248)');
    assert.notEqual(seen.dark.background, seen.light.background);
    assert.notEqual(seen.dark.color, seen.light.color);
    assert.notEqual(seen.dark.panel, seen.light.panel);
    const luminance = (rgb) => rgb.match(/\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b, 0);
    assert.ok(luminance(seen.dark.background) < 150, `dark background: ${seen.dark.background}`);
    assert.ok(luminance(seen.dark.color) > 500, `light text: ${seen.dark.color}`);
    assert.equal(seen.light.scheme, 'light dark', 'no hard-coded light scheme');
  });

  test('(no build) the model card page follows it too', async () => {
    const context = await browser.newContext({ colorScheme: 'dark' });
    const page = await newPage(context);
    await page.goto(`${server.url}www/model-card.html`);
    const bg = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
    assert.notEqual(bg, 'rgb(251, 250, 248)');
    await context.close();
  });
});
