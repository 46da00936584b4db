// The public JS API. Inference runs in a Web Worker (www/worker.js), so the page never freezes.
//
//   const model = await DermLIP.load('models/tiny/', { onProgress });
//   const result = await model.classify(file, 'ham7', { topK: 5, concepts: 5 });
//   model.dispose();

const WORKER_URL = new URL('./worker.js', import.meta.url);

/**
 * A module Worker for `url`. A page cannot start a worker from another origin, so when this file is
 * served from a different origin than the page (a CDN, a widget host), the worker is started from a
 * same-origin `blob:` module that imports the real worker script: the page's CSP then needs
 * `worker-src blob: <script host>`, and the script's host must send `Access-Control-Allow-Origin`.
 */
export function createWorker(url = WORKER_URL) {
  const href = new URL(url, document.baseURI);
  if (href.origin === location.origin) return new Worker(href, { type: 'module' });
  const trampoline = URL.createObjectURL(new Blob([`import ${JSON.stringify(href.href)};\n`], { type: 'text/javascript' }));
  const worker = new Worker(trampoline, { type: 'module' });
  // The worker fetches its blob asynchronously: revoke only once it has talked back (or failed).
  const revoke = () => URL.revokeObjectURL(trampoline);
  worker.addEventListener('message', revoke, { once: true });
  worker.addEventListener('error', revoke, { once: true });
  return worker;
}

/** Images the API accepts, converted into something the worker can take (transferred, not copied). */
async function toImageMessage(input) {
  if (input instanceof Blob) return { msg: { kind: 'bytes', data: await input.arrayBuffer() } };
  if (input instanceof ArrayBuffer) return { msg: { kind: 'bytes', data: input.slice(0) } };
  if (ArrayBuffer.isView(input)) {
    const copy = input.buffer.slice(input.byteOffset, input.byteOffset + input.byteLength);
    return { msg: { kind: 'bytes', data: copy } };
  }
  if (typeof ImageData !== 'undefined' && input instanceof ImageData) {
    const rgba = new Uint8Array(input.data);
    return { msg: { kind: 'rgba', rgba, width: input.width, height: input.height }, transfer: [rgba.buffer] };
  }
  if (typeof ImageBitmap !== 'undefined' && input instanceof ImageBitmap) {
    return { msg: { kind: 'bitmap', data: input }, transfer: [input] };
  }
  if (input && typeof input === 'object' && ('naturalWidth' in input || 'videoWidth' in input || 'getContext' in input)) {
    const bitmap = await createImageBitmap(input);
    return { msg: { kind: 'bitmap', data: bitmap }, transfer: [bitmap] };
  }
  throw new TypeError('classify() takes a File/Blob, ArrayBuffer, Uint8Array, ImageData, ImageBitmap, <img>, <canvas> or <video>');
}

export class DermLIP {
  #worker;
  #pending = new Map();
  #nextId = 1;
  #onProgress;
  #onEvent;
  /**
   * What `load` reported: backend, fallbackReason, labelSets (precomputed in the bundle),
   * builtinLabelSets, defaultLabelSet, templates (the default ones), bytesDownloaded, bytesFromCache,
   * loadMs, …
   */
  info = null;

  constructor(worker, { onProgress, onEvent } = {}) {
    this.#worker = worker;
    this.#onProgress = onProgress || (() => {});
    this.#onEvent = onEvent || (() => {});
    worker.onmessage = (e) => this.#receive(e.data);
    worker.onerror = (e) => this.#failAll(new Error(`the model worker failed: ${e.message || 'unknown error'}`));
  }

