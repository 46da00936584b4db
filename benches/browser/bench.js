// One benchmark case per page load, chosen by the query string; benches/browser_bench.mjs drives it.
//   ?engine=dermlip&backend=webgpu|cpu&model=BUNDLE_URL&runs=10[&textRuns=5]
//   ?engine=ort&ep=webgpu|wasm&model=ONNX_URL&runs=10
import { DermLIP } from '../../www/dermlip.js';

const q = new URLSearchParams(location.search);
const runs = Number(q.get('runs') || 10);
const out = document.getElementById('out');
const log = (...a) => console.log('[bench]', ...a);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function cachedFetch(url) {
  const cache = await caches.open('bench-onnx');
  let hit = await cache.match(url);
  let fromCache = true;
  if (!hit) {
    fromCache = false;
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    hit = r;
    try {
      await cache.put(url, r.clone());
    } catch (e) {
      log(`not cached (${e.message}): the cached-load row will download again`);
    }
  }
  return { buffer: await hit.arrayBuffer(), fromCache };
}

async function benchDermlip() {
  const image = await (await fetch(q.get('image'))).arrayBuffer();
  const t0 = performance.now();
  const model = await DermLIP.load(q.get('model'), { backend: q.get('backend'), kernels: q.get('kernels') || undefined });
  const loadMs = performance.now() - t0;
  log(`loaded in ${loadMs.toFixed(0)} ms`);
  const first = performance.now();
  const emb = await model.embedImage(image.slice(0));
  const firstMs = performance.now() - first;
  const times = [];
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    await model.embedImage(image.slice(0));
    times.push(performance.now() - s);
    log(`run ${i + 1}: ${times[i].toFixed(0)} ms`);
  }
  // Custom labels: the bundle's HAM-7 classes in its templates (7 × 8 = 56 prompts) through the
  // text tower, fetched on first use like the site does.
  const textRuns = Number(q.get('textRuns') || 0);
  let text = null;
  if (textRuns > 0) {
    const manifest = await (await fetch(new URL('manifest.json', new URL(q.get('model'), location.href)))).json();
    const ham7 = manifest.label_sets.find((s) => s.id === 'ham7');
    if (!ham7) throw new Error('--text-runs needs a bundle converted with the ham7 label set');
    const prompts = ham7.classes.flatMap((c) => manifest.templates.map((t) => t.replaceAll('{c}', c)));
    const s0 = performance.now();
    await model.embedText(prompts);
    const firstMs = performance.now() - s0;
    const textTimes = [];
    for (let i = 0; i < textRuns; i++) {
      const s = performance.now();
      await model.embedText(prompts);
      textTimes.push(performance.now() - s);
      log(`text run ${i + 1}: ${textTimes[i].toFixed(0)} ms`);
    }
    text = { prompts: prompts.length, firstMs, medianMs: median(textTimes), times: textTimes };
  }
  const info = model.info;
  await model.dispose();
  return { loadMs, firstMs, medianMs: median(times), times, text, backend: info.backend, bytesDownloaded: info.bytesDownloaded, dim: emb.length };
}

async function benchOrt() {
  // ort.min.mjs: the JS WebGPU EP ("JSEP"); ort.webgpu.min.mjs: the native C++ WebGPU EP.
  const bundle = q.get('ortBundle') || 'ort.all.min.mjs';
  if (!/^ort[a-z.]*\.mjs$/.test(bundle)) throw new Error(`ortBundle ${bundle}: not an onnxruntime-web bundle name`);
  const ort = await import(`../../tests/browser/node_modules/onnxruntime-web/dist/${bundle}`);
  ort.env.wasm.wasmPaths = new URL('../../tests/browser/node_modules/onnxruntime-web/dist/', location.href).href;
  ort.env.wasm.numThreads = 1; // no cross-origin isolation on a normal page: ORT is single-threaded there too
  const ep = q.get('ep');
  const t0 = performance.now();
  const { buffer, fromCache } = await cachedFetch(q.get('model'));
  const session = await ort.InferenceSession.create(new Uint8Array(buffer), { executionProviders: [ep], graphOptimizationLevel: 'all' });
  const loadMs = performance.now() - t0;
  log(`loaded in ${loadMs.toFixed(0)} ms`);
  const n = 3 * 224 * 224;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = -2 + (4 * i) / (n - 1); // benches/export_onnx.py's input
  const input = () => new ort.Tensor('float32', data, [1, 3, 224, 224]);
  const first = performance.now();
  const res = await session.run({ pixels: input() });
  const firstMs = performance.now() - first;
  const emb = Array.from(res.embedding.data);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    await session.run({ pixels: input() });
    times.push(performance.now() - s);
    log(`run ${i + 1}: ${times[i].toFixed(0)} ms`);
  }
  await session.release();
  return { loadMs, firstMs, medianMs: median(times), times, backend: ep, fromCache, embedding: emb.slice(0, 8), dim: emb.length };
}

// Which WebGPU adapter this browser offers: a table measured on SwiftShader (a CPU emulation)
// says nothing about a GPU, so every result carries it.
async function adapterInfo() {
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) return 'none';
  const i = adapter.info || {};
  const fallback = i.isFallbackAdapter ?? adapter.isFallbackAdapter;
  return [i.vendor, i.architecture, i.description].filter(Boolean).join(' / ') + (fallback ? ' (fallback adapter)' : '');
}

Promise.all([q.get('engine') === 'ort' ? benchOrt() : benchDermlip(), adapterInfo()])
  .then(([r, adapter]) => {
    r.adapter = adapter;
    out.textContent = JSON.stringify(r);
    out.dataset.done = 'ok';
  })
  .catch((e) => {
    out.textContent = String(e && e.stack ? e.stack : e);
    out.dataset.done = 'error';
  });
