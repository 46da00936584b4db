#!/usr/bin/env node
// A static server for the site: correct MIME types (application/wasm), gzip, and the same
// Content-Security-Policy as index.html's meta tag, sent as a header so that it also covers the
// Web Worker. Usage: node scripts/serve.mjs [--port 8000] [--host 127.0.0.1] [--model-host ORIGIN]... [--cors]
// --cors adds `Access-Control-Allow-Origin: *` to every response, as a host that serves the
// embeddable widget (www/dermlip-widget.js) to other sites must (docs/embedding.md).
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const port = Number(opt('--port', process.env.PORT || 8000));
const host = opt('--host', '127.0.0.1');
const modelHosts = ['https://huggingface.co', 'https://*.huggingface.co', 'https://*.hf.co'];
args.forEach((a, i) => a === '--model-host' && modelHosts.push(args[i + 1]));
const cors = args.includes('--cors');

const csp = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  `connect-src 'self' ${modelHosts.join(' ')}`,
  "img-src 'self' blob: data:",
  "media-src 'self' blob:",
  "style-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'none'",
].join('; ');

const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.wasm': 'application/wasm',
  '.safetensors': 'application/octet-stream',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
};
const compressible = new Set(['.html', '.js', '.mjs', '.css', '.json', '.wasm', '.svg', '.webmanifest']);
const gzipCache = new Map(); // path → {mtime, body}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://localhost');
    let path = normalize(join(root, decodeURIComponent(url.pathname)));
    if (!path.startsWith(root)) return send(res, 403, 'forbidden');
    let info = await stat(path).catch(() => null);
    if (info && info.isDirectory()) {
      path = join(path, 'index.html');
      info = await stat(path).catch(() => null);
    }
    if (!info || !info.isFile()) return send(res, 404, 'not found');
    const ext = extname(path).toLowerCase();
    const headers = {
      'content-type': types[ext] || 'application/octet-stream',
      'content-security-policy': csp,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-cache',
    };
    if (cors) headers['access-control-allow-origin'] = '*';
    let body = await readFile(path);
    if (compressible.has(ext) && /\bgzip\b/.test(req.headers['accept-encoding'] || '')) {
      const hit = gzipCache.get(path);
      if (hit && hit.mtime === info.mtimeMs) body = hit.body;
      else {
        body = gzipSync(body, { level: 6 });
        gzipCache.set(path, { mtime: info.mtimeMs, body });
      }
      headers['content-encoding'] = 'gzip';
      headers.vary = 'accept-encoding';
    }
    headers['content-length'] = body.length;
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (e) {
    send(res, 500, String(e));
  }
});

function send(res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-security-policy': csp });
  res.end(text);
}

server.listen(port, host, () => {
  console.log(`dermlip: serving ${root} at http://${host}:${server.address().port}/`);
});
