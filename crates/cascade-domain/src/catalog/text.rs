//! Multilingual text: a default language plus translations. Reads take a language and
//! fall back to its base language (`fr-CA` → `fr`), then to the default.

use crate::account::Language;
use crate::validation::{FieldError, ValidationErrors, bounded_text};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Localized {
    /// The language every read falls back to; always present in `values`.
    pub default: String,
    /// Language tag → text.
    pub values: BTreeMap<String, String>,
}

impl Localized {
    /// A text in one language.
    pub fn new(lang: &str, text: &str) -> Self {
        let mut values = BTreeMap::new();
        values.insert(lang.to_string(), text.to_string());
        Self {
            default: lang.to_string(),
            values,
        }
    }

    pub fn with(mut self, lang: &str, text: &str) -> Self {
        self.values.insert(lang.to_string(), text.to_string());
        self
    }

    /// The text in `lang`, else its base language, else the default.
    pub fn get(&self, lang: &str) -> &str {
        if let Some(v) = self.values.get(lang) {
            return v;
        }
        let base = lang.split('-').next().unwrap_or(lang);
        self.values
            .get(base)
            .or_else(|| self.values.get(&self.default))
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Validate and normalise: every tag a BCP 47 language, every text bounded and
    /// (when `required`) non-empty, the default present.
    pub fn parse(raw: &LocalizedInput, max_chars: usize) -> Result<Localized, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let default = errs.check("default", Language::parse(&raw.default));
        let mut values = BTreeMap::new();
        for (tag, text) in &raw.values {
            let field = format!("values.{tag}");
            let lang = errs.check(&field, Language::parse(tag));
            let text = errs.check(&field, bounded_text(text, max_chars));
            if let (Some(l), Some(t)) = (lang, text) {
                values.insert(l.as_str().to_string(), t);
            }
        }
        if let Some(d) = &default
            && !values.contains_key(d.as_str())
            && errs.is_empty()
        {
            errs.push(FieldError::new(
                "values",
                "default_missing",
                format!("a text in the default language `{d}` is required"),
            ));
        }
        errs.into_result()?;
        Ok(Localized {
            default: default.map(|d| d.as_str().to_string()).unwrap_or_default(),
            values,
        })
    }
}

/// Raw multilingual text from the edge: `{"default": "en", "values": {"en": "…", "ar": "…"}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalizedInput {
    pub default: String,
    pub values: BTreeMap<String, String>,
}

impl From<&Localized> for LocalizedInput {
    fn from(l: &Localized) -> Self {
        Self {
            default: l.default.clone(),
            values: l.values.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_order() {
        let t = Localized::new("en", "Mailbox")
            .with("fr", "Boîte aux lettres")
            .with("ar", "صندوق البريد");
        assert_eq!(t.get("fr-CA"), "Boîte aux lettres");
        assert_eq!(t.get("ar"), "صندوق البريد");
        assert_eq!(t.get("de"), "Mailbox");
    }

    #[test]
    fn rtl_and_other_tags_round_trip() {
        let mut values = BTreeMap::new();
        for (l, v) in [
            ("en", "Mail"),
            ("he", "דואר"),
            ("fa", "پست"),
            ("ar", "بريد"),
            ("zh-Hant", "郵件"),
        ] {
            values.insert(l.to_string(), v.to_string());
        }
        let parsed = Localized::parse(
            &LocalizedInput {
                default: "en".into(),
                values: values.clone(),
            },
            100,
        )
        .unwrap();
        assert_eq!(parsed.values, values);
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(serde_json::from_str::<Localized>(&json).unwrap(), parsed);
    }

    #[test]
    fn invalid_texts_name_the_language() {
        let mut values = BTreeMap::new();
        values.insert("xx-!!".to_string(), "a".to_string());
        values.insert("en".to_string(), "".to_string());
        let e = Localized::parse(
            &LocalizedInput {
                default: "en".into(),
                values,
            },
            10,
        )
        .unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.clone()).collect();
        assert!(
            fields.contains(&"values.xx-!!".to_string())
                && fields.contains(&"values.en".to_string()),
            "{fields:?}"
        );
        let e = Localized::parse(
            &LocalizedInput {
                default: "fr".into(),
                values: [("en".to_string(), "x".to_string())].into(),
            },
            10,
        )
        .unwrap_err();
        assert_eq!(e.0[0].code, "default_missing");
    }
}
