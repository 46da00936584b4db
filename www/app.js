// The website: wires the page to the DermLIP API. All model work happens in the worker.

import { DermLIP } from './dermlip.js';
import { modelTrust } from './model-trust.js';
import { formatBytes, inspectModel, modelCard, saveData, unknownCard } from './model-info.js';
import { adviceLevel, loadPlainWords, notSkin } from './plain-words.js';
import { prefetchThumbnails, releaseThumbnails, similarView } from './gallery.js';
import { paintHeatMap, peakPercent, placeOver } from './heatmap.js';
import { applyStatic, pickLanguage, storeLanguage, translate } from './site-i18n.js';

const DEFAULT_MODEL = 'www/models/default/';
const CONSENT_KEY = 'dermlip-model-consent';
const $ = (id) => document.getElementById(id);
const state = { model: null, image: null, imageName: '', result: null, loading: null, source: null, words: null, gallery: null, region: null, imageSize: null };
const EXAMPLE_GALLERY = 'www/galleries/example/gallery.dlemb';
/** The page's language (www/site-i18n.js) and its strings. */
let lang = pickLanguage();
const t = (key, args) => translate(lang, key, args);
/** Sets an element's text from a function of the language, rerun when the language changes. */
const sayings = new Map();
function say(id, text) {
  sayings.set(id, text);
  $(id).textContent = text();
}
function setStatus(key, args) {
  say('model-status', typeof key === 'function' ? key : () => t(key, args));
}
/** How many similar cases a result shows when a gallery is loaded. */
const SIMILAR_CASES = 4;

// Where the model comes from decides whether the visitor is asked first (docs/deploy.md, "Which
// models load without asking"): `?model=` comes from a link anyone can write; the settings form
// (remembered in localStorage) is the visitor's own choice; otherwise the site's default bundle.
function params() {
  const q = new URLSearchParams(location.search);
  const linked = q.get('model');
  const chosen = localStorage.getItem('dermlip-model');
  return {
    model: linked || chosen || DEFAULT_MODEL,
    fromLink: !!linked && linked !== chosen,
    backend: q.get('backend') || localStorage.getItem('dermlip-backend') || 'auto',
  };
}

// The third-party models this visitor agreed to (or typed in the settings form), by URL.
function consented() {
  try {
    const list = JSON.parse(localStorage.getItem(CONSENT_KEY) || '[]');
    return Array.isArray(list) ? list.filter((x) => typeof x === 'string') : [];
  } catch {
    return [];
  }
}
function rememberConsent(url) {
  const list = consented().filter((x) => x !== url);
  list.push(url);
  try {
    localStorage.setItem(CONSENT_KEY, JSON.stringify(list.slice(-20)));
  } catch {
    // storage disabled: asked again next time
  }
}

/** Shows the consent step for a third-party model; resolves to true (load it) or false. */
function askConsent(trust) {
  const box = $('consent');
  say('consent-text', () => t('consent.from', { host: trust.host, repo: trust.repository, url: trust.url }));
  $('consent-text').style.overflowWrap = 'anywhere';
  say('consent-yes', () => t('consent.load', { host: trust.host }));
  box.hidden = false;
  document.body.dataset.state = 'consent';
  setStatus('status.consent');
  box.focus();
  return new Promise((resolve) => {
    const answer = (yes) => {
      $('consent-yes').onclick = $('consent-no').onclick = null;
      box.hidden = true;
      resolve(yes);
    };
    $('consent-yes').onclick = () => answer(true);
    $('consent-no').onclick = () => answer(false);
  });
}

/** The visible "third-party model: <source>" note (hidden for the site's own and pinned models). */
function showSource(trust) {
  const note = $('model-source');
  note.hidden = !trust || trust.kind !== 'third-party';
  say('model-source', () => (note.hidden ? '' : t('third-party', { label: trust.label })));
  note.style.overflowWrap = 'anywhere';
  if (note.hidden) delete document.body.dataset.thirdParty;
  else document.body.dataset.thirdParty = trust.label;
}

