// The Web Worker that owns the wasm engine. Messages in: {id, type, ...}; out: {id, ok, result|error}
// plus {type: 'progress'|'event', ...} notifications. Requests run one at a time, in order.

import { download, getManifest, getUnverified, getVerified, sha256Hex } from './model-store.js';

let engine = null;
let bundle = null; // {base, manifest} when loaded from a web bundle
let lastLoad = null; // the last load request, to rebuild an f16 engine in f32
const galleries = new Map(); // name → {bytes, url} of the loaded case galleries, to load them again into a rebuilt engine
// A case gallery (`dermlip index`) larger than this is refused before it is read in full.
const MAX_GALLERY_BYTES = 64 << 20;
let queue = Promise.resolve();

const post = (msg) => self.postMessage(msg);
const progress = (file, role) => (loaded, total, fromCache) =>
  post({ type: 'progress', file, role, loaded, total, fromCache: !!fromCache });
const event = (e) => post({ type: 'event', ...e });

self.onmessage = (e) => {
  const msg = e.data;
  queue = queue.then(() => handle(msg));
};

async function handle(msg) {
  try {
    const handler = handlers[msg.type];
    if (!handler) throw new Error(`unknown request ${msg.type}`);
    post({ id: msg.id, ok: true, result: await handler(msg) });
  } catch (err) {
    post({ id: msg.id, ok: false, error: String(err && err.message ? err.message : err) });
  }
}

// Two engine modules (pkg/manifest.json, written by scripts/build-web.sh): `webgpu` (WebGPU and
// the CPU backend) and `cpu` (CPU only, much smaller). Only the one needed is downloaded; like the
// model files it is kept in the Cache API and checked against the manifest's sha256.
const PKG = new URL('../pkg/', import.meta.url).href;
const modules = {};
function loadModule(kind) {
  modules[kind] ??= (async () => {
    const manifest = JSON.parse((await getManifest(PKG)).text);
    const entry = manifest.engines && manifest.engines[kind];
    if (!entry) throw new Error(`pkg/manifest.json lists no ${kind} engine; rebuild with scripts/build-web.sh`);
    const { buffer } = await getVerified(PKG, entry, { onProgress: progress(entry.path, 'engine'), onEvent: event });
    const glue = await import(new URL(entry.glue, PKG).href);
    await glue.default({ module_or_path: buffer });
    return glue;
  })();
  modules[kind].catch(() => delete modules[kind]);
  return modules[kind];
}

async function engineListed(kind) {
  const manifest = JSON.parse((await getManifest(PKG)).text);
  return Boolean(manifest.engines && manifest.engines[kind]);
}

// The device-choice policy, the only one: the engine makes exactly the device it is told to
// (`webgpu` or `cpu`; precision `auto` there means f16 where the GPU has shader-f16).
//
// A software WebGPU adapter (SwiftShader, WARP) emulates the GPU on the CPU: measured with
// ViT-B/16 in Chromium, a forward pass took 153 s there and 1.3 s on our wasm CPU backend.
async function webGpuAdapter() {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return { ok: false, reason: navigator.gpu ? 'no WebGPU adapter was found' : 'this browser has no WebGPU' };
    if (adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter) {
      return { ok: false, reason: 'the only WebGPU adapter here is a software one, which is slower than the CPU backend' };
    }
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: `WebGPU failed: ${e.message}` };
  }
}

