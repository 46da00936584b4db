// Shared by the browser tests and the bench: the site's server, Debian's Chromium through
// playwright-core, and the fixture files. Run `scripts/build-web.sh` first (scripts/test.sh does).
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const FIXTURES = join(ROOT, 'tests/fixtures');
export const ARTIFACTS = process.env.DERMLIP_ARTIFACTS || join(ROOT, 'tests/browser/artifacts');
export const BUNDLE = 'www/models/default/';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  // Extra flags, e.g. for a benchmark on a real GPU (see README, Benchmark).
  ...(process.env.CHROMIUM_FLAGS || '').split(' ').filter(Boolean),
];

/** Starts scripts/serve.mjs on a free port (extra command-line `args`, e.g. ['--cors']); resolves to {url, close}. */
export function startServer(args = []) {
  return new Promise((resolvePromise, reject) => {
    const proc = spawn(process.execPath, [join(ROOT, 'scripts/serve.mjs'), '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    proc.on('error', reject);
    proc.stdout.on('data', (d) => {
      const m = /http:\/\/[\d.]+:(\d+)\//.exec(String(d));
      if (m) resolvePromise({ url: `http://127.0.0.1:${m[1]}/`, close: () => proc.kill() });
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

/** Chromium with WebGPU (SwiftShader) unless `webgpu: false`. */
export async function launch({ webgpu = true } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: run scripts/setup.sh`);
  return chromium.launch({
    executablePath: CHROMIUM,
    ignoreDefaultArgs: ['--headless'],
    args: [...CHROMIUM_ARGS, ...(webgpu ? ['--enable-unsafe-webgpu'] : [])],
  });
}

/** A page that logs the browser console and page errors (wasm panics land there). */
export async function newPage(context) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('[pageerror]', e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') console.error(`[console.${m.type()}]`, m.text());
  });
  return page;
}

/**
 * Opens the site and waits until the model is ready (or failed). The site downloads a model that
 * is not cached yet only on a click (state `ask`): this clicks "Download the model" then.
 */
export async function openSite(page, base, query = '') {
  await page.goto(`${base}index.html?${query}`);
  await page.waitForFunction(() => ['ready', 'error', 'ask'].includes(document.body.dataset.state), null, { timeout: 180_000 });
  if ((await page.evaluate(() => document.body.dataset.state)) === 'ask') await page.click('#download-button');
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout: 180_000 });
  const state = await page.evaluate(() => document.body.dataset.state);
  if (state !== 'ready') throw new Error(`model failed to load: ${await page.textContent('#model-status')}`);
  return page.evaluate(() => window.dermlipApp.state.model.info);
}

export function fixtureBytes(rel) {
  return [...readFileSync(join(FIXTURES, rel))];
}

export function reference(name) {
  return JSON.parse(readFileSync(join(FIXTURES, 'reference', `${name}.json`), 'utf8'));
}

/** The native CLI's classification of fixture images (JSON), for browser-vs-native checks. */
export function nativeClassify(images, args, model = 'tiny-gelu') {
  const target = process.env.CARGO_TARGET_DIR || join(process.env.HOME, '.cache/dermlip/target');
  const bin = join(target, 'debug/dermlip');
  const out = execFileSync(bin, ['classify', ...images.map((i) => join(FIXTURES, i)), '--model', join(FIXTURES, 'models', model), '--json', ...args], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out);
}

export function artifactPath(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/** Runs the public API inside the page against the site's loaded model. */
export async function classifyInPage(page, bytes, labels, options) {
  return page.evaluate(
    async ({ bytes, labels, options }) => window.dermlipApp.state.model.classify(new Uint8Array(bytes), labels, options),
    { bytes, labels, options },
  );
}
