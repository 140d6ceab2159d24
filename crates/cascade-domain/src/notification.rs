//! Notification templates: which events send mail, which variables each declares, and
//! the pure validation and rendering of a template (no I/O; storage, inheritance down
//! the reseller chain and SMTP delivery live in the store and the worker).
//!
//! **Engine: [`minijinja`].** Jinja syntax is what template authors (resellers'
//! marketing staff) are most likely to know; the crate is small, dependency-light,
//! maintained by Armin Ronacher (the author of Jinja2) and pure Rust without I/O, so
//! validation and rendering stay in this crate. Two of its features carry the design:
//! - [`minijinja::Template::undeclared_variables`] walks the parsed template and lists
//!   every variable it reads that the template does not set itself, so **saving** a
//!   template that uses a variable its event does not declare is refused with the
//!   variable's name, instead of producing a broken mail weeks later;
//! - [`minijinja::UndefinedBehavior::Strict`] at render time turns any remaining gap
//!   (a producer that forgot a variable) into an error rather than an empty string.
//!
//! Auto-escaping follows the part: the HTML body is HTML-escaped, subject and text body
//! are not (they are not HTML).

use crate::account::Language;
use crate::validation::{FieldError, ValidationErrors};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;

/// The events that send a notification. Each owns one template per seller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    OrderCompleted,
    InvoiceIssued,
    PaymentFailed,
    SuspensionDeadline,
    SubscriptionExpiring,
    PasswordReset,
    WelcomeUser,
    /// A subscription was suspended, resumed or terminated.
    SubscriptionStatus,
}

/// A variable an event offers its templates: name, meaning, and the sample value used by
/// previews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub description: &'static str,
    pub sample: &'static str,
}

/// A struct literal (not a `const fn` call) so arrays of them are promoted to `'static`.
macro_rules! var {
    ($name:expr, $description:expr, $sample:expr $(,)?) => {
        Variable {
            name: $name,
            description: $description,
            sample: $sample,
        }
    };
}

/// Variables every event offers.
const COMMON: &[Variable] = &[
    var!(
        "recipient_name",
        "Name of the person the mail is sent to",
        "Alice Martin",
    ),
    var!(
        "account_name",
        "Name of the account the mail is about",
        "Acme GmbH",
    ),
    var!(
        "seller_name",
        "Name of the seller whose template is used",
        "Cloud Reseller Ltd",
    ),
];

