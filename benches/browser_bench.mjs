#!/usr/bin/env node
// Browser benchmark (not a test): dermlip (WebGPU and CPU) against onnxruntime-web (WebGPU and
// wasm) on the same full-size ViT-B/16 image tower, in the same headless Chromium, same run.
//
//   python benches/export_onnx.py --model tests/reference/full/models/vit-b-16-random --out benches/out/vit-b16-visual.onnx
//   dermlip convert --model tests/reference/full/models/vit-b-16-random --out benches/out/bundle-f16
//   dermlip convert --model ... --out benches/out/bundle-int8 --image-weights int8
//   (or, without Python: cargo run --release --example random_checkpoint -- vit-b-16|panderm DIR;
//   PanDerm converted into benches/out/panderm-int8 likewise)
//   node benches/browser_bench.mjs [--runs 10] [--only dermlip-webgpu,ort-webgpu,...] [--cold-only] [--text-runs 5]
//     [--kernels burn,dermlip] [--bundle /benches/out/bundle-2l/] [--onnx /benches/out/vit-2l-visual.onnx]
//   (CHROMIUM_FLAGS="--enable-features=Vulkan --ignore-gpu-blocklist" for a real GPU on Linux; the
//   table names the adapter it ran on)
//
// For each case: cold load (fresh profile: download + compile + warm-up), cached load (same
// profile, second visit), first and warm-median image-embedding latency, and the bytes the page
// transferred before its first prediction (page, scripts, wasm, weights; compressed sizes).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, launch, startServer } from '../tests/browser/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const runs = Number(opt('--runs', 10));
const only = opt('--only', '');
// One visit per case (no cached-load row; warm median from the cold visit): for slow adapters.
const coldOnly = args.includes('--cold-only');
// dermlip only: also time the text tower on 56 custom-label prompts (first call fetches it).
const textRuns = Number(opt('--text-runs', 0));
// Whose WebGPU kernels dermlip runs (setKernels in src/web.rs): e.g. `burn,dermlip` (before/after).
const kernels = opt('--kernels', '');
// Another bundle for the dermlip-webgpu-f16 case, e.g. a 2-block proxy for SwiftShader
// (random_checkpoint --vision-layers 2): /benches/out/bundle-2l/
const bundle = opt('--bundle', '');
// Another ONNX file for the ORT cases, e.g. the same proxy's (benches/onnx_from_checkpoint.py):
// /benches/out/vit-2l-visual.onnx (its check reads FILE.reference.json when there is one).
const onnx = opt('--onnx', '');
const OUT = 'benches/out';
const image = 'tests/fixtures/images/astronaut_exact_224.png';

const CASES = [
  { id: 'dermlip-webgpu-f16', engine: 'dermlip', backend: 'webgpu', model: `/${OUT}/bundle-f16/` },
  { id: 'dermlip-webgpu-int8', engine: 'dermlip', backend: 'webgpu', model: `/${OUT}/bundle-int8/` },
  { id: 'ort-webgpu', engine: 'ort', ep: 'webgpu', ortBundle: 'ort.min.mjs', model: `/${OUT}/vit-b16-visual.onnx` },
  // onnxruntime-web's native C++ WebGPU EP (the one ORT and transformers.js are moving to).
  { id: 'ort-webgpu-native', engine: 'ort', ep: 'webgpu', ortBundle: 'ort.webgpu.min.mjs', model: `/${OUT}/vit-b16-visual.onnx` },
  { id: 'dermlip-cpu-int8', engine: 'dermlip', backend: 'cpu', model: `/${OUT}/bundle-int8/` },
  { id: 'ort-wasm', engine: 'ort', ep: 'wasm', model: `/${OUT}/vit-b16-visual.onnx` },
  // DermLIP PanDerm-base + PubMedBERT-256 (random weights: cargo run --release --example random_checkpoint -- panderm DIR).
  { id: 'panderm-cpu-int8', engine: 'dermlip', backend: 'cpu', model: `/${OUT}/panderm-int8/` },
]
  .filter((c) => !only || only.split(',').includes(c.id))
  .map((c) => (bundle && c.id === 'dermlip-webgpu-f16' ? { ...c, model: bundle } : c))
  .map((c) => (onnx && c.engine === 'ort' ? { ...c, model: onnx } : c))
  // --kernels burn,dermlip: each dermlip WebGPU case once per kernel choice, in this run.
  .flatMap((c) => (kernels && c.engine === 'dermlip' && c.backend === 'webgpu' ? kernels.split(',').map((k) => ({ ...c, id: `${c.id}:${k}`, kernels: k })) : [c]));

