// Renders the PWA icons (www/icon-192.png, icon-512.png, icon-maskable-512.png) from www/icon.svg
// in Chromium: `cd tests/browser && node make-icons.mjs`. The PNGs are committed; run this after
// changing icon.svg. The maskable one has a full-bleed background with the icon in the safe zone.
import { fileURLToPath } from 'node:url';
import { launch } from './harness.mjs';
import { readFileSync } from 'node:fs';
const svg = readFileSync(new URL('../../www/icon.svg', import.meta.url), 'utf8');
const b64 = Buffer.from(svg).toString('base64');
const browser = await launch({ webgpu: false });
const page = await browser.newPage();
async function render(size, maskable, out) {
  await page.setViewportSize({ width: size, height: size });
  // Maskable: full-bleed background, the icon inside the 80% safe zone (a circle of 40% radius).
  const inner = maskable ? Math.round(size * 0.72) : size;
  const bg = maskable ? '#0b5cad' : 'transparent';
  await page.setContent(`<html><body style="margin:0;width:${size}px;height:${size}px;background:${bg};display:grid;place-items:center">
    <img src="data:image/svg+xml;base64,${b64}" width="${inner}" height="${inner}"></body></html>`);
  await page.waitForFunction(() => document.images[0].complete);
  await page.screenshot({ path: out, omitBackground: !maskable, clip: { x: 0, y: 0, width: size, height: size } });
}
await render(192, false, fileURLToPath(new URL('../../www/icon-192.png', import.meta.url)));
await render(512, false, fileURLToPath(new URL('../../www/icon-512.png', import.meta.url)));
await render(512, true, fileURLToPath(new URL('../../www/icon-maskable-512.png', import.meta.url)));
await browser.close();