// ---- what the model is (its card) and what it costs (consent before bytes) -------------------

const BANNERS = { fixture: 'banner.fixture', unknown: 'banner.unknown' };

/** The persistent banner (fixture or unknown model) and the "Model: …" line with the card link. */
function showCard(card, url) {
  document.body.dataset.weights = card.weights;
  const banner = BANNERS[card.weights];
  $('model-banner').hidden = !banner;
  if (banner) {
    say('model-banner-title', () => t(`${banner}.title`));
    say('model-banner-text', () => t(`${banner}.text`));
  }
  say('model-about-text', () => {
    const parts = [t('about.model', { name: card.name || t('about.unknown') })];
    if (card.source) parts.push(t('about.from', { source: card.source }));
    parts.push(card.licence ? t('about.licence', { licence: card.licence }) : t('about.no-licence'));
    return `${parts.join(' · ')}. `;
  });
  $('model-about').style.overflowWrap = 'anywhere';
  $('model-about').hidden = false;
  const href = `www/model-card.html?model=${encodeURIComponent(url)}`;
  for (const a of document.querySelectorAll('a.model-card-link')) a.href = href;
}

/** Shows the model's size and resolves when the visitor clicks "Download". */
function askDownload(look) {
  say('download-text', () => (look.bytes === null
    ? t('download.unknown-size')
    : t('download.size', { size: formatBytes(look.bytes), text: formatBytes(look.textBytes) })));
  $('save-data-note').hidden = !saveData();
  say('download-button', () => (look.bytes === null ? t('download') : t('download.button', { size: formatBytes(look.bytes) })));
  $('download').hidden = false;
  document.body.dataset.state = 'ask';
  setStatus('status.not-downloaded');
  return new Promise((resolve) => {
    $('download-button').onclick = () => {
      $('download-button').onclick = null;
      $('download').hidden = true;
      resolve();
    };
  });
}

function showError(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = !message;
}

// ---- model loading ---------------------------------------------------------------------------

const bars = new Map();
function onProgress({ file, loaded, total, fromCache }) {
  let row = bars.get(file);
  if (!row) {
    row = document.createElement('div');
    row.className = 'progress-row';
    const label = document.createElement('label');
    const bar = document.createElement('progress');
    const id = `p-${bars.size}`;
    bar.id = id;
    label.htmlFor = id;
    row.append(label, bar);
    $('progress').append(row);
    bars.set(file, row);
  }
  const [label, bar] = row.children;
  bar.max = total || 1;
  bar.value = loaded;
  const what = fromCache ? t('progress.cached') : total ? t('progress.of', { loaded: formatBytes(loaded), total: formatBytes(total) }) : formatBytes(loaded);
  label.textContent = t('progress', { file, what });
}

/**
 * Loads the model the address, the settings or the site names. `clicked`: the visitor has just
 * asked for it (the settings form), so no further click is needed; otherwise the model downloads
 * only when cached already or after a click on "Download the model".
 */