async function runCase(browser, base, c) {
  const context = await browser.newContext();
  let transferred = 0;
  context.on('requestfinished', async (r) => {
    try {
      const s = await r.sizes();
      transferred += s.responseBodySize + s.responseHeadersSize;
    } catch {
      // the page closed meanwhile
    }
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${c.id}] pageerror`, e.message));
  page.on('console', (m) => m.text().startsWith('[bench]') && console.error(`[${c.id}]`, m.text()));
  const params = new URLSearchParams({ ...c, runs: String(runs), textRuns: String(textRuns), image: `/${image}` });
  const visit = async () => {
    await page.goto(`${base}benches/browser/bench.html?${params}`);
    await page.waitForSelector('#out[data-done]', { timeout: 3_600_000 });
    const text = await page.textContent('#out');
    if ((await page.getAttribute('#out', 'data-done')) !== 'ok') throw new Error(`${c.id}: ${text}`);
    return JSON.parse(text);
  };
  const cold = await visit();
  const coldBytes = transferred;
  const cached = coldOnly ? null : await visit();
  await context.close();
  return { ...c, cold, cached, coldBytes };
}

const server = await startServer();
const browser = await launch();
const results = [];
try {
  for (const c of CASES) {
    process.stderr.write(`bench: ${c.id}…\n`);
    results.push(await runCase(browser, server.url, c));
  }
} finally {
  await browser.close();
  server.close();
}

// PyTorch's output for the ONNX export (benches/export_onnx.py), read only when ORT ran.
const ortReference = (model) => {
  const file = join(ROOT, `${model.replace(/^\//, '')}.reference.json`);
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).embedding : null;
};
const s = (ms) => (ms / 1000).toFixed(2);
console.log(`\nViT-B/16 image tower, headless Chromium ${browser.version?.() ?? ''} (${runs} warm runs, median)`);
console.log(`WebGPU adapter: ${[...new Set(results.map((r) => r.cold.adapter))].join('; ')}\n`);
const bytesHead = textRuns > 0 ? 'MB in the cold visit (incl. the text tower)' : 'MB before 1st prediction (cold)';
console.log(`| case | cold load s | cached load s | 1st embed s | warm median s | ${bytesHead} |`);
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of results) {
  const firstPred = r.coldBytes / 1e6;
  const warm = r.cached ?? r.cold;
  console.log(`| ${r.id} | ${s(r.cold.loadMs)} | ${r.cached ? s(r.cached.loadMs) : '–'} | ${s(r.cold.firstMs)} | ${s(warm.medianMs)} | ${firstPred.toFixed(1)} |`);
  if (r.engine === 'ort') {
    const ref = ortReference(r.model);
    if (ref) {
      const d = Math.max(...r.cold.embedding.map((v, i) => Math.abs(v - ref[i])));
      console.log(`|  ↳ ort output vs the reference (first 8 values): max abs diff ${d.toExponential(2)} | | | | | |`);
    }
  }
}
const texts = results.filter((r) => r.cold.text);
if (texts.length) {
  console.log(`\nCustom labels: ${texts[0].cold.text.prompts} prompts through the text tower (${textRuns} warm runs, median)\n`);
  console.log('| case | 1st call s (incl. text tower download + load) | warm median s |');
  console.log('|---|---:|---:|');
  for (const r of texts) console.log(`| ${r.id} | ${s(r.cold.text.firstMs)} | ${s((r.cached ?? r.cold).text.medianMs)} |`);
}
const by = Object.fromEntries(results.map((r) => [r.id, r]));
const warmMs = (r) => (r.cached ?? r.cold).medianMs;
const ratio = (a, b) => (by[a] && by[b] ? (warmMs(by[a]) / warmMs(by[b])).toFixed(2) : 'n/a');
const dermlipWebgpu = by['dermlip-webgpu-f16'] ? 'dermlip-webgpu-f16' : by['dermlip-webgpu-f16:dermlip'] ? 'dermlip-webgpu-f16:dermlip' : null;
console.log(
  `\nwarm latency ratio dermlip/ORT: WebGPU vs JSEP ${ratio(dermlipWebgpu, 'ort-webgpu')}, vs native EP ${ratio(dermlipWebgpu, 'ort-webgpu-native')}, CPU ${ratio('dermlip-cpu-int8', 'ort-wasm')}`,
);
if (by['dermlip-webgpu-f16:burn'] && by['dermlip-webgpu-f16:dermlip']) {
  console.log(`dermlip's kernels vs Burn's defaults (WebGPU): ${ratio('dermlip-webgpu-f16:dermlip', 'dermlip-webgpu-f16:burn')}`);
}
