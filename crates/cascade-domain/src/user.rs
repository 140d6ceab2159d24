//! Users (staff logins) of an account.

use crate::account::{Email, Language};
use crate::clock::Timestamp;
use crate::ids::{AccountId, UserId};
use crate::validation::{FieldError, ValidationErrors, bounded_text};
use serde::{Deserialize, Serialize};

/// A login name: 3–100 characters of lower-case letters, digits and `. _ - @ +`.
/// Logins are unique across the installation and compared in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Login(String);

impl Login {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let s = s.trim().to_lowercase();
        if !(3..=100).contains(&s.chars().count()) {
            return Err(FieldError::new(
                "",
                "invalid_login",
                "a login has 3 to 100 characters",
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
        {
            return Err(FieldError::new(
                "",
                "invalid_login",
                "a login uses letters, digits and . _ - @ + only",
            ));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const PASSWORD_MIN: usize = 10;
pub const PASSWORD_MAX: usize = 1024;

/// Password policy: length only (NIST SP 800-63B): at least 10, at most 1024 characters.
pub fn check_password(p: &str) -> Result<(), FieldError> {
    let n = p.chars().count();
    if n < PASSWORD_MIN {
        return Err(FieldError::new(
            "",
            "password_too_short",
            format!("a password has at least {PASSWORD_MIN} characters"),
        ));
    }
    if n > PASSWORD_MAX {
        return Err(FieldError::new(
            "",
            "too_long",
            format!("a password has at most {PASSWORD_MAX} characters"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub account_id: AccountId,
    pub login: Login,
    pub display_name: String,
    pub email: Email,
    /// Preferred language; the account's language when unset.
    pub language: Option<Language>,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewUserInput {
    pub login: String,
    pub display_name: String,
    pub email: String,
    pub language: Option<String>,
    pub password: Option<String>,
}

/// A validated new user. The password, when given, is still plain text here; the
/// caller hashes it before storage and drops it.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub login: Login,
    pub display_name: String,
    pub email: Email,
    pub language: Option<Language>,
}

impl NewUserInput {
    pub fn validate(&self) -> Result<NewUser, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let login = errs.check("login", Login::parse(&self.login));
        let display_name = errs.check("display_name", bounded_text(&self.display_name, 200));
        let email = errs.check("email", Email::parse(&self.email));
        let language = match &self.language {
            Some(l) => errs.check("language", Language::parse(l)),
            None => None,
        };
        if let Some(p) = &self.password {
            errs.check("password", check_password(p));
        }
        errs.into_result()?;
        match (login, display_name, email) {
            (Some(login), Some(display_name), Some(email)) => Ok(NewUser {
                login,
                display_name,
                email,
                language,
            }),
            _ => Err(FieldError::new("", "invalid", "invalid user").into()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserPatchInput {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
}

impl UserPatchInput {
    pub fn apply(&self, current: &User) -> Result<User, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let mut next = current.clone();
        if let Some(v) = &self.display_name
            && let Some(v) = errs.check("display_name", bounded_text(v, 200))
        {
            next.display_name = v;
        }
        if let Some(v) = &self.email
            && let Some(v) = errs.check("email", Email::parse(v))
        {
            next.email = v;
        }
        if let Some(v) = &self.language
            && let Some(v) = errs.check("language", Language::parse(v))
        {
            next.language = Some(v);
        }
        errs.into_result().map(|_| next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_normalised_and_checked() {
        assert_eq!(
            Login::parse(" Alice@Example.com ").unwrap().as_str(),
            "alice@example.com"
        );
        assert!(Login::parse("ab").is_err());
        assert!(Login::parse("a b c").is_err());
        assert!(Login::parse(&"a".repeat(101)).is_err());
    }

    #[test]
    fn password_policy() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough pass").is_ok());
        assert_eq!(
            check_password(&"x".repeat(1025)).unwrap_err().code,
            "too_long"
        );
    }

    #[test]
    fn new_user_names_every_bad_field() {
        let e = NewUserInput {
            login: "x".into(),
            display_name: "".into(),
            email: "no".into(),
            language: Some("??".into()),
            password: Some("123".into()),
        }
        .validate()
        .unwrap_err();
        let f: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            f,
            vec!["login", "display_name", "email", "language", "password"]
        );
    }
}