async function loadModel({ clicked = false } = {}) {
  const { model: source, backend, fromLink } = params();
  $('model-url').value = source;
  $('backend').value = backend;
  const turn = {};
  state.loading = turn;
  let trust;
  try {
    trust = modelTrust(source, { base: location.href });
  } catch (e) {
    showSource(null);
    document.body.dataset.state = 'error';
    setStatus('status.failed', { message: e.message });
    return;
  }
  if (trust.kind === 'third-party' && fromLink && !consented().includes(trust.url)) {
    showSource(null);
    const yes = await askConsent(trust);
    if (state.loading !== turn) return;
    if (!yes) {
      // Back to the visitor's own choice, or the site's model; the link's model is not loaded.
      const url = new URL(location.href);
      url.searchParams.delete('model');
      history.replaceState(null, '', url);
      return loadModel();
    }
    rememberConsent(trust.url);
    clicked = true; // "Load the model from …" was the click
  }
  $('consent').hidden = true;
  $('download').hidden = true;
  state.source = trust;
  showSource(trust);
  if (state.model) await state.model.dispose().catch(() => {});
  state.model = null;
  // Consent before bytes: the manifest (a few kB) says what the model is and how big; the model
  // itself is downloaded only when cached already or on a click.
  let look = null;
  if (!clicked) {
    setStatus('status.looking');
    document.body.dataset.state = 'checking';
    try {
      look = await inspectModel(trust.url);
    } catch (e) {
      if (state.loading !== turn) return;
      document.body.dataset.state = 'error';
      setStatus('status.failed', { message: e.message });
      return;
    }
    if (state.loading !== turn) return;
    showCard(look.card, trust.url);
    if (!look.cached) {
      await askDownload(look);
      if (state.loading !== turn) return;
    }
  }
  bars.clear();
  $('progress').replaceChildren();
  setStatus('status.loading');
  document.body.dataset.state = 'loading';
  const loading = DermLIP.load(trust.url, { onProgress, backend, manifestSha256: trust.manifestSha256 });
  state.loading = loading;
  try {
    const model = await loading;
    if (state.loading !== loading) return model.dispose();
    state.model = model;
    releaseThumbnails(state.gallery?.thumbs);
    state.gallery = null; // a new model: a gallery is checked against the model that loads it
    $('similar').replaceChildren();
    const i = model.info;
    showCard(i.modelCard ? modelCard({ model: i.model, model_card: i.modelCard }) : look ? look.card : unknownCard(i.model), trust.url);
    setStatus(() => {
      const where = i.backend === 'webgpu' ? t(i.precision === 'f16' ? 'status.where.gpu16' : 'status.where.gpu') : t('status.where.cpu');
      const fallback = i.fallbackReason ? ` ${t('status.fallback', { reason: i.fallbackReason })}` : '';
      const cached = i.bytesDownloaded === 0 ? ` ${t('status.cached')}` : ` ${t('status.downloaded', { size: formatBytes(i.bytesDownloaded) })}`;
      return `${t('status.ready', { where, seconds: (i.loadMs / 1000).toFixed(1) })}${cached}${fallback}`;
    });
    document.body.dataset.state = 'ready';
    document.body.dataset.backend = i.backend;
    fillLabelSets(i);
    fillTemplates(i.templates);
    const galleryParam = new URLSearchParams(location.search).get('gallery');
    if (galleryParam) await loadGallery(galleryParam);
    else if (state.image) await classify();
  } catch (e) {
    if (state.loading !== loading) return;
    document.body.dataset.state = 'error';
    setStatus('status.failed', { message: e.message });
  }
}

// The built-in label sets as the engine lists them (`info.builtinLabelSets`); `info.labelSets`:
// those the bundle has precomputed (null for a plain checkpoint, which embeds them all here).
function fillLabelSets(info) {
  const select = $('label-set');
  const current = select.value || info.defaultLabelSet;
  const precomputed = info.labelSets;
  const ready = new Set((precomputed || []).map((s) => s.id));
  select.replaceChildren(
    ...info.builtinLabelSets.map(({ id, title }) => new Option(precomputed && !ready.has(id) ? t('set.needs-text', { title }) : title, id)),
    new Option(t('set.custom'), 'custom'),
  );
  select.value = current;
}

// The engine's default templates (Derm1M's eight), filled in once as the starting point to edit.
function fillTemplates(templates) {
  const area = $('custom-templates');
  if (area.dataset.filled) return;
  area.dataset.filled = 'true';
  area.value = templates.join('\n');
}

// ---- classification --------------------------------------------------------------------------