impl NotificationEvent {
    pub const ALL: [NotificationEvent; 8] = [
        NotificationEvent::OrderCompleted,
        NotificationEvent::InvoiceIssued,
        NotificationEvent::PaymentFailed,
        NotificationEvent::SuspensionDeadline,
        NotificationEvent::SubscriptionExpiring,
        NotificationEvent::PasswordReset,
        NotificationEvent::WelcomeUser,
        NotificationEvent::SubscriptionStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::OrderCompleted => "order_completed",
            NotificationEvent::InvoiceIssued => "invoice_issued",
            NotificationEvent::PaymentFailed => "payment_failed",
            NotificationEvent::SuspensionDeadline => "suspension_deadline",
            NotificationEvent::SubscriptionExpiring => "subscription_expiring",
            NotificationEvent::PasswordReset => "password_reset",
            NotificationEvent::WelcomeUser => "welcome_user",
            NotificationEvent::SubscriptionStatus => "subscription_status",
        }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "event",
                    "unknown_event",
                    format!(
                        "unknown notification event `{s}`; one of {}",
                        Self::ALL.map(|e| e.as_str()).join(", ")
                    ),
                )
            })
    }

    /// The variables of this event only (see [`Self::variables`] for all).
    fn own_variables(self) -> &'static [Variable] {
        match self {
            NotificationEvent::OrderCompleted => &[
                var!("order_id", "Order number", "1042"),
                var!("order_type", "SO (new), CH (change), CL (cancel)", "SO"),
            ],
            NotificationEvent::InvoiceIssued => &[
                var!("invoice_number", "Invoice number", "INV-2026-0042"),
                var!("amount", "Invoice total with currency", "119.00 EUR"),
                var!("due_date", "Payment due date", "2026-12-14"),
            ],
            NotificationEvent::PaymentFailed => &[
                var!(
                    "amount",
                    "Amount that was not paid, with currency",
                    "49.00 EUR"
                ),
                var!("reason", "Why the payment failed", "the card was declined"),
            ],
            NotificationEvent::SuspensionDeadline => &[
                var!("subscription_id", "Subscription number", "77"),
                var!(
                    "deadline",
                    "Date the service will be suspended",
                    "2026-12-20"
                ),
                var!("amount", "Amount due, with currency", "23.40 EUR"),
            ],
            NotificationEvent::SubscriptionExpiring => &[
                var!("subscription_id", "Subscription number", "77"),
                var!("plan_name", "Name of the plan", "Mail Pro"),
                var!("expires_on", "Date the subscription ends", "2026-12-31"),
            ],
            NotificationEvent::PasswordReset => &[
                var!("login", "Login of the user", "alice"),
                var!(
                    "token",
                    "Single-use reset token",
                    "prt_3q2-7wEvYk1dWQ0a9lZL",
                ),
                var!(
                    "expires_at",
                    "When the token expires (UTC)",
                    "2026-11-30 06:00 UTC",
                ),
            ],
            NotificationEvent::WelcomeUser => &[
                var!("login", "Login of the new user", "alice"),
                var!(
                    "display_name",
                    "Display name of the new user",
                    "Alice Martin"
                ),
                var!(
                    "email",
                    "Email address of the new user",
                    "alice@example.com"
                ),
            ],
            NotificationEvent::SubscriptionStatus => &[
                var!("subscription_id", "Subscription number", "77"),
                var!(
                    "change",
                    "What happened: suspended, resumed or terminated",
                    "suspended"
                ),
            ],
        }
    }

    /// Every variable a template of this event may use: the common ones, then its own.
    pub fn variables(self) -> Vec<Variable> {
        COMMON.iter().chain(self.own_variables()).copied().collect()
    }

    /// Sample values of every declared variable, for previews.
    pub fn sample_variables(self) -> Value {
        Value::Object(
            self.variables()
                .into_iter()
                .map(|v| (v.name.to_string(), Value::String(v.sample.to_string())))
                .collect::<Map<_, _>>(),
        )
    }

    /// The built-in English text, used where no seller up the chain has its own template.
    pub fn builtin(self) -> TemplateDoc {
        let (subject, text) = match self {
            NotificationEvent::OrderCompleted => (
                "Your order {{ order_id }} is complete",
                "Hello {{ recipient_name }},\n\nyour order {{ order_id }} for {{ account_name }} has been completed and the service is ready.\n\n{{ seller_name }}",
            ),
            NotificationEvent::InvoiceIssued => (
                "Invoice {{ invoice_number }}",
                "Hello {{ recipient_name }},\n\ninvoice {{ invoice_number }} of {{ amount }} is due on {{ due_date }}.\n\n{{ seller_name }}",
            ),
            NotificationEvent::PaymentFailed => (
                "Payment of {{ amount }} failed",
                "Hello {{ recipient_name }},\n\nwe could not collect {{ amount }} for {{ account_name }}: {{ reason }}.\nPlease update your payment details.\n\n{{ seller_name }}",
            ),
            NotificationEvent::SuspensionDeadline => (
                "Service suspension on {{ deadline }}",
                "Hello {{ recipient_name }},\n\n{{ amount }} is overdue; subscription {{ subscription_id }} will be suspended on {{ deadline }} unless it is paid.\n\n{{ seller_name }}",
            ),
            NotificationEvent::SubscriptionExpiring => (
                "Your subscription {{ plan_name }} expires on {{ expires_on }}",
                "Hello {{ recipient_name }},\n\nsubscription {{ subscription_id }} ({{ plan_name }}) expires on {{ expires_on }}.\n\n{{ seller_name }}",
            ),
            NotificationEvent::PasswordReset => (
                "Reset your password",
                "Hello {{ recipient_name }},\n\nsomeone asked to reset the password of login {{ login }}. Use this code to choose a new one before {{ expires_at }}:\n\n{{ token }}\n\nIf it was not you, ignore this mail.\n\n{{ seller_name }}",
            ),
            NotificationEvent::WelcomeUser => (
                "Welcome, {{ display_name }}",
                "Hello {{ display_name }},\n\nyour login {{ login }} is ready.\n\n{{ seller_name }}",
            ),
            NotificationEvent::SubscriptionStatus => (
                "Subscription {{ subscription_id }} {{ change }}",
                "Hello {{ recipient_name }},\n\nsubscription {{ subscription_id }} of {{ account_name }} has been {{ change }}.\n\n{{ seller_name }}",
            ),
        };
        TemplateDoc {
            default_language: "en".into(),
            texts: vec![TemplateText {
                language: "en".into(),
                subject: subject.into(),
                text: text.into(),
                html: None,
            }],
        }
    }
}

