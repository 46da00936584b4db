// The site in the widget's four languages (issue 16): every string of www/site-i18n.js in en, de,
// fr and es with the same placeholders and markup; ?lang= and the picker switch the whole page,
// the class names and concept tags included, and the choice is remembered.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, fixtureBytes, launch, newPage, openSite, startServer } from './harness.mjs';
import { STRINGS, translate } from '../../www/site-i18n.js';

const PLAIN = JSON.parse(readFileSync(join(ROOT, 'www/plain-language.json'), 'utf8'));
const IMAGE = 'images/chelsea_451x300_q95_444.jpg';
const placeholders = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
const codes = (s) => [...s.matchAll(/`[^`]+`/g)].map((m) => m[0]);
const plain = (s) => s.replace(/\*\*/g, '').replace(/`/g, '');

describe('the site\'s strings', () => {
  test('every language has every key, with the same placeholders, bold spans and code', () => {
    const keys = Object.keys(STRINGS.en);
    assert.deepEqual(Object.keys(STRINGS).sort(), ['de', 'en', 'es', 'fr']);
    for (const lang of ['de', 'fr', 'es']) {
      assert.deepEqual(Object.keys(STRINGS[lang]).sort(), [...keys].sort(), `${lang}: the same keys as en`);
      for (const k of keys) {
        const en = STRINGS.en[k];
        const s = STRINGS[lang][k];
        assert.ok(typeof s === 'string' && s.trim() === s && s.length > 0, `${lang}/${k}`);
        assert.deepEqual(placeholders(s), placeholders(en), `${lang}/${k}: placeholders`);
        assert.equal(s.split('**').length, en.split('**').length, `${lang}/${k}: bold spans`);
        assert.deepEqual(codes(s), codes(en), `${lang}/${k}: code spans`);
      }
    }
    assert.equal(translate('de', 'status.failed', { message: 'x' }), STRINGS.de['status.failed'].replace('{message}', 'x'));
  });
});

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (server) server.close();
});

async function choose(page) {
  await page.setInputFiles('#file', { name: 'c.jpg', mimeType: 'image/jpeg', buffer: Buffer.from(fixtureBytes(IMAGE)) });
  await page.waitForFunction(() => document.querySelector('#results ol.predictions') && document.body.dataset.busy === 'false');
}

// English strings of some length that the other language spells differently must not be on the
// page (the site's own strings on the site, the card's on the card page: the engine's label-set
// titles, e.g. "PAD-6 (smartphone photos: …)", are English on purpose).
function englishLeftovers(text, lang, card = false) {
  return Object.entries(STRINGS.en)
    .filter(([k]) => k.startsWith('card.') === card)
    .filter(([k, en]) => !/\{/.test(en) && plain(en).length >= 16 && STRINGS[lang][k] !== en)
    .map(([, en]) => plain(en))
    .filter((en) => text.includes(en));
}

describe('the site in another language', () => {
  for (const lang of ['de', 'fr', 'es']) {
    test(`?lang=${lang}: the page, the status, the result and the class names`, async () => {
      const context = await browser.newContext();
      const page = await newPage(context);
      await openSite(page, server.url, `nosw&lang=${lang}`);
      assert.equal(await page.getAttribute('html', 'lang'), lang);
      assert.equal(await page.textContent('h1'), STRINGS[lang].title);
      assert.equal(await page.textContent('#results-h'), STRINGS[lang]['results.h']);
      assert.equal(await page.inputValue('#lang'), lang);
      assert.ok((await page.textContent('#model-status')).startsWith(plain(STRINGS[lang]['status.ready']).split('{')[0]));
      await page.check('#show-all');
      await choose(page);
      const r = await page.evaluate(() => window.dermlipApp.state.result);
      const top = r.predictions[0].label;
      assert.ok((await page.textContent('#results .lead')).includes(PLAIN.classes[top][lang].name));
      assert.equal(await page.textContent('#advice'), STRINGS[lang][`advice.${await page.getAttribute('#advice', 'data-level')}`]);
      const tags = await page.$$eval('#concepts li', (lis) => lis.map((li) => [li.dataset.concept, li.textContent]));
      for (const [key, text] of tags) assert.equal(text, PLAIN.concepts[key][lang]);
      assert.ok((await page.textContent('#all-probs th')) === STRINGS[lang]['table.class']);
      const text = await page.evaluate(() => document.body.innerText);
      assert.deepEqual(englishLeftovers(text, lang), [], 'no English left on the page');
      await context.close();
    });
  }

  test('the model card page follows: ?lang=es, or the language chosen on the site', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}www/model-card.html?lang=es`);
    await page.waitForFunction(() => document.body.dataset.card);
    assert.equal(await page.getAttribute('html', 'lang'), 'es');
    assert.equal(await page.textContent('h1'), STRINGS.es['card.h1']);
    assert.equal(await page.textContent('#card-weights'), STRINGS.es['card.w.fixture']);
    assert.equal(await page.textContent('#model-banner-title'), STRINGS.es['banner.fixture.title']);
    const text = await page.evaluate(() => document.body.innerText);
    assert.deepEqual(englishLeftovers(text, 'es', true), [], 'no English left on the card page');
    await context.close();
  });

  test('the picker switches the page and the result at once, and the choice is remembered', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await openSite(page, server.url, 'nosw');
    assert.equal(await page.textContent('h1'), STRINGS.en.title);
    await choose(page);
    await page.selectOption('#lang', 'fr');
    assert.equal(await page.textContent('h1'), STRINGS.fr.title);
    assert.equal(await page.textContent('#results-h'), STRINGS.fr['results.h']);
    const r = await page.evaluate(() => window.dermlipApp.state.result);
    assert.ok((await page.textContent('#results .lead')).includes(PLAIN.classes[r.predictions[0].label].fr.name));
    assert.ok((await page.textContent('#model-status')).startsWith(plain(STRINGS.fr['status.ready']).split('{')[0]));
    // The next visit, without ?lang=, opens in French.
    await openSite(page, server.url, 'nosw');
    assert.equal(await page.getAttribute('html', 'lang'), 'fr');
    assert.equal(await page.textContent('h1'), STRINGS.fr.title);
    await page.goto(`${server.url}www/model-card.html`);
    await page.waitForFunction(() => document.body.dataset.card);
    assert.equal(await page.textContent('h1'), STRINGS.fr['card.h1']);
    await context.close();
  });
});
