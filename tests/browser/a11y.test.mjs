// Accessibility (issue 16): axe-core (npm `axe-core`, pinned) on the site and on the widget page
// with a result shown, in light and dark mode: no serious or critical violation. Screenshots at
// 360 px and 1280 px, light and dark, go to the artifacts folder (tests/browser/artifacts/).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { artifactPath, fixtureBytes, launch, newPage, openSite, startServer } from './harness.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const IMAGE = 'images/chelsea_451x300_q95_444.jpg';
const LOAD_TIMEOUT = 180_000;

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

/** axe-core's serious and critical violations on the page (shadow roots included), as lines. */
async function violations(page) {
  await page.addScriptTag({ content: AXE });
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  return found.filter((v) => ['serious', 'critical'].includes(v.impact)).map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.join(' | ')}`);
}

async function screenshots(page, name, scheme) {
  for (const width of [360, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: artifactPath(`${name}-${width}px-${scheme}.png`), fullPage: true });
  }
}

for (const scheme of ['light', 'dark']) {
  describe(`accessibility, ${scheme} mode`, () => {
    test('the site with a result: no serious or critical axe violation', async () => {
      // bypassCSP: the site's policy (rightly) refuses the injected axe script.
      const context = await browser.newContext({ colorScheme: scheme, bypassCSP: true });
      const page = await newPage(context);
      await openSite(page, server.url, 'nosw');
      await page.setInputFiles('#file', { name: 'photo.jpg', mimeType: 'image/jpeg', buffer: Buffer.from(fixtureBytes(IMAGE)) });
      await page.waitForFunction(() => document.querySelector('#results ol.predictions') && document.body.dataset.busy === 'false');
      const found = await violations(page);
      await screenshots(page, 'site', scheme);
      assert.deepEqual(found, []);
      await context.close();
    });

    test('the widget page with a result: no serious or critical axe violation', async () => {
      const context = await browser.newContext({ colorScheme: scheme, bypassCSP: true });
      const page = await newPage(context);
      await page.goto(`${server.url}www/embed-example.html?nosw`);
      await page.locator('#classify-demo').locator('[part~="load-button"]').click();
      await page.waitForFunction(() => document.querySelector('#classify-demo').shadowRoot.querySelector('ol.predictions'), null, { timeout: LOAD_TIMEOUT });
      const found = await violations(page);
      await screenshots(page, 'widget', scheme);
      assert.deepEqual(found, []);
      await context.close();
    });
  });
}