function request() {
  const set = $('label-set').value || state.model.info.defaultLabelSet;
  const topK = Math.max(1, Math.min(500, Number($('top-k').value) || 5));
  const similar = state.gallery ? SIMILAR_CASES : undefined;
  const gallery = state.gallery?.name;
  const region = state.region || undefined;
  const heatMap = $('heat-map-toggle').checked || undefined;
  if (set !== 'custom') return { labels: set, options: { topK, concepts: 5, similar, gallery, region, heatMap } };
  const lines = (id) => $(id).value.split('\n').map((s) => s.trim()).filter(Boolean);
  const labels = lines('custom-labels');
  if (labels.length < 2) throw new Error(t('error.two-labels'));
  const templates = lines('custom-templates');
  return { labels, options: { topK, concepts: 5, similar, gallery, region, heatMap, templates: templates.length ? templates : undefined } };
}

async function classify() {
  if (!state.image) return;
  showError('');
  if (!state.model) {
    $('results').textContent = t('results.waiting');
    return;
  }
  let req;
  try {
    req = request();
  } catch (e) {
    return showError(e.message);
  }
  document.body.dataset.busy = 'true';
  $('results').textContent = t('results.working');
  try {
    const started = performance.now();
    const result = await state.model.classify(state.image, req.labels, req.options);
    result.ms = performance.now() - started;
    state.words = await loadPlainWords();
    state.result = result;
    renderResult(result);
    showCrop(result.crop);
    showHeatMap(result);
    renderSimilar(result);
  } catch (e) {
    state.result = null;
    $('results').replaceChildren();
    $('concepts').replaceChildren();
    showError(explain(e.message));
  } finally {
    document.body.dataset.busy = 'false';
    $('copy-json').disabled = $('copy-csv').disabled = !state.result;
  }
}

function explain(message) {
  if (/unrecognised image data|unsupported image format/.test(message)) {
    return `This file is not a photo this page can read (${message}). Use a JPEG, PNG, WebP, GIF or BMP image.`;
  }
  if (/corrupt or truncated/.test(message)) return `The photo could not be read: ${message}. Try saving it again.`;
  return message;
}

function percent(p) {
  return p >= 0.995 ? '>99%' : p < 0.005 ? '<1%' : `${Math.round(p * 100)}%`;
}

// The advice beside every result ('advice.standard'); 'advice.strong' when a cancer or pre-cancer ranks high.

function renderResult(r) {
  const words = state.words;
  const list = document.createElement('ol');
  list.className = 'predictions';
  for (const p of r.predictions) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'label';
    const plain = words.name(p.label, lang);
    name.textContent = plain;
    if (words.knows(p.label) && plain.toLowerCase() !== p.label.toLowerCase()) {
      const medical = document.createElement('span');
      medical.className = 'medical';
      medical.textContent = ` (${p.label})`;
      name.append(medical);
    }
    const desc = words.description(p.label, lang);
    if (desc) name.title = desc;
    const meter = document.createElement('meter');
    meter.min = 0;
    meter.max = 1;
    meter.value = p.probability;
    meter.setAttribute('aria-label', `${plain}: ${percent(p.probability)}`);
    const value = document.createElement('span');
    value.className = 'value';
    value.textContent = percent(p.probability);
    li.append(name, meter, value);
    list.append(li);
  }
  const lead = document.createElement('p');
  lead.className = 'lead';
  const top = r.predictions[0];
  lead.textContent = t('lead', { set: r.labelSetName, name: words.name(top.label, lang), percent: percent(top.probability) });
  const what = document.createElement('p');
  what.className = 'description';
  what.textContent = words.description(top.label, lang);
  const level = adviceLevel(r);
  const advice = document.createElement('p');
  advice.className = `advice advice-${level}`;
  advice.id = 'advice';
  advice.dataset.level = level;
  advice.setAttribute('role', level === 'strong' ? 'alert' : 'note');
  advice.textContent = t(`advice.${level}`);
  const note = document.createElement('p');
  note.className = 'hint';
  note.textContent = t('results.note');
  const about = document.createElement('p');
  about.className = 'hint';
  about.id = 'label-set-note';
  about.textContent = r.labelSet === 'pad6' ? t('set.pad6') : t('set.other', { set: r.labelSetName });
  const odd = document.createElement('div');
  if (notSkin(r)) {
    odd.id = 'not-skin';
    odd.className = 'not-skin';
    odd.setAttribute('role', 'alert');
    const h = document.createElement('p');
    h.className = 'not-skin-title';
    h.textContent = t('not-skin.title');
    const p = document.createElement('p');
    p.textContent = t('not-skin.text', { what: r.domain.closestOther });
    odd.append(h, p);
  }
  $('results').replaceChildren(...[odd, lead, what, advice, list, about, note].filter((e) => e.textContent));

  const tags = r.concepts || [];
  if (tags.length) {
    const h = document.createElement('h3');
    h.textContent = t('tags.h');
    const ul = document.createElement('ul');
    ul.className = 'tags';
    for (const c of tags) {
      const li = document.createElement('li');
      li.textContent = words.concept(c.concept, lang);
      li.dataset.concept = c.concept;
      li.title = `${c.concept}: presence score ${c.score.toFixed(3)}`;
      ul.append(li);
    }
    $('concepts').replaceChildren(h, ul);
  } else {
    $('concepts').replaceChildren();
  }
  renderAll(r);
}

