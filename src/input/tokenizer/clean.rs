//! Text cleaning before tokenisation, as open_clip does it: `ftfy.fix_text` (the `plsfix` crate,
//! wrapped so that it follows ftfy 6.3 where plsfix differs), Python's `html.unescape` (ported,
//! since `html-escape` lacks its legacy and numeric quirks), whitespace collapse with Python's
//! `str.split()` whitespace set and Python 3.11's `str.lower()`.
//!
//! open_clip `_clean_lower` = whitespace_clean(basic_clean(x)).lower()

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use tokenizers::utils::SysRegex;

/// open_clip's `clean='lower'`: ftfy.fix_text, html.unescape twice, strip, whitespace collapse, lowercase.
pub fn clean_text(text: &str) -> String {
    python_lower(&clean_whitespace(text))
}

/// open_clip's `clean='whitespace'` (what `HFTokenizer` uses): as [`clean_text`] without lowercasing.
pub fn clean_whitespace(text: &str) -> String {
    let fixed = ftfy_fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed)).into_owned();
    unescaped.split(is_python_space).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Python 3.11's `str.lower()` (Unicode 14): Rust's tables (Unicode 17) also lowercase these later
/// additions, which Python 3.11 sees as unassigned (neither cased nor case-ignorable, so for the final
/// sigma rule they act like a string boundary, as splitting there does).
fn python_lower(text: &str) -> String {
    fn newer_cased(c: char) -> bool {
        matches!(c, '\u{1c89}' | '\u{a7cb}' | '\u{a7cc}' | '\u{a7ce}' | '\u{a7d2}' | '\u{a7d4}'
            | '\u{a7da}' | '\u{a7dc}' | '\u{10d50}'..='\u{10d65}' | '\u{16ea0}'..='\u{16eb8}')
    }
    if !text.chars().any(newer_cased) {
        return text.to_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    let mut run_start = 0;
    for (i, c) in text.char_indices().filter(|&(_, c)| newer_cased(c)) {
        out.push_str(&text[run_start..i].to_lowercase());
        out.push(c);
        run_start = i + c.len_utf8();
    }
    out.push_str(&text[run_start..].to_lowercase());
    out
}

/// Python's `str.isspace()` (what `str.split()` and `str.strip()` use): note U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r' | '\u{1c}'..='\u{20}' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
            | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// Longest piece of one line handed to plsfix, in code points. ftfy uses 1 000 000, but plsfix's
/// regex engine hits its backtracking limit and panics on mojibake-dense lines from about 400 000
/// code points on, so over-long lines are fixed in smaller pieces (a documented difference).
const FTFY_MAX_DECODE_LENGTH: usize = 100_000;
/// ftfy loops until nothing changes; bound it so that a pathological cycle cannot hang.
const FTFY_MAX_ROUNDS: usize = 64;

/// `ftfy.fix_text` (6.3) with its default config, built on plsfix for the per-segment fixers.
///
/// Differences handled here: ftfy fixes each line on its own and, once a line contains `<`, stops
/// unescaping HTML for that and every later line; plsfix always unescapes (and decodes numeric
/// entities differently). So HTML unescaping is done here (ftfy's `unescape_html`) and plsfix never
/// sees an `&` (it is swapped for an ASCII stand-in that no fixer treats specially, then back).
fn ftfy_fix_text(text: &str) -> String {
    let mut unescape = true;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        if let Some((i, _)) = rest[..end].char_indices().nth(FTFY_MAX_DECODE_LENGTH) {
            end = i;
        }
        let (segment, tail) = rest.split_at(end);
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&ftfy_fix_segment(segment, unescape));
        rest = tail;
    }
    out
}

fn ftfy_fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    for _ in 0..FTFY_MAX_ROUNDS {
        let unescaped = if unescape { ftfy_unescape_html(&text) } else { Cow::Borrowed(text.as_str()) };
        let fixed = plsfix_without_unescape(&fullwidth_macron(&remove_terminal_escapes(&unescaped)));
        if fixed == text {
            break;
        }
        text = fixed;
    }
    text
}

