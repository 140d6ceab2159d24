//! A seller's money at a glance (the panel dashboard): revenue invoiced in a date range
//! and invoices still open, per currency. Aggregates over the seller's own documents,
//! served by the `documents_issuer_issued` and `documents_issuer_open` indexes, so the
//! cost follows the seller's invoices in range, never the whole table.

use crate::documents::Documents;
use crate::{StoreResult, on_db};
use cascade_domain::ids::AccountId;

/// Amounts of one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyTotal {
    pub currency: String,
    /// How many documents.
    pub count: i64,
    /// Their sum, in minor units.
    pub minor: i64,
}

impl Documents<'_> {
    /// Totals of the invoices `issuer` issued from `from` (inclusive) to `until`
    /// (exclusive), dates as `YYYY-MM-DD`; per currency, by currency code.
    pub async fn invoiced_between(
        &self,
        issuer: AccountId,
        from: &str,
        until: &str,
    ) -> StoreResult<Vec<CurrencyTotal>> {
        let rows: Vec<(String, i64, Option<i64>)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT currency, COUNT(*), CAST(SUM(total_minor) AS BIGINT) FROM documents
             WHERE issuer_account_id = $1 AND kind = 'invoice' AND issue_date >= $2 AND issue_date < $3
               AND status = 'issued'
             GROUP BY currency ORDER BY currency")
            .bind(issuer.0).bind(from).bind(until).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(|(currency, count, minor)| CurrencyTotal {
                currency,
                count,
                minor: minor.unwrap_or(0),
            })
            .collect())
    }

    /// The invoices of `issuer` still (partly) unpaid: how many and what they still owe,
    /// per currency.
    pub async fn open_invoices(&self, issuer: AccountId) -> StoreResult<Vec<CurrencyTotal>> {
        let rows: Vec<(String, i64, Option<i64>)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT currency, COUNT(*), CAST(SUM(open_minor) AS BIGINT) FROM documents
             WHERE issuer_account_id = $1 AND kind = 'invoice' AND open_minor > 0 AND status = 'issued'
             GROUP BY currency ORDER BY currency")
            .bind(issuer.0).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(|(currency, count, minor)| CurrencyTotal {
                currency,
                count,
                minor: minor.unwrap_or(0),
            })
            .collect())
    }
}
