// The model card page (www/model-card.html): fills "The model this page serves" from the bundle's
// manifest (`?model=` names it; default: this site's own bundle). Only manifest.json is read: no
// model byte is downloaded here.

import { inspectModel } from './model-info.js';

const $ = (id) => document.getElementById(id);
const DEFAULT_MODEL = new URL('./models/default/', import.meta.url).href;
const WEIGHTS = {
  real: 'trained weights (as the bundle states)',
  fixture: 'a test fixture with random weights: every result is meaningless',
  unknown: 'unknown: the bundle does not say, so treat it as not verified',
};
const BANNERS = {
  fixture: ['Demo model — random weights — results are meaningless.', 'This bundle is a test fixture, not the trained DermLIP model.'],
  unknown: ['Unverified model — results may be meaningless.', 'This bundle does not say what it is.'],
};

async function show() {
  let url;
  try {
    url = new URL(new URLSearchParams(location.search).get('model') || DEFAULT_MODEL, location.href);
    if (!/^https?:$/.test(url.protocol)) throw new Error('only http(s) model URLs');
  } catch (e) {
    $('card-status').textContent = `No model to describe: ${e.message}`;
    return;
  }
  let look;
  try {
    look = await inspectModel(url.href);
  } catch (e) {
    $('card-status').textContent = `The model's manifest could not be read: ${e.message}`;
    document.body.dataset.card = 'error';
    return;
  }
  const c = look.card;
  $('card-name').textContent = c.name || 'unknown';
  $('card-source').textContent = c.source || 'unknown';
  $('card-licence').textContent = c.licence || 'unknown';
  $('card-weights').textContent = WEIGHTS[c.weights];
  $('card-url').textContent = url.href;
  $('card-fields').hidden = false;
  $('card-status').textContent = look.kind === 'checkpoint'
    ? 'This model is a plain checkpoint without a manifest: nothing is known about it.'
    : `As its manifest states it${look.bytes ? ` (${(look.bytes / 1e6).toFixed(1)} MB before the first result)` : ''}:`;
  const banner = BANNERS[c.weights];
  $('model-banner').hidden = !banner;
  if (banner) {
    $('model-banner-title').textContent = banner[0];
    $('model-banner-text').textContent = banner[1];
  }
  if (c.accuracy.length) {
    const table = document.createElement('table');
    table.createCaption().textContent = "Expected accuracy (from the bundle's model card)";
    const head = table.createTHead().insertRow();
    for (const t of ['Benchmark', 'Metric', 'Value', 'Reference']) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = t;
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

show();