  /**
   * Loads a web bundle (folder URL with manifest.json) or an open_clip `.safetensors` URL.
   * Options: onProgress({file, role, loaded, total, fromCache}), onEvent({type, ...}),
   * backend ('auto' | 'webgpu' | 'cpu'), precision ('auto': f16 on WebGPU adapters with
   * shader-f16, else f32 | 'f32' | 'f16': fails without shader-f16), maxMegapixels (default 40), workerUrl (another
   * copy of worker.js; a cross-origin URL is started through a blob: trampoline), worker (a ready
   * Worker running worker.js, used as is; `dispose` terminates it), manifestSha256 (a web bundle's
   * manifest.json must have this sha256, else the load fails: www/trusted-models.js pins),
   * kernels (benchmarks: 'dermlip', the default | 'burn' | 'linear' | 'attention'; see setKernels
   * in src/web.rs).
   */
  static async load(source, options = {}) {
    if (typeof source !== 'string' || !source) throw new TypeError('DermLIP.load(source): source must be a URL string');
    const worker = options.worker || createWorker(options.workerUrl || WORKER_URL);
    const model = new DermLIP(worker, options);
    try {
      model.info = await model.#call({
        type: 'load',
        source: new URL(source, document.baseURI).href,
        backend: options.backend || 'auto',
        precision: options.precision || 'auto',
        maxMegapixels: options.maxMegapixels,
        manifestSha256: options.manifestSha256,
        kernels: options.kernels,
      });
    } catch (e) {
      worker.terminate();
      throw e;
    }
    return model;
  }

  /**
   * `labels`: a built-in label set id (`info.builtinLabelSets`: 'ham7', 'pad6', 'daffodil5', 'f17k',
   * 'snu134', 'sd128', 'derm1m'; default `info.defaultLabelSet`) or an array of class names.
   * Options: topK (5), templates (default `info.templates`), concepts (number of tags), only
   * (a subset of the label set's classes, with its precomputed embeddings: no text tower).
   * The result also says which classes the ontology files under "malignant" (`malignant`, per
   * label; `malignantProbability`), which square of the photo the model saw (`crop`), whether the
   * photo looks like skin at all (`domain`), and with similar (a number, after loadGallery) the
   * gallery's most similar cases (`similar`). `region` ({x, y, width, height}, whole pixels of
   * the photo as shown, EXIF orientation applied): look only at that part (the site's movable crop).
   * `heatMap: true`: also `result.heatMap` = { label (the top match), rows, cols, cosine, share }, per
   * patch of the model's square (row-major): the cosine with the top class and its softmax share
   * (sums to 1).
   */
  async classify(image, labels, { topK = 5, templates, concepts = 0, only, similar, gallery, region, heatMap } = {}) {
    const request = { topK, concepts };
    if (heatMap) request.heatMap = true;
    if (region !== undefined) {
      const { x, y, width, height } = region;
      request.region = { x, y, width, height };
    }
    if (only !== undefined) request.only = [...only].map(String);
    if (similar !== undefined) request.similar = similar;
    if (gallery !== undefined) request.gallery = String(gallery);
    if (Array.isArray(labels)) request.labels = labels.map(String);
    else if (typeof labels === 'string') request.labelSet = labels;
    else if (labels !== undefined) throw new TypeError('labels must be a label set id or an array of class names');
    if (templates) request.templates = templates.map(String);
    const { msg, transfer } = await toImageMessage(image);
    return this.#call({ type: 'classify', image: msg, request }, transfer || (msg.data instanceof ArrayBuffer ? [msg.data] : []));
  }

  /**
   * Loads a case gallery (a `.dlemb` file written by `dermlip index`): a URL, or a Blob/File or
   * ArrayBuffer. The engine checks that this model made it (the gallery's embedding of a probe
   * picture). Then `classify(…, { similar: k, gallery: name })` returns the k most similar image
   * cases as `result.similar`: [{ id, source, caption, thumbnail, thumbnailUrl, score, index }],
   * best first (`gallery` may be left out while one gallery is loaded). Resolves to { name (the
   * absolute URL, or `file:` and the file's name), model, images, captions, probeCosine,
   * thumbnails, thumbnailUrls, url }. Up to 8 galleries at once.
   */
  async loadGallery(source) {
    if (typeof source === 'string') return this.#call({ type: 'gallery', url: new URL(source, document.baseURI).href });
    const data = source instanceof ArrayBuffer ? source.slice(0) : source instanceof Blob ? await source.arrayBuffer() : null;
    if (!data) throw new TypeError('loadGallery takes a URL, a Blob/File or an ArrayBuffer');
    return this.#call({ type: 'gallery', data, name: `file:${source.name || 'gallery'}` }, [data]);
  }

  /** Forgets a loaded case gallery (by the name loadGallery returned). */
  async clearGallery(name) {
    return this.#call({ type: 'clearGallery', name: String(name) });
  }

  /** The image embedding (unnormalised, like open_clip's encode_image) as a Float32Array. */
  async embedImage(image) {
    const { msg, transfer } = await toImageMessage(image);
    return this.#call({ type: 'embedImage', image: msg }, transfer || (msg.data instanceof ArrayBuffer ? [msg.data] : []));
  }

  /** Text embeddings, one Float32Array per text (downloads the text tower on first use). */
  async embedText(texts) {
    if (!Array.isArray(texts)) throw new TypeError('embedText takes an array of strings');
    return this.#call({ type: 'embedText', texts: texts.map(String) });
  }

  /** Frees the model and ends the worker. */
  async dispose() {
    try {
      await this.#call({ type: 'dispose' });
    } finally {
      this.#worker.terminate();
      this.#failAll(new Error('the model was disposed'));
    }
  }

  #call(msg, transfer = []) {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...msg, id }, transfer);
    });
  }

  #receive(msg) {
    if (msg.type === 'progress') return this.#onProgress(msg);
    if (msg.type === 'event') return this.#onEvent(msg);
    const p = this.#pending.get(msg.id);
    if (!p) return;
    this.#pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new Error(msg.error));
  }

  #failAll(err) {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}

export default DermLIP;
