//! The translation catalog: every word the panels and the store show goes through it.
//!
//! One plain `key = text` file per language (`i18n/en.txt`, `fr.txt`, `ar.txt`), compiled
//! into the binary with `include_str!`. Why not Fluent: the panels need keyed strings with
//! named `{placeholders}` and nothing else (no plural rules yet, no selectors), and a
//! twenty-line reader keeps the dependency tree and the build small; the files are
//! Fluent-compatible in spirit (one message per line, `{name}` variables) so moving to
//! `fluent-bundle` later is a mechanical change. A key missing in a language falls back to
//! English; a test checks that every key exists in every language, so the fallback is a
//! safety net, not a habit. Right-to-left languages are listed in [`is_rtl`].

use std::collections::HashMap;
use std::sync::OnceLock;

/// The languages the panels are shipped in: tag, and its name in itself.
pub const LANGUAGES: [(&str, &str); 3] = [("en", "English"), ("fr", "Français"), ("ar", "العربية")];

const SOURCES: [(&str, &str); 3] = [
    ("en", include_str!("i18n/en.txt")),
    ("fr", include_str!("i18n/fr.txt")),
    ("ar", include_str!("i18n/ar.txt")),
];

/// Messages of one language.
#[derive(Debug, Default)]
pub struct Catalog {
    pub lang: &'static str,
    messages: HashMap<String, String>,
}

fn parse(src: &str) -> HashMap<String, String> {
    src.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn all() -> &'static HashMap<&'static str, Catalog> {
    static ALL: OnceLock<HashMap<&'static str, Catalog>> = OnceLock::new();
    ALL.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(lang, src)| {
                (
                    *lang,
                    Catalog {
                        lang,
                        messages: parse(src),
                    },
                )
            })
            .collect()
    })
}

/// The catalog of a supported language (English for anything else).
pub fn catalog(lang: &str) -> &'static Catalog {
    let all = all();
    all.get(lang).unwrap_or_else(|| &all["en"])
}

/// The supported language a BCP 47 tag (or an `Accept-Language` entry) maps to, if any.
pub fn supported(tag: &str) -> Option<&'static str> {
    let primary = tag
        .split([';', ',', '-', '_'])
        .next()?
        .trim()
        .to_ascii_lowercase();
    LANGUAGES.iter().map(|(l, _)| *l).find(|l| *l == primary)
}

/// Scripts written right to left: the whole layout mirrors.
pub fn is_rtl(lang: &str) -> bool {
    matches!(lang, "ar" | "he" | "fa" | "ur")
}

impl Catalog {
    /// The text of `key`; English when this language lacks it; the key itself when even
    /// English does (visible in review, never a panic).
    pub fn t<'a>(&'a self, key: &'a str) -> &'a str {
        self.messages
            .get(key)
            .or_else(|| all()["en"].messages.get(key))
            .map(String::as_str)
            .unwrap_or(key)
    }

    /// A status, payment method or other machine word (`active`, `waiting_for_payment`,
    /// `issued`, `card` …) in this language: the `status.{word}` message; the word itself
    /// when the catalog has none (a new status shows up untranslated, never as a key).
    pub fn status<'a>(&'a self, word: &'a str) -> &'a str {
        let key = format!("status.{word}");
        self.messages
            .get(&key)
            .or_else(|| all()["en"].messages.get(&key))
            .map(String::as_str)
            .unwrap_or(word)
    }

    /// The text of `key` with `{name}` placeholders filled in.
    pub fn f(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = self.t(key).to_string();
        for (name, value) in args {
            s = s.replace(&format!("{{{name}}}"), value);
        }
        s
    }

    pub fn dir(&self) -> &'static str {
        if is_rtl(self.lang) { "rtl" } else { "ltr" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_exists_in_every_language() {
        let en = &all()["en"];
        assert!(en.messages.len() > 50, "the English catalog is loaded");
        for (lang, _) in LANGUAGES {
            let c = &all()[lang];
            let mut missing: Vec<_> = en
                .messages
                .keys()
                .filter(|k| !c.messages.contains_key(*k))
                .collect();
            missing.sort();
            assert!(missing.is_empty(), "{lang} lacks {missing:?}");
            let mut extra: Vec<_> = c
                .messages
                .keys()
                .filter(|k| !en.messages.contains_key(*k))
                .collect();
            extra.sort();
            assert!(extra.is_empty(), "{lang} has keys English lacks: {extra:?}");
            for (k, v) in &c.messages {
                assert!(!v.is_empty(), "{lang}: {k} is empty");
            }
        }
    }

    #[test]
    fn fallback_and_placeholders() {
        let fr = catalog("fr");
        assert_eq!(fr.t("no.such.key"), "no.such.key");
        assert_eq!(catalog("xx").lang, "en");
        assert_eq!(supported("fr-CA"), Some("fr"));
        assert_eq!(supported("ar"), Some("ar"));
        assert_eq!(supported("de"), None);
        assert!(is_rtl("ar") && !is_rtl("fr"));
        assert_eq!(catalog("ar").dir(), "rtl");
        assert_eq!(catalog("ar").status("waiting_for_payment"), "بانتظار الدفع");
        assert_eq!(catalog("fr").status("issued"), "émise");
        assert_eq!(catalog("fr").status("no_such_status"), "no_such_status");
        let s = catalog("en").f("home.order_waits", &[("number", "7"), ("amount", "1 EUR")]);
        assert!(s.contains('7') && s.contains("1 EUR"), "{s}");
    }
}
