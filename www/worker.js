// The Web Worker that owns the wasm engine. Messages in: {id, type, ...}; out: {id, ok, result|error}
// plus {type: 'progress'|'event', ...} notifications. Requests run one at a time, in order.

import init, { Engine } from '../pkg/dermlip.js';
import { download, getManifest, getUnverified, getVerified } from './model-store.js';

let engine = null;
let bundle = null; // {base, manifest} when loaded from a web bundle
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

let wasmReady = null;
function loadWasm() {
  wasmReady ??= (async () => {
    const url = new URL('../pkg/dermlip_bg.wasm', import.meta.url);
    const bytes = await download(url.href, { onProgress: progress('dermlip_bg.wasm', 'engine') });
    await init({ module_or_path: bytes });
  })();
  return wasmReady;
}

// A software WebGPU adapter (SwiftShader, WARP) emulates the GPU on the CPU: measured with
// ViT-B/16 in Chromium, a forward pass took 153 s there and 1.3 s on our wasm CPU backend.
async function softwareWebGpu() {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    return !!adapter && !!(adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter);
  } catch {
    return false;
  }
}

// Engine.create copies the bytes into wasm memory, so a failed attempt can be retried with the
// next choice: [backend, precision] pairs, best first.
async function createEngine(backend, precision, configText, textConfigText, weights, towers) {
  const bytes = new Uint8Array(weights);
  let fallbackReason = null;
  if (backend === 'auto' && (await softwareWebGpu())) {
    backend = 'cpu';
    precision = 'f32';
    fallbackReason = 'the only WebGPU adapter here is a software one, which is slower than the CPU backend';
    event({ type: 'fallback', from: 'webgpu', reason: fallbackReason });
  }
  const attempts = backend === 'auto' ? [['webgpu', precision], ['cpu', 'f32']] : [[backend, precision]];
  if (backend === 'auto' && precision === 'f16') attempts.splice(1, 0, ['webgpu', 'f32']);
  for (const [i, [b, p]] of attempts.entries()) {
    let eng = null;
    try {
      eng = await Engine.create(b, p, configText, textConfigText, bytes, towers);
      // The warm-up pass (shader compilation happens here, not in the first prediction); a GPU
      // that fails it falls back to the next choice.
      await eng.warmUp();
      return { eng, fallbackReason };
    } catch (err) {
      eng?.free();
      if (i === attempts.length - 1) throw err;
      fallbackReason = String(err && err.message ? err.message : err);
      event({ type: 'fallback', from: `${b}/${p}`, reason: fallbackReason });
    }
  }
}

function isCheckpointUrl(source) {
  return /\.safetensors(\?.*)?$/.test(source);
}

const handlers = {
  async load({ source, backend = 'auto', precision = 'f32', maxMegapixels }) {
    const started = performance.now();
    await loadWasm();
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
    if (isCheckpointUrl(source)) {
      // A plain open_clip checkpoint: both towers, label embeddings computed here.
      bundle = null;
      const configUrl = new URL('open_clip_config.json', source).href;
      const configText = new TextDecoder().decode(count(await getUnverified(configUrl, { onProgress: progress('open_clip_config.json', 'config') })));
      const weights = count(await getUnverified(source, { onProgress: progress(source.split('/').pop(), 'weights') }));
      const made = await createEngine(backend, precision, configText, undefined, weights, 'both');
      engine = made.eng;
      info = { model: source, labelSets: null, fallbackReason: made.fallbackReason, textTowerBytes: 0 };
    } else {
      const base = new URL(source.endsWith('/') ? source : source + '/', self.location.href).href;
      const { text: manifestText } = await getManifest(base);
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
      const made = await createEngine(backend, precision, configText, textConfigText, image, 'image');
      engine = made.eng;
      engine.setLabelEmbeddings(manifestText, new Uint8Array(labels));
      engine.setConcepts(concepts);
      bundle = { base, manifest };
      info = {
        model: manifest.model,
        labelSets: manifest.label_sets.map((s) => ({ id: s.id, name: s.name, classes: s.classes.length })),
        fallbackReason: made.fallbackReason,
        textTowerBytes: manifest.files.filter((f) => ['text-tower', 'tokenizer'].includes(f.role)).reduce((n, f) => n + f.bytes, 0),
        imageWeights: manifest.image_weights,
      };
    }
    if (maxMegapixels !== undefined) engine.setMaxMegapixels(maxMegapixels);
    return {
      ...info,
      backend: engine.backend(),
      precision: engine.precision(),
      embedDim: engine.embedDim(),
      bytesDownloaded: bytes.downloaded,
      bytesFromCache: bytes.fromCache,
      loadMs: performance.now() - started,
    };
  },

  async classify({ image, request }) {
    const eng = requireEngine();
    await ensureTextTower(request);
    if (image.kind === 'bytes') return eng.classify(new Uint8Array(image.data), request);
    const { rgba, width, height } = toRgba(image);
    return eng.classifyRgba(rgba, width, height, request);
  },

  async embedImage({ image }) {
    const eng = requireEngine();
    if (image.kind === 'bytes') return eng.embedImage(new Uint8Array(image.data));
    const { rgba, width, height } = toRgba(image);
    return eng.embedImageRgba(rgba, width, height);
  },

  async embedText({ texts }) {
    const eng = requireEngine();
    await ensureTextTower({ labels: [] });
    const flat = eng.embedText(texts);
    const out = await flat;
    const d = eng.embedDim();
    return texts.map((_, i) => out.slice(i * d, (i + 1) * d));
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
