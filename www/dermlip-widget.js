// <dermlip-classifier>: an embeddable DermLIP widget for teaching sites (docs/embedding.md).
//
//   <script type="module" src="https://example.org/dermlip/www/dermlip-widget.js"></script>
//   <dermlip-classifier label-set="ham7" top-k="3"></dermlip-classifier>
//
// Shadow DOM (styles neither leak in nor out), themable with --dermlip-* custom properties and
// ::part(). Every widget on a page that uses the same model URL and backend shares one Web Worker
// and one loaded model. Defines nothing but the custom element, and only once: loading this file
// twice (even from two URLs) is harmless.

import { DermLIP } from './dermlip.js';
import { modelTrust } from './model-trust.js';
import { formatBytes, inspectModel, modelCard, saveData, unknownCard } from './model-info.js';
import { PlainWords, adviceLevel, loadPlainWords, notSkin } from './plain-words.js';
import { prefetchThumbnails, similarView } from './gallery.js';
import { paintHeatMap, placeOver } from './heatmap.js';

// Everyday names for the built-in classes and concept tags (www/plain-language.json), one copy
// for every widget on the page; labels it does not know are shown as they are.
let WORDS = new PlainWords({});
const WORDS_READY = loadPlainWords().then((w) => (WORDS = w));

const TAG = 'dermlip-classifier';
const DEFAULT_MODEL = new URL('./models/default/', import.meta.url).href;
const MODES = ['classify', 'concepts', 'quiz'];
const BACKENDS = ['auto', 'webgpu', 'cpu'];
// When to look the model up and (with reveal="auto") download it, as <model-viewer> names them:
// `lazy` when the widget comes near the viewport, `eager` at once.
const LOADINGS = ['lazy', 'eager'];
// `interaction`: the model downloads only when the visitor clicks "Download the model"; `auto`:
// by itself (at the time `loading` says), except under Save-Data. A cached model never asks.
const REVEALS = ['interaction', 'auto'];
const MODEL_CARD_PAGE = new URL('./model-card.html', import.meta.url).href;
const DEFAULT_TOP_K = 3;
const DEFAULT_CONCEPTS = 5;
const DEFAULT_SIMILAR = 3; // similar cases shown when a gallery attribute is set
const MAX_SIMILAR = 20;
// A quiz lists every class as a radio button: past this many it is no longer a question a student
// can answer (derm1m has 407). The `options` attribute picks a subset.
const MAX_QUIZ_OPTIONS = 20;

// ---- UI strings ---------------------------------------------------------------------------------

