#!/usr/bin/env python3
"""Writes the CLIP tokenizer parity fixtures under tests/fixtures/tokenizer/.

Run by hand with the reference venv (open_clip_torch, ftfy, regex):
    /root/.cache/dermlip-venv/bin/python tests/reference/make_token_fixtures.py [DERM1M_DATA_DIR]

Outputs (all JSON, same order as corpus.json):
  corpus.json                   list of input strings
  expected_ids.json             open_clip SimpleTokenizer ids (context 77), computed with the literal
                                special-token strings treated as plain text (see below)
  expected_clean.json           open_clip's 'lower' cleaning of each input (null for inputs over 2000 chars)
  stock_open_clip_specials.json the entries where stock open_clip differs because it turns the typed
                                strings <start_of_text>/<end_of_text> into the special ids 49406/49407
  known_differences.json        the few entries where dermlip's ftfy port (plsfix) cleans differently,
                                with dermlip's cleaned text and the open_clip BPE ids of that text

Stock open_clip's regex starts with `<start_of_text>|<end_of_text>|...`, so text typed by a user can inject
the special tokens. dermlip deliberately tokenises those strings as ordinary text; the expected ids here
come from the same SimpleTokenizer with those two alternatives removed from its pattern.
"""
import csv
import json
import os
import sys

import ftfy
import open_clip
import regex
from open_clip.tokenizer import SimpleTokenizer, _clean_lower

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
DATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(ROOT), "shared", "data", "derm1m")
CONTEXT = 77
CLEAN_MAX_CHARS = 2000

