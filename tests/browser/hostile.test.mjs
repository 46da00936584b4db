// The hostile-image corpus (tests/hostile/make_corpus.py) through the CPU wasm engine: in the
// browser a panic kills the engine until the page reloads, so every file must end in a result or
// a one-line error, and the same engine must still classify a normal photo afterwards.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, classifyInPage, fixtureBytes, launch, newPage, openSite, startServer } from './harness.mjs';

let server;
let corpus;
before(async () => {
  server = await startServer();
  corpus = mkdtempSync(join(tmpdir(), 'dermlip-hostile-'));
  execFileSync('python3', [join(ROOT, 'tests/hostile/make_corpus.py'), corpus], { stdio: ['ignore', 'ignore', 'inherit'] });
});
after(() => {
  server && server.close();
  corpus && rmSync(corpus, { recursive: true, force: true });
});

// Messages of a dead or panicking wasm module, never of a clean refusal.
const ENGINE_DIED = /panicked|unreachable|RuntimeError|memory access out of bounds|recursive use|already borrowed/i;

describe('hostile images in the CPU wasm engine', () => {
  test('every corpus file gives a result or a one-line error, and the engine keeps working', async () => {
    const files = readdirSync(corpus).sort();
    assert.ok(files.length >= 100, `the generator wrote ${files.length} files (at least 100 expected)`);
    const browser = await launch({ webgpu: false });
    const page = await newPage(await browser.newContext());
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const info = await openSite(page, server.url, 'backend=cpu&nosw');
    assert.equal(info.backend, 'cpu');

    let accepted = 0;
    let refused = 0;
    const bad = [];
    for (const name of files) {
      const bytes = [...readFileSync(join(corpus, name))];
      // Caught in the page, so the message is the engine's own (Playwright adds its stack lines).
      const out = await page.evaluate(async (bytes) => {
        try {
          const r = await window.dermlipApp.state.model.classify(new Uint8Array(bytes), 'ham7', { topK: 1 });
          return { ok: r.predictions.length === 1 && r.probabilities.every(Number.isFinite) };
        } catch (err) {
          return { error: String(err && err.message ? err.message : err) };
        }
      }, bytes);
      if (out.error === undefined) {
        accepted += 1;
        if (!out.ok) bad.push(`${name}: a result without one finite prediction`);
      } else {
        refused += 1;
        if (out.error.trim() === '' || out.error.includes('\n') || ENGINE_DIED.test(out.error)) bad.push(`${name}: ${out.error}`);
      }
    }
    // The same engine, after the whole corpus: a normal photo still classifies.
    const r = await classifyInPage(page, fixtureBytes('images/astronaut_512_q90_420.jpg'), 'ham7', { topK: 2 });
    assert.equal(r.predictions.length, 2);
    console.log(`hostile images (wasm CPU engine): ${files.length} files, ${refused} clean errors, ${accepted} accepted`);
    assert.deepEqual(bad, [], 'files that did not end in a result or a one-line error');
    assert.deepEqual(pageErrors.filter((m) => ENGINE_DIED.test(m)), [], 'the engine panicked');
    await browser.close();
  });
});
