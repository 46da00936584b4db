// Downloads with byte progress, kept in the Cache API and checked against the bundle manifest's
// sha256 before use. A cached copy that does not match (partial, corrupt, tampered, or from an
// older bundle) is deleted and downloaded again.

export const CACHE_NAME = 'dermlip-models-v1';

export async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function openCache() {
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return null; // e.g. an opaque origin or storage disabled: work without a cache
  }
}

/**
 * Reads `response`'s body into an ArrayBuffer, reporting `(loaded, total)`.
 *
 * `expected` (bytes, from a manifest): the body must be exactly that long. The buffer is allocated
 * once at that size and never grows; a chunk that would go past it stops the download at once
 * (the stream is cancelled) with an error, and so does a body that ends short. Without `expected`,
 * the body is read up to `maxBytes` (an error past it). `name` names the file in the messages.
 */
export async function readBody(response, { expected = null, maxBytes = Infinity, name = response.url || 'the file', onProgress = () => {} } = {}) {
  const declared = expected !== null && expected !== undefined;
  if (declared && !(Number.isSafeInteger(expected) && expected >= 0)) throw new Error(`${name}: the manifest gives no valid size (bytes: ${expected})`);
  const limit = declared ? expected : maxBytes;
  const tooLong = (n) =>
    new Error(declared
      ? `${name}: the server sent more than the ${expected} bytes the manifest declares (at least ${n}); refusing it`
      : `${name}: larger than the ${maxBytes} bytes allowed (at least ${n}); refusing it`);
  const tooShort = (n) => new Error(`${name}: the download ended after ${n} of the ${expected} bytes the manifest declares; try again`);
  if (!response.body) {
    const buf = await response.arrayBuffer();
    if (buf.byteLength > limit) throw tooLong(buf.byteLength);
    if (declared && buf.byteLength < expected) throw tooShort(buf.byteLength);
    onProgress(buf.byteLength, buf.byteLength);
    return buf;
  }
  const reader = response.body.getReader();
  const stop = async (err) => {
    await reader.cancel(err.message).catch(() => {});
    throw err;
  };
  let loaded = 0;
  if (declared) {
    // Exactly the declared size: one allocation, nothing buffered beyond it.
    let out;
    try {
      out = new Uint8Array(expected);
    } catch {
      await stop(new Error(`${name}: ${expected} bytes do not fit in this tab's memory`));
    }
    onProgress(0, expected);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.byteLength > expected) await stop(tooLong(loaded + value.byteLength));
      out.set(value, loaded);
      loaded += value.byteLength;
      onProgress(loaded, expected);
    }
    if (loaded < expected) throw tooShort(loaded);
    return out.buffer;
  }
  // No declared size: the content-length (if any) only drives the progress bar.
  const size = Number(response.headers.get('content-length')) || 0;
  const chunks = [];
  onProgress(0, size);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.byteLength > limit) await stop(tooLong(loaded + value.byteLength));
    chunks.push(value);
    loaded += value.byteLength;
    onProgress(loaded, Math.max(size, loaded));
  }
  const out = new Uint8Array(loaded);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out.buffer;
}

/**
 * Fetches `url` into an ArrayBuffer, reporting `(loaded, total)`. `total`: the size the manifest
 * declares, enforced exactly (`readBody`); `maxBytes`: a cap for a file without a declared size.
 */
export async function download(url, { total = null, maxBytes = Infinity, name = url, onProgress = () => {} } = {}) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new Error(`cannot download ${url}: ${e.message} (offline?)`);
  }
  if (!response.ok) throw new Error(`cannot download ${url}: HTTP ${response.status} ${response.statusText}`);
  return readBody(response, { expected: total, maxBytes, name, onProgress });
}

/**
 * A manifest file entry `{path, bytes, sha256}` under `base`: from the cache when the cached copy
 * verifies, else downloaded, verified and cached. Returns `{buffer, fromCache}`.
 */
export async function getVerified(base, entry, { onProgress = () => {}, onEvent = () => {} } = {}) {
  const url = new URL(entry.path, base).href;
  const cache = await openCache();
  if (cache) {
    const hit = await cache.match(url);
    if (hit) {
      const buffer = await hit.arrayBuffer();
      if (buffer.byteLength === entry.bytes && (await sha256Hex(buffer)) === entry.sha256) {
        onProgress(entry.bytes, entry.bytes, true);
        return { buffer, fromCache: true };
      }
      await cache.delete(url);
      onEvent({ type: 'cache-invalid', file: entry.path });
    }
  }
  if (!Number.isSafeInteger(entry.bytes) || entry.bytes < 0) throw new Error(`${entry.path}: the manifest gives no valid size (bytes)`);
  const buffer = await download(url, { total: entry.bytes, name: entry.path, onProgress: (l, t) => onProgress(l, t, false) });
  if (buffer.byteLength !== entry.bytes) {
    throw new Error(`${entry.path}: received ${buffer.byteLength} bytes, the manifest says ${entry.bytes}`);
  }
  if ((await sha256Hex(buffer)) !== entry.sha256) {
    throw new Error(`${entry.path}: the download does not match the manifest (sha256); try again later`);
  }
  if (cache) {
    try {
      await cache.put(url, new Response(buffer, { headers: { 'content-type': 'application/octet-stream' } }));
    } catch (e) {
      onEvent({ type: 'cache-failed', file: entry.path, message: e.message });
    }
  }
  return { buffer, fromCache: false };
}

/** The most a manifest may weigh (the real ones are a few kB): a larger one is refused unread. */
export const MAX_MANIFEST_BYTES = 4 << 20;

/** The manifest: from the network when reachable (so updates are seen), else the cached copy. */
export async function getManifest(base) {
  const url = new URL('manifest.json', base).href;
  const cache = await openCache();
  try {
    const text = new TextDecoder().decode(await download(url, { maxBytes: MAX_MANIFEST_BYTES }));
    JSON.parse(text);
    if (cache) await cache.put(url, new Response(text, { headers: { 'content-type': 'application/json' } }));
    return { text, fromCache: false };
  } catch (e) {
    const hit = cache && (await cache.match(url));
    if (hit) return { text: await hit.text(), fromCache: true };
    throw e instanceof SyntaxError ? new Error(`${url} is not valid JSON`) : e;
  }
}

/** An unverified file (a plain open_clip checkpoint has no manifest): cached by URL and size. */
export async function getUnverified(url, { onProgress = () => {} } = {}) {
  const cache = await openCache();
  const hit = cache && (await cache.match(url));
  if (hit) {
    const buffer = await hit.arrayBuffer();
    const expected = Number(hit.headers.get('x-dermlip-bytes'));
    if (buffer.byteLength === expected) {
      onProgress(buffer.byteLength, buffer.byteLength, true);
      return { buffer, fromCache: true };
    }
    await cache.delete(url);
  }
  const buffer = await download(url, { onProgress: (l, t) => onProgress(l, t, false) });
  if (cache) {
    try {
      const headers = { 'content-type': 'application/octet-stream', 'x-dermlip-bytes': String(buffer.byteLength) };
      await cache.put(url, new Response(buffer, { headers }));
    } catch {
      // not cached: still usable
    }
  }
  return { buffer, fromCache: false };
}
