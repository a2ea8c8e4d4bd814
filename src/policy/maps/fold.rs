//! Unicode full case folding (CaseFolding.txt statuses C and F), the fold
//! Postfix applies to fixed-string table keys when `smtputf8_enable = yes`
//! (it calls ICU's `u_strFoldCase`). The folding of non-ASCII text is the
//! `unicase` crate's (`UniCase::to_folded_case`: full folding, the same as
//! ICU4X's `CaseMapper::fold_string` on every code point); ASCII is handled
//! by a fast path.

use std::borrow::Cow;

/// Fold `s` the way Postfix folds fixed-table keys: ASCII lower case, plus
/// Unicode full case folding for non-ASCII text (`ß` → `ss`, `Σ`/`ς` → `σ`).
pub(crate) fn fold(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(s.to_ascii_lowercase());
        }
        return Cow::Borrowed(s);
    }
    let out = unicase::UniCase::unicode(s).to_folded_case();
    if out == s {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_single_and_multi_character_entries() {
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("ΣΑΣ ς"), "σασ σ");
        assert_eq!(fold("\u{fb03}"), "ffi");
        assert_eq!(fold("\u{390}"), "\u{3b9}\u{308}\u{301}");
        assert_eq!(fold("\u{212a}"), "k");
        assert_eq!(fold("\u{1e921}"), "\u{1e943}");
        assert!(matches!(fold("plain ascii"), Cow::Borrowed(_)));
        assert!(matches!(fold("schon gefaltet: straße"), Cow::Owned(_)));
        assert!(matches!(fold("\u{3c3}\u{3b1}"), Cow::Borrowed(_)));
    }

    /// Folding is idempotent on every code point: a folded key looked up
    /// again (a cdb index of folded keys) finds itself.
    #[test]
    fn folding_a_folded_key_changes_nothing() {
        for c in (0x80..=0x10ffff).filter_map(char::from_u32) {
            let once = fold(c.encode_utf8(&mut [0; 4])).into_owned();
            assert_eq!(fold(&once), once, "U+{:04X}", c as u32);
        }
    }
}