// `backend` ('auto' | 'webgpu' | 'cpu') and `precision` ('auto' | 'f32' | 'f16') as asked for →
// the engine module to load, the [backend, precision] pairs to try (best first), and why WebGPU is
// not used when `auto` chose the CPU up front. Names the engine does not know are passed on, so its
// message reports them.
async function chooseDevice(backend, precision) {
  let fallbackReason = null;
  if (backend === 'auto' && !(await engineListed('webgpu'))) {
    // scripts/run.sh serves the page as soon as the CPU engine exists and builds the WebGPU one
    // after it; a reload once that build is done picks it up.
    backend = 'cpu';
    precision = 'f32';
    fallbackReason = 'the WebGPU engine is not built yet (scripts/run.sh builds it after the CPU one; reload when it is done)';
    event({ type: 'fallback', from: 'webgpu', reason: fallbackReason });
  }
  if (backend === 'auto') {
    const gpu = await webGpuAdapter();
    if (!gpu.ok) {
      backend = 'cpu';
      precision = 'f32';
      fallbackReason = gpu.reason;
      event({ type: 'fallback', from: 'webgpu', reason: fallbackReason });
    }
  }
  if (backend === 'cpu' && precision === 'auto') precision = 'f32';
  const module = backend === 'cpu' ? 'cpu' : 'webgpu';
  const first = backend === 'auto' ? 'webgpu' : backend;
  const attempts = [[first, precision]];
  if (backend !== 'cpu' && precision === 'auto') attempts.push([first, 'f32']);
  if (backend === 'auto') attempts.push(['cpu', 'f32']); // the WebGPU module has the CPU backend too
  return { module, attempts, fallbackReason };
}

// Engine.create copies the bytes into wasm memory, so a failed attempt can be retried with the
// next choice.
async function createEngine(backend, precision, configText, textConfigText, weights, towers, kernels) {
  const bytes = new Uint8Array(weights);
  const choice = await chooseDevice(backend, precision);
  let { fallbackReason } = choice;
  const { module, attempts } = choice;
  const glue = await loadModule(module);
  // Whose GPU kernels (benchmarks: 'burn' for Burn's defaults), set before the warm-up pass.
  glue.setKernels(kernels ?? 'dermlip');
  const { Engine } = glue;
  for (const [i, [b, p]] of attempts.entries()) {
    let eng = null;
    try {
      eng = await Engine.create(b, p, configText, textConfigText, bytes, towers);
      // The warm-up pass (shader compilation happens here, not in the first prediction); a GPU
      // that fails it falls back to the next choice.
      await eng.warmUp();
      return { eng, fallbackReason, module };
    } catch (err) {
      eng?.free();
      if (i === attempts.length - 1) throw err;
      fallbackReason = String(err && err.message ? err.message : err);
      event({ type: 'fallback', from: `${b}/${p}`, reason: fallbackReason });
    }
  }
}

// An f16 engine whose result overflowed (NaN/infinity) is rebuilt in f32 from the cached files and
// the request runs again: the user gets an answer, never a wrong one.
async function withF16Retry(run) {
  try {
    return await run(requireEngine());
  } catch (err) {
    if (engine?.precision() !== 'f16') throw err; // e.g. 'no model is loaded'
    const { nonFiniteMessage } = await loadModule('webgpu'); // f16 engines come from it: loaded
    if (!String(err?.message ?? err).includes(nonFiniteMessage())) throw err;
    event({ type: 'fallback', from: 'webgpu/f16', reason: 'f16 overflowed on this image; computing in f32 from now on' });
    const kept = [...galleries];
    await handlers.load({ ...lastLoad, precision: 'f32' });
    for (const [name, g] of kept) {
      await engine.setGallery(name, g.bytes);
      galleries.set(name, g);
    }
    return run(requireEngine());
  }
}

// The gallery's similar cases with their thumbnails as URLs (relative to the gallery file).
function withThumbnailUrls(result, request) {
  if (!result || !Array.isArray(result.similar) || !result.similar.length) return result;
  const url = (request.gallery ? galleries.get(request.gallery) : [...galleries.values()][0])?.url;
  for (const hit of result.similar) hit.thumbnailUrl = hit.thumbnail && url ? new URL(hit.thumbnail, url).href : null;
  return result;
}

function isCheckpointUrl(source) {
  return /\.safetensors(\?.*)?$/.test(source);
}

