// Plain words for patients: everyday names and one-line descriptions of the built-in classes, and
// concept tags as words ("brown patch", not "brown(hyperpigmentation)"), in the widget's four
// languages. The data is www/plain-language.json (its "about" says how it was written); a test in
// tests/suite/knowledge.rs checks that it covers every built-in class and concept.
//
// Labels the file does not know (custom labels, a bundle's own sets) are shown as they are.

export const LANGUAGES = ['en', 'de', 'fr', 'es'];
const URL_ = new URL('./plain-language.json', import.meta.url).href;
let loading = null;

/** Loads the data once; resolves to a PlainWords (empty, never throws, when it cannot be read). */
export function loadPlainWords() {
  loading ??= fetch(URL_)
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
    .then((doc) => new PlainWords(doc))
    .catch(() => new PlainWords({}));
  return loading;
}

const key = (label) => String(label).trim().toLowerCase();

export class PlainWords {
  constructor(doc) {
    this.classes = doc && typeof doc.classes === 'object' && doc.classes ? doc.classes : {};
    this.concepts = doc && typeof doc.concepts === 'object' && doc.concepts ? doc.concepts : {};
  }

  #entry(label, lang) {
    const e = Object.hasOwn(this.classes, key(label)) ? this.classes[key(label)] : null;
    return e ? e[lang] || e.en || null : null;
  }

  /** The everyday name of a class (the label itself when unknown). */
  name(label, lang = 'en') {
    return this.#entry(label, lang)?.name || String(label);
  }

  /** The one-line description, or '' when unknown. */
  description(label, lang = 'en') {
    return this.#entry(label, lang)?.description || '';
  }

  /** Whether the class has plain words (then the medical name is shown beside them). */
  knows(label) {
    return Object.hasOwn(this.classes, key(label));
  }

  /** A concept tag as words (the key itself when unknown). */
  concept(name, lang = 'en') {
    const e = Object.hasOwn(this.concepts, name) ? this.concepts[name] : null;
    return (e && (e[lang] || e.en)) || String(name);
  }
}

/** Whether the engine's out-of-domain check says the photo does not look like skin
 * (`result.domain`, null for bundles without the check; src/knowledge/domain.rs). */
export function notSkin(result) {
  return result?.domain?.notSkin === true;
}

/** How firmly to advise a doctor's visit: 'strong' when a cancer or pre-cancer class is the top
 * match or the classes the ontology files under "malignant" hold at least a third of the match;
 * else 'standard' (also for a photo that does not look like skin). The engine marks those
 * classes (`result.malignant`). */
export function adviceLevel(result) {
  if (notSkin(result)) return 'standard';
  const m = Array.isArray(result?.malignant) ? result.malignant : [];
  const top = result?.predictions?.[0];
  const topMalignant = top && m[top.index] === true;
  return topMalignant || (result?.malignantProbability ?? 0) >= STRONG_ADVICE_SHARE ? 'strong' : 'standard';
}
export const STRONG_ADVICE_SHARE = 1 / 3;
