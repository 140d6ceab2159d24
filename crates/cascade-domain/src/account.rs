//! The account tree: one provider at the root, resellers at any depth below it, and
//! customers under the provider or any reseller. Each account's *vendor* is its parent.

use crate::ids::{AccountId, CustomerClassId};
use crate::money::Currency;
use crate::validation::{FieldError, ValidationErrors, bounded_text, optional_text};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Provider,
    Reseller,
    Customer,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Provider => "provider",
            AccountKind::Reseller => "reseller",
            AccountKind::Customer => "customer",
        }
    }
    /// Sellers (provider, resellers) have their own catalog and may have accounts below them.
    pub fn is_seller(self) -> bool {
        !matches!(self, AccountKind::Customer)
    }
}

impl FromStr for AccountKind {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provider" => Ok(Self::Provider),
            "reseller" => Ok(Self::Reseller),
            "customer" => Ok(Self::Customer),
            _ => Err(FieldError::new(
                "kind",
                "invalid_kind",
                format!("unknown account kind `{s}`"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    /// Held automatically by credit terms (unpaid invoices, credit limit).
    CreditHold,
    /// Held by a person of the vendor.
    AdminHold,
    Cancelled,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::CreditHold => "credit_hold",
            AccountStatus::AdminHold => "admin_hold",
            AccountStatus::Cancelled => "cancelled",
        }
    }
    pub fn is_on_hold(self) -> bool {
        matches!(self, AccountStatus::CreditHold | AccountStatus::AdminHold)
    }

    /// The account status machine: holds are entered from and released to `active`;
    /// `cancelled` is final. Staying in the same state is not a transition.
    pub fn transition(self, to: AccountStatus) -> Result<AccountStatus, FieldError> {
        use AccountStatus::*;
        let ok = matches!(
            (self, to),
            (Active, CreditHold)
                | (Active, AdminHold)
                | (CreditHold, Active)
                | (AdminHold, Active)
                | (CreditHold, AdminHold)
                | (AdminHold, CreditHold)
                | (Active, Cancelled)
                | (CreditHold, Cancelled)
                | (AdminHold, Cancelled)
        );
        if ok {
            Ok(to)
        } else {
            Err(FieldError::new(
                "status",
                "invalid_status_transition",
                format!(
                    "an account cannot go from `{}` to `{}`",
                    self.as_str(),
                    to.as_str()
                ),
            ))
        }
    }
}

impl FromStr for AccountStatus {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "credit_hold" => Ok(Self::CreditHold),
            "admin_hold" => Ok(Self::AdminHold),
            "cancelled" => Ok(Self::Cancelled),
            _ => Err(FieldError::new(
                "status",
                "invalid_status",
                format!("unknown account status `{s}`"),
            )),
        }
    }
}