impl fmt::Display for NotificationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One language version of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateText {
    /// Canonical BCP 47 tag.
    pub language: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// A template: its language versions and the one used when the recipient's language is
/// missing. Always has a text in `default_language` once validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateDoc {
    pub default_language: String,
    pub texts: Vec<TemplateText>,
}

/// Unvalidated input of one language version.
#[derive(Debug, Clone, Default)]
pub struct TemplateTextInput {
    pub language: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Unvalidated template input, as an edit sends it.
#[derive(Debug, Clone, Default)]
pub struct TemplateInput {
    pub default_language: String,
    pub texts: Vec<TemplateTextInput>,
}

pub const MAX_SUBJECT_CHARS: usize = 255;
pub const MAX_BODY_CHARS: usize = 65_536;
pub const MAX_LANGUAGES: usize = 50;

/// Names a template may read without declaring them: the engine's built-in functions.
const ENGINE_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "loop"];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Check one template source: syntax, then every variable it reads is declared by the
/// event. Errors are reported on `field` and name the offending variable.
fn check_source(
    env: &Environment<'_>,
    event: NotificationEvent,
    field: &str,
    name: &str,
    source: &str,
    errors: &mut ValidationErrors,
) {
    let tmpl = match env.template_from_named_str(name, source) {
        Ok(t) => t,
        Err(e) => {
            let line = e.line().map(|l| format!(" (line {l})")).unwrap_or_default();
            errors.push(FieldError::new(
                field,
                "template_syntax",
                format!(
                    "template syntax error{line}: {}",
                    e.detail().unwrap_or("invalid template")
                ),
            ));
            return;
        }
    };
    let declared: BTreeSet<&str> = event.variables().iter().map(|v| v.name).collect();
    let used: BTreeSet<String> = tmpl.undeclared_variables(false).into_iter().collect();
    for name in used {
        if !declared.contains(name.as_str()) && !ENGINE_GLOBALS.contains(&name.as_str()) {
            errors.push(FieldError::new(
                field,
                "unknown_variable",
                format!(
                    "unknown variable `{name}`; {} declares: {}",
                    event,
                    event
                        .variables()
                        .iter()
                        .map(|v| v.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
}

/// Validate a template for `event`: languages well-formed and distinct, the default
/// language present, bounded non-empty subject (one line) and text, and every part
/// parses and uses only the event's variables.
pub fn validate(
    event: NotificationEvent,
    input: &TemplateInput,
) -> Result<TemplateDoc, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let env = environment();
    let default_language = errors.check(
        "default_language",
        Language::parse(&input.default_language).map(|l| l.as_str().to_string()),
    );
    if input.texts.is_empty() {
        errors.push(FieldError::new(
            "texts",
            "required",
            "at least one language version is required",
        ));
    }
    if input.texts.len() > MAX_LANGUAGES {
        errors.push(FieldError::new(
            "texts",
            "too_many",
            format!("at most {MAX_LANGUAGES} language versions"),
        ));
    }
    let mut texts = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in input.texts.iter().enumerate() {
        let at = |f: &str| format!("texts[{i}].{f}");
        let language = errors.check(
            &at("language"),
            Language::parse(&t.language).map(|l| l.as_str().to_string()),
        );
        if let Some(l) = &language
            && !seen.insert(l.clone())
        {
            errors.push(FieldError::new(
                at("language"),
                "duplicate_language",
                format!("language `{l}` is given twice"),
            ));
        }
        let subject = t.subject.trim();
        if subject.is_empty() {
            errors.push(FieldError::new(
                at("subject"),
                "required",
                "must not be empty",
            ));
        } else if subject.chars().count() > MAX_SUBJECT_CHARS {
            errors.push(FieldError::new(
                at("subject"),
                "too_long",
                format!("must be at most {MAX_SUBJECT_CHARS} characters"),
            ));
        } else if subject.chars().any(char::is_control) {
            errors.push(FieldError::new(
                at("subject"),
                "control_characters",
                "must be one line without control characters",
            ));
        } else {
            check_source(
                &env,
                event,
                &at("subject"),
                "subject.txt",
                subject,
                &mut errors,
            );
        }
        if t.text.trim().is_empty() {
            errors.push(FieldError::new(at("text"), "required", "must not be empty"));
        } else if t.text.chars().count() > MAX_BODY_CHARS {
            errors.push(FieldError::new(
                at("text"),
                "too_long",
                format!("must be at most {MAX_BODY_CHARS} characters"),
            ));
        } else {
            check_source(&env, event, &at("text"), "body.txt", &t.text, &mut errors);
        }
        let html = t.html.as_deref().filter(|h| !h.trim().is_empty());
        if let Some(h) = html {
            if h.chars().count() > MAX_BODY_CHARS {
                errors.push(FieldError::new(
                    at("html"),
                    "too_long",
                    format!("must be at most {MAX_BODY_CHARS} characters"),
                ));
            } else {
                check_source(&env, event, &at("html"), "body.html", h, &mut errors);
            }
        }
        if let Some(language) = language {
            texts.push(TemplateText {
                language,
                subject: subject.to_string(),
                text: t.text.clone(),
                html: html.map(str::to_string),
            });
        }
    }
    if let Some(d) = &default_language
        && !input.texts.is_empty()
        && !seen.contains(d)
    {
        errors.push(FieldError::new(
            "default_language",
            "missing_default_text",
            format!("no text is given in the default language `{d}`"),
        ));
    }
    errors.into_result()?;
    Ok(TemplateDoc {
        default_language: default_language.unwrap_or_default(),
        texts,
    })
}

impl TemplateDoc {
    /// The text to send to someone preferring `preferred` (first match wins, in order):
    /// the exact tag, then the same base language (`fr-CA` → `fr`, `fr` → `fr-CA`), then the
    /// default language, then the first text.
    pub fn pick(&self, preferred: &[&str]) -> Option<&TemplateText> {
        for p in preferred {
            let p = Language::parse(p).ok();
            let Some(p) = p else { continue };
            if let Some(t) = self.texts.iter().find(|t| t.language == p.as_str()) {
                return Some(t);
            }
            if let Some(t) = self
                .texts
                .iter()
                .find(|t| t.language.split('-').next() == Some(p.primary()))
            {
                return Some(t);
            }
        }
        self.texts
            .iter()
            .find(|t| t.language == self.default_language)
            .or(self.texts.first())
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub language: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Rendering failed: a variable the producer did not supply, or a runtime error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render the {part} of the template: {message}")]
pub struct RenderError {
    pub part: &'static str,
    pub message: String,
}

/// Render `text` with `vars` (an object). Strict: a missing variable is an error.
pub fn render(text: &TemplateText, vars: &Value) -> Result<Rendered, RenderError> {
    let env = environment();
    let one = |part: &'static str, name: &str, src: &str| {
        env.render_named_str(name, src, vars)
            .map_err(|e| RenderError {
                part,
                message: e.to_string(),
            })
    };
    let subject = one("subject", "subject.txt", &text.subject)?;
    Ok(Rendered {
        language: text.language.clone(),
        // A subject is one line whatever the variables hold.
        subject: subject.replace(['\r', '\n'], " "),
        text: one("text", "body.txt", &text.text)?,
        html: text
            .html
            .as_deref()
            .map(|h| one("html", "body.html", h))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(default: &str, texts: &[(&str, &str, &str)]) -> TemplateInput {
        TemplateInput {
            default_language: default.into(),
            texts: texts
                .iter()
                .map(|(l, s, t)| TemplateTextInput {
                    language: (*l).into(),
                    subject: (*s).into(),
                    text: (*t).into(),
                    html: None,
                })
                .collect(),
        }
    }

    #[test]
    fn every_builtin_template_is_valid_for_its_event() {
        for e in NotificationEvent::ALL {
            let b = e.builtin();
            let inp = input(
                &b.default_language,
                &[("en", &b.texts[0].subject, &b.texts[0].text)],
            );
            assert_eq!(validate(e, &inp).unwrap(), b, "{e}");
            render(&b.texts[0], &e.sample_variables()).unwrap();
        }
    }

    #[test]
    fn unknown_variable_is_named() {
        let err = validate(
            NotificationEvent::OrderCompleted,
            &input(
                "en",
                &[("en", "Order {{ order_id }}", "Total {{ invoice_total }}")],
            ),
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].field, "texts[0].text");
        assert_eq!(err.0[0].code, "unknown_variable");
        assert!(
            err.0[0].message.contains("`invoice_total`"),
            "{}",
            err.0[0].message
        );
    }

    #[test]
    fn variables_set_in_the_template_and_attributes_are_fine() {
        validate(
            NotificationEvent::OrderCompleted,
            &input(
                "en",
                &[(
                    "en",
                    "{{ order_id | upper }}",
                    "{% set n = order_id %}{{ n }} {% for c in order_type %}{{ c }}{% endfor %}",
                )],
            ),
        )
        .unwrap();
    }

    #[test]
    fn syntax_error_is_reported_on_the_field() {
        let err = validate(
            NotificationEvent::WelcomeUser,
            &input("en", &[("en", "Hi {{ login", "ok")]),
        )
        .unwrap_err();
        assert_eq!(
            (err.0[0].field.as_str(), err.0[0].code),
            ("texts[0].subject", "template_syntax")
        );
    }

    #[test]
    fn languages_are_checked() {
        let err = validate(
            NotificationEvent::WelcomeUser,
            &input(
                "de",
                &[("en", "a", "b"), ("EN", "a", "b"), ("not a tag", "a", "b")],
            ),
        )
        .unwrap_err();
        let codes: Vec<_> = err.0.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            codes,
            vec![
                ("texts[1].language", "duplicate_language"),
                ("texts[2].language", "invalid_language"),
                ("default_language", "missing_default_text"),
            ]
        );
    }

    #[test]
    fn pick_prefers_exact_then_base_then_default() {
        let doc = validate(
            NotificationEvent::WelcomeUser,
            &input(
                "en",
                &[("en", "en", "x"), ("fr", "fr", "x"), ("ar", "ar", "x")],
            ),
        )
        .unwrap();
        let pick = |p: &[&str]| doc.pick(p).unwrap().subject.clone();
        assert_eq!(pick(&["fr"]), "fr");
        assert_eq!(pick(&["fr-CA"]), "fr");
        assert_eq!(pick(&["de", "ar"]), "ar");
        assert_eq!(pick(&["de"]), "en");
        assert_eq!(pick(&[]), "en");
    }

    #[test]
    fn render_substitutes_and_escapes_html_only() {
        let t = TemplateText {
            language: "en".into(),
            subject: "Hi {{ display_name }}".into(),
            text: "<{{ display_name }}>".into(),
            html: Some("<p>{{ display_name }}</p>".into()),
        };
        let r = render(&t, &json!({"display_name": "A & B\nC"})).unwrap();
        assert_eq!(r.subject, "Hi A & B C");
        assert_eq!(r.text, "<A & B\nC>");
        assert_eq!(r.html.as_deref(), Some("<p>A &amp; B\nC</p>"));
        // Strict: a variable the producer did not supply is an error, not an empty string.
        assert_eq!(render(&t, &json!({})).unwrap_err().part, "subject");
    }
}