const STRINGS = {
  en: {
    title: { classify: 'What does this photo resemble?', concepts: 'Visible features in this photo', quiz: 'Quiz: what does this case show?' },
    notice: 'Educational, not a diagnosis. The photo stays on this device.',
    loading: 'Loading the model…',
    loadingBytes: (a, b) => `Loading the model: ${a} of ${b}`,
    ready: (where) => `Model ready, running on ${where}.`,
    gpu: 'WebGPU (graphics card)',
    cpu: 'the CPU',
    choose: 'Choose a photo',
    drop: 'or drop one here',
    working: 'Looking at the photo…',
    waiting: 'The photo will be looked at as soon as the model has loaded.',
    caseImage: 'The case photo',
    yourPhoto: (name) => `Your photo: ${name}`,
    lead: (set, label, pct) => `Against the ${set} list, the photo looks most like ${label} (${pct} of the match, relative to the others in the list).`,
    hint: 'These numbers compare descriptions with each other; they are not the chance of having a condition. Only a clinician can diagnose.',
    tags: 'Visible features (concept tags)',
    similar: { heading: 'Similar cases in the gallery', similarity: (s) => `similarity ${s.toFixed(2)}` },
    noTags: 'No concept tags for this photo.',
    pickPhoto: 'Choose a photo to start.',
    yourAnswer: 'Your answer',
    check: 'Check my answer',
    again: 'Try again',
    pickFirst: 'Pick an answer first.',
    optionsLater: 'The answer options appear once the model has looked at the photo.',
    youChose: (c) => `You chose ${c}.`,
    agree: (top) => `The model's top match is also ${top}.`,
    disagree: (top, rank, n) => `The model's top match is ${top}; it ranked your answer ${rank} of ${n}.`,
    correct: (a) => `Correct: the answer is ${a}.`,
    incorrect: (a) => `Not quite: the answer is ${a}.`,
    notTruth: 'The model is not ground truth: it can be wrong, and it knows nothing about the patient.',
    modelSays: "The model's top matches",
    advice: {
      standard: 'See a doctor if the spot is new, growing or changing, has several colours or an uneven edge, bleeds, itches or does not heal within 4 weeks.',
      strong: 'The closest match is a kind of skin cancer or pre-cancer. This tool is often wrong, but please show this spot to a doctor soon, within a few weeks.',
    },
    notSkin: (what) => `This does not look like a skin photo: it matches "${what}" better than anything about skin. The matches below are what the model says all the same.`,
    consent: (host, repo) => `A link asks this page to load a model from ${host} (repository ${repo}). It is not this widget's DermLIP model; load it only if you trust whoever published it.`,
    consentLoad: (host) => `Load the model from ${host}`,
    thirdParty: (label) => `Third-party model: ${label}`,
    askSize: (size) => `The model (${size}) is downloaded only when you ask; then it stays on this device.`,
    askUnknown: 'The model is downloaded only when you ask; then it stays on this device.',
    download: (size) => (size ? `Download the model (${size})` : 'Download the model'),
    saveData: 'Your browser asks to save data, so nothing is downloaded by itself.',
    checking: 'Looking up the model…',
    banner: { fixture: 'Demo model — random weights — results are meaningless.', unknown: 'Unverified model — it does not say what it is; results may be meaningless.' },
    modelCard: 'Model card',
    errorTitle: 'This widget is set up incorrectly:',
    err: {
      labelSet: (v, ok) => `Unknown label set "${v}". Use one of ${ok}, or list your own labels in the labels attribute.`,
      topK: (v) => `top-k must be a whole number of at least 1 (got "${v}").`,
      concepts: (v) => `concepts must be a whole number of at least 0 (got "${v}").`,
      mode: (v) => `Unknown mode "${v}". Use classify, concepts or quiz.`,
      backend: (v) => `Unknown backend "${v}". Use auto, webgpu or cpu.`,
      loading: (v) => `Unknown loading "${v}". Use lazy or eager.`,
      reveal: (v) => `Unknown reveal "${v}". Use interaction or auto.`,
      labels: (n) => `The labels attribute needs at least two labels separated by semicolons (got ${n}).`,
      templates: (t) => `Every template must contain {c}, where the label goes ("${t}" does not).`,
      answer: (a) => `The answer "${a}" is not one of the answer options.`,
      options: (n) => `The options attribute needs at least two classes of the label set, separated by semicolons (got ${n}).`,
      optionsWithLabels: 'Use either options (a subset of the label set) or labels (your own classes), not both.',
      optionsUnknown: (m) => `The options attribute: ${m}.`,
      tooMany: (n, max) => `A quiz with ${n} answer options is too long to answer; list at most ${max} of them in the options attribute.`,
      model: (url, m) => `The model could not be loaded from ${url}: ${m}`,
      src: (url, m) => `The case photo could not be loaded from ${url}: ${m}`,
      image: 'This file is not a photo this widget can read. Use a JPEG, PNG, WebP, GIF or BMP image.',
      classify: (m) => `The photo could not be classified: ${m}`,
      gallery: (url, m) => `The case gallery could not be loaded from ${url}: ${m}`,
      similar: (v) => `The similar attribute must be a whole number from 0 to 20, not "${v}".`,
    },
  },
  de: {
    title: { classify: 'Wonach sieht dieses Foto aus?', concepts: 'Sichtbare Merkmale auf diesem Foto', quiz: 'Quiz: Was zeigt dieser Fall?' },
    notice: 'Zum Lernen, keine Diagnose. Das Foto bleibt auf diesem Gerät.',
    loading: 'Das Modell wird geladen…',
    loadingBytes: (a, b) => `Das Modell wird geladen: ${a} von ${b}`,
    ready: (where) => `Modell bereit, läuft auf ${where}.`,
    gpu: 'WebGPU (Grafikkarte)',
    cpu: 'der CPU',
    choose: 'Foto auswählen',
    drop: 'oder hierher ziehen',
    working: 'Das Foto wird angesehen…',
    waiting: 'Das Foto wird angesehen, sobald das Modell geladen ist.',
    caseImage: 'Das Foto zum Fall',
    yourPhoto: (name) => `Ihr Foto: ${name}`,
    lead: (set, label, pct) => `Verglichen mit der Liste ${set} ähnelt das Foto am meisten ${label} (${pct} der Übereinstimmung, relativ zu den anderen Einträgen).`,
    hint: 'Diese Zahlen vergleichen Beschreibungen miteinander; sie sind nicht die Wahrscheinlichkeit einer Erkrankung. Nur eine Ärztin oder ein Arzt kann eine Diagnose stellen.',
    tags: 'Sichtbare Merkmale (Konzept-Tags)',
    similar: { heading: 'Ähnliche Fälle aus der Sammlung', similarity: (s) => `Ähnlichkeit ${s.toFixed(2)}` },
    noTags: 'Keine Konzept-Tags für dieses Foto.',
    pickPhoto: 'Wählen Sie ein Foto, um zu beginnen.',
    yourAnswer: 'Ihre Antwort',
    check: 'Antwort prüfen',
    again: 'Noch einmal',
    pickFirst: 'Wählen Sie zuerst eine Antwort.',
    optionsLater: 'Die Antwortmöglichkeiten erscheinen, sobald das Modell das Foto angesehen hat.',
    youChose: (c) => `Sie haben ${c} gewählt.`,
    agree: (top) => `Die beste Übereinstimmung des Modells ist ebenfalls ${top}.`,
    disagree: (top, rank, n) => `Die beste Übereinstimmung des Modells ist ${top}; Ihre Antwort steht auf Platz ${rank} von ${n}.`,
    correct: (a) => `Richtig: Die Antwort ist ${a}.`,
    incorrect: (a) => `Nicht ganz: Die Antwort ist ${a}.`,
    notTruth: 'Das Modell ist keine Musterlösung: Es kann sich irren und weiß nichts über die Patientin oder den Patienten.',
    modelSays: 'Die besten Übereinstimmungen des Modells',
    advice: {
      standard: 'Gehen Sie zum Arzt, wenn die Stelle neu ist, wächst oder sich verändert, mehrere Farben oder einen unregelmäßigen Rand hat, blutet, juckt oder nicht innerhalb von 4 Wochen abheilt.',
      strong: 'Die nächste Übereinstimmung ist eine Art Hautkrebs oder Krebsvorstufe. Dieses Werkzeug irrt sich oft, aber zeigen Sie diese Stelle bitte bald, innerhalb weniger Wochen, einer Ärztin oder einem Arzt.',
    },
    notSkin: (what) => `Das sieht nicht wie ein Hautfoto aus: Es passt besser zu „${what}“ als zu allem, was Haut betrifft. Darunter steht trotzdem, was das Modell sagt.`,
    consent: (host, repo) => `Ein Link verlangt, dass diese Seite ein Modell von ${host} lädt (Repository ${repo}). Es ist nicht das DermLIP-Modell dieses Widgets; laden Sie es nur, wenn Sie der Person vertrauen, die es veröffentlicht hat.`,
    consentLoad: (host) => `Modell von ${host} laden`,
    thirdParty: (label) => `Modell eines Dritten: ${label}`,
    askSize: (size) => `Das Modell (${size}) wird erst geladen, wenn Sie es wünschen; danach bleibt es auf diesem Gerät.`,
    askUnknown: 'Das Modell wird erst geladen, wenn Sie es wünschen; danach bleibt es auf diesem Gerät.',
    download: (size) => (size ? `Modell herunterladen (${size})` : 'Modell herunterladen'),
    saveData: 'Ihr Browser bittet darum, Daten zu sparen; deshalb wird nichts von selbst geladen.',
    checking: 'Das Modell wird nachgeschlagen…',
    banner: { fixture: 'Demo-Modell — Zufallsgewichte — die Ergebnisse sind bedeutungslos.', unknown: 'Nicht geprüftes Modell — es sagt nicht, was es ist; die Ergebnisse können bedeutungslos sein.' },
    modelCard: 'Modellkarte',
    errorTitle: 'Dieses Widget ist falsch eingerichtet:',
    err: {
      labelSet: (v, ok) => `Unbekannte Label-Liste „${v}“. Verwenden Sie ${ok} oder geben Sie eigene Labels im Attribut labels an.`,
      topK: (v) => `top-k muss eine ganze Zahl ab 1 sein (erhalten: „${v}“).`,
      concepts: (v) => `concepts muss eine ganze Zahl ab 0 sein (erhalten: „${v}“).`,
      mode: (v) => `Unbekannter Modus „${v}“. Verwenden Sie classify, concepts oder quiz.`,
      backend: (v) => `Unbekanntes Backend „${v}“. Verwenden Sie auto, webgpu oder cpu.`,
      loading: (v) => `Unbekannter Wert für loading „${v}“. Verwenden Sie lazy oder eager.`,
      reveal: (v) => `Unbekannter Wert für reveal „${v}“. Verwenden Sie interaction oder auto.`,
      labels: (n) => `Das Attribut labels braucht mindestens zwei durch Semikolon getrennte Labels (erhalten: ${n}).`,
      templates: (t) => `Jede Vorlage muss {c} enthalten, die Stelle für das Label („${t}“ enthält es nicht).`,
      answer: (a) => `Die Antwort „${a}“ ist keine der Antwortmöglichkeiten.`,
      options: (n) => `Das Attribut options braucht mindestens zwei Klassen der Label-Liste, durch Semikolons getrennt (erhalten: ${n}).`,
      optionsWithLabels: 'Verwenden Sie entweder options (eine Auswahl aus der Label-Liste) oder labels (eigene Klassen), nicht beides.',
      optionsUnknown: (m) => `Das Attribut options: ${m}.`,
      tooMany: (n, max) => `Ein Quiz mit ${n} Antwortmöglichkeiten ist zu lang; nennen Sie höchstens ${max} davon im Attribut options.`,
      model: (url, m) => `Das Modell konnte nicht von ${url} geladen werden: ${m}`,
      src: (url, m) => `Das Foto zum Fall konnte nicht von ${url} geladen werden: ${m}`,
      image: 'Diese Datei ist kein Foto, das dieses Widget lesen kann. Verwenden Sie ein JPEG-, PNG-, WebP-, GIF- oder BMP-Bild.',
      classify: (m) => `Das Foto konnte nicht eingeordnet werden: ${m}`,
      gallery: (url, m) => `Die Fallsammlung konnte nicht von ${url} geladen werden: ${m}`,
      similar: (v) => `Das Attribut similar muss eine ganze Zahl von 0 bis 20 sein, nicht „${v}“.`,
    },
  },
  fr: {
    title: { classify: 'À quoi cette photo ressemble-t-elle ?', concepts: 'Caractéristiques visibles sur cette photo', quiz: 'Quiz : que montre ce cas ?' },
    notice: 'Pédagogique, pas un diagnostic. La photo reste sur cet appareil.',
    loading: 'Chargement du modèle…',
    loadingBytes: (a, b) => `Chargement du modèle : ${a} sur ${b}`,
    ready: (where) => `Modèle prêt, il tourne sur ${where}.`,
    gpu: 'WebGPU (carte graphique)',
    cpu: 'le processeur',
    choose: 'Choisir une photo',
    drop: 'ou la déposer ici',
    working: 'Analyse de la photo…',
    waiting: 'La photo sera analysée dès que le modèle sera chargé.',
    caseImage: 'La photo du cas',
    yourPhoto: (name) => `Votre photo : ${name}`,
    lead: (set, label, pct) => `Par rapport à la liste ${set}, la photo ressemble le plus à ${label} (${pct} de la correspondance, par rapport aux autres éléments de la liste).`,
    hint: 'Ces nombres comparent des descriptions entre elles ; ce ne sont pas des probabilités d’avoir une maladie. Seul un médecin peut poser un diagnostic.',
    tags: 'Caractéristiques visibles (étiquettes de concepts)',
    similar: { heading: 'Cas semblables de la collection', similarity: (s) => `similarité ${s.toFixed(2)}` },
    noTags: 'Aucune étiquette de concept pour cette photo.',
    pickPhoto: 'Choisissez une photo pour commencer.',
    yourAnswer: 'Votre réponse',
    check: 'Vérifier ma réponse',
    again: 'Réessayer',
    pickFirst: 'Choisissez d’abord une réponse.',
    optionsLater: 'Les réponses possibles apparaissent quand le modèle a analysé la photo.',
    youChose: (c) => `Vous avez choisi ${c}.`,
    agree: (top) => `La meilleure correspondance du modèle est aussi ${top}.`,
    disagree: (top, rank, n) => `La meilleure correspondance du modèle est ${top} ; il a classé votre réponse ${rank} sur ${n}.`,
    correct: (a) => `Correct : la réponse est ${a}.`,
    incorrect: (a) => `Pas tout à fait : la réponse est ${a}.`,
    notTruth: 'Le modèle n’est pas la vérité : il peut se tromper et ne sait rien du patient.',
    modelSays: 'Les meilleures correspondances du modèle',
    advice: {
      standard: 'Consultez un médecin si la tache est nouvelle, grandit ou change, a plusieurs couleurs ou un bord irrégulier, saigne, démange ou ne guérit pas en 4 semaines.',
      strong: 'La correspondance la plus proche est une forme de cancer de la peau ou de lésion précancéreuse. Cet outil se trompe souvent, mais montrez cette tache à un médecin bientôt, dans les prochaines semaines.',
    },
    notSkin: (what) => `Cela ne ressemble pas à une photo de peau : elle correspond mieux à « ${what} » qu’à tout ce qui concerne la peau. Voici tout de même ce que dit le modèle.`,
    consent: (host, repo) => `Un lien demande à cette page de charger un modèle depuis ${host} (dépôt ${repo}). Ce n’est pas le modèle DermLIP de ce widget ; ne le chargez que si vous faites confiance à son auteur.`,
    consentLoad: (host) => `Charger le modèle depuis ${host}`,
    thirdParty: (label) => `Modèle tiers : ${label}`,
    askSize: (size) => `Le modèle (${size}) n’est téléchargé que si vous le demandez ; il reste ensuite sur cet appareil.`,
    askUnknown: 'Le modèle n’est téléchargé que si vous le demandez ; il reste ensuite sur cet appareil.',
    download: (size) => (size ? `Télécharger le modèle (${size})` : 'Télécharger le modèle'),
    saveData: 'Votre navigateur demande d’économiser les données : rien n’est téléchargé de lui-même.',
    checking: 'Recherche du modèle…',
    banner: { fixture: 'Modèle de démonstration — poids aléatoires — les résultats n’ont aucun sens.', unknown: 'Modèle non vérifié — il ne dit pas ce qu’il est ; les résultats peuvent n’avoir aucun sens.' },
    modelCard: 'Fiche du modèle',
    errorTitle: 'Ce widget est mal configuré :',
    err: {
      labelSet: (v, ok) => `Liste d’étiquettes inconnue « ${v} ». Utilisez ${ok}, ou indiquez vos propres étiquettes dans l’attribut labels.`,
      topK: (v) => `top-k doit être un nombre entier d’au moins 1 (reçu « ${v} »).`,
      concepts: (v) => `concepts doit être un nombre entier d’au moins 0 (reçu « ${v} »).`,
      mode: (v) => `Mode inconnu « ${v} ». Utilisez classify, concepts ou quiz.`,
      backend: (v) => `Backend inconnu « ${v} ». Utilisez auto, webgpu ou cpu.`,
      loading: (v) => `Valeur de loading inconnue « ${v} ». Utilisez lazy ou eager.`,
      reveal: (v) => `Valeur de reveal inconnue « ${v} ». Utilisez interaction ou auto.`,
      labels: (n) => `L’attribut labels demande au moins deux étiquettes séparées par des points-virgules (reçu ${n}).`,
      templates: (t) => `Chaque modèle de phrase doit contenir {c}, la place de l’étiquette (« ${t} » ne le contient pas).`,
      answer: (a) => `La réponse « ${a} » ne fait pas partie des réponses possibles.`,
      options: (n) => `L’attribut options demande au moins deux classes de la liste, séparées par des points-virgules (reçu ${n}).`,
      optionsWithLabels: 'Utilisez soit options (une partie de la liste), soit labels (vos propres classes), pas les deux.',
      optionsUnknown: (m) => `L’attribut options : ${m}.`,
      tooMany: (n, max) => `Un quiz à ${n} réponses possibles est trop long ; indiquez-en au plus ${max} dans l’attribut options.`,
      model: (url, m) => `Le modèle n’a pas pu être chargé depuis ${url} : ${m}`,
      src: (url, m) => `La photo du cas n’a pas pu être chargée depuis ${url} : ${m}`,
      image: 'Ce fichier n’est pas une photo lisible par ce widget. Utilisez une image JPEG, PNG, WebP, GIF ou BMP.',
      classify: (m) => `La photo n’a pas pu être classée : ${m}`,
      gallery: (url, m) => `La collection de cas n’a pas pu être chargée depuis ${url} : ${m}`,
      similar: (v) => `L’attribut similar doit être un nombre entier de 0 à 20, pas « ${v} ».`,
    },
  },
  es: {
    title: { classify: '¿A qué se parece esta foto?', concepts: 'Rasgos visibles en esta foto', quiz: 'Quiz: ¿qué muestra este caso?' },
    notice: 'Educativo, no es un diagnóstico. La foto no sale de este dispositivo.',
    loading: 'Cargando el modelo…',
    loadingBytes: (a, b) => `Cargando el modelo: ${a} de ${b}`,
    ready: (where) => `Modelo listo, se ejecuta en ${where}.`,
    gpu: 'WebGPU (tarjeta gráfica)',
    cpu: 'la CPU',
    choose: 'Elegir una foto',
    drop: 'o soltarla aquí',
    working: 'Analizando la foto…',
    waiting: 'La foto se analizará en cuanto se haya cargado el modelo.',
    caseImage: 'La foto del caso',
    yourPhoto: (name) => `Tu foto: ${name}`,
    lead: (set, label, pct) => `Frente a la lista ${set}, la foto se parece más a ${label} (${pct} de la coincidencia, en relación con las demás de la lista).`,
    hint: 'Estos números comparan descripciones entre sí; no son la probabilidad de tener una enfermedad. Solo un profesional médico puede diagnosticar.',
    tags: 'Rasgos visibles (etiquetas de conceptos)',
    similar: { heading: 'Casos parecidos de la colección', similarity: (s) => `similitud ${s.toFixed(2)}` },
    noTags: 'No hay etiquetas de conceptos para esta foto.',
    pickPhoto: 'Elige una foto para empezar.',
    yourAnswer: 'Tu respuesta',
    check: 'Comprobar mi respuesta',
    again: 'Intentar de nuevo',
    pickFirst: 'Elige primero una respuesta.',
    optionsLater: 'Las opciones aparecen cuando el modelo haya analizado la foto.',
    youChose: (c) => `Elegiste ${c}.`,
    agree: (top) => `La mejor coincidencia del modelo también es ${top}.`,
    disagree: (top, rank, n) => `La mejor coincidencia del modelo es ${top}; puso tu respuesta en el puesto ${rank} de ${n}.`,
    correct: (a) => `Correcto: la respuesta es ${a}.`,
    incorrect: (a) => `No exactamente: la respuesta es ${a}.`,
    notTruth: 'El modelo no es la verdad: puede equivocarse y no sabe nada del paciente.',
    modelSays: 'Las mejores coincidencias del modelo',
    advice: {
      standard: 'Consulta a un médico si la mancha es nueva, crece o cambia, tiene varios colores o un borde irregular, sangra, pica o no se cura en 4 semanas.',
      strong: 'La coincidencia más cercana es un tipo de cáncer de piel o de lesión precancerosa. Esta herramienta se equivoca a menudo, pero enseña esta mancha a un médico pronto, en las próximas semanas.',
    },
    notSkin: (what) => `Esto no parece una foto de piel: se parece más a «${what}» que a cualquier cosa de la piel. Debajo está igualmente lo que dice el modelo.`,
    consent: (host, repo) => `Un enlace pide a esta página cargar un modelo de ${host} (repositorio ${repo}). No es el modelo DermLIP de este widget; cárgalo solo si confías en quien lo publicó.`,
    consentLoad: (host) => `Cargar el modelo de ${host}`,
    thirdParty: (label) => `Modelo de terceros: ${label}`,
    askSize: (size) => `El modelo (${size}) solo se descarga cuando lo pidas; después se queda en este dispositivo.`,
    askUnknown: 'El modelo solo se descarga cuando lo pidas; después se queda en este dispositivo.',
    download: (size) => (size ? `Descargar el modelo (${size})` : 'Descargar el modelo'),
    saveData: 'Tu navegador pide ahorrar datos, así que nada se descarga por sí solo.',
    checking: 'Buscando el modelo…',
    banner: { fixture: 'Modelo de demostración — pesos aleatorios — los resultados no significan nada.', unknown: 'Modelo no verificado — no dice qué es; los resultados pueden no significar nada.' },
    modelCard: 'Ficha del modelo',
    errorTitle: 'Este widget está mal configurado:',
    err: {
      labelSet: (v, ok) => `Lista de etiquetas desconocida «${v}». Usa ${ok}, o escribe tus propias etiquetas en el atributo labels.`,
      topK: (v) => `top-k debe ser un número entero de al menos 1 (recibido «${v}»).`,
      concepts: (v) => `concepts debe ser un número entero de al menos 0 (recibido «${v}»).`,
      mode: (v) => `Modo desconocido «${v}». Usa classify, concepts o quiz.`,
      backend: (v) => `Backend desconocido «${v}». Usa auto, webgpu o cpu.`,
      loading: (v) => `Valor de loading desconocido «${v}». Usa lazy o eager.`,
      reveal: (v) => `Valor de reveal desconocido «${v}». Usa interaction o auto.`,
      labels: (n) => `El atributo labels necesita al menos dos etiquetas separadas por punto y coma (recibidas: ${n}).`,
      templates: (t) => `Cada plantilla debe contener {c}, donde va la etiqueta («${t}» no lo contiene).`,
      answer: (a) => `La respuesta «${a}» no es una de las opciones.`,
      options: (n) => `El atributo options necesita al menos dos clases de la lista, separadas por punto y coma (recibido ${n}).`,
      optionsWithLabels: 'Usa options (una parte de la lista) o labels (tus propias clases), no ambos.',
      optionsUnknown: (m) => `El atributo options: ${m}.`,
      tooMany: (n, max) => `Un quiz con ${n} opciones es demasiado largo; indica como máximo ${max} en el atributo options.`,
      model: (url, m) => `No se pudo cargar el modelo desde ${url}: ${m}`,
      src: (url, m) => `No se pudo cargar la foto del caso desde ${url}: ${m}`,
      image: 'Este archivo no es una foto que este widget pueda leer. Usa una imagen JPEG, PNG, WebP, GIF o BMP.',
      classify: (m) => `No se pudo clasificar la foto: ${m}`,
      gallery: (url, m) => `No se pudo cargar la colección de casos desde ${url}: ${m}`,
      similar: (v) => `El atributo similar debe ser un número entero de 0 a 20, no «${v}».`,
    },
  },
};

