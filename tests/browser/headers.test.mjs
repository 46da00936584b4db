// The security headers: `_headers` (Netlify / Cloudflare Pages format) is their one source, and
// scripts/serve.mjs sends exactly them. The first tests need no browser and no built site; the
// last checks in Chromium that the worker runs under them and that their policy reaches it (the
// <meta> policy in index.html cannot).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, launch, newPage, startServer } from './harness.mjs';
import { headersFor, parseHeadersFile } from '../../scripts/serve.mjs';

const HEADERS_TEXT = readFileSync(join(ROOT, '_headers'), 'utf8');

/** `_headers` read independently of serve.mjs: the single `/*` block, as {lower-case name: value}. */
function expectedHeaders() {
  const lines = HEADERS_TEXT.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  assert.deepEqual(lines.filter((l) => !/^\s/.test(l)), ['/*'], '_headers has one block, for /* (this test reads only that)');
  return Object.fromEntries(lines.slice(1).map((l) => {
    const i = l.indexOf(':');
    return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
  }));
}

let server;
before(async () => {
  server = await startServer();
});
after(() => server && server.close());

describe('_headers', () => {
  test('holds the security header set', () => {
    const h = expectedHeaders();
    for (const name of ['content-security-policy', 'x-content-type-options', 'referrer-policy', 'cross-origin-opener-policy', 'x-frame-options']) {
      assert.ok(h[name], `${name} is set`);
    }
    const csp = Object.fromEntries(h['content-security-policy'].split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v]));
    assert.deepEqual(csp['script-src'], ["'self'", "'wasm-unsafe-eval'"], 'no unsafe-eval, no inline scripts');
    assert.deepEqual(csp['worker-src'], ["'self'"]);
    assert.deepEqual(csp['frame-ancestors'], ["'none'"]);
    assert.deepEqual(csp['object-src'], ["'none'"]);
  });

  test("index.html's <meta> policy is the header's, less what a <meta> cannot carry", () => {
    const header = expectedHeaders()['content-security-policy'];
    const meta = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(readFileSync(join(ROOT, 'index.html'), 'utf8'))[1];
    const withoutFrameAncestors = header.split(';').map((d) => d.trim()).filter((d) => !d.startsWith('frame-ancestors')).join('; ');
    assert.equal(meta, withoutFrameAncestors);
  });

  test("serve.mjs's parser: patterns, placeholders, repeated and detached headers", () => {
    const rules = parseHeadersFile('# c\n/*\n  A: 1\n  B: x: y\n/www/*\n  A: 2\n/models/:name/manifest.json\n  C: 3\n  ! B\n');
    assert.deepEqual(headersFor(rules, '/index.html'), { a: '1', b: 'x: y' });
    assert.deepEqual(headersFor(rules, '/www/worker.js'), { a: '1, 2', b: 'x: y' });
    assert.deepEqual(headersFor(rules, '/models/x/manifest.json'), { a: '1', c: '3' });
    assert.deepEqual(headersFor(rules, '/models/x/y/manifest.json'), { a: '1', b: 'x: y' });
    assert.throws(() => parseHeadersFile('  A: 1\n'), /before any path/);
    assert.throws(() => parseHeadersFile('/*\n  nonsense\n'), /Name: value/);
  });

  for (const path of ['index.html', 'www/worker.js', 'www/model-store.js', 'sw.js', 'no-such-file']) {
    test(`the server sends exactly _headers' headers on /${path}`, async () => {
      const res = await fetch(`${server.url}${path}`);
      const expected = expectedHeaders();
      for (const [name, value] of Object.entries(expected)) assert.equal(res.headers.get(name), value, `${name} on /${path}`);
      // Nothing security-related beyond them (content-type, length, caching and dates are the server's own).
      const own = new Set(['content-type', 'content-length', 'content-encoding', 'cache-control', 'vary', 'date', 'connection', 'keep-alive', 'transfer-encoding']);
      const extra = [...res.headers.keys()].filter((k) => !(k in expected) && !own.has(k));
      assert.deepEqual(extra, [], `headers not in _headers on /${path}`);
    });
  }
});

describe('the worker under the served headers', () => {
  let browser;
  before(async () => {
    browser = await launch({ webgpu: false });
  });
  after(() => browser && browser.close());

  test('runs, and its own response policy keeps it off hosts the policy does not list', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    const outside = [];
    // A host outside connect-src: if the policy did not reach the worker, its fetch would get here.
    await context.route('https://models.example.net/**', (r) => {
      outside.push(r.request().url());
      return r.fulfill({ status: 200, contentType: 'application/json', body: '{}' });
    });
    const workers = [];
    page.on('worker', (w) => workers.push(w.url()));
    // A same-origin page without any policy of its own (fulfilled here, not by the server): whatever
    // policy the worker runs under can only come from www/worker.js's own response headers.
    const blank = `${server.url}__headers/blank.html`;
    await context.route(blank, (r) => r.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: '<!doctype html><title>blank</title>' }));
    await page.goto(blank);
    const replies = await page.evaluate(async () => {
      const worker = new Worker('/www/worker.js', { type: 'module' });
      const ask = (msg) => new Promise((resolve) => {
        worker.addEventListener('message', function on(e) {
          if (e.data.id !== msg.id) return;
          worker.removeEventListener('message', on);
          resolve(e.data);
        });
        worker.postMessage(msg);
      });
      const failed = new Promise((resolve) => worker.addEventListener('error', (e) => resolve({ error: e.message || 'worker error' })));
      const dispose = await Promise.race([ask({ id: 1, type: 'dispose' }), failed]);
      const load = await Promise.race([ask({ id: 2, type: 'load', source: 'https://models.example.net/bundle/', backend: 'cpu' }), failed]);
      worker.terminate();
      return { dispose, load };
    });
    assert.deepEqual(replies.dispose, { id: 1, ok: true, result: true }, 'the worker module (and model-store.js) loaded and answered');
    assert.equal(replies.load.ok, false);
    assert.match(replies.load.error, /cannot download https:\/\/models\.example\.net\/bundle\/manifest\.json/);
    assert.deepEqual(outside, [], "the worker's fetch was blocked by its Content-Security-Policy");
    assert.deepEqual(workers, [`${server.url}www/worker.js`]);
    await context.close();
  });
});
