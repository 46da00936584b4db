// Service worker: keeps the app shell (page, scripts) so the site works offline after the
// first visit. Model files are not handled here: the worker verifies and caches them itself.
// scripts/build-web.sh writes pkg/sw-version.js with a hash of the shell: a new build is a new
// service worker, which replaces the cache.
importScripts('pkg/sw-version.js');
const VERSION = self.DERMLIP_SHELL_VERSION || 'dev';
const SHELL_CACHE = `dermlip-shell-${VERSION}`;
const SHELL = [
  './',
  'index.html',
  'www/app.js',
  'www/dermlip.js',
  'www/worker.js',
  'www/model-store.js',
  'www/model-trust.js',
  'www/model-info.js',
  'www/model-card.html',
  'www/model-card.js',
  'www/trusted-models.js',
  'www/plain-words.js',
  'www/gallery.js',
  'www/heatmap.js',
  'www/site-i18n.js',
  'www/plain-language.json',
  'www/style.css',
  'www/app.webmanifest',
  'www/icon.svg',
  'www/icon-192.png',
  'www/icon-512.png',
  'www/icon-maskable-512.png',
];
// The engine glue only: the worker downloads the one wasm engine it needs and keeps it in the
// Cache API itself (pkg/manifest.json), so no visitor downloads both. Kept when present: while
// scripts/run.sh is still building the WebGPU engine, only the CPU one exists.
const ENGINE_GLUE = ['pkg/dermlip_webgpu.js', 'pkg/dermlip_cpu.js'];
const shellUrls = new Set([...SHELL, ...ENGINE_GLUE].map((p) => new URL(p, self.registration.scope).href));

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(SHELL_CACHE)
      .then((c) => Promise.all([c.addAll(SHELL), ...ENGINE_GLUE.map((p) => c.add(p).catch(() => {}))]))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('dermlip-shell-') && k !== SHELL_CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  url.search = '';
  if (event.request.method !== 'GET' || !shellUrls.has(url.href)) return;
  // Cache first: the shell is versioned by this file, so a new build brings a new cache. Only this
  // version's shell cache is searched: `caches.match` would look through every cache of the origin
  // (model-store's `dermlip-models-v1`, an older shell, another app on the same origin) and could
  // answer with a response this worker never stored.
  event.respondWith(
    caches.open(SHELL_CACHE)
      .then((c) => c.match(url.href))
      .then((hit) => hit || fetch(event.request)),
  );
});
