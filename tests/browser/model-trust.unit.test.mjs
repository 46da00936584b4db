// www/model-trust.js in Node (no browser, no built site): which models load without asking.
// Run: cd tests/browser && node --test model-trust.unit.test.mjs
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalModelUrl, describeSource, modelTrust, OWN_MODELS } from '../../www/model-trust.js';
import { TRUSTED_MODELS } from '../../www/trusted-models.js';

const SITE = 'https://dermlip.example.org/app/';
const base = `${SITE}index.html?model=whatever`;
const own = `${SITE}www/models/`;
const PIN = 'a'.repeat(64);
const trusted = [
  { name: 'Pinned bundle', url: 'https://huggingface.co/derm1m/DermLIP_ViT-B-16/resolve/0123abc/web/', manifestSha256: PIN },
  { name: 'No pin', url: 'https://huggingface.co/derm1m/unpinned/resolve/main/web/' },
  { name: 'Bad pin', url: 'https://huggingface.co/derm1m/badpin/resolve/main/web/', manifestSha256: 'xyz' },
];
const kind = (source) => modelTrust(source, { base, own, trusted }).kind;

describe('modelTrust', () => {
  test("the site's own bundles (same origin, under www/models/) load without asking", () => {
    assert.equal(kind('www/models/default/'), 'own');
    assert.equal(kind('www/models/default'), 'own');
    assert.equal(kind('/app/www/models/panderm/'), 'own');
    assert.equal(kind(`${SITE}www/models/default/`), 'own');
    assert.equal(kind('www/models/mine/open_clip_model.safetensors'), 'own');
    assert.equal(modelTrust('www/models/default', { base, own, trusted }).url, `${SITE}www/models/default/`);
  });

  test('same origin but outside www/models/ is third-party (another repository on a shared origin)', () => {
    assert.equal(kind('tests/fixtures/models/tiny-gelu/open_clip_model.safetensors'), 'third-party');
    assert.equal(kind('/other-repo/www/models/default/'), 'third-party');
    assert.equal(kind('www/models/../../uploads/'), 'third-party');
    assert.equal(kind('www/models/..%2F..%2Fuploads/'), 'third-party', 'an encoded slash cannot climb out');
    assert.equal(kind('www/models/%2e%2e/%2e%2e/uploads/'), 'third-party');
    assert.equal(kind('www/modelsX/default/'), 'third-party');
    assert.equal(kind('https://user:pw@dermlip.example.org/app/www/models/default/'), 'third-party');
  });

  test('another origin with the same path is third-party', () => {
    assert.equal(kind('https://evil.example/app/www/models/default/'), 'third-party');
    assert.equal(kind('http://dermlip.example.org/app/www/models/default/'), 'third-party', 'http is another origin');
    assert.equal(kind('https://dermlip.example.org.evil.example/app/www/models/default/'), 'third-party');
  });

  test('an allow-listed bundle needs its exact URL and a valid pin, and carries the pin', () => {
    const t = modelTrust('https://huggingface.co/derm1m/DermLIP_ViT-B-16/resolve/0123abc/web', { base, own, trusted });
    assert.equal(t.kind, 'trusted');
    assert.equal(t.manifestSha256, PIN);
    assert.equal(t.name, 'Pinned bundle');
    assert.equal(kind('https://huggingface.co/derm1m/DermLIP_ViT-B-16/resolve/main/web/'), 'third-party', 'another revision');
    assert.equal(kind('https://huggingface.co/derm1m/DermLIP_ViT-B-16/resolve/0123abc/'), 'third-party', 'another folder');
    assert.equal(kind('https://huggingface.co/derm1m/DermLIP_ViT-B-16/resolve/0123abc/web/open_clip_model.safetensors'), 'third-party', 'a checkpoint has no manifest to pin');
    assert.equal(kind('https://huggingface.co/derm1m/unpinned/resolve/main/web/'), 'third-party', 'no pin, no trust');
    assert.equal(kind('https://huggingface.co/derm1m/badpin/resolve/main/web/'), 'third-party', 'a malformed pin, no trust');
  });

  test("a stranger's hub repository is third-party and named by host and repository", () => {
    const t = modelTrust('https://huggingface.co/stranger/DermLIP-lookalike/resolve/main/web/', { base, own, trusted });
    assert.equal(t.kind, 'third-party');
    assert.equal(t.host, 'huggingface.co');
    assert.equal(t.repository, 'stranger/DermLIP-lookalike');
    assert.equal(t.label, 'huggingface.co/stranger/DermLIP-lookalike');
    assert.equal(describeSource('https://hf.co/datasets/a/b/resolve/main/m/').repository, 'datasets/a/b');
    assert.equal(describeSource('https://files.example/team/models/v2/open_clip_model.safetensors').repository, 'team/models/v2');
  });

  test('look-alike hosts are shown in punycode, paths percent-encoded', () => {
    const t = modelTrust('https://huggingfаce.co/x/y/resolve/main/', { base, own, trusted }); // Cyrillic а
    assert.equal(t.kind, 'third-party');
    assert.match(t.host, /^xn--/);
    assert.doesNotMatch(modelTrust('https://e.example/\u202egnp.exe/', { base, own, trusted }).label, /\u202e/);
  });

  test('only http(s) URLs', () => {
    for (const bad of ['javascript:alert(1)', 'data:application/json,{}', 'file:///etc/passwd', 'ftp://x/y/']) {
      assert.throws(() => modelTrust(bad, { base, own, trusted }), /only http\(s\) model URLs/);
    }
    assert.throws(() => modelTrust('', { base, own, trusted }), /no model URL/);
  });

  test('canonical URLs: a folder gets its trailing slash, the fragment goes', () => {
    assert.equal(canonicalModelUrl('https://a.example/m#x'), 'https://a.example/m/');
    assert.equal(canonicalModelUrl('https://a.example/m/x.safetensors'), 'https://a.example/m/x.safetensors');
  });
});

describe('the shipped configuration', () => {
  test('the own folder is www/models/ next to the page scripts', () => {
    assert.match(OWN_MODELS, /\/www\/models\/$/);
  });

  test('every allow-list entry has an exact URL and a sha256 pin', () => {
    for (const e of TRUSTED_MODELS) {
      assert.equal(typeof e.name, 'string');
      assert.equal(canonicalModelUrl(e.url), e.url, `${e.url}: write the canonical form (trailing /)`);
      assert.match(e.url, /^https:\/\//);
      assert.match(e.manifestSha256, /^[0-9a-f]{64}$/);
    }
  });
});