const handlers = {
  async load({ source, backend = 'auto', precision = 'auto', maxMegapixels, manifestSha256, kernels }) {
    const started = performance.now();
    lastLoad = { source, backend, maxMegapixels, manifestSha256, kernels };
    galleries.clear(); // made by another model, perhaps
    if (engine) {
      engine.free();
      engine = null;
    }
    let bytes = { downloaded: 0, fromCache: 0 };
    const count = (r) => {
      bytes[r.fromCache ? 'fromCache' : 'downloaded'] += r.buffer.byteLength;
      return r.buffer;
    };
    let info;
    if (manifestSha256 && isCheckpointUrl(source)) throw new Error('a pinned model (manifestSha256) must be a web bundle with a manifest.json');
    if (isCheckpointUrl(source)) {
      // A plain open_clip checkpoint: both towers, label embeddings computed here.
      bundle = null;
      const configUrl = new URL('open_clip_config.json', source).href;
      const configText = new TextDecoder().decode(count(await getUnverified(configUrl, { onProgress: progress('open_clip_config.json', 'config') })));
      const weights = count(await getUnverified(source, { onProgress: progress(source.split('/').pop(), 'weights') }));
      const made = await createEngine(backend, precision, configText, undefined, weights, 'both', kernels);
      engine = made.eng;
      info = { model: source, modelCard: null, labelSets: null, fallbackReason: made.fallbackReason, engine: made.module, textTowerBytes: 0 };
    } else {
      const base = new URL(source.endsWith('/') ? source : source + '/', self.location.href).href;
      const { text: manifestText } = await getManifest(base);
      // A bundle pinned by the site (www/trusted-models.js): its manifest, which lists every other
      // file's sha256, must be the one the operator vetted.
      if (manifestSha256 && (await sha256Hex(new TextEncoder().encode(manifestText))) !== manifestSha256) {
        throw new Error(`${base}manifest.json is not the pinned one (sha256 differs from www/trusted-models.js); not loading it`);
      }
      const manifest = JSON.parse(manifestText);
      const file = (role) => {
        const f = manifest.files && manifest.files.find((x) => x.role === role);
        if (!f) throw new Error(`the bundle's manifest lists no ${role} file`);
        return f;
      };
      const fetchRole = async (role) =>
        count(await getVerified(base, file(role), { onProgress: progress(file(role).path, role), onEvent: event }));
      const configText = new TextDecoder().decode(await fetchRole('config'));
      const hasTextConfig = manifest.files.some((f) => f.role === 'text-config');
      const textConfigText = hasTextConfig ? new TextDecoder().decode(await fetchRole('text-config')) : undefined;
      const image = await fetchRole('image-tower');
      const labels = await fetchRole('label-embeddings');
      const concepts = new TextDecoder().decode(await fetchRole('concepts'));
      const made = await createEngine(backend, precision, configText, textConfigText, image, 'image', kernels);
      engine = made.eng;
      engine.setLabelEmbeddings(manifestText, new Uint8Array(labels));
      engine.setConcepts(concepts);
      bundle = { base, manifest };
      info = {
        model: manifest.model,
        // What the bundle says it serves (docs/web-bundle.md); null: unknown, not verified.
        modelCard: manifest.model_card && typeof manifest.model_card === 'object' ? manifest.model_card : null,
        labelSets: manifest.label_sets.map((s) => ({ id: s.id, name: s.name, classes: s.classes.length })),
        fallbackReason: made.fallbackReason,
        engine: made.module,
        textTowerBytes: manifest.files.filter((f) => ['text-tower', 'tokenizer'].includes(f.role)).reduce((n, f) => n + f.bytes, 0),
        imageWeights: manifest.image_weights,
      };
    }
    if (maxMegapixels !== undefined) engine.setMaxMegapixels(maxMegapixels);
    const glue = await loadModule(info.engine);
    // The built-in label sets and default templates come from the engine (src/knowledge/), so the
    // page and the widget keep no copy of them.
    return {
      ...info,
      builtinLabelSets: glue.builtinLabelSets().map((s) => ({ id: s.id, name: s.name, title: s.title, classes: s.classes.length })),
      defaultLabelSet: glue.defaultLabelSet(),
      templates: glue.zeroShotTemplates(),
      backend: engine.backend(),
      precision: engine.precision(),
      embedDim: engine.embedDim(),
      bytesDownloaded: bytes.downloaded,
      bytesFromCache: bytes.fromCache,
      loadMs: performance.now() - started,
    };
  },

  async classify({ image, request }) {
    requireEngine();
    const input = image.kind === 'bytes' ? new Uint8Array(image.data) : toRgba(image);
    return withF16Retry(async (eng) => {
      await ensureTextTower(request);
      if (image.kind === 'bytes') return withThumbnailUrls(await eng.classify(input, request), request);
      return withThumbnailUrls(await eng.classifyRgba(input.rgba, input.width, input.height, request), request);
    });
  },

  // A case gallery from a URL or as bytes (a chosen file); the engine checks that this model made it.
  async gallery({ url, data, name }) {
    requireEngine();
    name = url || name;
    let bytes;
    if (data) {
      if (data.byteLength > MAX_GALLERY_BYTES) throw new Error(`the gallery is ${data.byteLength} bytes; at most ${MAX_GALLERY_BYTES} are accepted`);
      bytes = new Uint8Array(data);
    } else {
      bytes = new Uint8Array(await download(url, { maxBytes: MAX_GALLERY_BYTES, name: 'the gallery' }));
    }
    const summary = await withF16Retry((eng) => eng.setGallery(name, bytes));
    galleries.set(name, { bytes, url: url || null });
    const thumbnailUrls = url ? summary.thumbnails.map((t) => new URL(t, url).href) : [];
    return { ...summary, thumbnailUrls, name, url: url || null };
  },

  async clearGallery({ name }) {
    requireEngine().clearGallery(name);
    galleries.delete(name);
    return true;
  },

  async embedImage({ image }) {
    requireEngine();
    const input = image.kind === 'bytes' ? new Uint8Array(image.data) : toRgba(image);
    return withF16Retry(async (eng) =>
      image.kind === 'bytes' ? eng.embedImage(input) : eng.embedImageRgba(input.rgba, input.width, input.height));
  },

  async embedText({ texts }) {
    return withF16Retry(async (eng) => {
      await ensureTextTower({ labels: [] });
      const out = await eng.embedText(texts);
      const d = eng.embedDim();
      return texts.map((_, i) => out.slice(i * d, (i + 1) * d));
    });
  },

  async dispose() {
    if (engine) engine.free();
    engine = null;
    return true;
  },
};