PLAIN_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def load_json(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return json.load(f)


def label_names():
    names = []
    for fname in ["zero_shot_classnames.json", "make_snu134_sd128_classnames.json", "dermfm_zero_classnames.json"]:
        for key, value in load_json(fname).items():
            if isinstance(value, list):
                names += value
    for key, terms in load_json("ConceptTerms.json").items():
        names.append(key)
        names += terms
    return names


def captions():
    out = []
    with open(os.path.join(DATA, "MAKE_training_example.csv"), encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            for col in ["caption", "truncated_caption", "augmented_caption", "visual_concept_caption",
                        "ontology_caption", "ontology_final", "skin_concept_standarized", "subcaption_1",
                        "subcaption_2", "filename"]:
                if row.get(col):
                    out.append(row[col])
    return out


def templated():
    templates = load_json("prompt_templates.json")["zero_shot_templates_OPENAI_SKIN_TEMPLATES"]
    zs = load_json("zero_shot_classnames.json")
    names = zs["HAM_CLASSNAMES"] + zs["PAD_CLASSNAMES"] + zs["DAFFODIL_5_CLASSNAMES"]
    names += load_json("dermfm_zero_classnames.json")["DERM1M_CLASSNAMES"][:10]
    return [t.replace("{c}", n) for n in names for t in templates]


HOSTILE = [
    # empty and whitespace
    "", " ", "   \t\n  ", "\n", "\t", "\r\n", "\u3000", "\u00a0", "\u2028\u2029", "\x0b\x0c", "\x1c\x1d\x1e\x1f",
    "  leading and trailing  ", "many     inner\t\t\tspaces\n\n\nand lines", "nbsp\u00a0and\u2009thin\u202fspaces",
    # quotes and contractions
    "\u201cCurly double quotes\u201d and \u2018curly single\u2019 quotes", "patient\u2019s lesion", "It\u2019S",
    "don\u2019t", "don't", "DON'T", "we're", "I'VE", "I'm", "you'll", "she'd", "it'ſ", "'ſ", "'S'T'RE'VE'M'LL'D",
    "``latex quotes''", "\u201eGerman\u201c \u00abFrench\u00bb \u2039single\u203a",
    # ligatures, widths
    "ﬁbroma ﬂuid ﬀ ﬃ ﬄ ﬅ ﬆ", "aﬃnity", "\uff2d\uff25\uff2c\uff21\uff2e\uff2f\uff2d\uff21\u3000\uff4f\uff4e\u3000\uff53\uff4b\uff49\uff4e",
    "\uff11\uff12\uff13\uff4d\uff4d", "\uff76\uff80\uff76\uff85", "\uff35\uff80\uff70\uff9d", "\uff06amp; fullwidth ampersand",
    # emoji
    "😀", "👍🏽 looks good", "👩‍👩‍👧‍👦 family", "🧑🏿‍⚕️ doctor", "🏳️‍🌈", "🇩🇪🇫🇷", "1️⃣ #️⃣", "🏴󠁧󠁢󠁷󠁬󠁳󠁿", "❤️‍🔥", "☺︎ vs ☺️",
    "rash 🔴🟠🟡 itchy 😣😣😣", "👋🏻👋🏼👋🏽👋🏾👋🏿",
    # html entities
    "Tom &amp; Jerry", "&amp;amp;", "&amp;amp;amp;", "it&#39;s", "&lt;b&gt;bold&lt;/b&gt;", "&quot;quoted&quot;",
    "&nbsp;spaced&nbsp;", "&eacute;ruption", "&EACUTE;RUPTION", "&NTILDE; &nTILDE; &ntilde;", "&#128;", "&#x80;",
    "&#0;", "&#1;", "&#x110000;", "&#xD800;", "&#65", "&#x41", "&copy2024", "&amp", "&notit;", "&not it",
    "&fjlig; &acE; &ThickSpace; &bne;", "&#13;", "&#10;", "&unknown;", "&;", "&#;", "&#x;", "&&amp;",
    "&#99999999999999999999;", "&#000065;", "&AMP;amp;", "&rsquo;&ldquo;&rdquo;&hellip;&mdash;", "&fflig;",
    "a<b &amp; c", "<p>Tom &amp;amp; Jerry&rsquo;s</p>", "x < y &rsquo; z &fflig;", "<br/>&amp;amp;amp;",
    "line1 &amp;amp;\n<tag> &amp;amp;\nline3 &amp;amp;amp; &rsquo;", "a &amp;amp; b\nc < d\ne &amp;amp; f",
    "&lt;40% &amp;&amp; &gt;60%", "P&EACUTE;REZ", "BUNDESSTRA&SZLIG;E", "&Jscr;ohn &HilbertSpace;ancock",
    # RTL, CJK, other scripts
    "مرض جلدي", "סרטן העור", "\u202eevil\u202c", "\u200fright-to-left mark", "\u0627\u0644\u0635\u062f\u0641\u064a\u0629",
    "皮肤癌", "湿疹と皮膚炎", "피부암", "批量 OCR", "ภาษาไทย", "हिन्दी त्वचा", "Ελληνικά", "русский текст", "ქართული",
    # combining and normalisation
    "cafe\u0301", "e\u0301\u0301", "\u00c4 vs A\u0308", "n\u0303", "\u1fb3 \u03b1\u0345", "a\u0345b", "\u0345",
    "Z\u0338\u0321\u0322\u0354\u0313a\u0337\u0317\u030dl\u0335g\u0334o\u0336", "\u1100\u1161\u11a8", "\u212b \u2126 \u212a",
    "a" + "\u0301" * 50,
    # mojibake
    "cafÃ©", "Ã©ruption cutanÃ©e", "naÃ¯ve", "â€œmojibakeâ€\x9d", "Ã  la mode", "Ã la mode", "mÃ¡s", "sÃ³",
    "Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "ãƒ†ã‚¹ãƒˆ", "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.",
    "âœ” No problems", "&macr;\\_(ã\x83\x84)_/&macr;", "l'Ã©valuation", "voilÃ  le travail", "\x80\x93",
    "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!", "×‘×”×•×“×¢×”", "Merci de t‚Äö√†√∂¬¨¬©l‚Äö√†√∂¬¨¬©charger",
    "La rГ©gion de Dnepropetrovsk se trouve Г lвЂ™ouest", "â€œlossy decodingâ€�", "<40% vs â‰¥40%",
    "Le barÃ¨me forfaitaire permet l’Ã©valuation", "com especial atenÃ§Ã£o Ã s crianÃ§as",
    "eczÃ©ma atopique sÃ©vÃ¨re", "Ã¢â‚¬Å“double mojibakeÃ¢â‚¬Â\x9d", "C O N C L U S Ã O", "AHÅ™, the new sofa",
    # control characters
    "tab\tseparated\tvalues", "new\nline", "carriage\rreturn", "crlf\r\nline", "null\x00byte", "bell\x07",
    "\x1b[31mred\x1b[0m", "\ufeffBOM", "zero\u200bwidth", "soft\u00adhyphen", "del\x7f", "c1\x85next", "\x9b",
    "\ufffc", "\ufffd", "\u206aarabic\u206f", "vt\x0bff\x0c", "fs\x1cgs\x1drs\x1eus\x1f", "\u2028line sep",
    # literal special-token strings (never special in dermlip)
    "<|endoftext|>", "<|startoftext|>", "<start_of_text>", "<end_of_text>", "<START_OF_TEXT>", "<End_Of_Text>",
    "a photo <start_of_text> of <end_of_text> skin", "<start_of_text><end_of_text>", "<start_of_text",
    "start_of_text>", "&lt;start_of_text&gt;", "&lt;end_of_text&gt; after unescape", "<end_of_text>" * 40,
    "＜start_of_text＞ fullwidth brackets", "<start_of_text>\u200b", "< start_of_text >",
    # numbers and punctuation runs
    "3.5 mm", "10x10cm²", "1,000,000", "½ ¾ ⅓", "Ⅳ ⅳ Ⅻ", "٣٤٥", "१२३", "①②③", "2023-11-29T14:01:00Z",
    "!!!???...", "-----", "(((nested)))", "@#$%^&*()_+=", "~`|\\/", "¡¿", "§¶", "…", "—–-", "•·", "+/- ±",
    "≥40% vs <40%", "x²+y²", "10^-3", "C++", "e.g.,", "i.e.", "Dr. Smith's", "50µm", "μm", "ℹ︎",
    "12345678901234567890", "3.14159265358979323846", "#1 #2 #3", "$100.00", "100%", "1/2", "0.5-1.0cm",
    "!" * 300, "." * 200 + "a",
    # case mapping
    "HELLO World", "İstanbul", "ΟΔΟΣ ΣΟΦΟΣ", "Σ", "ΑΣ.", "STRASSE Straße ẞ", "ǅ ǈ ǋ", "ΣΑΣ", "aΣb", "Ꭰ ꭰ",
    "Ⓐⓑ", "ΌΣΟΣ", "ΣΑΣ's",
    # ftfy details plsfix gets wrong on its own (handled in src/input/tokenizer/clean.rs)
    "\x1b[1;31mbold red\x1b[0m text", "\x1b[31", "\x1b]0;title\x07 after", "\uffe3macron\uffe3", "\uff21\uff22\uffe3",
    "<i>~^|@=+*$%{}()/:>#</i> &amp;amp;amp; &rsquo; &fflig;", "x &amp;amp; ~ \uff0d",
    # letters / digits / case mappings newer than Unicode 14 (Python 3.11) or 16 (Rust's regex tables)
    "\U00010d50\U00010d51\U00010d52 garay", "\ua7cc \ua7cd \ua7ce", "\U00016ea0\U00016ea1 \U00016ebb",
    "\u0558 \u1c89", "\U000323b0\U000323b1", "1\U00011de0 2\U00016ff4", "\u03a3\U00010d50 \u0391\u03a3\U00010d50",
]

# Entries where dermlip's cleaning (plsfix, a Rust port of an older ftfy) differs from ftfy 6.3:
# text -> (dermlip's clean_text output, reason). Their expected ids stay open_clip's; the Rust test checks
# that dermlip gives exactly the ids open_clip's BPE would give for dermlip's cleaned text.
KNOWN_DIFFERENCES = {
    "odos liga \u0101\u20ac\u201c egzema": (
        "odos liga \u0101\u20ac\" egzema",
        "windows-1257 mojibake of an en dash: ftfy 6.3 decodes it (sloppy-windows-1257), "
        "plsfix 0.1.8 has no windows-1257 codec and only uncurls the quote"),
    "\u0420\u0454\u0420\u0455\u0420\u00b6\u0420\u00b0": (
        "\u043a\u043e\u0436\u0430",
        "windows-1251 mojibake of a Russian word: ftfy 6.3's badness heuristic does not flag it, so open_clip "
        "keeps the mojibake; plsfix's older heuristic (U+00B6 counted as 'bad') decodes it"),
    "\u00cf\u00a1\u00cf\u201c": (
        "\u00ef\u00a1\u00ef\"",
        "windows-1252 mojibake of Greek letters: ftfy 6.3 decodes it, plsfix's older heuristic does not flag it"),
}


def long_strings():
    caption = ("Erythematous scaly plaques with silvery scale on the extensor surfaces of the elbows "
               "and knees, consistent with chronic plaque psoriasis. ")
    return [
        (caption * 80)[:10000],
        "a" * 10000,
        "😀" * 2500,
        "0123456789" * 1000,
        "&amp;" * 2000,
        ("line of text with a lesion\n" * 400)[:10000],
        "Ã©" * 1000,
        " ".join(["melanoma"] * 1100)[:10000],
        "<start_of_text>" * 600,
    ]


def encode_cleaned(tokenizer, cleaned):
    """open_clip ids for text that is already cleaned (no second cleaning pass)."""
    clean_fn = tokenizer.clean_fn
    tokenizer.clean_fn = lambda x: x
    try:
        return tokenizer([cleaned]).tolist()[0]
    finally:
        tokenizer.clean_fn = clean_fn


def dedupe(items):
    seen, out = set(), []
    for s in items:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def main():
    corpus = dedupe(captions() + label_names() + templated() + HOSTILE + list(KNOWN_DIFFERENCES) + long_strings())

    stock = SimpleTokenizer(context_length=CONTEXT)
    plain = SimpleTokenizer(context_length=CONTEXT)
    plain.pat = regex.compile(PLAIN_PATTERN, regex.IGNORECASE)
    plain.cache = {}

    expected = plain(corpus).tolist()
    stock_ids = stock(corpus).tolist()
    specials = []
    for i, (a, b) in enumerate(zip(expected, stock_ids)):
        if a != b:
            specials.append({"index": i, "text": corpus[i], "stock_open_clip_ids": b})
        assert 49406 not in a[1:] and (49407 in a), corpus[i]

    clean = [_clean_lower(s) if len(s) <= CLEAN_MAX_CHARS else None for s in corpus]

    known = []
    for text, (dermlip_clean, reason) in KNOWN_DIFFERENCES.items():
        i = corpus.index(text)
        dermlip_ids = encode_cleaned(plain, dermlip_clean)
        assert dermlip_clean != clean[i] and dermlip_ids != expected[i], text
        known.append({"index": i, "text": text, "reason": reason, "open_clip_clean": clean[i],
                      "dermlip_clean": dermlip_clean, "dermlip_ids": dermlip_ids})

    os.makedirs(OUT, exist_ok=True)

    def write(name, rows):
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            f.write("[\n")
            f.write(",\n".join(json.dumps(r, ensure_ascii=True, separators=(",", ":")) for r in rows))
            f.write("\n]\n")

    write("corpus.json", corpus)
    write("expected_ids.json", expected)
    write("expected_clean.json", clean)
    write("stock_open_clip_specials.json", specials)
    write("known_differences.json", known)
    print(f"open_clip {open_clip.__version__}, ftfy {ftfy.__version__}, regex {regex.__version__}, "
          f"python {sys.version.split()[0]}")
    print(f"corpus {len(corpus)} strings; stock open_clip differs (literal specials) on {len(specials)}")


if __name__ == "__main__":
    main()
