#!/usr/bin/env node
// A static server for the site: correct MIME types (application/wasm), gzip, and the security
// headers of the repository's `_headers` file (the Netlify / Cloudflare Pages format, the one source
// of them: docs/deploy.md), among them the Content-Security-Policy, sent as a header so that it
// also covers the Web Worker.
// Usage: node scripts/serve.mjs [--port 8000] [--host 127.0.0.1] [--model-host ORIGIN]... [--cors]
// --model-host adds ORIGIN to the policy's connect-src (for trying a model host out; a deployment
// adds it to `_headers` and index.html's meta tag). --cors adds `Access-Control-Allow-Origin: *` to
// every response, as a host that serves the embeddable widget (www/dermlip-widget.js) to other
// sites must (docs/embedding.md).
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

/**
 * The rules of a `_headers` file: `[{pattern, headers: [[name, value]], detach: [name]}]`. A line
 * that starts without white space is a path pattern (`*` matches anything, `:name` one segment);
 * the indented `Name: value` lines under it are its headers; `! Name` (Cloudflare) removes a header
 * an earlier rule set; `#` lines are comments.
 */
export function parseHeadersFile(text) {
  const rules = [];
  let rule = null;
  for (const [n, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (!/^\s/.test(raw)) {
      if (!line.startsWith('/')) throw new Error(`_headers line ${n + 1}: a path must start with / (got "${line}")`);
      rule = { pattern: line, headers: [], detach: [] };
      rules.push(rule);
      continue;
    }
    if (!rule) throw new Error(`_headers line ${n + 1}: a header before any path`);
    if (line.startsWith('!')) {
      rule.detach.push(line.slice(1).trim().toLowerCase());
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`_headers line ${n + 1}: expected "Name: value" (got "${line}")`);
    rule.headers.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return rules;
}

/** The headers (lower-case names) `rules` give the URL path `pathname`; repeated names are joined with ", ". */
export function headersFor(rules, pathname) {
  const out = {};
  for (const rule of rules) {
    const re = new RegExp(`^${rule.pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z_]\w*/g, '[^/]+')).join('.*')}$`);
    if (!re.test(pathname)) continue;
    for (const name of rule.detach) delete out[name];
    for (const [name, value] of rule.headers) out[name] = name in out ? `${out[name]}, ${value}` : value;
  }
  return out;
}

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const HEADERS_FILE = join(root, '_headers');

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
/** The `_headers` headers for `pathname`, with --model-host origins added to the policy's connect-src. */
function securityHeaders(rules, pathname, modelHosts) {
  const headers = headersFor(rules, pathname);
  const csp = headers['content-security-policy'];
  if (csp && modelHosts.length) {
    headers['content-security-policy'] = csp.split(';').map((d) => (/^\s*connect-src\b/.test(d) ? `${d.trim()} ${modelHosts.join(' ')}` : d.trim())).join('; ');
  }
  return headers;
}

const compressible = new Set(['.html', '.js', '.mjs', '.css', '.json', '.wasm', '.svg', '.webmanifest']);
const gzipCache = new Map(); // path → {mtime, body}

function main() {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const port = Number(opt('--port', process.env.PORT || 8000));
  const host = opt('--host', '127.0.0.1');
  const modelHosts = [];
  args.forEach((a, i) => a === '--model-host' && modelHosts.push(args[i + 1]));
  const cors = args.includes('--cors');
  // Read once at start: restart the server after editing `_headers`.
  const rules = parseHeadersFile(readFileSync(HEADERS_FILE, 'utf8'));

  const server = createServer(async (req, res) => {
    let url;
    try {
      url = new URL(req.url, 'http://localhost');
      let path = normalize(join(root, decodeURIComponent(url.pathname)));
      if (!path.startsWith(root)) return send(res, url, 403, 'forbidden');
      let info = await stat(path).catch(() => null);
      if (info && info.isDirectory()) {
        path = join(path, 'index.html');
        info = await stat(path).catch(() => null);
      }
      if (!info || !info.isFile()) return send(res, url, 404, 'not found');
      const ext = extname(path).toLowerCase();
      const headers = {
        ...securityHeaders(rules, url.pathname, modelHosts),
        'content-type': types[ext] || 'application/octet-stream',
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
      send(res, url, 500, String(e));
    }
  });

  function send(res, url, status, text) {
    const headers = { ...securityHeaders(rules, url ? url.pathname : '/', modelHosts), 'content-type': 'text/plain; charset=utf-8' };
    if (cors) headers['access-control-allow-origin'] = '*';
    res.writeHead(status, headers);
    res.end(text);
  }

  server.listen(port, host, () => {
    console.log(`dermlip: serving ${root} at http://${host}:${server.address().port}/`);
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
