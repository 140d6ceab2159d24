//! Exact money. Amounts are integers in the currency's minor unit (cents for USD, none
//! for JPY); every amount carries its currency and arithmetic across currencies is an
//! error, never a silent conversion. Floats never touch money.

use crate::validation::FieldError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An ISO 4217 currency, validated against the standard's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, FieldError> {
        let code = code.trim();
        if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(FieldError::new(
                "",
                "invalid_currency",
                "must be an ISO 4217 code in upper case, e.g. EUR",
            ));
        }
        iso_currency::Currency::from_code(code)
            .map(Currency)
            .ok_or_else(|| {
                FieldError::new(
                    "",
                    "invalid_currency",
                    format!("unknown ISO 4217 currency `{code}`"),
                )
            })
    }
    pub fn code(&self) -> &'static str {
        self.0.code()
    }
    /// Number of decimal places of the minor unit (2 for EUR, 0 for JPY, 3 for KWD).
    pub fn minor_digits(&self) -> u32 {
        self.0.exponent().map(u32::from).unwrap_or(0)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// Errors of money arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount overflow")]
    Overflow,
}

/// An exact amount in minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Amount in minor units (e.g. cents).
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }
    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_add(other.minor)
            .map(|m| Money::new(m, self.currency))
            .ok_or(MoneyError::Overflow)
    }
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_sub(other.minor)
            .map(|m| Money::new(m, self.currency))
            .ok_or(MoneyError::Overflow)
    }
    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl fmt::Display for Money {
    /// Formats as a plain decimal with the currency code, e.g. `12.50 EUR`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.currency.minor_digits();
        if digits == 0 {
            return write!(f, "{} {}", self.minor, self.currency);
        }
        let scale = 10i64.pow(digits);
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            abs / scale as u64,
            abs % scale as u64,
            self.currency,
            width = digits as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn currency_parsing() {
        assert_eq!(Currency::parse("JPY").unwrap().minor_digits(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_digits(), 3);
        assert_eq!(Currency::parse("eur").unwrap_err().code, "invalid_currency");
        assert_eq!(Currency::parse("XYZ").unwrap_err().code, "invalid_currency");
    }

    #[test]
    fn display_is_exact() {
        assert_eq!(Money::new(-1205, eur()).to_string(), "-12.05 EUR");
        assert_eq!(
            Money::new(7, Currency::parse("KWD").unwrap()).to_string(),
            "0.007 KWD"
        );
        assert_eq!(
            Money::new(1500, Currency::parse("JPY").unwrap()).to_string(),
            "1500 JPY"
        );
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let usd = Currency::parse("USD").unwrap();
        assert!(matches!(
            Money::new(1, eur()).checked_add(Money::new(1, usd)),
            Err(MoneyError::CurrencyMismatch(..))
        ));
    }

    proptest! {
        #[test]
        fn add_then_sub_round_trips(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000) {
            let x = Money::new(a, eur());
            let y = Money::new(b, eur());
            prop_assert_eq!(x.checked_add(y).unwrap().checked_sub(y).unwrap(), x);
        }
    }
}
