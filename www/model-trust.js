// Which model a page may load without asking (docs/deploy.md, "Which models load without asking").
//
// - `own`: the site's own bundles, same-origin URLs under www/models/ (next to this file).
// - `trusted`: a bundle in www/trusted-models.js, matched by its exact URL and pinned by the sha256
//   of its manifest (the worker checks the pin).
// - `third-party`: anything else. The page loads it only after the visitor agrees when the choice
//   came from a link (`?model=`), and marks it "third-party model: <source>" once loaded.
// Pure functions: no DOM, no network, so that Node's test runner can check them.

import { TRUSTED_MODELS } from './trusted-models.js';

/** The folder that holds the site's own bundles. */
export const OWN_MODELS = new URL('./models/', import.meta.url).href;

const HUB_HOSTS = new Set(['huggingface.co', 'www.huggingface.co', 'hf.co']);

/** A `.safetensors` URL is a plain checkpoint; anything else is a bundle folder (as the worker decides). */
export function isCheckpointUrl(url) {
  return /\.safetensors$/.test(new URL(url).pathname);
}

/** The bundle folder URL the worker loads for `url` (a trailing `/` added), or the checkpoint URL itself. */
export function canonicalModelUrl(url) {
  const u = new URL(url);
  u.hash = '';
  if (isCheckpointUrl(u.href)) return u.href;
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u.href;
}

/**
 * Whose model `url` is, for people: `{host, repository, label}`. On the Hugging Face hub the
 * repository is `owner/name` (`datasets/owner/name`, `spaces/owner/name`); elsewhere it is the
 * folder's path. Hosts come back in punycode and paths percent-encoded (the URL parser's doing), so
 * neither can hide behind look-alike or right-to-left characters.
 */
export function describeSource(url) {
  const u = new URL(url);
  const segments = u.pathname.split('/').filter(Boolean);
  let repository;
  if (HUB_HOSTS.has(u.hostname)) {
    const n = ['datasets', 'spaces', 'models'].includes(segments[0]) ? 3 : 2;
    repository = segments.slice(0, n).join('/');
  } else {
    const folder = isCheckpointUrl(u.href) ? segments.slice(0, -1) : segments;
    repository = folder.join('/');
  }
  repository = repository || '/';
  return { host: u.host, repository, label: `${u.host}/${repository === '/' ? '' : repository}` };
}

function isOwn(u, own) {
  const base = new URL(own);
  if (u.origin !== base.origin || !u.pathname.startsWith(base.pathname)) return false;
  // An encoded `/`, `\` or `.` could climb out of www/models/ on a server that decodes the path.
  return !/%2f|%5c|%2e|\\/i.test(u.pathname) && !u.username && !u.password;
}

/**
 * Classifies the model `source` (as typed or linked; resolved against `base`) as `own`, `trusted`
 * or `third-party`. Returns `{kind, url, host, repository, label, name?, manifestSha256?}`;
 * throws for anything but an http(s) URL.
 */
export function modelTrust(source, { base, own = OWN_MODELS, trusted = TRUSTED_MODELS } = {}) {
  if (typeof source !== 'string' || !source.trim()) throw new Error('no model URL was given');
  let u;
  try {
    u = new URL(source.trim(), base);
  } catch {
    throw new Error(`"${source}" is not a URL`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error(`only http(s) model URLs can be loaded (got ${u.protocol})`);
  const url = canonicalModelUrl(u.href);
  const who = describeSource(url);
  if (isOwn(new URL(url), own)) return { kind: 'own', url, ...who };
  if (!isCheckpointUrl(url)) {
    for (const entry of trusted) {
      if (!entry || typeof entry.url !== 'string' || !/^[0-9a-f]{64}$/.test(entry.manifestSha256 || '')) continue;
      let pinned;
      try {
        pinned = canonicalModelUrl(new URL(entry.url).href);
      } catch {
        continue;
      }
      if (pinned === url) return { kind: 'trusted', url, ...who, name: entry.name || who.label, manifestSha256: entry.manifestSha256 };
    }
  }
  return { kind: 'third-party', url, ...who };
}
