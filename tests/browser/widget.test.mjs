// The embeddable widget (<dermlip-classifier>, www/dermlip-widget.js) in Debian's Chromium.
// Test pages other than www/embed-example.html are served by Playwright routes under /__widget/
// (so each can have its own headers, e.g. a strict CSP); everything else comes from
// scripts/serve.mjs, started with --cors so that a page on the other loopback origin
// (localhost vs 127.0.0.1) can embed the widget cross-origin.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { artifactPath, fixtureBytes, launch, newPage, startServer } from './harness.mjs';

const IMAGE = 'tests/fixtures/images/astronaut_512_q90_420.jpg';
const IMAGE2 = 'images/coffee_600x400_progressive.jpg'; // fixtureBytes() path
const LOAD_TIMEOUT = 180_000;

let server; // http://127.0.0.1:PORT/
let other; // the same server as http://localhost:PORT/ (another origin, another site)
let browser;
before(async () => {
  server = await startServer(['--cors']);
  other = server.url.replace('127.0.0.1', 'localhost');
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (server) server.close();
});

/**
 * A second tiny server (another origin: another port, and `localhost` instead of 127.0.0.1, so
 * another site) that serves one page with `headers`. A real server rather than a Playwright
 * route, so that Chromium sees a loopback page embedding a loopback widget host.
 */
function pageServer(html, headers) {
  return new Promise((resolve) => {
    const s = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...headers });
      res.end(html);
    });
    s.listen(0, '127.0.0.1', () => resolve({ url: `http://localhost:${s.address().port}/`, close: () => s.close() }));
  });
}

