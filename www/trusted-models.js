// The models this site loads without asking, besides its own bundles (same-origin folders under
// www/models/, which need no entry here). One entry per web bundle:
//
//   {
//     name: 'DermLIP ViT-B/16 (Derm1M authors)',         // shown in the page, for people
//     url: 'https://huggingface.co/OWNER/REPO/resolve/COMMIT/web/',  // the bundle folder, exactly
//     manifestSha256: '64 hex digits',                    // sha256sum of that folder's manifest.json
//   },
//
// `url` must match the requested model exactly (after resolving it and adding a trailing `/`), so
// pin a commit, not a branch. The worker refuses the bundle when its manifest.json does not hash to
// `manifestSha256`; the manifest lists the size and sha256 of every other file, so the pin covers
// the whole bundle. Any other model asks the visitor first when a link names it (docs/deploy.md,
// "Which models load without asking").
export const TRUSTED_MODELS = [];