function requireEngine() {
  if (!engine) throw new Error('no model is loaded');
  return engine;
}

async function ensureTextTower(request) {
  if (!engine.needsTextTower(request)) return;
  if (!bundle) throw new Error('this model has no text tower');
  const entry = bundle.manifest.files.find((f) => f.role === 'text-tower');
  if (!entry) throw new Error("the bundle has no text tower, so only its built-in label sets can be used");
  if (engine.needsTokenizerFile()) {
    const tok = bundle.manifest.files.find((f) => f.role === 'tokenizer');
    if (!tok) throw new Error('the bundle has no tokenizer file for its text tower');
    const { buffer } = await getVerified(bundle.base, tok, { onProgress: progress(tok.path, 'tokenizer'), onEvent: event });
    engine.setTokenizer(tok.path, new Uint8Array(buffer));
  }
  const { buffer } = await getVerified(bundle.base, entry, { onProgress: progress(entry.path, 'text-tower'), onEvent: event });
  engine.addTextTower(new Uint8Array(buffer));
}

function toRgba(image) {
  if (image.kind === 'rgba') return image;
  if (image.kind === 'bitmap') {
    const bmp = image.data;
    const canvas = new OffscreenCanvas(bmp.width, bmp.height);
    const ctx = canvas.getContext('2d');
    ctx.drawImage(bmp, 0, 0);
    bmp.close();
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    return { rgba: new Uint8Array(data.data.buffer), width: data.width, height: data.height };
  }
  throw new Error(`unsupported image input ${image.kind}`);
}