/** Serves `html` at `${origin}__widget/${name}` (with `headers`) in this context; returns its URL. */
async function route(context, origin, name, html, headers = {}) {
  const url = `${origin}__widget/${name}`;
  await context.route(url, (r) => r.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', headers, body: html }));
  return url;
}

// These widgets download their model by themselves, at once (reveal="auto" loading="eager"): the
// default, a download only on a click, is tested in download-consent.test.mjs.
const AUTO = 'reveal="auto" loading="eager"';
const page = (body, head = '') => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>widget test</title>${head}</head><body>${body.replaceAll('<dermlip-classifier ', `<dermlip-classifier ${AUTO} `)}</body></html>`;

/** Records every dermlip-* event on the page's document (installed before any page script runs). */
async function recordEvents(p) {
  await p.addInitScript(() => {
    const log = [];
    Object.defineProperty(window, '__events', { value: log, enumerable: false });
    for (const type of ['dermlip-ready', 'dermlip-progress', 'dermlip-result', 'dermlip-error', 'dermlip-answer']) {
      document.addEventListener(type, (e) => log.push({ type, id: e.target.id, detail: JSON.parse(JSON.stringify(e.detail)), bubbles: e.bubbles, composed: e.composed }));
    }
  });
}

const events = (p, type, id) => p.evaluate(([type, id]) => window.__events.filter((e) => e.type === type && (!id || e.id === id)), [type, id]);

/** Waits for the n-th dermlip-result (1-based) of widget `id` (or a new model-load error); returns its detail. */
async function nthResult(p, id, n) {
  const failed = (await events(p, 'dermlip-error', id)).filter((e) => e.detail.code === 'model-load').length;
  await p.waitForFunction(([id, n, failed]) => window.__events.filter((e) => e.type === 'dermlip-result' && e.id === id).length >= n
    || window.__events.filter((e) => e.type === 'dermlip-error' && e.id === id && e.detail.code === 'model-load').length > failed, [id, n, failed], { timeout: LOAD_TIMEOUT });
  const results = await events(p, 'dermlip-result', id);
  if (results.length < n) throw new Error(`no result: ${JSON.stringify(await events(p, 'dermlip-error', id))}`);
  return results[n - 1].detail;
}

async function nthError(p, id, n) {
  await p.waitForFunction(([id, n]) => window.__events.filter((e) => e.type === 'dermlip-error' && e.id === id).length >= n, [id, n], { timeout: LOAD_TIMEOUT });
  return (await events(p, 'dermlip-error', id))[n - 1].detail;
}

const errorBox = (p, id) => p.locator(`#${id}`).locator('[part~="error"]');

describe('the embeddable widget', () => {
  test('two widgets on the example page share one worker and download every file once', async () => {
    const context = await browser.newContext();
    const p = await newPage(context);
    await recordEvents(p);
    const requests = [];
    const workers = [];
    context.on('request', (r) => requests.push(r.url()));
    p.on('worker', (w) => workers.push(w.url()));
    await p.goto(`${server.url}www/embed-example.html`);
    // The example page keeps the default (reveal="interaction"): one click downloads the shared model for both.
    await p.locator('#classify-demo').locator('[part~="load-button"]').click();
    await p.waitForFunction(() => window.__events.filter((e) => e.type === 'dermlip-ready').length >= 2, null, { timeout: LOAD_TIMEOUT });
    const first = await nthResult(p, 'classify-demo', 1);
    assert.equal(first.labelSet, 'ham7');
    assert.equal(first.predictions.length, 3);
    assert.deepEqual(workers, [`${server.url}www/worker.js`], 'one worker');
    const counts = {};
    for (const u of requests) {
      const path = new URL(u).pathname;
      counts[path] = (counts[path] || 0) + 1;
    }
    // manifest.json: once by the page (the model's size and card, before the click), once by the worker.
    assert.equal(counts['/www/models/default/manifest.json'], 2);
    const files = ['/pkg/dermlip_cpu_bg.wasm', '/www/models/default/image.safetensors',
      '/www/models/default/label-embeddings.safetensors', '/www/models/default/concepts.json', '/www/models/default/open_clip_config.json',
      '/www/examples/synthetic-lesion.jpg'];
    for (const f of files) assert.equal(counts[f], 1, `${f} requested ${counts[f]} times`);
    assert.equal(counts['/www/models/default/text.safetensors'], undefined, 'no text tower for built-in label sets');
    // Both widgets reported the download progress of the shared model.
    for (const id of ['classify-demo', 'quiz-demo']) {
      const progress = await events(p, 'dermlip-progress', id);
      assert.ok(progress.some((e) => e.detail.file === 'image.safetensors' && e.detail.loaded === e.detail.total && e.detail.total > 0), id);
    }
    await p.screenshot({ path: artifactPath('widget-embed-example.png'), fullPage: true });
    console.log(`example page: ${Object.values(counts).reduce((a, b) => a + b)} requests, workers ${workers.length}`);
    await context.close();
  });

  test('events fire with correct payloads; the result equals DermLIP.classify; loading the script twice is harmless', async () => {
    const context = await browser.newContext();
    const p = await newPage(context);
    await recordEvents(p);
    const html = page(`<dermlip-classifier id="w" label-set="ham7" top-k="3" src="/${IMAGE}"></dermlip-classifier>`,
      '<script type="module" src="/www/dermlip-widget.js"></script><script type="module" src="/www/dermlip-widget.js?copy=2"></script>');
    const baselineUrl = await route(context, server.url, 'baseline.html', page(''));
    await p.goto(baselineUrl);
    const baseline = await p.evaluate(() => Object.getOwnPropertyNames(window));
    await p.goto(await route(context, server.url, 'events.html', html));
    const result = await nthResult(p, 'w', 1);

    // No globals besides the element, even with the script loaded from two URLs.
    const globals = await p.evaluate((baseline) => Object.getOwnPropertyNames(window).filter((k) => !baseline.includes(k)), baseline);
    assert.deepEqual(globals, []);
    assert.equal(await p.evaluate(() => typeof customElements.get('dermlip-classifier')), 'function');

    const progress = await events(p, 'dermlip-progress', 'w');
    assert.ok(progress.length >= 6, `${progress.length} progress events`);
    for (const e of progress) {
      assert.ok(e.bubbles && e.composed);
      assert.equal(typeof e.detail.file, 'string');
      assert.ok(Number.isFinite(e.detail.loaded) && e.detail.loaded >= 0 && e.detail.loaded <= Math.max(e.detail.total, e.detail.loaded));
      assert.ok(e.detail.overall.loaded <= e.detail.overall.total);
    }
    const manifest = await (await fetch(`${server.url}www/models/default/manifest.json`)).json();
    const imageTower = manifest.files.find((f) => f.role === 'image-tower');
    const last = progress.filter((e) => e.detail.file === imageTower.path).pop();
    assert.deepEqual([last.detail.loaded, last.detail.total, last.detail.role], [imageTower.bytes, imageTower.bytes, 'image-tower']);

    const [ready] = await events(p, 'dermlip-ready', 'w');
    assert.ok(ready.bubbles && ready.composed);
    assert.ok(['webgpu', 'cpu'].includes(ready.detail.backend));
    assert.ok(ready.detail.bytesDownloaded > 0);
    assert.ok(ready.detail.labelSets.some((s) => s.id === 'ham7'));
    const order = await p.evaluate(() => window.__events.filter((e) => e.type !== 'dermlip-progress').map((e) => e.type));
    assert.deepEqual(order.slice(0, 2), ['dermlip-ready', 'dermlip-result']);

    // The result is the JS API's result object: same shape and numbers as DermLIP.classify.
    const direct = await p.evaluate(async ({ src }) => {
      const { DermLIP } = await import('/www/dermlip.js');
      const model = await DermLIP.load('/www/models/default/', { backend: document.querySelector('#w').info.backend });
      const bytes = new Uint8Array(await (await fetch(src)).arrayBuffer());
      const r = await model.classify(bytes, 'ham7', { topK: 3, concepts: 5 });
      await model.dispose();
      return r;
    }, { src: `/${IMAGE}` });
    assert.deepEqual(Object.keys(result).sort(), Object.keys(direct).sort());
    assert.equal(result.labelSet, 'ham7');
    assert.deepEqual(result.labels, direct.labels);
    assert.deepEqual(result.predictions.map((x) => x.label), direct.predictions.map((x) => x.label));
    const diff = Math.max(...result.probabilities.map((x, i) => Math.abs(x - direct.probabilities[i])));
    assert.ok(diff <= 1e-6, `max |Δprob| widget vs DermLIP.classify ${diff}`);
    assert.deepEqual(result.concepts.map((c) => c.concept), direct.concepts.map((c) => c.concept));
    console.log(`events: ${progress.length} progress events, max |Δprob| vs DermLIP.classify ${diff.toExponential(2)}`);

    // A bad attribute: a dermlip-error naming it.
    await p.evaluate(() => document.querySelector('#w').setAttribute('top-k', '0'));
    const err = await nthError(p, 'w', 1);
    assert.equal(err.code, 'bad-attribute');
    assert.equal(err.attribute, 'top-k');
    assert.match(err.message, /top-k must be a whole number of at least 1 \(got "0"\)/);
    await context.close();
  });

  test('changing label-set, top-k or labels re-classifies; no network request after the model has loaded', async () => {
    const context = await browser.newContext();
    const p = await newPage(context);
    await recordEvents(p);
    await p.goto(await route(context, server.url, 'attrs.html', page(
      `<dermlip-classifier id="w" label-set="ham7" top-k="3" src="/${IMAGE}"></dermlip-classifier>
       <dermlip-classifier id="custom" labels="a mole; a wart; a rash" templates="a photo of {c}"></dermlip-classifier>`,
      '<script type="module" src="/www/dermlip-widget.js"></script>')));
    await nthResult(p, 'w', 1);
    // A widget with inline labels loads the text tower while loading, not later.
    await p.waitForFunction(() => window.__events.some((e) => e.type === 'dermlip-ready' && e.id === 'custom'), null, { timeout: LOAD_TIMEOUT });
    const requests = [];
    context.on('request', (r) => requests.push(r.url()));

    const set = (attr, value, id = 'w') => p.evaluate(([id, a, v]) => document.getElementById(id).setAttribute(a, v), [id, attr, value]);
    await set('label-set', 'pad6');
    let r = await nthResult(p, 'w', 2);
    assert.equal(r.labelSet, 'pad6');
    assert.equal(r.predictions.length, 3);
    await set('top-k', '5');
    r = await nthResult(p, 'w', 3);
    assert.equal(r.labelSet, 'pad6');
    assert.equal(r.predictions.length, 5);
    assert.match(await p.locator('#w').locator('[part~="result"]').textContent(), /PAD-UFES-20/);
    assert.equal(await p.locator('#w').locator('[part~="prediction"]').count(), 5);
    // Only a change that matters classifies again: the UI language only re-renders.
    await set('lang', 'de');
    await p.waitForFunction(() => /Modell bereit/.test(document.getElementById('w').shadowRoot.textContent));
    assert.equal((await events(p, 'dermlip-result', 'w')).length, 3);
    // Concepts mode: the concept tags only (top-k of them).
    await set('mode', 'concepts');
    r = await nthResult(p, 'w', 4);
    assert.ok(r.concepts.length >= 5);
    assert.equal(await p.locator('#w').locator('[part~="tag"]').count(), 5);
    assert.equal(await p.locator('#w').locator('[part~="prediction"]').count(), 0);
    assert.match(await p.locator('#w').locator('[part~="title"]').textContent(), /Sichtbare Merkmale/);
    // A photo the student picks, then the custom-label widget.
    await p.locator('#custom').locator('input[type=file]').setInputFiles({ name: 'mine.jpg', mimeType: 'image/jpeg', buffer: Buffer.from(fixtureBytes(IMAGE2)) });
    r = await nthResult(p, 'custom', 1);
    assert.deepEqual(r.labels, ['a mole', 'a wart', 'a rash']);
    assert.equal(r.labelEmbeddings, 'text-tower');
    await set('labels', 'eczema; psoriasis', 'custom');
    r = await nthResult(p, 'custom', 2);
    assert.deepEqual(r.labels, ['eczema', 'psoriasis']);
    assert.deepEqual(requests.filter((u) => !u.startsWith('blob:')), [], 'no network request after loading');
    await context.close();
  });

  test('quiz flow with the keyboard only', async () => {
    const context = await browser.newContext();
    const p = await newPage(context);
    await recordEvents(p);
    await p.goto(await route(context, server.url, 'quiz.html', page(
      `<p>Case 1</p><dermlip-classifier id="q" mode="quiz" label-set="ham7" top-k="3" src="/${IMAGE}" answer="nevus"></dermlip-classifier>`,
      '<script type="module" src="/www/dermlip-widget.js"></script>')));
    const radios = p.locator('#q').locator('input[type=radio]');
    await radios.first().waitFor({ timeout: LOAD_TIMEOUT });
    assert.equal(await radios.count(), 7);
    assert.equal((await events(p, 'dermlip-result', 'q')).length, 0, 'nothing is revealed before the student answers');
    assert.equal(await p.locator('#q').locator('[part~="prediction"]').count(), 0);

    const focused = () => p.evaluate(() => {
      const w = document.getElementById('q');
      const a = w.shadowRoot.activeElement;
      if (document.activeElement !== w || !a) return `outside:${document.activeElement.localName}`;
      return a.type === 'radio' ? `radio:${a.value}:${a.checked}` : a.localName === 'button' ? a.textContent.trim() : a.getAttribute('part');
    });
    // The fixture's "demo model" banner comes first, with its link to the model card.
    await p.keyboard.press('Tab');
    assert.equal(await focused(), 'model-card-link');
    await p.keyboard.press('Tab');
    assert.equal(await focused(), 'radio:actinic keratosis:false');
    // Submitting without a choice says what to do.
    await p.keyboard.press('Tab');
    assert.equal(await focused(), 'Check my answer');
    await p.keyboard.press('Enter');
    assert.match(await p.locator('#q').locator('[part~="quiz"]').textContent(), /Pick an answer first/);
    assert.equal(await focused(), 'radio:actinic keratosis:false');
    await p.keyboard.press('ArrowDown');
    await p.keyboard.press('ArrowDown');
    assert.equal(await focused(), 'radio:benign keratosis:true');
    await p.keyboard.press('ArrowDown');
    await p.keyboard.press('Space');
    assert.equal(await focused(), 'radio:dermatofibroma:true');
    await p.keyboard.press('Tab');
    assert.equal(await focused(), 'Check my answer');
    await p.keyboard.press('Enter');
    await p.waitForFunction(() => window.__events.some((e) => e.type === 'dermlip-answer'));
    assert.equal(await focused(), 'feedback', 'focus moves to the verdict');
    const [answer] = await events(p, 'dermlip-answer', 'q');
    const [result] = await events(p, 'dermlip-result', 'q');
    assert.equal(answer.detail.choice, 'dermatofibroma');
    assert.equal(answer.detail.answer, 'nevus');
    assert.equal(answer.detail.correct, false);
    assert.equal(answer.detail.modelTop1, result.detail.predictions[0].label);
    assert.equal(answer.detail.matchesModel, result.detail.predictions[0].label === 'dermatofibroma');
    const feedback = await p.locator('#q').locator('[part~="feedback"]').textContent();
    assert.match(feedback, /You chose dermatofibroma\./);
    assert.match(feedback, /Not quite: the answer is nevus\./);
    assert.match(feedback, /not ground truth/);
    assert.match(feedback, result.detail.predictions[0].label === 'dermatofibroma' ? /also dermatofibroma/ : /ranked your answer \d of 7/);
    assert.equal(await p.locator('#q').locator('[part~="prediction"]').count(), 3, "the model's top-3 is revealed");
    assert.ok(await p.locator('#q').locator('[part~="tag"]').count() > 0, 'concept tags are revealed');
    await p.locator('#q').screenshot({ path: artifactPath('widget-quiz-revealed.png') });
    // Try again, still with the keyboard.
    await p.keyboard.press('Tab');
    assert.equal(await focused(), 'Try again');
    await p.keyboard.press('Space');
    assert.equal(await focused(), 'radio:actinic keratosis:false');
    assert.equal(await p.locator('#q').locator('[part~="prediction"]').count(), 0, 'hidden again');
    for (let i = 0; i < 5; i++) await p.keyboard.press('ArrowDown');
    assert.equal(await focused(), 'radio:nevus:true');
    await p.keyboard.press('Tab');
    await p.keyboard.press('Enter');
    await p.waitForFunction(() => window.__events.filter((e) => e.type === 'dermlip-answer').length === 2);
    const second = (await events(p, 'dermlip-answer', 'q'))[1].detail;
    assert.equal(second.correct, true);
    assert.match(await p.locator('#q').locator('[part~="feedback"]').textContent(), /Correct: the answer is nevus\./);
    await context.close();
  });

  test('bad attribute values give a visible, clear error and the widget recovers when fixed', async () => {
    const context = await browser.newContext();
    const p = await newPage(context);
    await recordEvents(p);
    await p.goto(await route(context, server.url, 'errors.html', page(
      `<dermlip-classifier id="w" label-set="ham7" top-k="3" src="/${IMAGE}"></dermlip-classifier>
       <dermlip-classifier id="bad" label-set="ham7" top-k="NaN"></dermlip-classifier>`,
      '<script type="module" src="/www/dermlip-widget.js"></script>')));
    // Wrong from the start.
    const first = await nthError(p, 'bad', 1);
    assert.equal(first.attribute, 'top-k');
    assert.ok(await errorBox(p, 'bad').isVisible());
    assert.match(await errorBox(p, 'bad').textContent(), /set up incorrectly.*top-k must be a whole number of at least 1 \(got "NaN"\)/);
    await nthResult(p, 'w', 1);

    const cases = [
      ['label-set', 'ham8', /Unknown label set "ham8"\. Use one of ham7, pad6/],
      ['top-k', '0', /top-k must be a whole number of at least 1 \(got "0"\)/],
      ['top-k', '2.5', /top-k must be a whole number/],
      ['mode', 'exam', /Unknown mode "exam"\. Use classify, concepts or quiz\./],
      ['labels', 'only one label', /needs at least two labels separated by semicolons \(got 1\)/],
      ['templates', 'a photo of', /Every template must contain \{c\}/],
      ['backend', 'tpu', /Unknown backend "tpu"/],
      ['model', '/www/models/missing/', /The model could not be loaded from .*\/www\/models\/missing\/.*404/],
    ];
    let errors = 0; // of #w
    let results = 1;
    for (const [attr, value, message] of cases) {
      await p.evaluate(([a, v]) => document.getElementById('w').setAttribute(a, v), [attr, value]);
      const e = await nthError(p, 'w', ++errors);
      assert.equal(e.attribute, attr, `${attr}=${value}`);
      assert.match(e.message, message);
      const box = errorBox(p, 'w');
      assert.ok(await box.isVisible(), `${attr}=${value}: the error is visible`);
      assert.match(await box.textContent(), message);
      assert.equal(await p.locator('#w').locator('[part~="prediction"]').count(), 0, 'no stale result next to the error');
      // Still usable: the photo picker is there.
      assert.ok(await p.locator('#w').locator('[part~="pick-button"]').isVisible());
      await p.evaluate((a) => document.getElementById('w').removeAttribute(a), attr);
      await nthResult(p, 'w', ++results);
      assert.ok(!(await errorBox(p, 'w').isVisible()), `${attr}: the error is gone once fixed`);
    }
    // The quiz's educator answer must be one of the options.
    await p.evaluate(() => {
      const w = document.getElementById('w');
      w.setAttribute('mode', 'quiz');
      w.setAttribute('answer', 'wart');
    });
    const e = await nthError(p, 'w', ++errors);
    assert.equal(e.attribute, 'answer');
    assert.match(await errorBox(p, 'w').textContent(), /The answer "wart" is not one of the answer options/);
    await p.evaluate(() => document.getElementById('w').setAttribute('answer', 'Melanoma'));
    await p.waitForFunction(() => document.getElementById('w').shadowRoot.querySelector('[part~="error"]').hidden);
    // And a file that is not a photo.
    await p.evaluate(() => document.getElementById('w').removeAttribute('src'));
    await p.evaluate(() => document.getElementById('w').setAttribute('mode', 'classify'));
    await p.locator('#w').locator('input[type=file]').setInputFiles({ name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a photo') });
    const bad = await nthError(p, 'w', ++errors);
    assert.equal(bad.code, 'image');
    assert.match(await errorBox(p, 'w').textContent(), /not a photo this widget can read/);
    // Fixing #bad makes it work too.
    await p.evaluate(() => document.getElementById('bad').setAttribute('top-k', '2'));
    await p.waitForFunction(() => window.__events.some((e) => e.type === 'dermlip-ready' && e.id === 'bad'));
    assert.ok(!(await errorBox(p, 'bad').isVisible()));
    await p.locator('#w').screenshot({ path: artifactPath('widget-error.png') });
    await context.close();
  });

  test('hostile host CSS does not change the widget, and the widget\'s CSS does not leak out', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 1400 } });
    const p = await newPage(context);
    await recordEvents(p);
    const probes = '<p class="probe">host paragraph</p><button class="probe">host button</button><ol class="probe"><li>host item</li></ol><div class="probe error">host error</div><progress class="probe"></progress>';
    await p.goto(await route(context, server.url, 'hostile.html', page(`${probes}<div id="slot"></div>`)));
    const styleOf = () => p.$$eval('.probe', (els) => els.map((e) => {
      const s = getComputedStyle(e);
      return ['display', 'font-size', 'font-family', 'font-weight', 'color', 'background-color', 'margin', 'padding', 'border', 'box-sizing', 'width', 'height', 'outline']
        .map((k) => `${k}:${s.getPropertyValue(k)}`).join(';');
    }));
    const before = await styleOf();
    await p.evaluate(async (src) => {
      await import('/www/dermlip-widget.js');
      const w = document.createElement('dermlip-classifier');
      w.id = 'w';
      w.setAttribute('label-set', 'ham7');
      w.setAttribute('top-k', '3');
      w.setAttribute('reveal', 'auto');
      w.setAttribute('loading', 'eager');
      w.setAttribute('src', src);
      document.getElementById('slot').append(w);
    }, `/${IMAGE}`);
    await nthResult(p, 'w', 1);
    assert.deepEqual(await styleOf(), before, 'host elements keep their computed style');
    const box = p.locator('#w').locator('[part~="container"]');
    const shot = async (name) => {
      await p.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      const png = await box.screenshot({ path: artifactPath(name), animations: 'disabled', caret: 'hide' });
      return { png: png.toString('base64'), size: await box.boundingBox() };
    };
    const clean = await shot('widget-clean.png');
    await p.addStyleTag({
      content: `* { all: unset } html, body, div, span { font-size: 40px !important; display: inline !important; line-height: 3 !important; color: red !important;
        letter-spacing: 5px !important; text-transform: uppercase !important; font-family: "Comic Sans MS", cursive !important; text-align: center !important; }
        button, input, p, ol, li, progress, meter, figure, canvas { all: unset !important; background: lime !important; border: 9px dotted blue !important; padding: 30px !important; font-size: 30px !important; }
        :root { --unrelated: 1; } * { box-sizing: content-box !important; text-decoration: underline wavy !important; } body { visibility: visible; cursor: wait !important; }`,
    });
    const hostile = await shot('widget-hostile.png');
    assert.deepEqual([hostile.size.width, hostile.size.height], [clean.size.width, clean.size.height], 'same box size');
    const cmp = await p.evaluate(async ([a, b]) => {
      const load = async (b64) => createImageBitmap(await (await fetch(`data:image/png;base64,${b64}`)).blob());
      const [x, y] = [await load(a), await load(b)];
      const px = (bmp) => {
        const c = new OffscreenCanvas(bmp.width, bmp.height);
        const g = c.getContext('2d');
        g.drawImage(bmp, 0, 0);
        return g.getImageData(0, 0, bmp.width, bmp.height).data;
      };
      const [da, db] = [px(x), px(y)];
      let differing = 0;
      let maxDelta = 0;
      for (let i = 0; i < da.length; i += 4) {
        const d = Math.max(Math.abs(da[i] - db[i]), Math.abs(da[i + 1] - db[i + 1]), Math.abs(da[i + 2] - db[i + 2]));
        if (d) differing++;
        maxDelta = Math.max(maxDelta, d);
      }
      return { w: x.width, h: x.height, differing, maxDelta, total: da.length / 4 };
    }, [clean.png, hostile.png]);
    console.log(`hostile CSS: ${cmp.w}x${cmp.h} px widget box, ${cmp.differing} of ${cmp.total} pixels differ (max channel delta ${cmp.maxDelta});`
      + ` box at (${clean.size.x}, ${clean.size.y}) vs (${hostile.size.x}, ${hostile.size.y})`);
    // The hostile sheet moves the widget on the page (to a fractional position, e.g. y = 300.5), which
    // can change the anti-aliasing of a few rounded-corner pixels; nothing else may differ.
    assert.ok(cmp.differing <= cmp.total * 1e-4, `at most 0.01% of the pixels differ (${cmp.differing})`);

    // Narrow screens: 320 px wide, no horizontal overflow inside the widget.
    await p.setViewportSize({ width: 320, height: 1400 });
    const overflow = await p.evaluate(() => {
      const root = document.getElementById('w').shadowRoot;
      const c = root.querySelector('[part~="container"]');
      return { box: c.getBoundingClientRect().width, inner: c.scrollWidth - c.clientWidth };
    });
    assert.ok(overflow.box <= 320 && overflow.inner <= 0, `fits 320 px: ${JSON.stringify(overflow)}`);
    await box.screenshot({ path: artifactPath('widget-320px.png') });
    await context.close();
  });

  test('works inside a cross-site iframe', async () => {
    const context = await browser.newContext();
    const p = await newPage(context);
    const frameUrl = await route(context, other, 'frame.html', page(
      `<dermlip-classifier id="w" label-set="pad6" top-k="2" src="/${IMAGE}"></dermlip-classifier>`,
      '<script type="module" src="/www/dermlip-widget.js"></script>'));
    await p.goto(await route(context, server.url, 'top.html', page(`<h1>Course page</h1><iframe src="${frameUrl}" width="700" height="900" title="DermLIP"></iframe>`)));
    const frame = p.frame({ url: frameUrl });
    assert.ok(frame, 'the iframe loaded');
    await frame.waitForFunction(() => document.getElementById('w').result, null, { timeout: LOAD_TIMEOUT });
    const r = await frame.evaluate(() => document.getElementById('w').result);
    assert.equal(r.labelSet, 'pad6');
    assert.equal(r.predictions.length, 2);
    assert.match(await frame.locator('#w').locator('[part~="result"]').textContent(), /PAD-UFES-20/);
    await p.screenshot({ path: artifactPath('widget-iframe.png') });
    await context.close();
  });

  // The policies docs/embedding.md documents, and nothing more.
  const strict = (host) => [
    "default-src 'none'",
    `script-src ${host} 'wasm-unsafe-eval'`,
    // A module worker's static imports are fetched as `worker`, so they need worker-src too.
    `worker-src ${host === "'self'" ? "'self'" : `blob: ${host}`}`,
    `connect-src ${host}`,
  ].join('; ');

  for (const [name, crossOrigin] of [['same-origin', false], ['cross-origin (blob: worker trampoline, CORS)', true]]) {
    test(`works on a page with a strict CSP, widget hosted ${name}`, async () => {
      const context = await browser.newContext();
      const p = await newPage(context);
      await recordEvents(p);
      const violations = [];
      p.on('console', (m) => /Content Security Policy|Refused to/.test(m.text()) && violations.push(m.text()));
      await p.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (e) => console.error(`Refused to: CSP ${e.violatedDirective} ${e.blockedURI}`));
      });
      const host = crossOrigin ? server.url : "'self'";
      const hostOrigin = server.url.replace(/\/$/, '');
      const policy = strict(crossOrigin ? hostOrigin : "'self'");
      const base = crossOrigin ? server.url : '/';
      const workers = [];
      p.on('worker', (w) => workers.push(w.url()));
      const html = page(
        `<dermlip-classifier id="w" label-set="ham7" top-k="3" src="${base}${IMAGE}"></dermlip-classifier>`,
        `<script type="module" src="${base}www/dermlip-widget.js"></script>`);
      const site = crossOrigin ? await pageServer(html, { 'content-security-policy': policy }) : null;
      const url = site ? site.url : await route(context, server.url, 'csp.html', html, { 'content-security-policy': policy });
      await p.goto(url);
      const r = await nthResult(p, 'w', 1);
      assert.equal(r.predictions.length, 3);
      assert.deepEqual(violations, [], `no CSP violation under: ${policy}`);
      assert.equal(workers.length, 1);
      if (crossOrigin) assert.match(workers[0], /^blob:/, 'a blob: trampoline worker');
      else assert.equal(workers[0], `${server.url}www/worker.js`);
      console.log(`strict CSP (${name}, ${host}): ${policy}`);
      await context.close();
      if (site) site.close();
    });
  }
});