// ---- styles (a constructed stylesheet: needs no CSP style-src, shared by every widget) ----------

const CSS = `
:host { display: block !important; }
:host([hidden]) { display: none !important; }
.box {
  all: initial;
  display: inline-block; /* an atomic box: the page's text-decoration does not propagate in */
  vertical-align: top;
  box-sizing: border-box;
  width: 100%;
  max-width: var(--dermlip-max-width, 40em);
  font-family: var(--dermlip-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  font-size: var(--dermlip-font-size, 16px);
  line-height: 1.45;
  color: var(--dermlip-fg, #1b1f24);
  background: var(--dermlip-bg, #ffffff);
  border: var(--dermlip-border-width, 1px) solid var(--dermlip-border, #c9ced4);
  border-radius: var(--dermlip-radius, 10px);
  padding: var(--dermlip-padding, 0.9em 1em);
  text-align: start;
  color-scheme: light;
  accent-color: var(--dermlip-accent, #0b5cad);
  overflow-wrap: break-word;
  container-type: inline-size;
}
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
p { margin: 0.4em 0; }
.title { font-weight: 700; font-size: 1.1em; margin: 0 0 0.3em; }
.banner { background: var(--dermlip-banner-bg, #fde8e8); border: 2px solid var(--dermlip-banner-border, #a11a1a);
  border-radius: calc(var(--dermlip-radius, 10px) * 0.6); padding: 0.3em 0.6em; font-size: 0.9em; font-weight: 600; }
.banner a { color: inherit; font-weight: 400; }
.ask { margin: 0.4em 0; }
.notice { background: var(--dermlip-notice-bg, #fff4d6); border: 1px solid var(--dermlip-notice-border, #b88a00);
  border-radius: calc(var(--dermlip-radius, 10px) * 0.6); padding: 0.3em 0.6em; font-size: 0.88em; }
.status, .hint, figcaption { color: var(--dermlip-muted, #4a5360); font-size: 0.88em; }
progress { display: block; width: 100%; height: 0.55em; margin: 0.2em 0 0.4em; accent-color: var(--dermlip-accent, #0b5cad); }
.error { color: var(--dermlip-error, #a11a1a); font-weight: 600; border-left: 4px solid var(--dermlip-error, #a11a1a);
  padding: 0.2em 0 0.2em 0.5em; margin: 0.5em 0; }
.error strong { display: block; }
.picker { display: flex; flex-wrap: wrap; gap: 0.5em; align-items: center; margin: 0.6em 0; }
button { font: inherit; font-size: 0.95em; line-height: 1.2; background: var(--dermlip-accent, #0b5cad); color: var(--dermlip-accent-fg, #ffffff);
  border: 0; border-radius: calc(var(--dermlip-radius, 10px) * 0.6); padding: 0.6em 0.95em; min-height: 44px; cursor: pointer; margin: 0; }
button.secondary { background: transparent; color: var(--dermlip-accent, #0b5cad); border: 1px solid currentColor; }
:focus-visible { outline: 3px solid var(--dermlip-focus, var(--dermlip-accent, #0b5cad)); outline-offset: 2px; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.drop-hint { color: var(--dermlip-muted, #4a5360); font-size: 0.88em; }
.box.over { outline: 3px dashed var(--dermlip-accent, #0b5cad); outline-offset: -6px; }
figure { margin: 0.5em 0; }
.frame { position: relative; display: inline-block; max-width: 100%; }
.crop-box { position: absolute; border: 2px dashed var(--dermlip-accent, #0b5cad); box-shadow: 0 0 0 9999px rgb(0 0 0 / 0.3); pointer-events: none; box-sizing: border-box; }
.frame { overflow: hidden; }
canvas.heat-map { position: absolute; max-width: none; max-height: none; border-radius: 0; pointer-events: none; }
canvas { display: block; max-width: 100%; max-height: var(--dermlip-image-height, 16em); width: auto; height: auto; border-radius: calc(var(--dermlip-radius, 10px) * 0.6); }
fieldset { border: 1px solid var(--dermlip-border, #c9ced4); border-radius: calc(var(--dermlip-radius, 10px) * 0.6); margin: 0.6em 0; padding: 0.3em 0.7em 0.5em; min-width: 0; }
legend { font-weight: 600; padding: 0 0.3em; }
.options { max-height: var(--dermlip-options-height, 14em); overflow: auto; }
.option { display: flex; gap: 0.5em; align-items: center; min-height: 32px; cursor: pointer; }
.option input { margin: 0; width: 1.1em; height: 1.1em; flex: none; }
.quiz-actions { display: flex; flex-wrap: wrap; gap: 0.5em; align-items: center; }
.result { opacity: 1; }
.busy .result { opacity: 0.6; }
ol.predictions { padding-left: 1.4em; margin: 0.4em 0; }
ol.predictions li { margin: 0.15em 0; }
.row { display: grid; grid-template-columns: minmax(0, 1fr) minmax(2.5em, 6em) 3.2em; gap: 0.5em; align-items: center; }
.row meter { width: 100%; }
.row .value { text-align: end; font-variant-numeric: tabular-nums; }
/* Narrow (a phone, a sidebar): the bar goes under the label. */
@container (max-width: 26em) {
  .row { grid-template-columns: minmax(0, 1fr) auto; row-gap: 0.1em; }
  .row meter { grid-column: 1 / -1; grid-row: 2; }
}
li.chosen .label { font-weight: 700; }
.label .medical { color: var(--dermlip-muted, #4a5360); font-size: 0.9em; font-weight: 400; }
.description { margin: 0.2em 0; }
.not-skin { border: 2px solid var(--dermlip-banner-border, #a11a1a); background: var(--dermlip-banner-bg, #fde8e8); padding: 0.3em 0.6em; border-radius: 4px; font-weight: 600; }
.advice { border-left: 4px solid var(--dermlip-notice-border, #b88a00); background: var(--dermlip-notice-bg, #fff4d6); padding: 0.3em 0.6em; font-size: 0.9em; border-radius: 4px; }
.advice-strong { border-left-color: var(--dermlip-banner-border, #a11a1a); background: var(--dermlip-banner-bg, #fde8e8); font-weight: 600; }
li.chosen .label::after { content: " \\2190"; }
.subtitle { font-weight: 600; margin: 0.7em 0 0.3em; }
ul.similar-cases { list-style: none; padding: 0; margin: 0.3em 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(6em, 1fr)); gap: 0.5em; }
ul.similar-cases li { display: flex; flex-direction: column; gap: 0.15em; font-size: 0.85em; }
ul.similar-cases img { width: 100%; height: auto; border-radius: 4px; }
ul.tags { list-style: none; padding: 0; margin: 0.3em 0; display: flex; flex-wrap: wrap; gap: 0.4em; }
ul.tags li { border: 1px solid var(--dermlip-border, #c9ced4); border-radius: 999px; padding: 0.1em 0.6em; font-size: 0.9em; }
.feedback { border-radius: calc(var(--dermlip-radius, 10px) * 0.6); padding: 0.4em 0.7em; margin: 0.6em 0;
  border: 2px solid var(--dermlip-border, #c9ced4); }
.feedback:focus { outline: none; }
.feedback:focus-visible { outline: 3px solid var(--dermlip-accent, #0b5cad); }
.feedback.good { border-color: var(--dermlip-correct, #1a7f37); }
.feedback.bad { border-color: var(--dermlip-incorrect, #a11a1a); }
.feedback p { margin: 0.2em 0; }
@media (prefers-reduced-motion: no-preference) { .result { transition: opacity 0.2s; } }
`;

