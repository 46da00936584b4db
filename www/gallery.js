// Similar cases from a teacher's gallery (`dermlip index --thumbnails`, loaded with
// DermLIP.loadGallery): shared by the site and the widget.
//
// Privacy: every thumbnail is fetched when the gallery loads, before any photo is classified, and
// shown from memory (blob: URLs). Which cases are shown for a photo then causes no request, so the
// gallery's host learns nothing about the photo.

/** Thumbnails fetched at most; larger galleries show the cases without pictures beyond it. */
export const MAX_THUMBNAILS = 1000;
const MAX_THUMBNAIL_BYTES = 512 << 10;

/** Fetches the gallery's thumbnails (summary.thumbnailUrls); resolves to Map(url → blob: URL). */
export async function prefetchThumbnails(summary, { concurrency = 6 } = {}) {
  const urls = (summary?.thumbnailUrls || []).slice(0, MAX_THUMBNAILS);
  const out = new Map();
  let next = 0;
  const worker = async () => {
    while (next < urls.length) {
      const url = urls[next++];
      try {
        const r = await fetch(url);
        if (!r.ok) continue;
        const blob = await r.blob();
        if (blob.size <= MAX_THUMBNAIL_BYTES && blob.type.startsWith('image/')) out.set(url, URL.createObjectURL(blob));
      } catch {
        // a missing thumbnail: the case is listed without its picture
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

/** Frees the blob: URLs of prefetchThumbnails. */
export function releaseThumbnails(thumbs) {
  for (const u of thumbs?.values() || []) URL.revokeObjectURL(u);
}

const fileName = (s) => String(s).split(/[\\/]/).pop();

/**
 * The similar cases as a list: each with its thumbnail (from `thumbs` only), the teacher's caption
 * (else the file name) and the cosine similarity. `t` gives the strings: { heading, similarity(s) }.
 */
export function similarView(result, thumbs, t, doc = document) {
  const hits = result?.similar || [];
  if (!hits.length) return [];
  const h = doc.createElement('h3');
  h.textContent = t.heading;
  const ul = doc.createElement('ul');
  ul.className = 'similar-cases';
  for (const hit of hits) {
    const li = doc.createElement('li');
    li.dataset.id = hit.id;
    const src = hit.thumbnailUrl && thumbs?.get(hit.thumbnailUrl);
    if (src) {
      const img = doc.createElement('img');
      img.src = src;
      img.alt = hit.caption || fileName(hit.source);
      img.width = 96;
      li.append(img);
    }
    const cap = doc.createElement('span');
    cap.className = 'caption';
    cap.textContent = hit.caption || fileName(hit.source);
    const score = doc.createElement('span');
    score.className = 'score';
    score.textContent = t.similarity(hit.score);
    li.append(cap, score);
    ul.append(li);
  }
  return [h, ul];
}
