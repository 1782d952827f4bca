//! Repair of Vietnamese text that arrives in a legacy form: TCVN3 (ABC) or VNI-Windows font bytes
//! read as Windows-1252, decomposed Unicode, or raw Telex / VNI keystrokes.
//!
//! [`repair`] returns the text and which form it found. Detection is conservative: a byte-level
//! decoding is kept only when it turns words that are not Vietnamese syllables into syllables, and
//! a keystroke word is converted only when the result is a valid syllable. Correct Unicode and
//! unaccented text come back unchanged.
//!
//! Limitations:
//! - TCVN3 (TCVN 5712:1993 VN3) has no upper-case letters with a tone mark: `.VnTime` documents
//!   write them with the lower-case codes and `.VnTimeH` fonts draw everything upper case. Such
//!   letters are decoded lower case, except that a word whose other letters are all upper case is
//!   made upper case (`NGUYÔN` → `NGUYỄN`). The VN1 capitals (bytes 0x01-0x17, 0x80-0x9F and the
//!   capital slots in 0xA0-0xFF) and the five VN2 combining marks are decoded too.
//! - Bytes 0x80-0x9F are accepted both as Windows-1252 characters and as Latin-1 C1 controls.
//! - The syllable check knows the Sino-Vietnamese/Kinh syllable structure; minority-language names
//!   (`Ksor`, `H'Hen`) are not syllables, so in mojibake they are decoded only alongside real
//!   syllables, and in keystroke form they are left alone.
//! - Keystroke words that look like English (`Lee`, `Max`: one doubling or one `s r x` tone key)
//!   or like codes (`A1`, `An1`: a tone digit on one or two letters) are converted only when another
//!   word of the same text is unmistakably typed keystrokes.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// A legacy form that [`repair`] recognised and converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// TCVN3 (ABC, TCVN 5712:1993) font bytes read as Windows-1252.
    Tcvn3,
    /// VNI-Windows font bytes read as Windows-1252.
    Vni,
    /// Unicode with combining marks (NFD, or Windows-1258 style base letter + tone mark).
    Decomposed,
    /// Raw Telex keystrokes (`Nguyeenx`).
    Telex,
    /// Raw VNI keystrokes (`Nguye6n4`).
    VniTyping,
}

impl Encoding {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Encoding::Tcvn3 => "tcvn3",
            Encoding::Vni => "vni",
            Encoding::Decomposed => "decomposed",
            Encoding::Telex => "telex",
            Encoding::VniTyping => "vni_typing",
        }
    }

    /// The name a Vietnamese user knows it by.
    pub fn vietnamese(self) -> &'static str {
        match self {
            Encoding::Tcvn3 => "bảng mã TCVN3",
            Encoding::Vni => "bảng mã VNI",
            Encoding::Decomposed => "Unicode tổ hợp",
            Encoding::Telex => "kiểu gõ Telex chưa chuyển",
            Encoding::VniTyping => "kiểu gõ VNI chưa chuyển",
        }
    }
}

/// The result of [`repair`]: the text, and the legacy form converted (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    pub text: String,
    pub applied: Option<Encoding>,
}

/// Repairs one text value. Never panics; returns the input unchanged (with `applied: None`) when it
/// is not recognisably in a legacy form.
pub fn repair(input: &str) -> Repaired {
    let unchanged = || Repaired { text: input.to_string(), applied: None };
    if input.chars().any(is_combining_mark) {
        let nfc: String = input.nfc().collect();
        if nfc != input {
            return Repaired { text: nfc, applied: Some(Encoding::Decomposed) };
        }
    }
    if !input.is_ascii() {
        // Text whose every word is a Vietnamese syllable already ("Hà", "Võ Tú") is never taken
        // for a legacy form: a decoding is kept only when it makes more words valid syllables
        // than the input has (`score`), so the decodings are not tried.
        let bytes = as_windows_1252(input).filter(|_| !words(input).all(is_syllable));
        return match bytes.and_then(|bytes| decode_bytes(input, &bytes)) {
            Some((text, enc)) => Repaired { text, applied: Some(enc) },
            None => unchanged(),
        };
    }
    if let Some(text) = convert_keystrokes(input, vni_typing_word) {
        return Repaired { text, applied: Some(Encoding::VniTyping) };
    }
    if let Some(text) = convert_keystrokes(input, telex_word) {
        return Repaired { text, applied: Some(Encoding::Telex) };
    }
    unchanged()
}

// ---------------------------------------------------------------------------------------------
// Letters and tones

/// The six tones, in the order of the columns of [`VOWELS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Level,
    Grave,
    Acute,
    Hook,
    Tilde,
    Dot,
}

const TONES: [Tone; 6] = [Tone::Level, Tone::Grave, Tone::Acute, Tone::Hook, Tone::Tilde, Tone::Dot];

/// The twelve vowel letters (rows) with the six tones (columns), lower case.
const VOWELS: [[char; 6]; 12] = [
    ['a', 'à', 'á', 'ả', 'ã', 'ạ'],
    ['ă', 'ằ', 'ắ', 'ẳ', 'ẵ', 'ặ'],
    ['â', 'ầ', 'ấ', 'ẩ', 'ẫ', 'ậ'],
    ['e', 'è', 'é', 'ẻ', 'ẽ', 'ẹ'],
    ['ê', 'ề', 'ế', 'ể', 'ễ', 'ệ'],
    ['i', 'ì', 'í', 'ỉ', 'ĩ', 'ị'],
    ['o', 'ò', 'ó', 'ỏ', 'õ', 'ọ'],
    ['ô', 'ồ', 'ố', 'ổ', 'ỗ', 'ộ'],
    ['ơ', 'ờ', 'ớ', 'ở', 'ỡ', 'ợ'],
    ['u', 'ù', 'ú', 'ủ', 'ũ', 'ụ'],
    ['ư', 'ừ', 'ứ', 'ử', 'ữ', 'ự'],
    ['y', 'ỳ', 'ý', 'ỷ', 'ỹ', 'ỵ'],
];