function renderAll(r) {
  if (!$('show-all').checked) return $('all-probs').replaceChildren();
  const table = document.createElement('table');
  const cap = document.createElement('caption');
  cap.textContent = t('table.caption', { n: r.labels.length, set: r.labelSetName });
  const head = table.createTHead().insertRow();
  for (const key of ['table.class', 'table.plain', 'table.probability']) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = t(key);
    head.append(th);
  }
  const body = table.createTBody();
  r.labels
    .map((l, i) => [l, r.probabilities[i]])
    .sort((a, b) => b[1] - a[1])
    .forEach(([l, p]) => {
      const row = body.insertRow();
      row.insertCell().textContent = l;
      row.insertCell().textContent = state.words.knows(l) ? state.words.name(l, lang) : '';
      row.insertCell().textContent = p.toFixed(4);
    });
  table.prepend(cap);
  $('all-probs').replaceChildren(table);
}

function csv(r) {
  const q = (s) => `"${String(s).replaceAll('"', '""')}"`;
  const rows = [['image', 'label_set', 'label', 'probability'].join(',')];
  r.labels.forEach((l, i) => rows.push([q(state.imageName), q(r.labelSet), q(l), r.probabilities[i].toFixed(6)].join(',')));
  return rows.join('\n') + '\n';
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    $('copy-status').textContent = t('copy.done');
  } catch {
    $('copy-status').textContent = t('copy.blocked');
    const pre = document.createElement('pre');
    pre.textContent = text;
    pre.tabIndex = 0;
    $('all-probs').replaceChildren(pre);
    getSelection().selectAllChildren(pre);
  }
}

/** The heat-map over the square the model saw, with its legend; hidden when not asked for. */
function showHeatMap(r) {
  const canvas = $('heat-map');
  const note = $('heat-map-note');
  canvas.hidden = note.hidden = !r?.heatMap;
  if (!r?.heatMap) return;
  paintHeatMap(canvas, r.heatMap);
  placeOver(canvas, r.crop);
  const name = state.words.name(r.heatMap.label, lang);
  note.textContent = t('heat.note', { name, rows: r.heatMap.rows, cols: r.heatMap.cols, peak: peakPercent(r.heatMap) });
}

function renderSimilar(r) {
  const strings = { heading: t('similar.h'), similarity: (s) => t('similar.score', { score: s.toFixed(2) }) };
  $('similar').replaceChildren(...similarView(r, state.gallery?.thumbs, strings));
}

