// scripts/run.sh serves the site as soon as the CPU engine exists and builds the WebGPU engine
// after it (issue 17): until then pkg/manifest.json lists only the CPU engine and
// pkg/dermlip_webgpu.js does not exist. The page must then load on the CPU engine, say why, never
// ask for the missing module, and its service worker must still install.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, launch, newPage, openSite, startServer } from './harness.mjs';

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launch(); // WebGPU on: `auto` would otherwise consider it
});
after(async () => {
  if (browser) await browser.close();
  if (server) server.close();
});

test('with only the CPU engine built, auto loads it, says the WebGPU engine is not built yet, and the service worker installs', async () => {
  const full = JSON.parse(readFileSync(join(ROOT, 'pkg/manifest.json'), 'utf8'));
  assert.ok(full.engines.cpu && full.engines.webgpu, 'scripts/build-web.sh builds both engines for the tests');
  const cpuOnly = JSON.stringify({ engines: { cpu: full.engines.cpu } });
  const context = await browser.newContext();
  const asked = [];
  await context.route('**/pkg/manifest.json', (route) => route.fulfill({ contentType: 'application/json', body: cpuOnly }));
  await context.route(/\/pkg\/dermlip_webgpu/, (route) => {
    asked.push(route.request().url());
    return route.fulfill({ status: 404, body: 'not built yet' });
  });
  const page = await newPage(context);
  const info = await openSite(page, server.url, '');
  assert.equal(info.backend, 'cpu');
  assert.equal(info.engine, 'cpu');
  assert.match(info.fallbackReason, /WebGPU engine is not built yet/);
  assert.deepEqual(asked.filter((u) => u.endsWith('.wasm')), [], 'the WebGPU module is never requested');
  // The service worker installs without the missing glue (it caches the CPU glue and the shell).
  const sw = await page.evaluate(async () => {
    const reg = await Promise.race([navigator.serviceWorker.ready, new Promise((r) => setTimeout(() => r({ active: null }), 30_000))]);
    const keys = await caches.keys();
    const shell = keys.find((k) => k.startsWith('dermlip-shell-'));
    const cached = shell ? (await (await caches.open(shell)).keys()).map((r) => new URL(r.url).pathname) : [];
    return { active: Boolean(reg.active), cached };
  });
  assert.equal(sw.active, true);
  assert.ok(sw.cached.includes('/pkg/dermlip_cpu.js'), JSON.stringify(sw.cached));
  assert.ok(!sw.cached.includes('/pkg/dermlip_webgpu.js'));
  assert.ok(sw.cached.includes('/www/app.js'));
  await context.close();
});