/// Splits a lower-case vowel into its untoned letter and tone.
fn split_tone(c: char) -> Option<(char, Tone)> {
    // Called for every letter of every name and address word: ASCII and the characters outside
    // the two blocks that hold the toned vowels are answered without the table.
    if c.is_ascii() {
        return matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y').then_some((c, Tone::Level));
    }
    if !matches!(c as u32, 0xC0..=0x1B0 | 0x1EA0..=0x1EF9) {
        return None;
    }
    VOWELS.iter().find_map(|row| row.iter().position(|&t| t == c).map(|i| (row[0], TONES[i])))
}

/// The lower-case vowel `base` (untoned) with `tone`.
fn with_tone(base: char, tone: Tone) -> char {
    let col = TONES.iter().position(|t| *t == tone).unwrap_or(0);
    VOWELS.iter().find(|row| row[0] == base).map_or(base, |row| row[col])
}

fn is_vowel(c: char) -> bool {
    split_tone(c).is_some()
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

fn upper(c: char) -> char {
    c.to_uppercase().next().unwrap_or(c)
}

/// Every accented Vietnamese letter (67 lower case, 67 upper case), for tests and tables.
pub fn accented_letters() -> Vec<char> {
    let mut out = Vec::new();
    for row in VOWELS {
        for (i, &c) in row.iter().enumerate() {
            if i > 0 || "ăâêôơư".contains(c) {
                out.push(c);
            }
        }
    }
    out.push('đ');
    let up: Vec<char> = out.iter().map(|c| upper(*c)).collect();
    out.extend(up);
    out
}

// ---------------------------------------------------------------------------------------------
// Syllable structure

const INITIALS: [&str; 27] = [
    "ngh", "ch", "gh", "gi", "kh", "ng", "nh", "ph", "qu", "th", "tr", "b", "c", "d", "đ", "g", "h", "k", "l", "m",
    "n", "p", "r", "s", "t", "v", "x",
];

const FINALS: [&str; 8] = ["ch", "ng", "nh", "c", "m", "n", "p", "t"];

/// Nuclei (untoned) and whether they take a final consonant: `O` open only, `C` closed only, `A` either.
const NUCLEI: [(&str, u8); 50] = [
    ("a", b'A'),
    ("ă", b'C'),
    ("â", b'C'),
    ("e", b'A'),
    ("ê", b'A'),
    ("i", b'A'),
    ("o", b'A'),
    ("ô", b'A'),
    ("ơ", b'A'),
    ("u", b'A'),
    ("ư", b'A'),
    ("y", b'O'),
    ("ai", b'O'),
    ("ao", b'O'),
    ("au", b'O'),
    ("ay", b'O'),
    ("âu", b'O'),
    ("ây", b'O'),
    ("eo", b'O'),
    ("êu", b'O'),
    ("ia", b'O'),
    ("iê", b'C'),
    ("iu", b'O'),
    ("oa", b'A'),
    ("oă", b'C'),
    ("oe", b'A'),
    ("oi", b'O'),
    ("oo", b'C'),
    ("ôi", b'O'),
    ("ơi", b'O'),
    ("ua", b'O'),
    ("uâ", b'C'),
    ("uê", b'A'),
    ("ui", b'O'),
    ("uô", b'C'),
    ("uơ", b'O'),
    ("uy", b'A'),
    ("ưa", b'O'),
    ("ưi", b'O'),
    ("ươ", b'C'),
    ("ưu", b'O'),
    ("yê", b'C'),
    ("iêu", b'O'),
    ("yêu", b'O'),
    ("oai", b'O'),
    ("oay", b'O'),
    ("oeo", b'O'),
    ("uây", b'O'),
    ("uôi", b'O'),
    ("ươi", b'O'),
];

const NUCLEI_MORE: [(&str, u8); 4] = [("ươu", b'O'), ("uya", b'O'), ("uyê", b'C'), ("uyu", b'O')];

fn nucleus_kind(n: &str) -> Option<u8> {
    NUCLEI.iter().chain(NUCLEI_MORE.iter()).find(|(s, _)| *s == n).map(|(_, k)| *k)
}

/// A parsed syllable, lower case and untoned, with its tone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Syllable {
    initial: String,
    nucleus: Vec<char>,
    coda: String,
    tone: Tone,
}

/// Parses a word (any case, any tone-mark placement) as a Vietnamese syllable; `None` if it is not one.
pub(crate) fn parse_syllable(word: &str) -> Option<Syllable> {
    let mut tone = Tone::Level;
    let mut letters: Vec<char> = Vec::new();
    let composed: std::borrow::Cow<str> = if crate::text::is_nfc(word) { word.into() } else { word.nfc().collect() };
    for c in composed.chars() {
        let c = lower(c);
        if let Some((base, t)) = split_tone(c) {
            if t != Tone::Level {
                if tone != Tone::Level {
                    return None;
                }
                tone = t;
            }
            letters.push(base);
        } else if c.is_ascii_lowercase() || c == 'đ' {
            letters.push(c);
        } else {
            return None;
        }
    }
    syllable_from(&letters, tone)
}

/// Validates untoned lower-case letters plus a tone as a syllable.
fn syllable_from(letters: &[char], tone: Tone) -> Option<Syllable> {
    if letters.is_empty() || letters.len() > 8 {
        return None;
    }
    let s: String = letters.iter().collect();
    // initial: the longest match; "gi"/"qu" only when a vowel follows.
    let mut initial = "";
    for i in INITIALS {
        if let Some(rest) = s.strip_prefix(i) {
            let vowel_follows = rest.chars().next().is_some_and(is_vowel);
            if (i == "gi" || i == "qu") && !vowel_follows {
                continue;
            }
            initial = i;
            break;
        }
    }
    let rest = &s[initial.len()..];
    let nucleus_len = rest.chars().take_while(|c| is_vowel(*c)).count();
    if nucleus_len == 0 {
        return None;
    }
    let nucleus: Vec<char> = rest.chars().take(nucleus_len).collect();
    let coda: String = rest.chars().skip(nucleus_len).collect();
    let n: String = nucleus.iter().collect();
    let kind = nucleus_kind(&n)?;
    if !coda.is_empty() && !FINALS.contains(&coda.as_str()) {
        return None;
    }
    match (kind, coda.is_empty()) {
        (b'O', false) | (b'C', true) => return None,
        _ => {}
    }
    if (coda == "ch" || coda == "nh") && !["a", "ê", "i", "y", "oa", "uê", "uy"].contains(&n.as_str()) {
        return None;
    }
    if ["p", "t", "c", "ch"].contains(&coda.as_str()) && !matches!(tone, Tone::Acute | Tone::Dot) {
        return None;
    }
    let first = nucleus[0];
    let front = matches!(first, 'e' | 'ê' | 'i' | 'y');
    match initial {
        "k" | "gh" | "ngh" if !front => return None,
        "c" | "ng" if front => return None,
        "g" if matches!(first, 'e' | 'ê') => return None,
        "qu" if matches!(first, 'u' | 'ư') => return None,
        _ => {}
    }
    if initial == "gi" && matches!(first, 'i') {
        return None;
    }
    Some(Syllable { initial: initial.to_string(), nucleus, coda, tone })
}

