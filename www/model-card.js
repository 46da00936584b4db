// The model card page (www/model-card.html): fills "The model this page serves" from the bundle's
// manifest (`?model=` names it; default: this site's own bundle). Only manifest.json is read: no
// model byte is downloaded here.

import { inspectModel } from './model-info.js';
import { applyStatic, pickLanguage, translate } from './site-i18n.js';

const $ = (id) => document.getElementById(id);
const DEFAULT_MODEL = new URL('./models/default/', import.meta.url).href;
// The site's language (www/site-i18n.js: ?lang=, the visitor's choice on the site, the browser's).
const lang = pickLanguage();
const t = (key, args) => translate(lang, key, args);

async function show() {
  let url;
  try {
    url = new URL(new URLSearchParams(location.search).get('model') || DEFAULT_MODEL, location.href);
    if (!/^https?:$/.test(url.protocol)) throw new Error('only http(s) model URLs');
  } catch (e) {
    $('card-status').textContent = t('card.none', { message: e.message });
    return;
  }
  let look;
  try {
    look = await inspectModel(url.href);
  } catch (e) {
    $('card-status').textContent = t('card.unreadable', { message: e.message });
    document.body.dataset.card = 'error';
    return;
  }
  const c = look.card;
  $('card-name').textContent = c.name || t('card.unknown');
  $('card-source').textContent = c.source || t('card.unknown');
  $('card-licence').textContent = c.licence || t('card.unknown');
  $('card-weights').textContent = t(`card.w.${c.weights}`);
  $('card-url').textContent = url.href;
  $('card-fields').hidden = false;
  $('card-status').textContent = look.kind === 'checkpoint'
    ? t('card.checkpoint')
    : look.bytes ? t('card.as-stated.size', { size: (look.bytes / 1e6).toFixed(1) }) : t('card.as-stated');
  const banner = c.weights === 'real' ? null : c.weights;
  $('model-banner').hidden = !banner;
  if (banner) {
    $('model-banner-title').textContent = t(`banner.${banner}.title`);
    $('model-banner-text').textContent = t(`card.banner.${banner}.text`);
  }
  if (c.accuracy.length) {
    const table = document.createElement('table');
    table.createCaption().textContent = t('card.exp.caption');
    const head = table.createTHead().insertRow();
    for (const key of ['card.exp.benchmark', 'card.exp.metric', 'card.exp.value', 'card.exp.reference']) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = t(key);
      head.append(th);
    }
    const body = table.createTBody();
    for (const a of c.accuracy) {
      const row = body.insertRow();
      for (const v of [a.benchmark, a.metric, a.value.toFixed(4), a.reference || '—']) row.insertCell().textContent = v;
    }
    $('card-accuracy').replaceChildren(table);
  }
  document.body.dataset.card = c.weights;
}

applyStatic(lang);
document.title = t('card.doc.title');
show();