/// A syntactically valid email address (RFC 5322 addr-spec, as checked by `email_address`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let s = s.trim();
        if s.len() > 254 {
            return Err(FieldError::new(
                "",
                "too_long",
                "an email address has at most 254 characters",
            ));
        }
        if !email_address::EmailAddress::is_valid(s) || !s.contains('.') {
            return Err(FieldError::new(
                "",
                "invalid_email",
                format!("`{s}` is not a valid email address"),
            ));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Country(String);

impl Country {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let s = s.trim();
        if s.len() == 2
            && s.chars().all(|c| c.is_ascii_uppercase())
            && isocountry::CountryCode::for_alpha2(s).is_ok()
        {
            Ok(Self(s.to_string()))
        } else {
            Err(FieldError::new(
                "",
                "invalid_country",
                format!("`{s}` is not an ISO 3166-1 alpha-2 country code, e.g. DE"),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A well-formed BCP 47 language tag in canonical case (`en`, `fr-CA`, `ar`, `zh-Hant-TW`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Language(String);

impl Language {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let s = s.trim();
        let err = || {
            FieldError::new(
                "",
                "invalid_language",
                format!("`{s}` is not a BCP 47 language tag, e.g. en or fr-CA"),
            )
        };
        if s.is_empty() || s.len() > 35 {
            return Err(err());
        }
        let tag = language_tags::LanguageTag::parse(s).map_err(|_| err())?;
        if tag.primary_language().len() > 3 || tag.primary_language().len() < 2 {
            return Err(err());
        }
        // Canonical case: language lower, script title, region upper.
        let mut out = tag.primary_language().to_ascii_lowercase();
        if let Some(script) = tag.script() {
            let mut c = script.to_ascii_lowercase();
            c[..1].make_ascii_uppercase();
            out.push('-');
            out.push_str(&c);
        }
        if let Some(region) = tag.region() {
            out.push('-');
            out.push_str(&region.to_ascii_uppercase());
        }
        for v in tag.variant_subtags() {
            out.push('-');
            out.push_str(&v.to_ascii_lowercase());
        }
        Ok(Self(out))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The base language (`fr` of `fr-CA`).
    pub fn primary(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
    /// Whether text in this language is written right to left.
    pub fn is_rtl(&self) -> bool {
        matches!(
            self.primary(),
            "ar" | "he" | "fa" | "ur" | "ps" | "yi" | "dv" | "ku" | "sd" | "ug"
        )
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in international form: `+`, then 6–15 digits, optional spaces, dashes, dots.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let s = s.trim();
        let digits = s.chars().filter(char::is_ascii_digit).count();
        let ok = s.starts_with('+')
            && s[1..]
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
            && (6..=15).contains(&digits);
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(FieldError::new(
                "",
                "invalid_phone",
                "must be an international number such as +49 30 1234567",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Postal address and tax identity of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub tax_id: Option<String>,
}

/// Raw contact data as it comes from the edge.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContactInput {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub tax_id: Option<String>,
}

impl ContactInput {
    pub fn parse(&self, errs: &mut ValidationErrors, prefix: &str) -> Contact {
        let f = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        Contact {
            email: self
                .email
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .and_then(|s| errs.check(&f("email"), Email::parse(s))),
            phone: self
                .phone
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .and_then(|s| errs.check(&f("phone"), Phone::parse(s))),
            address_line1: errs
                .check(
                    &f("address_line1"),
                    optional_text(self.address_line1.as_deref(), 200),
                )
                .flatten(),
            address_line2: errs
                .check(
                    &f("address_line2"),
                    optional_text(self.address_line2.as_deref(), 200),
                )
                .flatten(),
            city: errs
                .check(&f("city"), optional_text(self.city.as_deref(), 100))
                .flatten(),
            postal_code: errs
                .check(
                    &f("postal_code"),
                    optional_text(self.postal_code.as_deref(), 20),
                )
                .flatten(),
            tax_id: errs
                .check(&f("tax_id"), optional_text(self.tax_id.as_deref(), 50))
                .flatten(),
        }
    }
}

pub const ACCOUNT_NAME_MAX: usize = 200;

/// What the storage layer needs to know about the vendor an account is created under.
#[derive(Debug, Clone)]
pub struct VendorFacts {
    pub id: AccountId,
    pub kind: AccountKind,
    pub status: AccountStatus,
    pub currency: Currency,
}

/// A validated new account, ready to be written.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub kind: AccountKind,
    pub vendor_id: Option<AccountId>,
    pub name: String,
    pub contact: Contact,
    pub country: Country,
    pub language: Language,
    pub currency: Currency,
    pub customer_class_id: Option<CustomerClassId>,
}

/// Raw input for a new account.
#[derive(Debug, Clone)]
pub struct NewAccountInput {
    pub kind: AccountKind,
    pub name: String,
    pub contact: ContactInput,
    pub country: String,
    pub language: String,
    /// Defaults to the vendor's currency.
    pub currency: Option<String>,
    pub customer_class_id: Option<CustomerClassId>,
}

impl NewAccountInput {
    /// Validate an account to be created under `vendor` (`None` only for the provider).
    ///
    /// Rules: the provider is the root and has no vendor; every other account has a
    /// seller (provider or reseller) as vendor, which must not be cancelled; an account
    /// trades in its vendor's currency, because wholesale and retail amounts along one
    /// chain are never converted implicitly.
    pub fn validate(self, vendor: Option<&VendorFacts>) -> Result<NewAccount, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        match (self.kind, vendor) {
            (AccountKind::Provider, Some(_)) => errs.push(FieldError::new(
                "kind",
                "provider_is_root",
                "the provider is the root of the tree and is created with `cascade admin create-provider`",
            )),
            (AccountKind::Provider, None) => {}
            (_, None) => errs.push(FieldError::new("vendor_id", "required", "a reseller or customer needs a vendor")),
            (_, Some(v)) if !v.kind.is_seller() => errs.push(FieldError::new(
                "vendor_id",
                "vendor_not_seller",
                "a customer cannot have accounts below it; the vendor must be the provider or a reseller",
            )),
            (_, Some(v)) if v.status == AccountStatus::Cancelled => {
                errs.push(FieldError::new("vendor_id", "vendor_cancelled", "the vendor account is cancelled"))
            }
            _ => {}
        }
        let name = errs.check("name", bounded_text(&self.name, ACCOUNT_NAME_MAX));
        let contact = self.contact.parse(&mut errs, "contact");
        let country = errs.check("country", Country::parse(&self.country));
        let language = errs.check("language", Language::parse(&self.language));
        let currency = match (&self.currency, vendor) {
            (Some(c), v) => {
                let c = errs.check("currency", Currency::parse(c));
                if let (Some(c), Some(v)) = (c, v)
                    && c != v.currency
                {
                    errs.push(FieldError::new(
                        "currency",
                        "currency_mismatch",
                        format!(
                            "an account trades in its vendor's currency ({})",
                            v.currency
                        ),
                    ));
                }
                c
            }
            (None, Some(v)) => Some(v.currency),
            (None, None) => {
                errs.push(FieldError::new(
                    "currency",
                    "required",
                    "the provider needs a currency",
                ));
                None
            }
        };
        errs.into_result()?;
        // All `None`s above pushed an error, so these are present.
        match (name, country, language, currency) {
            (Some(name), Some(country), Some(language), Some(currency)) => Ok(NewAccount {
                kind: self.kind,
                vendor_id: vendor.map(|v| v.id),
                name,
                contact,
                country,
                language,
                currency,
                customer_class_id: self.customer_class_id,
            }),
            _ => Err(FieldError::new("", "invalid", "invalid account").into()),
        }
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub kind: AccountKind,
    pub vendor_id: Option<AccountId>,
    pub name: String,
    pub contact: Contact,
    pub country: Country,
    pub language: Language,
    pub currency: Currency,
    pub status: AccountStatus,
    pub customer_class_id: Option<CustomerClassId>,
    /// Distance from the provider: 0 for the provider, 1 for an L1 reseller or a direct customer.
    pub depth: u32,
    pub created_at: crate::clock::Timestamp,
    pub updated_at: crate::clock::Timestamp,
}

impl Account {
    pub fn facts(&self) -> VendorFacts {
        VendorFacts {
            id: self.id,
            kind: self.kind,
            status: self.status,
            currency: self.currency,
        }
    }
}

/// Raw input of a partial update; `None` leaves a field as it is, an empty string clears
/// an optional contact field.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccountPatchInput {
    pub name: Option<String>,
    pub contact: Option<ContactInput>,
    pub country: Option<String>,
    pub language: Option<String>,
    pub customer_class_id: Option<CustomerClassId>,
}

impl AccountPatchInput {
    /// Apply the patch to `current`, validating every supplied field.
    pub fn apply(self, current: &Account) -> Result<Account, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let mut next = current.clone();
        if let Some(n) = &self.name
            && let Some(n) = errs.check("name", bounded_text(n, ACCOUNT_NAME_MAX))
        {
            next.name = n;
        }
        if let Some(c) = &self.contact {
            // Fields not supplied keep their value.
            let merged = ContactInput {
                email: c.email.clone().or_else(|| {
                    current
                        .contact
                        .email
                        .as_ref()
                        .map(|e| e.as_str().to_string())
                }),
                phone: c.phone.clone().or_else(|| {
                    current
                        .contact
                        .phone
                        .as_ref()
                        .map(|e| e.as_str().to_string())
                }),
                address_line1: c
                    .address_line1
                    .clone()
                    .or_else(|| current.contact.address_line1.clone()),
                address_line2: c
                    .address_line2
                    .clone()
                    .or_else(|| current.contact.address_line2.clone()),
                city: c.city.clone().or_else(|| current.contact.city.clone()),
                postal_code: c
                    .postal_code
                    .clone()
                    .or_else(|| current.contact.postal_code.clone()),
                tax_id: c.tax_id.clone().or_else(|| current.contact.tax_id.clone()),
            };
            next.contact = merged.parse(&mut errs, "contact");
        }
        if let Some(c) = &self.country
            && let Some(c) = errs.check("country", Country::parse(c))
        {
            next.country = c;
        }
        if let Some(l) = &self.language
            && let Some(l) = errs.check("language", Language::parse(l))
        {
            next.language = l;
        }
        if let Some(cc) = self.customer_class_id {
            next.customer_class_id = Some(cc);
        }
        errs.into_result().map(|_| next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vendor(kind: AccountKind) -> VendorFacts {
        VendorFacts {
            id: AccountId(1),
            kind,
            status: AccountStatus::Active,
            currency: Currency::parse("EUR").unwrap(),
        }
    }

    fn input(kind: AccountKind) -> NewAccountInput {
        NewAccountInput {
            kind,
            name: "  Acme GmbH ".into(),
            contact: ContactInput {
                email: Some("ops@acme.example".into()),
                ..Default::default()
            },
            country: "DE".into(),
            language: "de".into(),
            currency: None,
            customer_class_id: None,
        }
    }

    #[test]
    fn languages_round_trip_including_rtl() {
        for tag in ["en", "fr", "fr-CA", "ar", "he", "fa", "zh-Hant-TW", "pt-BR"] {
            let l = Language::parse(tag).unwrap();
            assert_eq!(l.as_str(), tag);
        }
        assert_eq!(Language::parse("EN-us").unwrap().as_str(), "en-US");
        assert!(Language::parse("ar").unwrap().is_rtl());
        assert!(!Language::parse("fr").unwrap().is_rtl());
        for bad in ["", "e", "english!", "12", "en--US"] {
            assert_eq!(
                Language::parse(bad).unwrap_err().code,
                "invalid_language",
                "{bad}"
            );
        }
    }

    #[test]
    fn countries_and_emails() {
        assert!(Country::parse("FR").is_ok());
        assert!(Country::parse("XX").is_err());
        assert!(Country::parse("fr").is_err());
        assert!(Email::parse("a@b.example").is_ok());
        assert!(Email::parse("not-an-email").is_err());
        assert!(Phone::parse("+49 30 1234567").is_ok());
        assert!(Phone::parse("030 1234").is_err());
    }

    #[test]
    fn customer_takes_vendor_currency_and_trims_name() {
        let a = input(AccountKind::Customer)
            .validate(Some(&vendor(AccountKind::Reseller)))
            .unwrap();
        assert_eq!(a.currency.code(), "EUR");
        assert_eq!(a.name, "Acme GmbH");
        assert_eq!(a.vendor_id, Some(AccountId(1)));
    }

    #[test]
    fn tree_rules() {
        let e = input(AccountKind::Customer)
            .validate(Some(&vendor(AccountKind::Customer)))
            .unwrap_err();
        assert_eq!(e.0[0].code, "vendor_not_seller");
        let e = input(AccountKind::Provider)
            .validate(Some(&vendor(AccountKind::Provider)))
            .unwrap_err();
        assert_eq!(e.0[0].code, "provider_is_root");
        let e = input(AccountKind::Reseller).validate(None).unwrap_err();
        assert_eq!(e.0[0].field, "vendor_id");
        let mut i = input(AccountKind::Reseller);
        i.currency = Some("USD".into());
        assert_eq!(
            i.validate(Some(&vendor(AccountKind::Provider)))
                .unwrap_err()
                .0[0]
                .code,
            "currency_mismatch"
        );
    }

    #[test]
    fn all_field_errors_are_reported_together() {
        let mut i = input(AccountKind::Customer);
        i.name = "x".repeat(201);
        i.country = "Germany".into();
        i.language = "??".into();
        i.contact.email = Some("nope".into());
        let e = i
            .validate(Some(&vendor(AccountKind::Provider)))
            .unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["name", "contact.email", "country", "language"]);
    }

    #[test]
    fn status_machine() {
        use AccountStatus::*;
        assert!(Active.transition(AdminHold).is_ok());
        assert!(AdminHold.transition(Active).is_ok());
        assert!(Cancelled.transition(Active).is_err());
        assert!(Active.transition(Active).is_err());
    }
}
