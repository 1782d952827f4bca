//! A phonetic key for Vietnamese names: spellings that sound alike in some region, or that
//! are accepted variants of one another, get the same key.
//!
//! The key works on accent-folded text ([`crate::text::fold`]: marks removed, đ → d), so tone
//! marks, their placement ("Hoà"/"Hòa", "Thuỷ"/"Thủy") and a lost or wrong tone ("Nguyển")
//! never matter. Each syllable is split into onset and rhyme, and these classes are merged:
//!
//! | merged | key | why |
//! |---|---|---|
//! | d, gi, r | `D` | one sound /z/ in the North (Giang/Dang/Rang); gi before i/ê drops its i ("giêng" = gi + iêng) |
//! | ch, tr | `C` | one sound in the North (Trần/Chần) |
//! | s, x | `S` | one sound in the North (Xuân/Suân) |
//! | c, k, q | `K` | one sound /k/, spelled by the following vowel (qu → `Kw`) |
//! | ng, ngh | `ng` | spelling rule: ngh before i, e, ê |
//! | g, gh | `g` | spelling rule: gh before i, e, ê |
//! | ph, f | `F` | one sound; f appears in loan spellings |
//! | final ng, n | `n` | one sound in the South (Lan/Lang) |
//! | final c, t | `t` | one sound in the South (Phúc/Phút) |
//! | lone i, y | `i` | accepted spelling variants (Lý/Lí, Mỹ/Mĩ, Thy/Thi); "uy" and "ay" stay (Huy ≠ Hui, Hay ≠ Hai) |
//!
//! Not merged, on purpose: th/t and kh/k (distinct sounds: Thanh ≠ Tanh), v/d (Southern
//! /j/ for both, but Vân and Dân are common, distinct names), l/n (a minority dialect),
//! final nh/n (Thanh ≠ Than). Typos are for string similarity, not for this key.
//! Upper-case letters in a key mark a merged class, so a key never equals folded text by accident.

use crate::text;

/// The phonetic key of a name: one key per syllable, separated by single spaces.
///
/// Syllables are split on whitespace and on any character that is not a letter or digit
/// (hyphens, apostrophes).
pub fn name_key(name: &str) -> String {
    let folded = text::fold(name);
    let mut out = String::with_capacity(folded.len());
    for syllable in folded.split(|c: char| !c.is_alphanumeric()).filter(|s| !s.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&syllable_key(syllable));
    }
    out
}

/// The phonetic key of one folded syllable (lower case, no marks).
pub fn syllable_key(syllable: &str) -> String {
    let (onset, rhyme) = split_onset(syllable);
    let mut out = String::with_capacity(syllable.len() + 1);
    let starts_with_vowel = rhyme.chars().next().is_some_and(is_vowel);
    match onset {
        "gi" => {
            out.push('D');
            // "gi" + consonant or nothing keeps its i as the vowel (gìn, gì); before ê the
            // spelling drops the i of "iê" (giêng ~ diêng).
            if !starts_with_vowel || rhyme.starts_with('e') {
                out.push('i');
            }
        }
        "d" | "r" => out.push('D'),
        "ch" | "tr" => out.push('C'),
        "s" | "x" => out.push('S'),
        "c" | "k" | "q" => out.push('K'),
        "qu" => out.push_str("Kw"),
        "ngh" | "ng" => out.push_str("ng"),
        "gh" | "g" => out.push('g'),
        "ph" | "f" => out.push('F'),
        other => out.push_str(other),
    }
    out.push_str(&rhyme_key(rhyme));
    out
}

fn rhyme_key(rhyme: &str) -> String {
    if rhyme == "y" {
        return "i".into();
    }
    if let Some(stem) = rhyme.strip_suffix("ng")
        && stem.chars().next_back().is_some_and(is_vowel)
    {
        return format!("{stem}n");
    }
    if let Some(stem) = rhyme.strip_suffix('c')
        && stem.chars().next_back().is_some_and(is_vowel)
    {
        return format!("{stem}t");
    }
    rhyme.to_string()
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y')
}

/// Splits a folded syllable into its onset (initial consonant cluster, possibly empty) and rhyme.
fn split_onset(s: &str) -> (&str, &str) {
    const CLUSTERS: [&str; 11] = ["ngh", "ng", "gh", "gi", "nh", "kh", "ph", "th", "tr", "ch", "qu"];
    for c in CLUSTERS {
        // "gi" alone or before a consonant is still the onset gi (the i is its vowel).
        if let Some(rest) = s.strip_prefix(c)
            && (c != "qu" || !rest.is_empty())
        {
            return (c, rest);
        }
    }
    match s.chars().next() {
        Some(c) if c.is_ascii_alphabetic() && !is_vowel(c) => s.split_at(1),
        _ => ("", s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) {
        assert_eq!(name_key(a), name_key(b), "{a} ~ {b}");
    }
    fn differ(a: &str, b: &str) {
        assert_ne!(name_key(a), name_key(b), "{a} !~ {b}");
    }

    #[test]
    fn variant_spellings_match() {
        same("Nguyễn", "Nguyển");
        same("Nguyễn", "NGUYEN");
        same("Giang", "Dang");
        same("Giang", "Rang");
        same("Trần", "Chần");
        same("Xuân", "Suân");
        same("Quỳnh", "Quynh");
        same("Thủy", "Thuỷ");
        same("Hoà", "Hòa");
        same("Lý", "Lí");
        same("Mỹ", "Mĩ");
        same("Thy", "Thi");
        same("Nghiêm", "Ngiêm");
        same("Ghê", "Gê");
        same("Phương", "Fương");
        same("Cường", "Kường");
        same("Lan", "Lang");
        same("Phúc", "Phút");
        same("Giêng", "Diêng");
        same("Đặng Thị Giàu", "Dặng Thị Dàu");
        same("Trịnh Xuân Trường", "Chịnh Suân Chườn");
    }

    #[test]
    fn distinct_names_stay_apart() {
        differ("An", "Anh");
        differ("Minh", "Linh");
        differ("Thanh", "Tanh");
        differ("Thanh", "Than");
        differ("Huy", "Hui");
        differ("Hải", "Hay");
        differ("Vân", "Dân");
        differ("Khánh", "Cánh");
        differ("Trâm", "Tâm");
        differ("Giang", "Gang");
        differ("Gì", "Ghi");
        differ("Quân", "Cân");
        differ("Nguyễn Văn An", "Nguyễn An");
    }

    #[test]
    fn keys_are_per_syllable() {
        assert_eq!(name_key("Nguyễn Thị Thu-Hà"), "nguyen thi thu ha");
        assert_eq!(name_key("Giang"), "Dan");
        assert_eq!(name_key("Gì"), "Di");
        assert_eq!(name_key("Quỳnh"), "Kwynh");
        assert_eq!(name_key("H'Hen Niê"), "h hen nie");
        assert_eq!(name_key("  "), "");
    }
}