let sheet = null;
function styleSheet() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}

// ---- helpers --------------------------------------------------------------------------------------

class AttrError extends Error {
  constructor(attribute, message) {
    super(message);
    this.attribute = attribute;
  }
}

const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'part' || k.startsWith('aria-') || k === 'role' || k === 'for') e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
};

const split = (s) => (s || '').split(/[;\n]/).map((x) => x.trim()).filter(Boolean);
const percent = (p) => (p >= 0.995 ? '>99%' : p < 0.005 ? '<1%' : `${Math.round(p * 100)}%`);
function parseCount(value, min) {
  const s = String(value).trim();
  if (!/^\d+$/.test(s)) return NaN;
  const n = Number(s);
  return n >= min ? n : NaN;
}

// ---- the element -----------------------------------------------------------------------------------

class DermlipClassifier extends HTMLElement {
  static observedAttributes = ['model', 'model-from', 'backend', 'loading', 'reveal', 'label-set', 'labels', 'templates', 'top-k', 'concepts', 'mode', 'lang', 'src', 'answer', 'options', 'gallery', 'similar', 'heat-map'];

  /** (model URL, backend) → {key, url, backend, promise, model, refs, progress, textTower, failed} */
  static #models = new Map();
  /** Case photos (`src`) by URL, fetched once per page however many widgets show them. */
  static #photos = new Map();
  /** Third-party model URLs the visitor agreed to load on this page (`model-from="link"`). */
  static #consented = new Set();
  /** Model URLs looked up (manifest: card, size, cached?), once per page: URL → {promise, look, error}. */
  static #looks = new Map();
  /** Model URLs the visitor asked to download on this page (a click in any widget). */
  static #wanted = new Set();
  /** The connected widgets: a download asked for in one starts in every widget with that model. */
  static #instances = new Set();