impl Syllable {
    /// Index in the nucleus of the vowel that carries the tone mark (traditional placement:
    /// `hòa`, `thủy`; on the modified vowel when there is one: `trường`, `nguyễn`).
    fn tone_index(&self) -> usize {
        if let Some(i) = self.nucleus.iter().rposition(|c| "ăâêôơư".contains(*c)) {
            return i;
        }
        match self.nucleus.len() {
            1 => 0,
            2 if self.coda.is_empty() => 0,
            2 => 1,
            _ => 1,
        }
    }

    /// Lower-case NFC form.
    fn render(&self) -> Vec<char> {
        let ti = self.tone_index();
        let mut out: Vec<char> = self.initial.chars().collect();
        for (i, c) in self.nucleus.iter().enumerate() {
            out.push(if i == ti { with_tone(*c, self.tone) } else { *c });
        }
        out.extend(self.coda.chars());
        out
    }
}

/// Whether a word (any case, either tone placement) is a valid Vietnamese syllable.
pub fn is_syllable(word: &str) -> bool {
    parse_syllable(word).is_some()
}

// ---------------------------------------------------------------------------------------------
// Byte-level legacy forms (TCVN3, VNI) read as Windows-1252

/// Windows-1252 bytes 0x80-0x9F and the characters they decode to (0x81, 0x8D, 0x8F, 0x90, 0x9D are unassigned).
const CP1252_HIGH: [(u8, char); 27] = [
    (0x80, '€'),
    (0x82, '‚'),
    (0x83, 'ƒ'),
    (0x84, '„'),
    (0x85, '…'),
    (0x86, '†'),
    (0x87, '‡'),
    (0x88, 'ˆ'),
    (0x89, '‰'),
    (0x8A, 'Š'),
    (0x8B, '‹'),
    (0x8C, 'Œ'),
    (0x8E, 'Ž'),
    (0x91, '\u{2018}'),
    (0x92, '\u{2019}'),
    (0x93, '\u{201C}'),
    (0x94, '\u{201D}'),
    (0x95, '•'),
    (0x96, '–'),
    (0x97, '—'),
    (0x98, '˜'),
    (0x99, '™'),
    (0x9A, 'š'),
    (0x9B, '›'),
    (0x9C, 'œ'),
    (0x9E, 'ž'),
    (0x9F, 'Ÿ'),
];

/// The bytes a text would have had in Windows-1252 (C1 controls taken as their own byte);
/// `None` if it holds a character Windows-1252 cannot hold.
fn as_windows_1252(s: &str) -> Option<Vec<u8>> {
    s.chars()
        .map(|c| {
            let u = c as u32;
            if u < 0x100 { Some(u as u8) } else { CP1252_HIGH.iter().find(|(_, h)| *h == c).map(|(b, _)| *b) }
        })
        .collect()
}

fn cp1252_char(b: u8) -> char {
    CP1252_HIGH.iter().find(|(x, _)| *x == b).map(|(_, c)| *c).unwrap_or(b as char)
}

/// TCVN3 (VN3): the seven capitals without tone, the lower-case letters with and without tone.
const TCVN3: [(u8, char); 74] = [
    (0xA1, 'Ă'),
    (0xA2, 'Â'),
    (0xA3, 'Ê'),
    (0xA4, 'Ô'),
    (0xA5, 'Ơ'),
    (0xA6, 'Ư'),
    (0xA7, 'Đ'),
    (0xA8, 'ă'),
    (0xA9, 'â'),
    (0xAA, 'ê'),
    (0xAB, 'ô'),
    (0xAC, 'ơ'),
    (0xAD, 'ư'),
    (0xAE, 'đ'),
    (0xB5, 'à'),
    (0xB6, 'ả'),
    (0xB7, 'ã'),
    (0xB8, 'á'),
    (0xB9, 'ạ'),
    (0xBB, 'ằ'),
    (0xBC, 'ẳ'),
    (0xBD, 'ẵ'),
    (0xBE, 'ắ'),
    (0xC6, 'ặ'),
    (0xC7, 'ầ'),
    (0xC8, 'ẩ'),
    (0xC9, 'ẫ'),
    (0xCA, 'ấ'),
    (0xCB, 'ậ'),
    (0xCC, 'è'),
    (0xCE, 'ẻ'),
    (0xCF, 'ẽ'),
    (0xD0, 'é'),
    (0xD1, 'ẹ'),
    (0xD2, 'ề'),
    (0xD3, 'ể'),
    (0xD4, 'ễ'),
    (0xD5, 'ế'),
    (0xD6, 'ệ'),
    (0xD7, 'ì'),
    (0xD8, 'ỉ'),
    (0xDC, 'ĩ'),
    (0xDD, 'í'),
    (0xDE, 'ị'),
    (0xDF, 'ò'),
    (0xE1, 'ỏ'),
    (0xE2, 'õ'),
    (0xE3, 'ó'),
    (0xE4, 'ọ'),
    (0xE5, 'ồ'),
    (0xE6, 'ổ'),
    (0xE7, 'ỗ'),
    (0xE8, 'ố'),
    (0xE9, 'ộ'),
    (0xEA, 'ờ'),
    (0xEB, 'ở'),
    (0xEC, 'ỡ'),
    (0xED, 'ớ'),
    (0xEE, 'ợ'),
    (0xEF, 'ù'),
    (0xF1, 'ủ'),
    (0xF2, 'ũ'),
    (0xF3, 'ú'),
    (0xF4, 'ụ'),
    (0xF5, 'ừ'),
    (0xF6, 'ử'),
    (0xF7, 'ữ'),
    (0xF8, 'ứ'),
    (0xF9, 'ự'),
    (0xFA, 'ỳ'),
    (0xFB, 'ỷ'),
    (0xFC, 'ỹ'),
    (0xFD, 'ý'),
    (0xFE, 'ỵ'),
];

