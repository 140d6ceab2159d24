//! `/api/v1/accounts/{id}/money-summary`: a seller's money at a glance — what it
//! invoiced this month (UTC, on the application clock) and what its invoices still have
//! open, per currency. The seller panel's dashboard shows exactly this.
//!
//! Who may read: the seller's own users and the sellers above it with `BILLING_VIEW` or
//! `BILLING_MANAGE` (`Action::ViewBilling`, like the seller's documents).

use super::ProblemResponses;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use cascade_domain::authz::Action;
use cascade_domain::ids::AccountId;
use cascade_store::money_figures::CurrencyTotal;
use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(money_summary))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyTotalOut {
    pub currency: String,
    /// How many invoices.
    pub count: i64,
    /// Their sum in minor units: invoice totals (revenue) or what is still open.
    pub amount_minor: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MoneySummaryOut {
    pub account_id: i64,
    /// The month of `revenue`, `YYYY-MM`.
    pub month: String,
    /// Invoices the seller issued this month, per currency.
    pub revenue: Vec<CurrencyTotalOut>,
    /// The seller's invoices with something still to pay, per currency.
    pub open_invoices: Vec<CurrencyTotalOut>,
}

fn out(v: Vec<CurrencyTotal>) -> Vec<CurrencyTotalOut> {
    v.into_iter()
        .map(|t| CurrencyTotalOut {
            currency: t.currency,
            count: t.count,
            amount_minor: t.minor,
        })
        .collect()
}

/// The first day of the month of `day` and of the month after.
pub fn month_bounds(day: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let first = day.with_day(1)?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    Some((first, next))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/money-summary", tag = "billing", params(("id" = i64, Path, description = "The seller")),
    responses((status = 200, body = MoneySummaryOut), ProblemResponses))]
pub(crate) async fn money_summary(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<MoneySummaryOut>> {
    let seller = AccountId(id);
    auth.check(&st, seller, Action::ViewBilling).await?;
    let today = chrono::DateTime::from_timestamp_micros(st.clock.now().0)
        .map(|d| d.date_naive())
        .ok_or_else(ApiError::internal)?;
    let (from, until) = month_bounds(today).ok_or_else(ApiError::internal)?;
    let docs = st.db.documents();
    let revenue = docs
        .invoiced_between(seller, &from.to_string(), &until.to_string())
        .await?;
    let open = docs.open_invoices(seller).await?;
    Ok(Json(MoneySummaryOut {
        account_id: id,
        month: from.format("%Y-%m").to_string(),
        revenue: out(revenue),
        open_invoices: out(open),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_bounds_cross_the_year_and_leap_days() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            month_bounds(d("2026-12-31")),
            Some((d("2026-12-01"), d("2027-01-01")))
        );
        assert_eq!(
            month_bounds(d("2028-02-29")),
            Some((d("2028-02-01"), d("2028-03-01")))
        );
        assert_eq!(
            month_bounds(d("2026-11-01")),
            Some((d("2026-11-01"), d("2026-12-01")))
        );
    }
}