  #root;
  #ui = {};
  #entry = null; // the shared model entry this widget uses
  #gallery = null; // {summary, thumbs} of the gallery attribute's gallery, once loaded
  #image = null; // {blob, name, fromSrc}
  #srcLoaded = null; // the `src` URL whose image is in #image (or loading)
  #srcLoading = null;
  #result = null;
  #choice = null;
  #revealed = false;
  #gen = 0;
  #scheduled = false;
  #readyFired = null; // the entry a dermlip-ready was sent for
  #lastError = '';
  #modelError = null;
  #srcError = null;
  #imageError = null;
  #busy = false;
  #trust = null; // whose model the `model` attribute names (www/model-trust.js)
  #visible = false; // has come near the viewport (loading="lazy")
  #observer = null;
  #ask = null; // {look} while waiting for a click before downloading, {checking: true} while looking up

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: 'open' });
    this.#root.adoptedStyleSheets = [styleSheet()];
    this.#build();
  }

  connectedCallback() {
    DermlipClassifier.#instances.add(this);
    if (!this.#visible && !this.#observer && typeof IntersectionObserver === 'function') {
      this.#observer = new IntersectionObserver((entries) => {
        if (!entries.some((e) => e.isIntersecting)) return;
        this.#visible = true;
        this.#observer.disconnect();
        this.#observer = null;
        this.#schedule();
      }, { rootMargin: '200px' });
      this.#observer.observe(this);
    } else if (typeof IntersectionObserver !== 'function') {
      this.#visible = true;
    }
    this.#schedule();
  }

  disconnectedCallback() {
    DermlipClassifier.#instances.delete(this);
    if (this.#observer) {
      this.#observer.disconnect();
      this.#observer = null;
    }
    queueMicrotask(() => {
      if (!this.isConnected) this.#release();
    });
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (oldValue === newValue) return;
    if (name === 'answer' || name === 'mode') this.#revealed = false;
    this.#schedule();
  }

  /** The last result (the same object as `DermLIP.classify` returns), or null. */
  get result() {
    return this.#result;
  }

  /** The shared model's `info` once loaded, else null. */
  get info() {
    return this.#entry && this.#entry.model ? this.#entry.model.info : null;
  }

  /** Classifies a photo the page supplies (File/Blob), as if the student had chosen it. */
  setImage(blob, name = blob && blob.name) {
    if (!(blob instanceof Blob)) throw new TypeError('setImage takes a File or Blob');
    this.#useImage({ blob, name: name || 'photo', fromSrc: false });
  }

  // ---- DOM -----------------------------------------------------------------------------------

  #build() {
    const u = this.#ui;
    u.box = el('div', { className: 'box', part: 'container' });
    u.title = el('p', { className: 'title', part: 'title' });
    u.notice = el('p', { className: 'notice', part: 'notice' });
    u.status = el('p', { className: 'status', part: 'status', role: 'status' });
    u.progress = el('progress', { part: 'progress', max: 1, value: 0 });
    u.error = el('div', { className: 'error', part: 'error', role: 'alert', hidden: true });
    u.source = el('p', { className: 'notice', part: 'source', hidden: true });
    u.consentText = el('p');
    u.consentYes = el('button', { type: 'button', part: 'button consent-button' });
    u.consent = el('div', { className: 'notice', part: 'consent', role: 'group', hidden: true }, u.consentText, u.consentYes);
    u.bannerText = el('span');
    u.cardLink = el('a', { part: 'model-card-link', target: '_blank', rel: 'noopener', href: MODEL_CARD_PAGE });
    u.banner = el('p', { className: 'banner', part: 'model-banner', role: 'note', hidden: true }, u.bannerText, ' ', u.cardLink);
    u.askText = el('p', { className: 'hint' });
    u.saveData = el('p', { className: 'hint', hidden: true });
    u.download = el('button', { type: 'button', part: 'button load-button' });
    u.ask = el('div', { className: 'ask', part: 'ask', hidden: true }, u.askText, u.saveData, u.download);
    u.file = el('input', { type: 'file', accept: 'image/*', className: 'visually-hidden', tabIndex: -1 });
    u.file.setAttribute('aria-hidden', 'true');
    u.pick = el('button', { type: 'button', part: 'button pick-button' });
    u.dropHint = el('span', { className: 'drop-hint' });
    u.picker = el('div', { className: 'picker', part: 'picker' }, u.pick, u.dropHint, u.file);
    u.canvas = el('canvas', { role: 'img', width: 1, height: 1 });
    u.caption = el('figcaption');
    u.heat = el('canvas', { className: 'heat-map', part: 'heat-map', hidden: true, width: 1, height: 1 });
    u.heat.setAttribute('aria-hidden', 'true');
    // The square the model sees (result.crop), dashed, over the photo.
    u.cropBox = el('div', { className: 'crop-box', part: 'crop-box', hidden: true });
    u.frame = el('div', { className: 'frame' }, u.canvas, u.heat, u.cropBox);
    u.figure = el('figure', { part: 'image', hidden: true }, u.frame, u.caption);
    u.legend = el('legend');
    u.options = el('div', { className: 'options', part: 'options' });
    u.fieldset = el('fieldset', {}, u.legend, u.options);
    u.submit = el('button', { type: 'submit', part: 'button submit' });
    u.again = el('button', { type: 'button', className: 'secondary', part: 'button again', hidden: true });
    u.quizMsg = el('span', { className: 'hint', role: 'status' });
    u.feedback = el('div', { className: 'feedback', part: 'feedback', tabIndex: -1, hidden: true });
    // The teacher's note (`<div slot="note">…</div>` inside the element), shown after the answer.
    u.note = el('div', { className: 'teaching-note', part: 'note', hidden: true }, el('slot', { name: 'note' }));
    u.quiz = el('form', { part: 'quiz', hidden: true, noValidate: true }, u.fieldset, u.feedback, u.note, el('div', { className: 'quiz-actions' }, u.submit, u.again, u.quizMsg));
    u.result = el('div', { className: 'result', part: 'result', 'aria-live': 'polite' });
    u.concepts = el('div', { className: 'concepts', part: 'concepts', 'aria-live': 'polite' });
    u.box.append(u.title, u.banner, u.notice, u.status, u.source, u.consent, u.ask, u.progress, u.error, u.picker, u.figure, u.quiz, u.result, u.concepts);
    this.#root.append(u.box);

    u.consentYes.addEventListener('click', () => {
      if (!this.#trust) return;
      DermlipClassifier.#consented.add(this.#trust.url);
      DermlipClassifier.#wanted.add(this.#trust.url); // the consent click asks for the download too
      u.consent.hidden = true;
      this.#schedule();
    });
    u.download.addEventListener('click', () => {
      if (!this.#trust) return;
      DermlipClassifier.#wanted.add(this.#trust.url);
      u.ask.hidden = true;
      for (const w of DermlipClassifier.#instances) w.#schedule();
    });
    u.pick.addEventListener('click', () => u.file.click());
    u.file.addEventListener('change', () => {
      const f = u.file.files[0];
      if (f) this.#useImage({ blob: f, name: f.name || 'photo', fromSrc: false });
      u.file.value = '';
    });
    u.box.addEventListener('dragover', (e) => {
      e.preventDefault();
      u.box.classList.add('over');
    });
    u.box.addEventListener('dragleave', () => u.box.classList.remove('over'));
    u.box.addEventListener('drop', (e) => {
      e.preventDefault();
      u.box.classList.remove('over');
      const f = [...(e.dataTransfer?.files || [])][0];
      if (f) this.#useImage({ blob: f, name: f.name || 'photo', fromSrc: false });
    });
    u.quiz.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#submitAnswer();
    });
    u.options.addEventListener('change', (e) => {
      if (e.target.name === 'answer') {
        this.#choice = e.target.value;
        u.quizMsg.textContent = '';
      }
    });
    u.again.addEventListener('click', () => {
      this.#revealed = false;
      this.#choice = null;
      this.#render();
      const first = u.options.querySelector('input');
      if (first) first.focus();
    });
  }

  get #t() {
    const tag = (this.getAttribute('lang') || this.closest('[lang]')?.getAttribute('lang') || 'en').toLowerCase();
    return STRINGS[tag] || STRINGS[tag.split('-')[0]] || STRINGS.en;
  }

  get #lang() {
    return Object.keys(STRINGS).find((k) => STRINGS[k] === this.#t);
  }

  // ---- configuration --------------------------------------------------------------------------------

  /** The attributes, checked. Throws AttrError naming the attribute. */
  #config() {
    const t = this.#t.err;
    const attr = (n) => this.getAttribute(n);
    const mode = (attr('mode') ?? 'classify').trim().toLowerCase() || 'classify';
    if (!MODES.includes(mode)) throw new AttrError('mode', t.mode(attr('mode')));
    const backend = (attr('backend') ?? 'auto').trim().toLowerCase() || 'auto';
    if (!BACKENDS.includes(backend)) throw new AttrError('backend', t.backend(attr('backend')));
    const loading = (attr('loading') ?? 'lazy').trim().toLowerCase() || 'lazy';
    if (!LOADINGS.includes(loading)) throw new AttrError('loading', t.loading(attr('loading')));
    const reveal = (attr('reveal') ?? 'interaction').trim().toLowerCase() || 'interaction';
    if (!REVEALS.includes(reveal)) throw new AttrError('reveal', t.reveal(attr('reveal')));
    let modelUrl;
    try {
      modelUrl = attr('model') ? new URL(attr('model').trim(), document.baseURI).href : DEFAULT_MODEL;
      if (!/^(https?|blob):$/.test(new URL(modelUrl).protocol)) throw new Error('only http(s) URLs can be loaded');
    } catch (e) {
      throw new AttrError('model', t.model(attr('model'), e.message));
    }
    const topK = attr('top-k') === null ? DEFAULT_TOP_K : parseCount(attr('top-k'), 1);
    if (Number.isNaN(topK)) throw new AttrError('top-k', t.topK(attr('top-k')));
    const concepts = attr('concepts') === null ? DEFAULT_CONCEPTS : parseCount(attr('concepts'), 0);
    if (Number.isNaN(concepts)) throw new AttrError('concepts', t.concepts(attr('concepts')));
    let labels;
    if (attr('labels') !== null) {
      labels = split(attr('labels'));
      if (labels.length < 2) throw new AttrError('labels', t.labels(labels.length));
    } else {
      // The built-in sets come from the engine (`info`): the id is checked once the model is loaded.
      const info = this.info;
      labels = (attr('label-set') ?? '').trim() || (info ? info.defaultLabelSet : undefined);
      if (info) {
        const known = new Set(info.builtinLabelSets.map((s) => s.id));
        if (info.labelSets) info.labelSets.forEach((s) => known.add(s.id));
        if (!known.has(labels)) throw new AttrError('label-set', t.labelSet(labels, [...known].join(', ')));
      }
    }
    let templates;
    if (attr('templates') !== null) {
      templates = split(attr('templates'));
      const bad = templates.find((x) => !x.includes('{c}'));
      if (bad !== undefined || !templates.length) throw new AttrError('templates', t.templates(bad ?? ''));
    }
    let only;
    if (attr('options') !== null) {
      if (attr('labels') !== null) throw new AttrError('options', t.optionsWithLabels);
      only = split(attr('options'));
      if (only.length < 2) throw new AttrError('options', t.options(only.length));
    }
    if (mode === 'quiz') {
      const builtin = this.info && !Array.isArray(labels) ? this.info.builtinLabelSets.find((s) => s.id === labels) : null;
      const n = only ? only.length : Array.isArray(labels) ? labels.length : builtin ? builtin.classes : 0;
      if (n > MAX_QUIZ_OPTIONS) throw new AttrError(only ? 'options' : 'label-set', t.tooMany(n, MAX_QUIZ_OPTIONS));
    }
    const sets = this.info && this.info.labelSets;
    const needsText = Array.isArray(labels) || !!templates || (sets !== undefined && sets !== null && !sets.some((s) => s.id === labels));
    const gallery = attr('gallery') && attr('gallery').trim() ? new URL(attr('gallery').trim(), document.baseURI).href : null;
    const similar = attr('similar') === null ? (gallery ? DEFAULT_SIMILAR : 0) : parseCount(attr('similar'), 0);
    if (Number.isNaN(similar) || similar > MAX_SIMILAR) throw new AttrError('similar', t.similar(attr('similar')));
    const heatMap = attr('heat-map') !== null && attr('heat-map').trim().toLowerCase() !== 'false';
    return { mode, backend, loading, reveal, modelUrl, topK, concepts, labels, templates, only, needsText, gallery, similar, heatMap, src: attr('src'), answer: attr('answer') };
  }

  #schedule() {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      if (this.isConnected) this.#update();
    });
  }

  /** Brings everything in line with the attributes: image, model, classification, view. */
  async #update() {
    // The case photo is fetched first, before the model starts loading (no request after it loads).
    this.#loadSrc(this.getAttribute('src'));
    let cfg;
    try {
      cfg = this.#config();
    } catch (e) {
      this.#gen++;
      this.#result = null;
      this.#render();
      this.#fail('bad-attribute', e.message, e.attribute);
      // Keep loading the model in the background if the model attributes themselves are fine.
      if (!['model', 'backend', 'loading', 'reveal'].includes(e.attribute)) {
        try {
          this.#acquireModel(this.#modelUrlFromAttr(), (this.getAttribute('backend') || 'auto').toLowerCase(), this.#timing());
        } catch {
          // reported above
        }
      }
      return;
    }
    this.#clearError('bad-attribute');
    const admitted = this.#acquireModel(cfg.modelUrl, cfg.backend, cfg);
    this.#render(cfg);
    if (!admitted) return; // the consent button schedules again
    const entry = this.#entry;
    if (!entry.model) return; // #onLoaded schedules again
    if (cfg.needsText && !entry.textTower) {
      entry.textTower = entry.model.embedText(['skin']).then(() => true, (e) => {
        entry.textTower = null;
        throw e;
      });
    }
    if (cfg.needsText) {
      try {
        await entry.textTower;
      } catch (e) {
        return this.#fail('model-load', this.#t.err.model(entry.url, e.message), 'model');
      }
    }
    this.#gallery = null;
    if (cfg.gallery && cfg.similar > 0 && cfg.mode !== 'quiz') {
      // One load per model and gallery, shared by the widgets on the page; thumbnails are all
      // fetched before any search (www/gallery.js), so which ones show reveals nothing.
      entry.galleries ??= new Map();
      if (!entry.galleries.has(cfg.gallery)) {
        const loading = entry.model.loadGallery(cfg.gallery).then(async (summary) => ({ summary, thumbs: await prefetchThumbnails(summary) }));
        loading.catch(() => entry.galleries.delete(cfg.gallery));
        entry.galleries.set(cfg.gallery, loading);
      }
      try {
        this.#gallery = await entry.galleries.get(cfg.gallery);
      } catch (e) {
        return this.#fail('bad-attribute', this.#t.err.gallery(cfg.gallery, e.message), 'gallery');
      }
    }
    if (this.#readyFired !== entry) {
      this.#readyFired = entry;
      this.#emit('dermlip-ready', entry.model.info);
    }
    this.#classify(cfg);
  }

  #modelUrlFromAttr() {
    const m = this.getAttribute('model');
    return m ? new URL(m.trim(), document.baseURI).href : DEFAULT_MODEL;
  }

  // ---- the shared model -------------------------------------------------------------------------

  /**
   * Whose model `url` is. The `model` attribute is the embedding page's own choice, so it loads
   * without asking; a page that copies it from its address (a link anyone can write) says so with
   * `model-from="link"`, and then a model that is neither this widget host's own (www/models/) nor
   * pinned in www/trusted-models.js waits for the visitor's consent. A third-party model is marked
   * in the widget once loaded either way (docs/deploy.md, "Which models load without asking").
   */
  #acquireModel(url, backend, { loading, reveal }) {
    const trust = /^blob:/.test(url)
      ? { kind: 'third-party', url, host: location.host, repository: 'blob:', label: `${url} (supplied by this page)` }
      : modelTrust(url, { base: document.baseURI });
    this.#trust = trust;
    const fromLink = (this.getAttribute('model-from') ?? 'page').trim().toLowerCase() !== 'page';
    if (trust.kind === 'third-party' && fromLink && !DermlipClassifier.#consented.has(trust.url)) {
      this.#release();
      const t = this.#t;
      this.#ui.consentText.textContent = t.consent(trust.host, trust.repository);
      this.#ui.consentYes.textContent = t.consentLoad(trust.host);
      this.#ui.consent.hidden = false;
      return false;
    }
    this.#ui.consent.hidden = true;
    if (!this.#mayDownload(url, `${backend} ${url}`, loading, reveal)) {
      if (this.#entry) {
        // Another model than before: its result (or one in flight) does not belong to this one.
        this.#gen++;
        this.#result = null;
        this.#busy = false;
      }
      this.#release();
      return false;
    }
    this.#ask = null;
    this.#ui.ask.hidden = true;
    this.#acquire(url, backend, trust.manifestSha256);
    return true;
  }

  /** `loading` and `reveal` as set, or their defaults when one of them is wrong. */
  #timing() {
    const pick = (name, ok) => {
      const v = (this.getAttribute(name) ?? '').trim().toLowerCase();
      return ok.includes(v) ? v : ok[0];
    };
    return { loading: pick('loading', LOADINGS), reveal: pick('reveal', REVEALS) };
  }

  /**
   * Consent before bytes: may the model at `url` be downloaded now? Yes when it is already loading
   * or loaded on this page, when the visitor clicked "Download", when it is cached, or with
   * reveal="auto" once `loading` allows (never under Save-Data). Until then the widget looks the
   * model up (its manifest: what it is, how big) and shows its size and a download button.
   */
  #mayDownload(url, key, loading, reveal) {
    const live = DermlipClassifier.#models.get(key);
    if ((live && !live.failed) || (this.#entry && this.#entry.key === key)) return true;
    if (DermlipClassifier.#wanted.has(url)) return true;
    const looks = DermlipClassifier.#looks;
    let found = looks.get(url);
    if (!found) {
      if (loading !== 'eager' && !this.#visible) {
        this.#ask = null;
        return false; // looked up when the widget comes near the viewport
      }
      found = { look: null, error: null };
      found.promise = inspectModel(url).then((look) => {
        found.look = look;
      }, (e) => {
        found.error = e; // kept: a reload (or another model URL) tries again
      });
      looks.set(url, found);
    }
    if (!found.look && !found.error) {
      this.#ask = { checking: true };
      found.promise.then(() => this.#schedule());
      return false;
    }
    if (found.error) {
      this.#ask = null;
      this.#fail('model-load', this.#t.err.model(url, found.error.message), 'model');
      return false;
    }
    const look = found.look;
    if (look.cached) return true;
    if (reveal === 'auto' && !saveData() && (loading === 'eager' || this.#visible)) return true;
    this.#ask = { look };
    return false;
  }

  #acquire(url, backend, manifestSha256) {
    const key = `${backend} ${url}`;
    // Same model as before: nothing to do (a failed load is retried only when the attributes change).
    if (this.#entry && this.#entry.key === key) return;
    this.#release();
    const models = DermlipClassifier.#models;
    let entry = models.get(key);
    if (!entry || entry.failed) {
      entry = { key, url, backend, model: null, refs: new Set(), progress: new Map(), textTower: null, failed: null };
      models.set(key, entry);
      entry.promise = DermLIP.load(url, {
        backend,
        manifestSha256,
        onProgress: (p) => {
          entry.progress.set(p.file, p);
          for (const w of entry.refs) w.#onProgress(entry, p);
        },
      }).then(
        (model) => {
          entry.model = model;
          if (entry.refs.size === 0) DermlipClassifier.#drop(entry);
          for (const w of entry.refs) w.#onLoaded(entry, null);
        },
        (err) => {
          entry.failed = err;
          if (models.get(key) === entry) models.delete(key);
          for (const w of entry.refs) w.#onLoaded(entry, err);
        },
      );
    }
    entry.refs.add(this);
    this.#entry = entry;
    this.#gen++; // a result (or one in flight) belongs to the previous model
    this.#result = null;
    this.#busy = false;
    this.#modelError = null;
    this.#readyFired = null;
    this.#clearError('model-load');
    // A widget that joins late sees the progress so far.
    for (const p of entry.progress.values()) this.#onProgress(entry, p);
  }

  #release() {
    const entry = this.#entry;
    if (!entry) return;
    this.#entry = null;
    entry.refs.delete(this);
    if (entry.refs.size === 0 && entry.model) {
      // Wait a moment: a widget that is only being moved in the page reconnects at once.
      setTimeout(() => entry.refs.size === 0 && DermlipClassifier.#drop(entry), 2000);
    }
  }

  static #drop(entry) {
    if (DermlipClassifier.#models.get(entry.key) === entry) DermlipClassifier.#models.delete(entry.key);
    if (entry.model) entry.model.dispose().catch(() => {});
    entry.model = null;
  }

  #onProgress(entry, p) {
    if (entry !== this.#entry) return;
    let loaded = 0;
    let total = 0;
    for (const q of entry.progress.values()) {
      loaded += q.loaded;
      total += Math.max(q.total, q.loaded);
    }
    const detail = { file: p.file, role: p.role, loaded: p.loaded, total: p.total, fromCache: p.fromCache, overall: { loaded, total } };
    if (!entry.model) this.#showLoading(loaded, total);
    this.#emit('dermlip-progress', detail);
  }

  #onLoaded(entry, err) {
    if (entry !== this.#entry) return;
    if (err) {
      this.#modelError = err;
      this.#render();
      this.#fail('model-load', this.#t.err.model(entry.url, err.message), 'model');
    } else {
      this.#schedule();
    }
  }

  #showLoading(loaded, total) {
    const u = this.#ui;
    u.progress.hidden = false;
    u.progress.max = total || 1;
    u.progress.value = loaded;
    u.status.textContent = total ? this.#t.loadingBytes(formatBytes(loaded), formatBytes(total)) : this.#t.loading;
  }

  // ---- images -------------------------------------------------------------------------------------

  /** Fetches the `src` image once (before the model has loaded, when set from the start). */
  #loadSrc(src) {
    if (!src) {
      if (this.#image && this.#image.fromSrc) {
        this.#image = null;
        this.#result = null;
        this.#ui.figure.hidden = true;
      }
      this.#srcLoading = null;
      this.#srcLoaded = null;
      this.#srcError = null;
      this.#clearError('image');
      return;
    }
    let url;
    try {
      url = new URL(src, document.baseURI).href;
    } catch (e) {
      return this.#fail('image', this.#t.err.src(src, e.message), 'src');
    }
    if (this.#srcLoaded === url) return;
    this.#srcLoaded = url;
    this.#srcError = null;
    const photos = DermlipClassifier.#photos;
    if (!photos.has(url)) {
      const fetching = fetch(url, { credentials: 'same-origin' }).then((r) => {
        if (!r.ok) throw new Error(`HTTP ${r.status} ${r.statusText}`.trim());
        return r.blob();
      });
      fetching.catch(() => photos.delete(url)); // a failed fetch is tried again next time
      photos.set(url, fetching);
    }
    const loading = photos.get(url)
      .then(
        (blob) => {
          if (this.#srcLoading !== loading) return;
          this.#useImage({ blob, name: url.split('/').pop().split('?')[0] || 'photo', fromSrc: true });
        },
        (e) => {
          if (this.#srcLoading !== loading) return;
          this.#srcError = e;
          this.#fail('image', this.#t.err.src(src, e.message), 'src');
        },
      );
    this.#srcLoading = loading;
  }

  async #useImage(image) {
    this.#image = image;
    this.#imageError = null;
    this.#result = null;
    this.#revealed = false;
    this.#choice = null;
    this.#clearError('image');
    this.#clearError('classify');
    const u = this.#ui;
    try {
      const bitmap = await createImageBitmap(image.blob);
      if (this.#image !== image) return bitmap.close();
      u.canvas.width = bitmap.width;
      u.canvas.height = bitmap.height;
      u.canvas.getContext('2d').drawImage(bitmap, 0, 0);
      bitmap.close();
      u.figure.hidden = false;
    } catch {
      if (this.#image !== image) return;
      this.#image = null;
      u.figure.hidden = true;
      this.#imageError = true;
      this.#render();
      return this.#fail('image', this.#t.err.image, image.fromSrc ? 'src' : null);
    }
    this.#schedule();
  }

  // ---- classification -------------------------------------------------------------------------------

  async #classify(cfg) {
    if (!this.#image || !this.#entry || !this.#entry.model) return this.#render(cfg);
    const options = {
      topK: cfg.topK,
      templates: cfg.templates,
      concepts: cfg.mode === 'concepts' ? Math.max(cfg.concepts, cfg.topK) : cfg.concepts,
      only: cfg.only,
      similar: this.#gallery ? cfg.similar : undefined,
      heatMap: cfg.heatMap && cfg.mode !== 'quiz' ? true : undefined,
      gallery: this.#gallery ? this.#gallery.summary.name : undefined,
    };
    // Only what changes the result (or the mode) classifies again; `lang` only re-renders.
    const signature = JSON.stringify([this.#entry.key, cfg.mode, cfg.labels, options]);
    if (this.#result && this.#resultFor.image === this.#image && this.#resultFor.signature === signature && !this.#busy) {
      return this.#finish(cfg, false);
    }
    const gen = ++this.#gen;
    const image = this.#image;
    this.#busy = true;
    this.#result = null;
    this.#render(cfg);
    try {
      const result = await this.#entry.model.classify(image.blob, cfg.labels, options);
      await WORDS_READY;
      if (gen !== this.#gen) return;
      this.#busy = false;
      this.#result = result;
      this.#resultFor = { image, signature };
      this.#clearError('classify');
      this.#finish(cfg, true);
    } catch (e) {
      if (gen !== this.#gen) return;
      this.#busy = false;
      this.#result = null;
      this.#render(cfg);
      // A class `options` names that the set lacks: the engine checks it (it holds the set).
      if (cfg.only && /is not a class of|listed twice/.test(e.message)) {
        return this.#fail('bad-attribute', this.#t.err.optionsUnknown(e.message.replace(/^Error: /, '')), 'options');
      }
      const bad = /unrecognised image data|unsupported image format|corrupt or truncated/.test(e.message);
      this.#fail(bad ? 'image' : 'classify', bad ? this.#t.err.image : this.#t.err.classify(e.message), null);
    }
  }

  #resultFor = { image: null, signature: '' };

  #finish(cfg, fresh) {
    if (cfg.mode === 'quiz' && cfg.answer !== null && !this.#matchOption(this.#result.labels, cfg.answer)) {
      this.#render(cfg);
      return this.#fail('bad-attribute', this.#t.err.answer(cfg.answer), 'answer');
    }
    this.#render(cfg);
    if (fresh && (cfg.mode !== 'quiz' || this.#revealed)) this.#emit('dermlip-result', this.#result);
  }

  #matchOption(labels, value) {
    const v = String(value).trim().toLowerCase();
    return labels.find((l) => l.toLowerCase() === v) || null;
  }

  #submitAnswer() {
    const u = this.#ui;
    if (!this.#result) return;
    if (!this.#choice) {
      u.quizMsg.textContent = this.#t.pickFirst;
      const first = u.options.querySelector('input');
      if (first) first.focus();
      return;
    }
    this.#revealed = true;
    let cfg;
    try {
      cfg = this.#config();
    } catch {
      return;
    }
    this.#render(cfg);
    u.feedback.focus();
    const r = this.#result;
    const index = r.labels.indexOf(this.#choice);
    const order = r.labels.map((_, i) => i).sort((a, b) => r.probabilities[b] - r.probabilities[a]);
    const answer = cfg.answer !== null ? this.#matchOption(r.labels, cfg.answer) : null;
    this.#emit('dermlip-result', r);
    this.#emit('dermlip-answer', {
      choice: this.#choice,
      modelTop1: r.predictions[0].label,
      matchesModel: r.predictions[0].label === this.#choice,
      rank: order.indexOf(index) + 1,
      answer,
      correct: answer === null ? null : answer === this.#choice,
    });
  }

  // ---- rendering ---------------------------------------------------------------------------------

  #render(cfg) {
    if (!cfg) {
      try {
        cfg = this.#config();
      } catch {
        cfg = null;
      }
    }
    const t = this.#t;
    const u = this.#ui;
    const mode = cfg ? cfg.mode : 'classify';
    u.box.lang = this.#lang;
    u.box.dataset.mode = mode;
    u.box.classList.toggle('busy', this.#busy);
    u.title.textContent = t.title[mode];
    u.notice.textContent = t.notice;
    u.pick.textContent = t.choose;
    u.dropHint.textContent = t.drop;
    u.submit.textContent = t.check;
    u.again.textContent = t.again;
    u.legend.textContent = t.yourAnswer;
    u.canvas.setAttribute('aria-label', this.#image && !this.#image.fromSrc ? t.yourPhoto(this.#image.name) : t.caseImage);
    u.caption.textContent = this.#image ? (this.#image.fromSrc ? t.caseImage : t.yourPhoto(this.#image.name)) : '';
    // In quiz mode the case photo comes from `src`; without one the student picks a photo.
    u.picker.hidden = mode === 'quiz' && !!(cfg && cfg.src);

    const entry = this.#entry;
    const thirdParty = !!(entry && entry.model && this.#trust && this.#trust.kind === 'third-party');
    u.source.hidden = !thirdParty;
    u.source.textContent = thirdParty ? t.thirdParty(this.#trust.label) : '';
    this.#renderCard(entry);
    const ask = this.#ask && !(entry && (entry.model || !entry.failed)) ? this.#ask : null;
    u.ask.hidden = !(ask && ask.look) || !u.consent.hidden;
    if (ask && ask.look) {
      const size = ask.look.bytes === null ? null : formatBytes(ask.look.bytes);
      u.askText.textContent = size ? t.askSize(size) : t.askUnknown;
      u.download.textContent = t.download(size);
      u.saveData.textContent = t.saveData;
      u.saveData.hidden = !saveData();
    }
    if (!u.consent.hidden) {
      u.status.textContent = '';
      u.progress.hidden = true;
    } else if (ask) {
      u.status.textContent = ask.checking ? t.checking : '';
      u.status.hidden = !ask.checking;
      u.progress.hidden = true;
    } else if (entry && entry.model) {
      const i = entry.model.info;
      u.status.textContent = t.ready(i.backend === 'webgpu' ? t.gpu : t.cpu);
      u.progress.hidden = true;
    } else if (this.#modelError) {
      u.status.textContent = '';
      u.progress.hidden = true;
    } else if (!u.status.textContent || !entry) {
      u.status.textContent = t.loading;
    }

    if (!ask) u.status.hidden = false;

    const r = cfg ? this.#result : null;
    const status = (text) => el('p', { className: 'hint' }, text);
    u.quiz.hidden = mode !== 'quiz';
    u.feedback.hidden = true;
    u.note.hidden = true;
    u.heat.hidden = true;
    u.cropBox.hidden = true;
    if (mode === 'quiz') return this.#renderQuiz(cfg, r, status);
    if (!r) {
      const msg = !cfg ? '' : this.#busy ? t.working : this.#image && !(entry && entry.model) ? t.waiting : !this.#image ? t.pickPhoto : '';
      u.result.replaceChildren(...(msg ? [status(msg)] : []));
      u.concepts.replaceChildren();
      return;
    }
    if (mode === 'concepts') {
      u.result.replaceChildren();
      u.concepts.replaceChildren(...this.#conceptView(r, cfg.topK, true));
      return;
    }
    u.result.replaceChildren(...this.#predictionView(r, null));
    u.cropBox.hidden = !r.crop;
    if (r.crop) placeOver(u.cropBox, r.crop);
    u.heat.hidden = !r.heatMap;
    if (r.heatMap) {
      paintHeatMap(u.heat, r.heatMap);
      placeOver(u.heat, r.crop);
    }
    const similar = el('div', { part: 'similar' }, ...similarView(r, this.#gallery?.thumbs, t.similar));
    u.concepts.replaceChildren(...this.#conceptView(r, cfg.concepts, false), ...(r.similar?.length ? [similar] : []));
  }

  /** The persistent banner for a fixture or an unverified model, with the model card's link. */
  #renderCard(entry) {
    const u = this.#ui;
    const t = this.#t;
    const found = this.#trust && DermlipClassifier.#looks.get(this.#trust.url);
    let card = found && found.look ? found.look.card : null;
    if (entry && entry.model) {
      const i = entry.model.info;
      card = i.modelCard ? modelCard({ model: i.model, model_card: i.modelCard }) : card || unknownCard(i.model);
    }
    const text = card ? t.banner[card.weights] : null;
    u.banner.hidden = !text;
    u.bannerText.textContent = text || '';
    u.cardLink.textContent = t.modelCard;
    if (this.#trust) u.cardLink.href = `${MODEL_CARD_PAGE}?model=${encodeURIComponent(this.#trust.url)}`;
  }

  #predictionView(r, chosen) {
    const t = this.#t;
    const lang = this.#lang;
    const list = el('ol', { className: 'predictions', part: 'predictions' });
    for (const p of r.predictions) {
      const plain = WORDS.name(p.label, lang);
      const label = el('span', { className: 'label', title: WORDS.description(p.label, lang) }, plain);
      if (WORDS.knows(p.label) && plain.toLowerCase() !== p.label.toLowerCase()) label.append(el('span', { className: 'medical' }, ` (${p.label})`));
      const meter = el('meter', { min: 0, max: 1, value: p.probability, 'aria-label': `${plain}: ${percent(p.probability)}` });
      const row = el('div', { className: 'row' }, label, meter, el('span', { className: 'value' }, percent(p.probability)));
      const li = el('li', { part: p.label === chosen ? 'prediction chosen' : 'prediction' }, row);
      if (p.label === chosen) li.className = 'chosen';
      list.append(li);
    }
    const top = r.predictions[0];
    const lead = el('p', { className: 'lead' }, t.lead(r.labelSetName, WORDS.name(top.label, lang), percent(top.probability)));
    const out = [lead];
    const desc = WORDS.description(top.label, lang);
    if (desc) out.push(el('p', { className: 'description', part: 'description' }, desc));
    // In a quiz the advice would give the answer away; it is a teaching case, not the reader's skin.
    if (chosen === null && notSkin(r)) {
      out.unshift(el('p', { className: 'not-skin', part: 'not-skin', role: 'alert' }, t.notSkin(r.domain.closestOther)));
    }
    if (chosen === null) {
      const level = adviceLevel(r);
      out.push(el('p', { className: `advice advice-${level}`, part: `advice advice-${level}`, role: level === 'strong' ? 'alert' : 'note' }, t.advice[level]));
    }
    return [...out, list, el('p', { className: 'hint' }, t.hint)];
  }

  #conceptView(r, n, asList) {
    const t = this.#t;
    const lang = this.#lang;
    const tags = (r.concepts || []).slice(0, n);
    if (!n) return [];
    const head = el('p', { className: 'subtitle' }, t.tags);
    if (!tags.length) return [head, el('p', { className: 'hint' }, t.noTags)];
    const ul = el('ul', { className: 'tags', part: 'tags' });
    for (const c of tags) {
      const li = el('li', { part: 'tag', title: `${c.concept}: ${c.score.toFixed(3)}` }, WORDS.concept(c.concept, lang));
      li.dataset.concept = c.concept;
      ul.append(li);
    }
    return asList ? [ul, el('p', { className: 'hint' }, t.hint)] : [head, ul];
  }

  #renderQuiz(cfg, r, status) {
    const t = this.#t;
    const u = this.#ui;
    // The answer options: the label list (known once the photo has been classified).
    if (!r) {
      u.options.replaceChildren(status(this.#busy ? t.working : this.#image ? (this.#entry && this.#entry.model ? t.optionsLater : t.waiting) : t.pickPhoto));
      u.submit.disabled = false;
      u.result.replaceChildren();
      u.concepts.replaceChildren();
      u.again.hidden = true;
      return;
    }
    const labels = r.labels;
    const current = [...u.options.querySelectorAll('input')].map((i) => i.value);
    if (current.join('\n') !== labels.join('\n')) {
      const name = 'answer';
      u.options.replaceChildren(
        ...labels.map((l) => {
          const input = el('input', { type: 'radio', name, value: l });
          return el('label', { className: 'option', part: 'option' }, input, el('span', {}, l));
        }),
      );
    }
    for (const input of u.options.querySelectorAll('input')) {
      input.checked = input.value === this.#choice;
      input.disabled = this.#revealed;
    }
    if (this.#choice && !labels.includes(this.#choice)) this.#choice = null;
    u.submit.hidden = this.#revealed;
    u.again.hidden = !this.#revealed;
    if (!this.#revealed) {
      u.result.replaceChildren();
      u.concepts.replaceChildren();
      return;
    }
    const top = r.predictions[0].label;
    const index = labels.indexOf(this.#choice);
    const order = labels.map((_, i) => i).sort((a, b) => r.probabilities[b] - r.probabilities[a]);
    const rank = order.indexOf(index) + 1;
    const answer = cfg.answer !== null ? this.#matchOption(labels, cfg.answer) : null;
    const lines = [el('p', {}, t.youChose(this.#choice))];
    if (answer !== null) lines.push(el('p', { className: 'verdict' }, el('strong', {}, answer === this.#choice ? t.correct(answer) : t.incorrect(answer))));
    lines.push(el('p', {}, top === this.#choice ? t.agree(top) : t.disagree(top, rank, labels.length)));
    lines.push(el('p', { className: 'hint' }, t.notTruth));
    u.feedback.replaceChildren(...lines);
    u.feedback.className = `feedback ${answer !== null ? (answer === this.#choice ? 'good' : 'bad') : top === this.#choice ? 'good' : ''}`;
    u.feedback.hidden = false;
    u.note.hidden = false;
    u.result.replaceChildren(el('p', { className: 'subtitle' }, t.modelSays), ...this.#predictionView(r, this.#choice));
    u.concepts.replaceChildren(...this.#conceptView(r, cfg.concepts, false));
  }

  // ---- errors and events ------------------------------------------------------------------------

  #errorKind = null;

  #fail(code, message, attribute) {
    const u = this.#ui;
    this.#errorKind = code;
    u.error.replaceChildren(el('strong', {}, code === 'bad-attribute' ? this.#t.errorTitle : ''), message);
    if (code !== 'bad-attribute') u.error.firstChild.remove();
    u.error.hidden = false;
    const key = `${code}|${attribute}|${message}`;
    if (key === this.#lastError) return;
    this.#lastError = key;
    this.#emit('dermlip-error', { code, message, attribute: attribute || null });
  }

  #clearError(code) {
    if (this.#errorKind !== code) return;
    this.#errorKind = null;
    this.#lastError = '';
    this.#ui.error.hidden = true;
    this.#ui.error.replaceChildren();
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }
}

if (!customElements.get(TAG)) customElements.define(TAG, DermlipClassifier);

export { DermlipClassifier };
export default DermlipClassifier;