/// TCVN 5712 VN1 additions: capitals with tone, and the VN2 combining tone marks.
const TCVN_VN1: [(u8, char); 65] = [
    (0x01, 'Ú'),
    (0x02, 'Ụ'),
    (0x04, 'Ừ'),
    (0x05, 'Ử'),
    (0x06, 'Ữ'),
    (0x11, 'Ứ'),
    (0x12, 'Ự'),
    (0x13, 'Ỳ'),
    (0x14, 'Ỷ'),
    (0x15, 'Ỹ'),
    (0x16, 'Ý'),
    (0x17, 'Ỵ'),
    (0x80, 'À'),
    (0x81, 'Ả'),
    (0x82, 'Ã'),
    (0x83, 'Á'),
    (0x84, 'Ạ'),
    (0x85, 'Ặ'),
    (0x86, 'Ậ'),
    (0x87, 'È'),
    (0x88, 'Ẻ'),
    (0x89, 'Ẽ'),
    (0x8A, 'É'),
    (0x8B, 'Ẹ'),
    (0x8C, 'Ệ'),
    (0x8D, 'Ì'),
    (0x8E, 'Ỉ'),
    (0x8F, 'Ĩ'),
    (0x90, 'Í'),
    (0x91, 'Ị'),
    (0x92, 'Ò'),
    (0x93, 'Ỏ'),
    (0x94, 'Õ'),
    (0x95, 'Ó'),
    (0x96, 'Ọ'),
    (0x97, 'Ộ'),
    (0x98, 'Ờ'),
    (0x99, 'Ở'),
    (0x9A, 'Ỡ'),
    (0x9B, 'Ớ'),
    (0x9C, 'Ợ'),
    (0x9D, 'Ù'),
    (0x9E, 'Ủ'),
    (0x9F, 'Ũ'),
    (0xAF, 'Ằ'),
    (0xB0, '\u{0300}'),
    (0xB1, '\u{0309}'),
    (0xB2, '\u{0303}'),
    (0xB3, '\u{0301}'),
    (0xB4, '\u{0323}'),
    (0xBA, 'Ẳ'),
    (0xBF, 'Ẵ'),
    (0xC0, 'Ắ'),
    (0xC1, 'Ầ'),
    (0xC2, 'Ẩ'),
    (0xC3, 'Ẫ'),
    (0xC4, 'Ấ'),
    (0xC5, 'Ề'),
    (0xCD, 'Ể'),
    (0xD9, 'Ễ'),
    (0xDA, 'Ế'),
    (0xDB, 'Ồ'),
    (0xE0, 'Ổ'),
    (0xF0, 'Ỗ'),
    (0xFF, 'Ố'),
];

fn tcvn3_char(b: u8) -> Option<char> {
    TCVN3.iter().chain(TCVN_VN1.iter()).find(|(x, _)| *x == b).map(|(_, c)| *c)
}

fn decode_tcvn3(bytes: &[u8]) -> String {
    let raw: String = bytes.iter().map(|b| tcvn3_char(*b).unwrap_or_else(|| cp1252_char(*b))).collect();
    let nfc: String = raw.nfc().collect();
    // .VnTime has no capitals with tone: restore them in words written all in capitals.
    let mut out = String::with_capacity(nfc.len());
    for (i, word) in nfc.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let upper_count = word.chars().filter(|c| c.is_uppercase()).count();
        let plain_lower = word.chars().any(|c| c.is_ascii_lowercase() || "ăâêôơưđ".contains(c));
        if upper_count >= 2 && !plain_lower {
            out.extend(word.chars().map(upper));
        } else {
            out.push_str(word);
        }
    }
    out
}

/// VNI-Windows: one-byte letters.
const VNI_SINGLE: [(u8, char); 18] = [
    (0xD1, 'Đ'),
    (0xF1, 'đ'),
    (0xD4, 'Ơ'),
    (0xF4, 'ơ'),
    (0xD6, 'Ư'),
    (0xF6, 'ư'),
    (0xCC, 'Ì'),
    (0xEC, 'ì'),
    (0xCD, 'Í'),
    (0xED, 'í'),
    (0xC6, 'Ỉ'),
    (0xE6, 'ỉ'),
    (0xD3, 'Ĩ'),
    (0xF3, 'ĩ'),
    (0xD2, 'Ị'),
    (0xF2, 'ị'),
    (0xCE, 'Ỵ'),
    (0xEE, 'ỵ'),
];

/// VNI-Windows: the mark byte (lower-case form) following a base letter, as (vowel modifier, tone).
/// Modifier: `^` circumflex (a e o), `(` breve (a only), ` ` none. The upper-case form of each byte
/// is the same letter minus 0x20.
const VNI_MARKS: [(u8, char, Tone); 17] = [
    (0xF9, ' ', Tone::Acute),
    (0xF8, ' ', Tone::Grave),
    (0xFB, ' ', Tone::Hook),
    (0xF5, ' ', Tone::Tilde),
    (0xEF, ' ', Tone::Dot),
    (0xE2, '^', Tone::Level),
    (0xE1, '^', Tone::Acute),
    (0xE0, '^', Tone::Grave),
    (0xE5, '^', Tone::Hook),
    (0xE3, '^', Tone::Tilde),
    (0xE4, '^', Tone::Dot),
    (0xEA, '(', Tone::Level),
    (0xE9, '(', Tone::Acute),
    (0xE8, '(', Tone::Grave),
    (0xFA, '(', Tone::Hook),
    (0xFC, '(', Tone::Tilde),
    (0xEB, '(', Tone::Dot),
];

fn vni_mark(b: u8) -> Option<(char, Tone)> {
    let b = if (0xC0..0xE0).contains(&b) { b + 0x20 } else { b };
    VNI_MARKS.iter().find(|(x, _, _)| *x == b).map(|(_, m, t)| (*m, *t))
}

