// What a model is and what it costs, known before a single model byte is downloaded: the bundle's
// manifest (a few kB) gives its model card (docs/web-bundle.md, `model_card`) and the size of every
// file; the Cache API says whether it is already on this device. The site (www/app.js) and the
// widget (www/dermlip-widget.js) use this to show the model's size and to download it only on a
// click, unless it is cached (consent before bytes).

import { CACHE_NAME, getManifest } from './model-store.js';

/** Roles fetched only when custom labels or templates need the text tower. */
const LATER_ROLES = new Set(['text-tower', 'tokenizer']);

const text = (v) => (typeof v === 'string' && v.trim() ? v.trim() : null);

/**
 * The manifest's `model_card`, every field checked; what is missing is null ("unknown").
 * `weights`: 'real', 'fixture' or 'unknown'; only 'real' counts as verified.
 */
export function modelCard(manifest) {
  const raw = manifest && manifest.model_card && typeof manifest.model_card === 'object' ? manifest.model_card : {};
  const weights = raw.weights === 'real' || raw.weights === 'fixture' ? raw.weights : 'unknown';
  const accuracy = (Array.isArray(raw.accuracy) ? raw.accuracy : [])
    .filter((a) => a && typeof a === 'object' && Number.isFinite(a.value) && a.value >= 0 && a.value <= 1 && text(a.benchmark))
    .map((a) => ({ benchmark: text(a.benchmark), labelSet: text(a.label_set), metric: text(a.metric) || 'accuracy', value: a.value, reference: text(a.reference) }));
  return {
    name: text(raw.name) || (manifest && text(manifest.model)) || null,
    source: text(raw.source),
    licence: text(raw.licence),
    weights,
    verified: weights === 'real',
    accuracy,
  };
}

/** The card of a model that has no manifest (a plain open_clip checkpoint): nothing is known. */
export function unknownCard(name = null) {
  return { name, source: null, licence: null, weights: 'unknown', verified: false, accuracy: [] };
}

const isCheckpointUrl = (url) => /\.safetensors(\?.*)?$/.test(url);

async function allCached(urls) {
  try {
    const cache = await caches.open(CACHE_NAME);
    for (const u of urls) if (!(await cache.match(u))) return false;
    return true;
  } catch {
    return false; // no Cache API here (opaque origin, storage off): nothing is cached
  }
}

/**
 * What loading `url` would cost: `{kind: 'bundle'|'checkpoint', card, bytes, textBytes, cached}`.
 * `bytes`: what is downloaded before the first prediction with a built-in label set (null when
 * unknown: a plain checkpoint has no manifest); `cached`: every one of those files is in the Cache
 * API already (the worker still checks each one's sha256 before use). Fetches only manifest.json.
 */
export async function inspectModel(url) {
  if (isCheckpointUrl(url)) {
    const name = url.split('?')[0].split('/').slice(-2, -1)[0] || null;
    const cached = await allCached([url, new URL('open_clip_config.json', url).href]);
    return { kind: 'checkpoint', card: unknownCard(name), bytes: null, textBytes: null, cached };
  }
  const base = url.endsWith('/') ? url : `${url}/`;
  const { text: manifestText } = await getManifest(base);
  let manifest;
  try {
    manifest = JSON.parse(manifestText);
  } catch {
    throw new Error(`${base}manifest.json is not valid JSON`);
  }
  const files = Array.isArray(manifest.files) ? manifest.files.filter((f) => f && typeof f.path === 'string') : [];
  const size = (list) => list.reduce((n, f) => n + (Number.isSafeInteger(f.bytes) && f.bytes > 0 ? f.bytes : 0), 0);
  const first = files.filter((f) => !LATER_ROLES.has(f.role));
  const cached = first.length > 0 && (await allCached(first.map((f) => new URL(f.path, base).href)));
  return { kind: 'bundle', card: modelCard(manifest), bytes: size(first), textBytes: size(files.filter((f) => LATER_ROLES.has(f.role))), cached };
}

/** The visitor's browser asks pages to save data (`Save-Data`): never download a model unasked. */
export function saveData() {
  try {
    return !!(navigator.connection && navigator.connection.saveData);
  } catch {
    return false;
  }
}

export function formatBytes(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}
