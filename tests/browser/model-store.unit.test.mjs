// www/model-store.js in Node (no browser, no built site): a download stops at the size the
// manifest declares. Run: cd tests/browser && node --test model-store.unit.test.mjs
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { download, getManifest, getVerified, MAX_MANIFEST_BYTES, readBody } from '../../www/model-store.js';

/**
 * A Response whose body yields `chunks` (Uint8Arrays) then, with `endless`, 1 kB chunks forever.
 * `stats.pulled` counts the chunks handed out, `stats.cancelled` says whether the reader gave up.
 */
function streamed(chunks, { endless = false } = {}) {
  const stats = { pulled: 0, cancelled: false };
  let i = 0;
  const body = new ReadableStream({
    pull(controller) {
      stats.pulled++;
      if (i < chunks.length) controller.enqueue(chunks[i++]);
      else if (endless) controller.enqueue(new Uint8Array(1024));
      else controller.close();
    },
    cancel() {
      stats.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { response: new Response(body), stats };
}

const bytes = (n, fill = 7) => new Uint8Array(n).fill(fill);

// The old loop read an endless body forever: a timeout turns that into a failure.
const T = { timeout: 10_000 };

describe('readBody with a declared size', T, () => {
  test('exactly the declared bytes: returned whole', async () => {
    const { response } = streamed([bytes(3, 1), bytes(4, 2), bytes(3, 3)]);
    const progress = [];
    const buf = await readBody(response, { expected: 10, name: 'x.bin', onProgress: (l, t) => progress.push([l, t]) });
    assert.equal(buf.byteLength, 10);
    assert.deepEqual([...new Uint8Array(buf)], [1, 1, 1, 2, 2, 2, 2, 3, 3, 3]);
    assert.deepEqual(progress.at(-1), [10, 10]);
    assert.ok(progress.every(([, t]) => t === 10), 'the total is the declared size throughout');
  });

  test('one byte more than declared: refused, and the stream is cancelled', async () => {
    const { response, stats } = streamed([bytes(5), bytes(5), bytes(1)]);
    await assert.rejects(readBody(response, { expected: 10, name: 'image.safetensors' }),
      /image\.safetensors: the server sent more than the 10 bytes the manifest declares \(at least 11\)/);
    assert.ok(stats.cancelled, 'the download was stopped');
  });

  test('a body that never ends: refused as soon as it passes the declared size', async () => {
    const { response, stats } = streamed([], { endless: true });
    const progress = [];
    await assert.rejects(readBody(response, { expected: 4096, name: 'big', onProgress: (l) => progress.push(l) }), /more than the 4096 bytes/);
    assert.ok(stats.pulled <= 6, `read ${stats.pulled} chunks of 1 kB for a 4 kB file`);
    assert.ok(stats.cancelled);
    assert.ok(Math.max(...progress) <= 4096, 'nothing past the declared size was kept');
  });

  test('fewer bytes than declared: refused', async () => {
    const { response } = streamed([bytes(4), bytes(5)]);
    await assert.rejects(readBody(response, { expected: 10, name: 'concepts.json' }),
      /concepts\.json: the download ended after 9 of the 10 bytes the manifest declares/);
  });

  test('an invalid declared size is refused before reading', async () => {
    for (const bad of [-1, 1.5, NaN, '10']) {
      const { response, stats } = streamed([bytes(10)]);
      await assert.rejects(readBody(response, { expected: bad, name: 'f' }), /no valid size/);
      assert.equal(stats.pulled, 0);
    }
  });

  test('a declared size of zero: an empty body passes, one byte does not', async () => {
    assert.equal((await readBody(streamed([]).response, { expected: 0 })).byteLength, 0);
    await assert.rejects(readBody(streamed([bytes(1)]).response, { expected: 0 }), /more than the 0 bytes/);
  });
});

describe('readBody without a declared size', T, () => {
  test('reads everything up to maxBytes and refuses more', async () => {
    assert.equal((await readBody(streamed([bytes(3), bytes(3)]).response, {})).byteLength, 6);
    assert.equal((await readBody(streamed([bytes(3), bytes(3)]).response, { maxBytes: 6 })).byteLength, 6);
    const { response, stats } = streamed([], { endless: true });
    await assert.rejects(readBody(response, { maxBytes: 3000, name: 'manifest.json' }), /manifest\.json: larger than the 3000 bytes allowed/);
    assert.ok(stats.cancelled);
  });
});

describe('through fetch', T, () => {
  const realFetch = globalThis.fetch;
  afterEach(() => {
    globalThis.fetch = realFetch;
  });

  /** Serves `body` (Uint8Array, or an endless stream when null) for every URL; counts requests. */
  function serve(body) {
    const calls = [];
    globalThis.fetch = async (url) => {
      calls.push(String(url));
      return body === null ? streamed([], { endless: true }).response : new Response(body);
    };
    return calls;
  }

  test('getVerified: a file one byte longer than the manifest says is refused before hashing', async () => {
    const good = bytes(1000, 9);
    const entry = { path: 'image.safetensors', bytes: 1000, sha256: createHash('sha256').update(good).digest('hex') };
    serve(good);
    const ok = await getVerified('https://models.example/b/', entry);
    assert.equal(ok.buffer.byteLength, 1000);
    assert.equal(ok.fromCache, false);

    const long = new Uint8Array(1001);
    long.set(good);
    serve(long);
    await assert.rejects(getVerified('https://models.example/b/', entry), /image\.safetensors: the server sent more than the 1000 bytes the manifest declares/);
    serve(good.subarray(0, 999));
    await assert.rejects(getVerified('https://models.example/b/', entry), /ended after 999 of the 1000 bytes/);
    serve(null);
    await assert.rejects(getVerified('https://models.example/b/', entry), /more than the 1000 bytes/);
  });

  test('getVerified: a manifest entry without a valid size is refused without downloading', async () => {
    const calls = serve(bytes(10));
    await assert.rejects(getVerified('https://models.example/b/', { path: 'x', sha256: '0'.repeat(64) }), /x: the manifest gives no valid size/);
    assert.deepEqual(calls, []);
  });

  test('download: HTTP errors name the URL', async () => {
    globalThis.fetch = async () => new Response('no', { status: 404, statusText: 'Not Found' });
    await assert.rejects(download('https://models.example/b/x'), /cannot download https:\/\/models\.example\/b\/x: HTTP 404/);
  });

  test(`getManifest: a manifest larger than ${MAX_MANIFEST_BYTES} bytes is refused`, async () => {
    serve(null);
    await assert.rejects(getManifest('https://models.example/b/'), /manifest\.json: larger than the \d+ bytes allowed/);
    serve(new TextEncoder().encode('{"format":"dermlip-web-bundle"}'));
    assert.equal((await getManifest('https://models.example/b/')).text, '{"format":"dermlip-web-bundle"}');
  });
});
