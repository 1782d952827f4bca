//! Vietnamese text: NFC storage form, accent-folded search keys, proper case.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// The storage form of any text: Unicode NFC, trimmed, inner whitespace collapsed to one space.
pub fn clean(s: &str) -> String {
    if is_nfc(s) {
        return collapse_ws(s);
    }
    let nfc: String = s.nfc().collect();
    collapse_ws(&nfc)
}

/// Whether `s` is certainly NFC already (ASCII, or the quick check's "yes"): then normalizing it
/// would give it back unchanged, and is skipped.
pub(crate) fn is_nfc(s: &str) -> bool {
    s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes
}

fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Accent-folded search key: lower case, every diacritic removed, đ/Đ → d, whitespace collapsed.
///
/// Both tone-mark placements ("Hoà" and "Hòa", "Thuỷ" and "Thủy") fold to the same key,
/// as do decomposed and precomposed input.
pub fn fold(s: &str) -> String {
    if s.is_ascii() { fold_ascii(s) } else { fold_unicode(s) }
}

/// [`fold`] of ASCII text: lower case, whitespace collapsed (nothing to decompose).
fn fold_ascii(s: &str) -> String {
    let mut out = collapse_ws(s);
    out.make_ascii_lowercase();
    out
}

fn fold_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.nfd() {
        if is_combining_mark(c) {
            continue;
        }
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        match c {
            'đ' | 'Đ' | 'ð' | 'Ð' => out.push('d'),
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Proper case for a Vietnamese name: each word starts with an upper-case letter, the rest lower case.
/// `"NGUYỄN văn AN"` → `"Nguyễn Văn An"`. The result is NFC.
pub fn proper_case(s: &str) -> String {
    let cleaned = clean(s);
    let mut out = String::with_capacity(cleaned.len());
    let mut start = true;
    for c in cleaned.chars() {
        if c == ' ' || c == '-' {
            out.push(c);
            start = true;
        } else if start {
            out.extend(c.to_uppercase());
            start = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    if is_nfc(&out) { out } else { out.nfc().collect() }
}

/// Whether a cleaned name part contains only letters (with their marks), spaces, hyphens and apostrophes.
pub fn is_name_text(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| is_letter(c) || is_combining_mark(c) || c == ' ' || c == '-' || c == '\'')
}

/// `char::is_alphabetic`, answered without Unicode's tables for the Latin letters Vietnamese is
/// written in (Latin-1 but for × and ÷, Latin Extended-A and -B, Latin Extended Additional).
pub fn is_letter(c: char) -> bool {
    match c as u32 {
        0..=0x7F => c.is_ascii_alphabetic(),
        0xD7 | 0xF7 => false,
        0xC0..=0x24F | 0x1E00..=0x1EFF => true,
        _ => c.is_alphabetic(),
    }
}

/// The smallest string greater than every string that starts with `prefix`
/// (for index range scans: `key >= prefix AND key < prefix_upper_bound(prefix)`).
pub fn prefix_upper_bound(prefix: &str) -> String {
    let mut s = prefix.to_string();
    s.push(char::MAX);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folds_d_and_both_tone_placements() {
        assert_eq!(fold("Đặng Thị Hoà"), "dang thi hoa");
        assert_eq!(fold("Hòa"), fold("Hoà"));
        assert_eq!(fold("Thuỷ"), fold("Thủy"));
        assert_eq!(fold("  NGUYỄN   Văn\tAn "), "nguyen van an");
        // decomposed input folds the same as precomposed
        let decomposed: String = "Nguyễn".nfd().collect();
        assert_ne!(decomposed, "Nguyễn");
        assert_eq!(fold(&decomposed), "nguyen");
    }

    #[test]
    fn folding_is_not_lossy_beyond_marks() {
        assert_ne!(fold("Tuấn"), fold("Tuân Anh"));
        assert_eq!(fold("Ư Ơ Ă Â Ê Ô"), "u o a a e o");
    }

    #[test]
    fn clean_is_nfc() {
        let decomposed: String = "Lê Thị Ánh".nfd().collect();
        assert_eq!(clean(&decomposed), "Lê Thị Ánh");
    }

    #[test]
    fn proper_case_names() {
        assert_eq!(proper_case("NGUYỄN văn AN"), "Nguyễn Văn An");
        assert_eq!(proper_case("đỗ thị thu-hà"), "Đỗ Thị Thu-Hà");
    }

    #[test]
    fn name_text() {
        assert!(is_name_text("Nguyễn Văn An"));
        assert!(is_name_text("H'Hen Niê"));
        assert!(!is_name_text("An1"));
        assert!(!is_name_text(""));
        assert!(!is_name_text("<script>"));
        for c in (0..0x2000).filter_map(char::from_u32) {
            assert_eq!(is_letter(c), c.is_alphabetic(), "{c:?}");
        }
    }

    proptest! {
        #[test]
        fn fold_is_idempotent(s in "\\PC{0,40}") {
            let once = fold(&s);
            prop_assert_eq!(fold(&once), once.clone());
        }

        #[test]
        fn the_shortcuts_give_what_the_general_paths_give(s in "[ -~\t\x0b\n]{0,40}", t in "\\PC{0,40}") {
            prop_assert_eq!(fold_ascii(&s), fold_unicode(&s));
            let nfc: String = t.nfc().collect();
            prop_assert_eq!(clean(&t), collapse_ws(&nfc));
            let decomposed: String = t.nfd().collect();
            let nfc: String = decomposed.nfc().collect();
            prop_assert_eq!(clean(&decomposed), collapse_ws(&nfc));
        }

        #[test]
        fn fold_ignores_normal_form(s in "[a-zA-Zàáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ ]{0,30}") {
            let nfd: String = s.nfd().collect();
            let nfc: String = s.nfc().collect();
            prop_assert_eq!(fold(&nfd), fold(&nfc));
        }

        #[test]
        fn folded_keys_are_ascii_for_vietnamese(s in "[a-zA-ZàáảãạăằắẳẵặâầấẩẫậđĐèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ ]{0,30}") {
            prop_assert!(fold(&s).is_ascii());
        }
    }
}