/// ftfy's `remove_terminal_escapes` (plsfix's pattern is broken: Rust has no `\033` octal escape, so it
/// never matches and plsfix's control-character removal leaves `[31m` behind). ftfy runs it after the
/// width and ligature fixers; running it first differs only for sequences spelled with those characters.
fn remove_terminal_escapes(text: &str) -> Cow<'_, str> {
    static ANSI: OnceLock<Option<SysRegex>> = OnceLock::new();
    let Some(ansi) = ANSI.get_or_init(|| SysRegex::new(r"\x1b\[(?:\d|;)*[a-zA-Z]").ok()) else {
        return Cow::Borrowed(text);
    };
    if !text.contains('\u{1b}') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in ansi.find_iter(text) {
        out.push_str(&text[copied..start]);
        copied = end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// ftfy's width map is NFKC, which sends U+FFE3 FULLWIDTH MACRON to two code points (space, U+0304);
/// plsfix's char-to-char map keeps only the space. Done before plsfix (ftfy: after fix_encoding, which
/// cannot decode either form).
fn fullwidth_macron(text: &str) -> Cow<'_, str> {
    if text.contains('\u{ffe3}') {
        Cow::Owned(text.replace('\u{ffe3}', " \u{304}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// ASCII stand-ins for `&`, none special to any ftfy fixer: badness looks only at letters, digits,
/// `_`, whitespace and `.,?!`; the other fixers at `;`, `[`, `?`, quotes. One that is absent from the
/// text (with its fullwidth twin, which the width fixer would turn into it) can be swapped back safely.
const AMPERSAND_STAND_INS: [char; 18] =
    ['~', '^', '|', '@', '=', '+', '*', '$', '%', '{', '}', '(', ')', '/', ':', '>', '#', '-'];

fn plsfix_without_unescape(text: &str) -> String {
    let config = plsfix::TextFixerConfig { max_decode_length: i32::MAX, ..Default::default() };
    if !text.contains('&') {
        return plsfix::fix_and_explain(text, false, Some(&config)).text;
    }
    let fullwidth = |c: char| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c);
    match AMPERSAND_STAND_INS.iter().find(|&&c| !text.contains(c) && !text.contains(fullwidth(c))) {
        Some(&stand_in) => {
            let hidden = text.replace('&', stand_in.encode_utf8(&mut [0; 4]));
            plsfix::fix_and_explain(&hidden, false, Some(&config)).text.replace(stand_in, "&")
        }
        // Every stand-in is already used: plsfix may then also unescape entities (documented difference).
        None => plsfix::fix_and_explain(text, false, Some(&config)).text,
    }
}

/// ftfy's `unescape_html`: entities matching `&#?[0-9A-Za-z]{1,24};` that are in its table (HTML5
/// names ending in `;`, plus upper-cased forms of lower-case names) or numeric references that
/// `html.unescape` fully decodes.
fn ftfy_unescape_html(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let table = ftfy_entity_table();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'&' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        let numeric = bytes.get(j) == Some(&b'#');
        if numeric {
            j += 1;
        }
        let alnum = bytes[j.min(bytes.len())..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        if !(1..=24).contains(&alnum) || bytes.get(j + alnum) != Some(&b';') {
            i += 1;
            continue;
        }
        let end = j + alnum + 1;
        let entity = &text[i..end];
        let replacement = match table.get(entity) {
            Some(value) => Some(Cow::Borrowed(value.as_str())),
            None if numeric => Some(html_unescape(entity)).filter(|u| !u.contains(';')),
            None => None,
        };
        if let Some(replacement) = replacement {
            out.push_str(&text[copied..i]);
            out.push_str(&replacement);
            copied = end;
        }
        i = end;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// ftfy's `HTML_ENTITIES` (chardata.py `_build_html_entities`).
fn ftfy_entity_table() -> &'static HashMap<String, String> {
    static TABLE: OnceLock<HashMap<String, String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = HashMap::new();
        for &(name, _) in html_escape::NAMED_ENTITIES.iter() {
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let Some(value) = html5_entity(&format!("{name};")) else {
                continue;
            };
            table.insert(format!("&{name};"), value.clone());
            if name == name.to_lowercase() {
                let upper = format!("&{};", name.to_uppercase());
                if html_unescape(&upper) == upper.as_str() {
                    table.entry(upper).or_insert_with(|| value.to_uppercase());
                }
            }
        }
        table
    })
}

/// Python's `html.entities.html5[name]` (`name` with its `;`, or a legacy name without one).
fn html5_entity(name: &str) -> Option<String> {
    let bare = match name.strip_suffix(';') {
        Some(bare) => bare,
        None if LEGACY_ENTITIES.contains(&name) => name,
        None => return None,
    };
    let index = html_escape::NAMED_ENTITIES.binary_search_by(|(n, _)| n.cmp(&bare.as_bytes())).ok()?;
    let first = html_escape::NAMED_ENTITIES[index].1;
    // html-escape keeps only the first code point of two-code-point entities.
    match TWO_CODE_POINT_ENTITIES.iter().find(|(n, _)| *n == bare) {
        Some((_, second)) => Some(format!("{first}{second}")),
        None => Some(first.to_string()),
    }
}

/// Python's `html.unescape` (3.11): `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`.
fn html_unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match charref(after) {
            Some((consumed, replacement)) => {
                out.push_str(&replacement);
                rest = &after[consumed..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One character reference after `&`: (bytes consumed, replacement), or None when nothing matches.
fn charref(s: &str) -> Option<(usize, String)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let (radix, start) = match b.get(1) {
            Some(b'x' | b'X') if b.get(2).is_some_and(u8::is_ascii_hexdigit) => (16, 2),
            Some(d) if d.is_ascii_digit() => (10, 1),
            _ => return None,
        };
        let digits = b[start..].iter().take_while(|c| char::from(**c).is_digit(radix)).count();
        let mut end = start + digits;
        if b.get(end) == Some(&b';') {
            end += 1;
        }
        let number = s[start..start + digits]
            .chars()
            .filter_map(|c| c.to_digit(radix))
            .fold(0u64, |n, d| (n * u64::from(radix) + u64::from(d)).min(0x11_0000));
        return Some((end, numeric_charref(number)));
    }
    let name_end = s
        .char_indices()
        .take(32)
        .find(|&(_, c)| matches!(c, '\t' | '\n' | '\u{c}' | ' ' | '<' | '&' | '#' | ';'))
        .map_or_else(|| s.char_indices().nth(32).map_or(s.len(), |(i, _)| i), |(i, _)| i);
    if name_end == 0 {
        return None;
    }
    let end = if s[name_end..].starts_with(';') { name_end + 1 } else { name_end };
    let name = &s[..end];
    if let Some(value) = html5_entity(name) {
        return Some((end, value));
    }
    // Longest legacy (semicolon-less) entity that prefixes the name, at least 2 code points long.
    let cuts: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in cuts.iter().rev() {
        if let Some(value) = html5_entity(&name[..cut]) {
            return Some((end, format!("{value}{}", &name[cut..])));
        }
    }
    Some((end, format!("&{name}")))
}

/// Python's numeric character reference rules (`_invalid_charrefs`, `_invalid_codepoints`).
fn numeric_charref(n: u64) -> String {
    const WINDOWS_1252: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{2c6}',
        '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}', '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}',
        '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}',
        '\u{153}', '\u{9d}', '\u{17e}', '\u{178}',
    ];
    match n {
        0 => "\u{fffd}".to_string(),
        0x0d => "\r".to_string(),
        0x80..=0x9f => WINDOWS_1252[(n - 0x80) as usize].to_string(),
        0xd800..=0xdfff | 0x11_0000.. => "\u{fffd}".to_string(),
        0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f | 0xfdd0..=0xfdef => String::new(),
        _ if n & 0xfffe == 0xfffe => String::new(),
        _ => char::from_u32(n as u32).map(String::from).unwrap_or_else(|| "\u{fffd}".to_string()),
    }
}

/// HTML5 entities that are also valid without `;` (Python's `html5` has both spellings).
#[rustfmt::skip]
const LEGACY_ENTITIES: [&str; 106] = [
    "AElig", "AMP", "Aacute", "Acirc", "Agrave", "Aring", "Atilde", "Auml", "COPY", "Ccedil", "ETH", "Eacute",
    "Ecirc", "Egrave", "Euml", "GT", "Iacute", "Icirc", "Igrave", "Iuml", "LT", "Ntilde", "Oacute", "Ocirc",
    "Ograve", "Oslash", "Otilde", "Ouml", "QUOT", "REG", "THORN", "Uacute", "Ucirc", "Ugrave", "Uuml", "Yacute",
    "aacute", "acirc", "acute", "aelig", "agrave", "amp", "aring", "atilde", "auml", "brvbar", "ccedil", "cedil",
    "cent", "copy", "curren", "deg", "divide", "eacute", "ecirc", "egrave", "eth", "euml", "frac12", "frac14",
    "frac34", "gt", "iacute", "icirc", "iexcl", "igrave", "iquest", "iuml", "laquo", "lt", "macr", "micro",
    "middot", "nbsp", "not", "ntilde", "oacute", "ocirc", "ograve", "ordf", "ordm", "oslash", "otilde", "ouml",
    "para", "plusmn", "pound", "quot", "raquo", "reg", "sect", "shy", "sup1", "sup2", "sup3", "szlig", "thorn",
    "times", "uacute", "ucirc", "ugrave", "uml", "uuml", "yacute", "yen", "yuml",
];

/// Second code point of the HTML5 entities whose value is two code points long.
#[rustfmt::skip]
const TWO_CODE_POINT_ENTITIES: [(&str, char); 93] = [
    ("acE", '\u{333}'), ("bne", '\u{20e5}'), ("bnequiv", '\u{20e5}'), ("caps", '\u{fe00}'), ("cups", '\u{fe00}'),
    ("fjlig", 'j'), ("gesl", '\u{fe00}'), ("gvertneqq", '\u{fe00}'), ("gvnE", '\u{fe00}'), ("lates", '\u{fe00}'),
    ("lesg", '\u{fe00}'), ("lvertneqq", '\u{fe00}'), ("lvnE", '\u{fe00}'), ("nang", '\u{20d2}'),
    ("napE", '\u{338}'), ("napid", '\u{338}'), ("nbump", '\u{338}'), ("nbumpe", '\u{338}'),
    ("ncongdot", '\u{338}'), ("nedot", '\u{338}'), ("nesim", '\u{338}'), ("ngE", '\u{338}'), ("ngeqq", '\u{338}'),
    ("ngeqslant", '\u{338}'), ("nges", '\u{338}'), ("nGg", '\u{338}'), ("nGt", '\u{20d2}'), ("nGtv", '\u{338}'),
    ("nlE", '\u{338}'), ("nleqq", '\u{338}'), ("nleqslant", '\u{338}'), ("nles", '\u{338}'), ("nLl", '\u{338}'),
    ("nLt", '\u{20d2}'), ("nLtv", '\u{338}'), ("NotEqualTilde", '\u{338}'), ("NotGreaterFullEqual", '\u{338}'),
    ("NotGreaterGreater", '\u{338}'), ("NotGreaterSlantEqual", '\u{338}'), ("NotHumpDownHump", '\u{338}'),
    ("NotHumpEqual", '\u{338}'), ("notindot", '\u{338}'), ("notinE", '\u{338}'),
    ("NotLeftTriangleBar", '\u{338}'), ("NotLessLess", '\u{338}'), ("NotLessSlantEqual", '\u{338}'),
    ("NotNestedGreaterGreater", '\u{338}'), ("NotNestedLessLess", '\u{338}'), ("NotPrecedesEqual", '\u{338}'),
    ("NotRightTriangleBar", '\u{338}'), ("NotSquareSubset", '\u{338}'), ("NotSquareSuperset", '\u{338}'),
    ("NotSubset", '\u{20d2}'), ("NotSucceedsEqual", '\u{338}'), ("NotSucceedsTilde", '\u{338}'),
    ("NotSuperset", '\u{20d2}'), ("nparsl", '\u{20e5}'), ("npart", '\u{338}'), ("npre", '\u{338}'),
    ("npreceq", '\u{338}'), ("nrarrc", '\u{338}'), ("nrarrw", '\u{338}'), ("nsce", '\u{338}'),
    ("nsubE", '\u{338}'), ("nsubset", '\u{20d2}'), ("nsubseteqq", '\u{338}'), ("nsucceq", '\u{338}'),
    ("nsupE", '\u{338}'), ("nsupset", '\u{20d2}'), ("nsupseteqq", '\u{338}'), ("nvap", '\u{20d2}'),
    ("nvge", '\u{20d2}'), ("nvgt", '\u{20d2}'), ("nvle", '\u{20d2}'), ("nvlt", '\u{20d2}'), ("nvltrie", '\u{20d2}'),
    ("nvrtrie", '\u{20d2}'), ("nvsim", '\u{20d2}'), ("race", '\u{331}'), ("smtes", '\u{fe00}'),
    ("sqcaps", '\u{fe00}'), ("sqcups", '\u{fe00}'), ("ThickSpace", '\u{200a}'), ("varsubsetneq", '\u{fe00}'),
    ("varsubsetneqq", '\u{fe00}'), ("varsupsetneq", '\u{fe00}'), ("varsupsetneqq", '\u{fe00}'),
    ("vnsub", '\u{20d2}'), ("vnsup", '\u{20d2}'), ("vsubnE", '\u{fe00}'), ("vsubne", '\u{fe00}'),
    ("vsupnE", '\u{fe00}'), ("vsupne", '\u{fe00}'),
];

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values below come from Python 3.11 `html.unescape` and ftfy 6.3.1 `chardata`/`fixes`.
    #[test]
    fn python_html_unescape_rules() {
        assert_eq!(html_unescape("&amp;amp;"), "&amp;");
        assert_eq!(html_unescape("&amp"), "&");
        assert_eq!(html_unescape("&notit;"), "\u{ac}it;");
        assert_eq!(html_unescape("&#128;&#0;&#1;&#x110000;&#65"), "\u{20ac}\u{fffd}\u{fffd}A");
        assert_eq!(html_unescape("&fjlig;&unknown;&;&#;"), "fj&unknown;&;&#;");
    }

    #[test]
    fn ftfy_entity_table_has_uppercase_forms() {
        let table = ftfy_entity_table();
        assert_eq!(table.len(), 3501);
        assert_eq!(table["&EACUTE;"], "\u{c9}");
        assert!(!table.contains_key("&nTILDE;"));
        assert_eq!(ftfy_unescape_html("&#128; &#0; &#65a;"), "\u{20ac} \u{fffd} &#65a;");
    }
}