/// Applies a VNI mark to a base letter (lower case); `None` if the mark does not fit the letter.
fn vni_apply(base: char, modifier: char, tone: Tone) -> Option<char> {
    let letter = match (base, modifier) {
        (b, ' ') if "aeouyơư".contains(b) => b,
        ('a', '^') => 'â',
        ('e', '^') => 'ê',
        ('o', '^') => 'ô',
        ('a', '(') => 'ă',
        _ => return None,
    };
    Some(with_tone(letter, tone))
}

fn decode_vni(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let base = VNI_SINGLE.iter().find(|(x, _)| *x == b).map(|(_, c)| *c).unwrap_or_else(|| cp1252_char(b));
        let marked = bytes
            .get(i + 1)
            .filter(|_| "aeouyơưAEOUYƠƯ".contains(base))
            .and_then(|next| vni_mark(*next))
            .and_then(|(m, t)| vni_apply(lower(base), m, t));
        if let Some(c) = marked {
            out.push(if base.is_uppercase() { upper(c) } else { c });
            i += 2;
            continue;
        }
        out.push(base);
        i += 1;
    }
    out
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c.is_whitespace() || c == '-' || c == ',' || c == '.' || c == '(' || c == ')')
}

/// Scores a byte-level decoding against the input: `Some(valid syllables gained)` when it is an
/// improvement that changes no valid syllable into a non-syllable.
fn score(input: &str, decoded: &str) -> Option<usize> {
    let a: Vec<&str> = words(input).collect();
    let b: Vec<&str> = words(decoded).collect();
    if a.len() != b.len() {
        return None;
    }
    let (mut before, mut after) = (0usize, 0usize);
    for (x, y) in a.iter().zip(&b) {
        if x == y {
            continue;
        }
        let vy = is_syllable(y);
        if !y.chars().all(|c| crate::text::is_letter(c) || c == '\'' || c == '\u{2019}') {
            return None;
        }
        before += usize::from(is_syllable(x));
        after += usize::from(vy);
    }
    (after > before).then(|| after - before)
}