/** Loads a case gallery into the model (the engine checks that this model made it). */
async function loadGallery(url) {
  const status = $('gallery-status');
  if (!state.model) {
    status.textContent = t('gallery.need-model');
    return;
  }
  status.textContent = t('gallery.loading');
  try {
    const summary = await state.model.loadGallery(url);
    const thumbs = await prefetchThumbnails(summary);
    releaseThumbnails(state.gallery?.thumbs);
    if (state.gallery && state.gallery.name !== summary.name) await state.model.clearGallery(state.gallery.name);
    state.gallery = { ...summary, thumbs };
    $('gallery-url').value = url;
    status.textContent = t('gallery.loaded', { images: summary.images, pictures: thumbs.size, k: SIMILAR_CASES });
  } catch (e) {
    status.textContent = t('gallery.failed', { message: e.message });
  }
  if (state.image) await classify();
}

/** Draws the square the model saw (`result.crop`, in the photo's pixels) on the preview, in
 * percent of the image so it follows the preview's size. */
function showCrop(crop) {
  const box = $('crop-box');
  box.hidden = $('crop-controls').hidden = !crop;
  if (!crop) return;
  state.imageSize = { width: crop.imageWidth, height: crop.imageHeight };
  const pct = (v, of) => `${(100 * v) / of}%`;
  box.style.left = pct(crop.x, crop.imageWidth);
  box.style.top = pct(crop.y, crop.imageHeight);
  box.style.width = pct(crop.width, crop.imageWidth);
  box.style.height = pct(crop.height, crop.imageHeight);
}

// ---- moving and zooming the crop ----------------------------------------------------------------
// The visitor's square (state.region, in the photo's pixels) is sent with the request; the engine
// answers with the box it used (result.crop), which showCrop draws.

/** The square of side min(w, h) / zoom, centred on (cx, cy), kept inside the photo. */
function squareAt(cx, cy, zoom) {
  const { width: w, height: h } = state.imageSize;
  const side = Math.max(16, Math.round(Math.min(w, h) / zoom));
  const x = Math.round(Math.min(Math.max(cx - side / 2, 0), w - side));
  const y = Math.round(Math.min(Math.max(cy - side / 2, 0), h - side));
  return { x, y, width: side, height: side };
}

function currentCentre() {
  const c = state.region || state.result?.crop;
  return c ? [c.x + c.width / 2, c.y + c.height / 2] : [state.imageSize.width / 2, state.imageSize.height / 2];
}

function drawRegion(r) {
  showCrop({ ...r, imageWidth: state.imageSize.width, imageHeight: state.imageSize.height });
}

function setRegion(r) {
  state.region = r;
  drawRegion(r);
  classify();
}

function wireCrop() {
  const box = $('crop-box');
  let drag = null;
  box.addEventListener('pointerdown', (e) => {
    if (!state.imageSize) return;
    box.setPointerCapture(e.pointerId);
    const [cx, cy] = currentCentre();
    drag = { x0: e.clientX, y0: e.clientY, cx, cy, scale: state.imageSize.width / $('preview-img').clientWidth, moved: null };
  });
  box.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const zoom = Number($('crop-zoom').value);
    drag.moved = squareAt(drag.cx + (e.clientX - drag.x0) * drag.scale, drag.cy + (e.clientY - drag.y0) * drag.scale, zoom);
    drawRegion(drag.moved);
  });
  const end = () => {
    if (drag?.moved) setRegion(drag.moved);
    drag = null;
  };
  box.addEventListener('pointerup', end);
  box.addEventListener('pointercancel', end);
  box.addEventListener('keydown', (e) => {
    if (!state.imageSize) return;
    const step = Math.max(1, Math.round(Math.min(state.imageSize.width, state.imageSize.height) * 0.05));
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const zoom = $('crop-zoom');
    let [cx, cy] = currentCentre();
    if (moves[e.key]) {
      cx += moves[e.key][0];
      cy += moves[e.key][1];
    } else if (e.key === '+' || e.key === '=') {
      zoom.value = String(Math.min(Number(zoom.max), Number(zoom.value) + Number(zoom.step)));
    } else if (e.key === '-' || e.key === '−') {
      zoom.value = String(Math.max(Number(zoom.min), Number(zoom.value) - Number(zoom.step)));
    } else {
      return;
    }
    e.preventDefault();
    setRegion(squareAt(cx, cy, Number(zoom.value)));
  });
  $('crop-zoom').addEventListener('change', () => {
    if (!state.imageSize) return;
    const [cx, cy] = currentCentre();
    setRegion(squareAt(cx, cy, Number($('crop-zoom').value)));
  });
  $('crop-reset').addEventListener('click', () => {
    $('crop-zoom').value = '1';
    state.region = null;
    classify();
  });
}

