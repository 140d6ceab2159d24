//! Validation errors that name the offending field and a stable rule code, so the HTTP
//! layer can answer with a problem document that tells the caller exactly what to fix.

use serde::Serialize;
use std::fmt;

/// One rule broken by one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `contact.email`.
    pub field: String,
    /// Stable machine code of the rule, e.g. `invalid_email`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }

    /// Re-root the error under a parent field (`email` → `contact.email`).
    pub fn under(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// A collection of field errors; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }
    /// Run a parser and keep its value, or record its error under `field`.
    pub fn check<T>(&mut self, field: &str, r: Result<T, FieldError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError {
                    field: field.to_string(),
                    ..e
                });
                None
            }
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl From<FieldError> for ValidationErrors {
    fn from(e: FieldError) -> Self {
        Self(vec![e])
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|e| e.to_string()).collect();
        write!(f, "{}", parts.join("; "))
    }
}

impl std::error::Error for ValidationErrors {}

/// A bounded, trimmed, non-empty single-line text.
pub fn bounded_text(value: &str, max_chars: usize) -> Result<String, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FieldError::new("", "required", "must not be empty"));
    }
    if v.chars().count() > max_chars {
        return Err(FieldError::new(
            "",
            "too_long",
            format!("must be at most {max_chars} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(FieldError::new(
            "",
            "control_characters",
            "must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

/// Like [`bounded_text`] but an empty value is allowed and becomes `None`.
pub fn optional_text(value: Option<&str>, max_chars: usize) -> Result<Option<String>, FieldError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => bounded_text(v, max_chars).map(Some),
    }
}