fn decode_bytes(input: &str, bytes: &[u8]) -> Option<(String, Encoding)> {
    let tcvn = decode_tcvn3(bytes);
    let vni: String = decode_vni(bytes).nfc().collect();
    let st = score(input, &tcvn);
    let sv = score(input, &vni);
    match (st, sv) {
        (Some(t), Some(v)) if v > t => Some((vni, Encoding::Vni)),
        (Some(_), _) => Some((tcvn, Encoding::Tcvn3)),
        (None, Some(_)) => Some((vni, Encoding::Vni)),
        (None, None) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Keystrokes

/// A converted keystroke word and whether the evidence is strong (see the module limitations).
struct Converted {
    text: String,
    strong: bool,
}

/// Applies `convert` to every word; keeps the result when at least one word converted with strong
/// evidence (weak conversions are then kept too).
fn convert_keystrokes(input: &str, convert: fn(&str) -> Option<Converted>) -> Option<String> {
    let mut out = String::with_capacity(input.len() + 8);
    let mut strong = false;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, strong: &mut bool| {
        if let Some(c) = convert(word) {
            *strong |= c.strong;
            out.push_str(&c.text);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in input.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out, &mut strong);
            out.push(c);
        }
    }
    flush(&mut word, &mut out, &mut strong);
    (strong && out != input).then_some(out)
}

/// Letters being assembled from keystrokes: lower-case letter and whether it was typed upper case.
type Keyed = Vec<(char, bool)>;

fn finish(letters: &Keyed, tone: Tone) -> Option<String> {
    let plain: Vec<char> = letters.iter().map(|(c, _)| *c).collect();
    if plain == ['đ'] && tone == Tone::Level {
        return Some(letters.iter().map(|(c, up)| if *up { upper(*c) } else { *c }).collect());
    }
    let syl = syllable_from(&plain, tone)?;
    let rendered = syl.render();
    if rendered.len() != letters.len() {
        return None;
    }
    Some(rendered.iter().zip(letters).map(|(c, (_, up))| if *up { upper(*c) } else { *c }).collect())
}

fn tone_of_key(k: char, digits: bool) -> Option<Tone> {
    Some(match (k, digits) {
        ('s', false) | ('1', true) => Tone::Acute,
        ('f', false) | ('2', true) => Tone::Grave,
        ('r', false) | ('3', true) => Tone::Hook,
        ('x', false) | ('4', true) => Tone::Tilde,
        ('j', false) | ('5', true) => Tone::Dot,
        _ => return None,
    })
}

/// Adds a horn (`w` / `7`) to the nucleus: `uo` → `ươ`, else the last `o`/`u`; or a breve on `a`.
fn add_horn_or_breve(letters: &mut Keyed, breve_ok: bool, horn_ok: bool) -> bool {
    let n = letters.len();
    let pair = if horn_ok { (1..n).rev().find(|&i| letters[i - 1].0 == 'u' && letters[i].0 == 'o') } else { None };
    if let Some(i) = pair {
        letters[i - 1].0 = 'ư';
        letters[i].0 = 'ơ';
        return true;
    }
    for i in (0..n).rev() {
        let new = match letters[i].0 {
            'a' if breve_ok => 'ă',
            'o' if horn_ok => 'ơ',
            'u' if horn_ok => 'ư',
            c if is_vowel(c) => return false,
            _ => continue,
        };
        // "qu": the u belongs to the initial
        if new == 'ư' && i > 0 && letters[i - 1].0 == 'q' {
            return false;
        }
        letters[i].0 = new;
        return true;
    }
    false
}

/// One Telex word (`Nguyeenx`, `Truwowngf`, `ddaof`); `None` when it has no keystrokes or does not
/// make a syllable.
fn telex_word(word: &str) -> Option<Converted> {
    if word.is_empty() || !word.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut letters: Keyed = Vec::new();
    let mut tone = Tone::Level;
    let mut markers = 0;
    let mut strong = false;
    let keys: Vec<char> = word.chars().collect();
    let mut seen_vowel = false;
    let mut i = 0;
    if keys.len() >= 2 && keys[0].eq_ignore_ascii_case(&'d') && keys[1].eq_ignore_ascii_case(&'d') {
        letters.push(('đ', keys[0].is_ascii_uppercase()));
        markers += 1;
        strong = true;
        i = 2;
    }
    while i < keys.len() {
        let k = keys[i];
        let l = k.to_ascii_lowercase();
        let prev = letters.last().map(|(c, _)| *c);
        let tone_key = if seen_vowel { tone_of_key(l, false) } else { None };
        if let Some(t) = tone_key {
            if tone != Tone::Level {
                return None;
            }
            tone = t;
            markers += 1;
            strong |= matches!(l, 'f' | 'j');
        } else if matches!(l, 'a' | 'e' | 'o') && prev == Some(l) {
            let last = letters.len() - 1;
            letters[last].0 = match l {
                'a' => 'â',
                'e' => 'ê',
                _ => 'ô',
            };
            markers += 1;
        } else if l == 'w' {
            if !add_horn_or_breve(&mut letters, true, true) {
                return None;
            }
            markers += 1;
            strong |= i + 1 < keys.len();
        } else if l == 'z' {
            return None;
        } else {
            seen_vowel |= is_vowel(l);
            letters.push((l, k.is_ascii_uppercase()));
        }
        i += 1;
    }
    if markers == 0 {
        return None;
    }
    let text = finish(&letters, tone)?;
    Some(Converted { text, strong: strong || markers >= 2 })
}

/// One VNI-typed word (`Nguye6n4`, `Va8n`, `d9`).
fn vni_typing_word(word: &str) -> Option<Converted> {
    let mut chars = word.chars();
    if !chars.next()?.is_ascii_alphabetic() || !word.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut letters: Keyed = Vec::new();
    let mut tone = Tone::Level;
    let mut modifier = false;
    for k in word.chars() {
        if let Some(d) = k.to_digit(10) {
            match d {
                1..=5 => {
                    if tone != Tone::Level {
                        return None;
                    }
                    tone = tone_of_key(k, true)?;
                }
                6 => {
                    let i = letters.iter().rposition(|(c, _)| matches!(c, 'a' | 'e' | 'o'))?;
                    letters[i].0 = match letters[i].0 {
                        'a' => 'â',
                        'e' => 'ê',
                        _ => 'ô',
                    };
                    modifier = true;
                }
                7 | 8 => {
                    if !add_horn_or_breve(&mut letters, d == 8, d == 7) {
                        return None;
                    }
                    modifier = true;
                }
                9 => {
                    let first = letters.first_mut()?;
                    if first.0 != 'd' {
                        return None;
                    }
                    first.0 = 'đ';
                    modifier = true;
                }
                _ => return None,
            }
        } else if k.is_ascii_alphabetic() {
            letters.push((k.to_ascii_lowercase(), k.is_ascii_uppercase()));
        } else {
            return None;
        }
    }
    let text = finish(&letters, tone)?;
    Some(Converted { text, strong: modifier || letters.len() >= 3 })
}

// ---------------------------------------------------------------------------------------------
// Encoders (the inverse tables), used by tests and by tools that need to produce legacy samples.

/// Encodes NFC Vietnamese text as TCVN3 bytes shown as Windows-1252 characters (the mojibake).
/// Capitals with tone use the VN1 codes when `vn1_capitals`, else the lower-case code (as `.VnTime` does).
pub fn encode_tcvn3(s: &str, vn1_capitals: bool) -> String {
    s.nfc()
        .map(|c| {
            let byte = TCVN3.iter().find(|(_, x)| *x == c).map(|(b, _)| *b).or_else(|| {
                let vn1 = TCVN_VN1.iter().find(|(_, x)| *x == c).map(|(b, _)| *b);
                if vn1_capitals && vn1.is_some() {
                    vn1
                } else {
                    TCVN3.iter().find(|(_, x)| *x == lower(c)).map(|(b, _)| *b)
                }
            });
            byte.map(cp1252_char).unwrap_or(c)
        })
        .collect()
}

/// Encodes NFC Vietnamese text as VNI-Windows bytes shown as Windows-1252 characters.
pub fn encode_vni(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.nfc() {
        let up = c.is_uppercase();
        if let Some((b, _)) = VNI_SINGLE.iter().find(|(_, x)| *x == c) {
            out.push(cp1252_char(*b));
            continue;
        }
        let Some((letter, tone)) = split_tone(lower(c)) else {
            out.push(c);
            continue;
        };
        let (base, modifier) = match letter {
            'â' => ('a', '^'),
            'ê' => ('e', '^'),
            'ô' => ('o', '^'),
            'ă' => ('a', '('),
            other => (other, ' '),
        };
        if modifier == ' ' && tone == Tone::Level {
            out.push(c);
            continue;
        }
        let base_char = VNI_SINGLE
            .iter()
            .find(|(_, x)| *x == if up { upper(base) } else { base })
            .map(|(b, _)| cp1252_char(*b))
            .unwrap_or(if up { upper(base) } else { base });
        out.push(base_char);
        if let Some((b, _, _)) = VNI_MARKS.iter().find(|(_, m, t)| *m == modifier && *t == tone) {
            out.push(cp1252_char(if up { b - 0x20 } else { *b }));
        }
    }
    out
}

/// Types NFC Vietnamese text as Telex keystrokes (tone key at the end of each word).
pub fn encode_telex(s: &str) -> String {
    encode_keys(s, false)
}

/// Types NFC Vietnamese text as VNI keystrokes (modifier digit after its vowel, tone digit at the end).
pub fn encode_vni_typing(s: &str) -> String {
    encode_keys(s, true)
}

fn encode_keys(s: &str, digits: bool) -> String {
    let mut out = String::new();
    let mut tone_key: Option<char> = None;
    let flush = |out: &mut String, tone_key: &mut Option<char>| {
        if let Some(k) = tone_key.take() {
            out.push(k);
        }
    };
    for c in s.nfc() {
        let up = c.is_uppercase();
        let case = |k: char| if up { k.to_ascii_uppercase() } else { k };
        if !c.is_alphabetic() {
            flush(&mut out, &mut tone_key);
            out.push(c);
            continue;
        }
        if lower(c) == 'đ' {
            out.push(case('d'));
            out.push(if digits { '9' } else { case('d') });
            continue;
        }
        let Some((letter, tone)) = split_tone(lower(c)) else {
            out.push(c);
            continue;
        };
        let (base, m) = match letter {
            'â' => ('a', if digits { '6' } else { 'a' }),
            'ê' => ('e', if digits { '6' } else { 'e' }),
            'ô' => ('o', if digits { '6' } else { 'o' }),
            'ă' => ('a', if digits { '8' } else { 'w' }),
            'ơ' => ('o', if digits { '7' } else { 'w' }),
            'ư' => ('u', if digits { '7' } else { 'w' }),
            other => (other, ' '),
        };
        out.push(case(base));
        if m != ' ' {
            out.push(if m.is_ascii_digit() { m } else { case(m) });
        }
        if tone != Tone::Level {
            let k = match (tone, digits) {
                (Tone::Acute, false) => 's',
                (Tone::Grave, false) => 'f',
                (Tone::Hook, false) => 'r',
                (Tone::Tilde, false) => 'x',
                (Tone::Dot, false) => 'j',
                (Tone::Acute, true) => '1',
                (Tone::Grave, true) => '2',
                (Tone::Hook, true) => '3',
                (Tone::Tilde, true) => '4',
                _ => '5',
            };
            tone_key = Some(k);
        }
    }
    flush(&mut out, &mut tone_key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What lets `repair` skip the byte-level decodings of text made of syllables.
        #[test]
        fn text_of_valid_syllables_is_never_decoded(
            words in proptest::collection::vec(
                proptest::sample::select(vec![
                    "hà", "Lê", "võ", "Tú", "mai", "hòa", "Bùi", "lò", "An", "thành", "tâm", "Châu", "Hoài",
                    "nguyên", "Vân", "hoàng", "Xuân", "ý", "Thúy", "giàu", "quí", "tô", "Mão", "Cù", "Lã",
                ]),
                1..5,
            )
        ) {
            let text = words.join(" ");
            prop_assert!(text.split(' ').all(is_syllable));
            let bytes = as_windows_1252(&text).expect("Latin-1 letters");
            prop_assert_eq!(decode_bytes(&text, &bytes), None);
            prop_assert_eq!(repair(&text), Repaired { text: text.clone(), applied: None });
        }
    }

    #[test]
    fn split_tone_knows_each_toned_vowel_and_nothing_else() {
        let mut known = std::collections::HashMap::new();
        for row in VOWELS {
            for (i, &c) in row.iter().enumerate() {
                known.insert(c, (row[0], TONES[i]));
                assert_eq!(with_tone(row[0], TONES[i]), c);
            }
        }
        assert_eq!(known.len(), 72);
        for c in (0..0x2000).filter_map(char::from_u32) {
            assert_eq!(split_tone(c), known.get(&c).copied(), "{c:?}");
        }
    }

    /// Real names, and one line per vowel carrying every accented letter.
    const NAMES: [&str; 24] = [
        "Nguyễn Văn An",
        "Trần Thị Bích Ngọc",
        "Lê Hoàng Phúc",
        "Phạm Thị Thủy",
        "Đặng Quốc Khánh",
        "Huỳnh Ngọc Tường Vy",
        "Võ Thị Mỹ Duyên",
        "Đỗ Đức Trường",
        "Ngô Thị Kiều Oanh",
        "Bùi Xuân Quyết",
        "Hồ Thị Huệ",
        "Dương Văn Lưu",
        "Lý Khuê",
        "Giang Thị Nguyệt",
        "NGUYỄN THỊ ÁNH TUYẾT",
        "ĐOÀN VĂN HỮU",
        "Àn Án Ản Ãn Ạn Ăn Ằn Ắn Ẳn Ẵn Ặn Ân Ần Ấn Ẩn Ẫn Ận",
        "àn án ản ãn ạn ăn ằn ắn ẳn ẵn ặn ân ần ấn ẩn ẫn ận",
        "Èn Én Ẻn Ẽn Ẹn Ên Ền Ến Ển Ễn Ện èn én ẻn ẽn ẹn ên ền ến ển ễn ện",
        "Ìn Ín Ỉn Ĩn Ịn ìn ín ỉn ĩn ịn Ỳ Ý Ỷ Ỹ Ỵ ỳ ý ỷ ỹ ỵ Đa đa",
        "Òn Ón Ỏn Õn Ọn Ôn Ồn Ốn Ổn Ỗn Ộn Ơn Ờn Ớn Ởn Ỡn Ợn",
        "òn ón ỏn õn ọn ôn ồn ốn ổn ỗn ộn ơn ờn ớn ởn ỡn ợn",
        "Ùn Ún Ủn Ũn Ụn Ưn Ừn Ứn Ửn Ữn Ựn",
        "ùn ún ủn ũn ụn ưn ừn ứn ửn ữn ựn",
    ];

    /// Every name above is made of syllables (the keystroke forms need syllables to convert).
    const SYLLABLE_NAMES: [&str; 24] = NAMES;

    #[test]
    fn there_are_134_accented_letters_and_the_tests_cover_them() {
        let letters = accented_letters();
        assert_eq!(letters.len(), 134);
        let all: String = NAMES.concat();
        for c in letters {
            assert!(all.contains(c), "{c} not covered");
        }
    }

    #[test]
    fn round_trips_tcvn3_with_vn1_capitals() {
        for name in NAMES {
            let enc = encode_tcvn3(name, true);
            assert_ne!(enc, name);
            assert_eq!(repair(&enc), Repaired { text: name.into(), applied: Some(Encoding::Tcvn3) }, "{enc}");
        }
    }

    #[test]
    fn round_trips_tcvn3_vntime_capitals_in_syllables() {
        // .VnTime writes capitals with tone as lower case: words in capitals get them back,
        // a capital first letter with tone comes back lower case.
        for name in SYLLABLE_NAMES {
            let enc = encode_tcvn3(name, false);
            let got = repair(&enc);
            assert_eq!(got.applied, Some(Encoding::Tcvn3), "{enc}");
            assert_eq!(crate::text::proper_case(&got.text), crate::text::proper_case(name), "{enc}");
        }
        assert_eq!(repair("NGUYÔN THÞ ¸NH").text, "NGUYỄN THỊ ÁNH");
    }

    #[test]
    fn round_trips_vni() {
        for name in NAMES {
            let enc = encode_vni(name);
            assert_ne!(enc, name);
            assert_eq!(repair(&enc), Repaired { text: name.into(), applied: Some(Encoding::Vni) }, "{enc}");
        }
    }

    #[test]
    fn round_trips_decomposed() {
        for name in NAMES {
            let nfd: String = name.nfd().collect();
            assert_eq!(repair(&nfd), Repaired { text: name.into(), applied: Some(Encoding::Decomposed) });
            // Windows-1258 style: precomposed modifier letters, combining tone marks
            let w1258: String = name
                .chars()
                .flat_map(|c| {
                    let l = lower(c);
                    match split_tone(l) {
                        Some((base, t)) if t != Tone::Level => {
                            let b = if c.is_uppercase() { upper(base) } else { base };
                            let mark = ['\u{0300}', '\u{0301}', '\u{0309}', '\u{0303}', '\u{0323}']
                                [TONES.iter().position(|x| *x == t).unwrap() - 1];
                            vec![b, mark]
                        }
                        _ => vec![c],
                    }
                })
                .collect();
            if w1258 != name {
                assert_eq!(repair(&w1258), Repaired { text: name.into(), applied: Some(Encoding::Decomposed) });
            }
        }
    }

    #[test]
    fn round_trips_keystrokes() {
        for name in SYLLABLE_NAMES.into_iter().filter(|n| *n != "Lý Khuê") {
            let telex = encode_telex(name);
            assert_eq!(repair(&telex), Repaired { text: name.into(), applied: Some(Encoding::Telex) }, "{telex}");
            let vni = encode_vni_typing(name);
            assert_eq!(repair(&vni), Repaired { text: name.into(), applied: Some(Encoding::VniTyping) }, "{vni}");
        }
    }

    #[test]
    fn known_samples() {
        let cases = [
            ("NguyÔn V¨n A", "Nguyễn Văn A", Encoding::Tcvn3),
            ("TrÇn ThÞ Hoa", "Trần Thị Hoa", Encoding::Tcvn3),
            ("§Æng Quèc Kh¸nh", "Đặng Quốc Khánh", Encoding::Tcvn3),
            ("Nguyeãn Vaên A", "Nguyễn Văn A", Encoding::Vni),
            ("Traàn Thò Hoa", "Trần Thị Hoa", Encoding::Vni),
            ("Ñoã Ñöùc Tröôøng", "Đỗ Đức Trường", Encoding::Vni),
            ("Nguyeenx Vawn Thij", "Nguyễn Văn Thị", Encoding::Telex),
            ("ddaof", "đào", Encoding::Telex),
            ("Truwowngf", "Trường", Encoding::Telex),
            ("Nguye6n4 Va8n", "Nguyễn Văn", Encoding::VniTyping),
            ("d9", "đ", Encoding::VniTyping),
            ("Hoa2 An1", "Hòa Án", Encoding::VniTyping),
            // one weak word (a doubling or one s/r/x tone key) converts only beside a strong one
            ("Lys Khuee Nguyeenx", "Lý Khuê Nguyễn", Encoding::Telex),
        ];
        for (input, want, enc) in cases {
            assert_eq!(repair(input), Repaired { text: want.into(), applied: Some(enc) }, "{input}");
        }
    }

    #[test]
    fn leaves_correct_and_plain_text_alone() {
        for s in [
            "Nguyen Van An",
            "Hoa",
            "Lee",
            "Tuan",
            "Sơn",
            "Hoàng",
            "Tô Lâm",
            "Lê Thị Hoà",
            "TÔ VĂN TÂN",
            "LÊ",
            "H'Hen Niê",
            "Ksor Y Moan",
            "Max Müller",
            "José André",
            "Thomas Lee",
            "Lys Khuee",
            "Chris Jones",
            "Lô A1",
            "An1",
            "Phòng 12B",
            "",
            "   ",
            "Nguyễn Văn An",
            "Trần Thị Bích Ngọc",
        ] {
            assert_eq!(repair(s), Repaired { text: s.into(), applied: None }, "{s}");
        }
    }

    #[test]
    fn syllable_check() {
        for ok in ["Nguyễn", "trường", "khuya", "quốc", "gì", "giữa", "Hòa", "hoà", "thuỷ", "nghĩa", "oanh", "yến"]
        {
            assert!(is_syllable(ok), "{ok}");
        }
        // tone not allowed with a stop final, impossible initial/final, two tones
        for bad in ["tàc", "mảt", "ngế", "cinh", "sáx", "trươ", "nguyen", "xyz", "ắ", "áà", "Lee", "Ksor", "ka", "ghan"]
        {
            assert!(!is_syllable(bad), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = repair(&s);
        }

        #[test]
        fn never_panics_on_legacy_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..30)) {
            let s: String = bytes.iter().map(|b| cp1252_char(*b)).collect();
            let _ = repair(&s);
        }

        #[test]
        fn unicode_names_are_unchanged(i in 0usize..16, j in 0usize..16) {
            let s = format!("{} {}", SYLLABLE_NAMES[i], SYLLABLE_NAMES[j]);
            prop_assert_eq!(repair(&s), Repaired { text: s.clone(), applied: None });
        }

        #[test]
        fn unicode_syllables_are_unchanged(
            parts in proptest::collection::vec((0usize..28, 0usize..54, 0usize..9, 0usize..6, any::<bool>()), 1..4)
        ) {
            let mut words = Vec::new();
            for (i, n, f, t, caps) in parts {
                let initial: Vec<char> = INITIALS.get(i).copied().unwrap_or("").chars().collect();
                let nucleus = NUCLEI.iter().chain(NUCLEI_MORE.iter()).nth(n).unwrap().0;
                let coda = FINALS.get(f).copied().unwrap_or("");
                let letters: Vec<char> = initial.iter().copied().chain(nucleus.chars()).chain(coda.chars()).collect();
                if let Some(syl) = syllable_from(&letters, TONES[t]) {
                    let w: String = syl.render().into_iter().collect();
                    words.push(if caps { w.to_uppercase() } else { crate::text::proper_case(&w) });
                }
            }
            prop_assume!(!words.is_empty());
            let s = words.join(" ");
            prop_assert_eq!(repair(&s), Repaired { text: s.clone(), applied: None });
        }
    }
}