// ---- input -------------------------------------------------------------------------------------

function setImage(file) {
  if (!file) return;
  state.image = file;
  state.imageName = file.name || 'photo';
  const url = URL.createObjectURL(file);
  const img = $('preview-img');
  img.onload = img.onerror = () => URL.revokeObjectURL(url);
  img.src = url;
  $('preview-caption').textContent = `${state.imageName} (${formatBytes(file.size)})`;
  state.region = null;
  state.imageSize = null;
  $('crop-zoom').value = '1';
  showCrop(null);
  showHeatMap(null);
  $('preview').hidden = false;
  classify();
}

function wire() {
  for (const id of ['file', 'camera']) $(id).addEventListener('change', (e) => setImage(e.target.files[0]));
  const drop = $('drop');
  drop.addEventListener('click', () => $('file').click());
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      $('file').click();
    }
  });
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    setImage(e.dataTransfer.files[0]);
  });
  document.addEventListener('paste', (e) => {
    const item = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith('image/'));
    if (item) setImage(item);
  });
  $('label-set').addEventListener('change', () => {
    $('custom-fields').hidden = $('label-set').value !== 'custom';
    if ($('label-set').value !== 'custom') classify();
  });
  $('labels-form').addEventListener('submit', (e) => {
    e.preventDefault();
    classify();
  });
  $('show-all').addEventListener('change', () => state.result && renderAll(state.result));
  $('heat-map-toggle').addEventListener('change', () => classify());
  $('copy-json').addEventListener('click', () => state.result && copy(JSON.stringify({ image: state.imageName, ...state.result }, null, 2)));
  $('copy-csv').addEventListener('click', () => state.result && copy(csv(state.result)));
  $('gallery-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const url = $('gallery-url').value.trim();
    if (url) loadGallery(url);
  });
  $('gallery-example').addEventListener('click', () => loadGallery(EXAMPLE_GALLERY));
  $('model-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const url = new URL(location.href);
    const model = $('model-url').value.trim() || DEFAULT_MODEL;
    url.searchParams.set('model', model);
    url.searchParams.set('backend', $('backend').value);
    localStorage.setItem('dermlip-model', model);
    // Typed here by the visitor: their own choice, so a link to it later does not ask again.
    try {
      rememberConsent(modelTrust(model, { base: location.href }).url);
    } catch {
      // not a URL: loadModel says so
    }
    localStorage.setItem('dermlip-backend', $('backend').value);
    history.replaceState(null, '', url);
    loadModel({ clicked: true });
  });
}

// Exposed for the browser tests and for people poking at the page from the console.
window.dermlipApp = {
  state,
  classifyFile: (file) => setImage(file),
};

if ('serviceWorker' in navigator && !new URLSearchParams(location.search).has('nosw')) {
  navigator.serviceWorker.register('sw.js').catch(() => {});
}
/** Shows the page in `next` (en, de, fr, es): the static text, the status lines, the result. */
function setLanguage(next) {
  lang = next;
  $('lang').value = lang;
  applyStatic(lang);
  for (const [id, text] of sayings) $(id).textContent = text();
  if (state.result) {
    renderResult(state.result);
    showHeatMap(state.result);
    renderSimilar(state.result);
  }
  if (state.model) fillLabelSets(state.model.info);
}

setLanguage(lang);
$('lang').addEventListener('change', () => {
  storeLanguage($('lang').value);
  setLanguage($('lang').value);
});
wire();
wireCrop();
loadPlainWords(); // now, so that classifying later makes no network request
loadModel();
