// Teaching with the widget (issue 16): a quiz on a subset of a built-in set (`options`, with the
// bundle's precomputed label embeddings: no text tower), a guard against unanswerable option
// lists (derm1m's 407 radio buttons), and the teacher's note after the answer (slot="note").
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, newPage, startServer } from './harness.mjs';

const IMAGE = 'tests/fixtures/images/astronaut_512_q90_420.jpg';
const LOAD_TIMEOUT = 180_000;
const AUTO = 'reveal="auto" loading="eager"';

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

async function open(context, body) {
  const p = await newPage(context);
  await p.addInitScript(() => {
    const log = [];
    Object.defineProperty(window, '__events', { value: log });
    for (const type of ['dermlip-ready', 'dermlip-result', 'dermlip-error', 'dermlip-answer']) {
      document.addEventListener(type, (e) => log.push({ type, id: e.target.id, detail: JSON.parse(JSON.stringify(e.detail)) }));
    }
  });
  const url = `${server.url}__teaching/page.html`;
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>teaching</title>
    <script type="module" src="/www/dermlip-widget.js"></script></head><body>${body.replaceAll('<dermlip-classifier ', `<dermlip-classifier ${AUTO} `)}</body></html>`;
  await context.route(url, (r) => r.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html }));
  await p.goto(url);
  return p;
}

const waitEvent = (p, type, id) => p.waitForFunction(([type, id]) => window.__events.find((e) => e.type === type && e.id === id), [type, id], { timeout: LOAD_TIMEOUT })
  .then(() => p.evaluate(([type, id]) => window.__events.find((e) => e.type === type && e.id === id).detail, [type, id]));

describe('a quiz', () => {
  test('on all 407 classes of derm1m is refused with a message naming the options attribute', async () => {
    const context = await browser.newContext();
    const p = await open(context, `<dermlip-classifier id="q" mode="quiz" label-set="derm1m" src="/${IMAGE}"></dermlip-classifier>`);
    const error = await waitEvent(p, 'dermlip-error', 'q');
    assert.equal(error.code, 'bad-attribute');
    assert.equal(error.attribute, 'label-set');
    assert.match(error.message, /407 answer options/);
    assert.match(error.message, /at most 20 .*options attribute/);
    assert.equal(await p.locator('#q').locator('input[type=radio]').count(), 0, 'no 407 radio buttons');
    await context.close();
  });

  test('on a subset (options) uses the precomputed embeddings, downloads no text tower, and shows the note after the answer', async () => {
    const context = await browser.newContext();
    const requests = [];
    context.on('request', (r) => requests.push(r.url()));
    const p = await open(context, `<dermlip-classifier id="q" mode="quiz" label-set="derm1m" options="Melanoma; psoriasis; acne" answer="acne" src="/${IMAGE}">
      <div slot="note" id="note">Acne: comedones are the clue.</div></dermlip-classifier>`);
    const radios = p.locator('#q').locator('input[type=radio]');
    await radios.first().waitFor({ timeout: LOAD_TIMEOUT });
    assert.deepEqual(await radios.evaluateAll((rs) => rs.map((r) => r.value)), ['melanoma', 'psoriasis', 'acne'], 'the set\'s spelling, in the order given');
    assert.equal(await p.isVisible('#note'), false, 'the note waits for the answer');
    await radios.nth(2).check();
    await p.locator('#q').locator('[part~="submit"]').click();
    const answer = await waitEvent(p, 'dermlip-answer', 'q');
    assert.equal(answer.correct, true);
    const result = await waitEvent(p, 'dermlip-result', 'q');
    assert.deepEqual(result.labels, ['melanoma', 'psoriasis', 'acne']);
    assert.equal(result.labelEmbeddings, 'precomputed');
    assert.ok(Math.abs(result.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5, 'a softmax over the three');
    assert.equal(await p.isVisible('#note'), true, 'the teacher\'s note after the answer');
    assert.equal(requests.filter((u) => /text\.safetensors|tokenizer/.test(u)).length, 0, 'no text tower');
    await context.close();
  });

  test('options that are not in the set, or too few, are bad attributes', async () => {
    const context = await browser.newContext();
    const p = await open(context, `<dermlip-classifier id="a" label-set="ham7" options="melanoma; unicorn" src="/${IMAGE}"></dermlip-classifier>
      <dermlip-classifier id="b" label-set="ham7" options="melanoma" src="/${IMAGE}"></dermlip-classifier>
      <dermlip-classifier id="c" labels="a; b" options="a; b" src="/${IMAGE}"></dermlip-classifier>`);
    const a = await waitEvent(p, 'dermlip-error', 'a');
    assert.equal(a.attribute, 'options');
    assert.match(a.message, /"unicorn" is not a class of HAM10000/);
    const b = await waitEvent(p, 'dermlip-error', 'b');
    assert.equal(b.attribute, 'options');
    assert.match(b.message, /at least two classes/);
    const c = await waitEvent(p, 'dermlip-error', 'c');
    assert.equal(c.attribute, 'options');
    assert.match(c.message, /not both/);
    await context.close();
  });
});
