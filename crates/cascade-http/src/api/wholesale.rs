//! What a reseller owes its vendor and has not been invoiced yet: the wholesale rows
//! (one per order and reseller of the chain for SO and CH orders; for the daily run's
//! recurring charges, one per run, billed day, plan and reseller) that
//! its next tier invoice will bill on its statement day (`cascade_worker::tier_billing`).
//! Visible to whoever may see the reseller's billing (the reseller and the tiers above).

use super::{ProblemResponses, iso};
use crate::auth::Authed;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use cascade_domain::authz::Action;
use cascade_domain::ids::AccountId;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(uninvoiced))
}

/// One uninvoiced wholesale transaction.
#[derive(Debug, Serialize, ToSchema)]
pub struct UninvoicedOut {
    pub id: i64,
    /// The SO or CH order; absent on the daily run's consolidated recurring rows.
    pub order_id: Option<i64>,
    /// SO or CH; absent on recurring rows.
    pub order_type: Option<String>,
    pub subscription_id: Option<i64>,
    /// Recurring rows: the plan priced (the vendor's copy), the day billed, how many
    /// subscription periods the amount sums, and the invoice line's text.
    pub plan_id: Option<i64>,
    pub billed_on: Option<String>,
    pub periods: i64,
    pub description: Option<String>,
    /// The vendor that will invoice it.
    pub seller_account_id: i64,
    pub currency: String,
    pub amount_minor: i64,
    pub charge_key: String,
    pub created_at: String,
}

/// The total of one upcoming tier invoice.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpcomingOut {
    pub seller_account_id: i64,
    pub currency: String,
    pub total_minor: i64,
    pub transactions: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UninvoicedList {
    pub items: Vec<UninvoicedOut>,
    /// One per (vendor, currency): what the next tier invoice of each vendor will total.
    pub upcoming: Vec<UpcomingOut>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/wholesale/uninvoiced", tag = "billing", params(("id" = i64, Path, description = "A reseller")),
    responses((status = 200, body = UninvoicedList, description = "The reseller's wholesale transactions not invoiced yet, oldest first: what its vendors invoice on its next statement day"),
        ProblemResponses))]
pub(crate) async fn uninvoiced(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<UninvoicedList>> {
    auth.check(&st, AccountId(id), Action::ViewBilling).await?;
    let rows = st.db.wholesale().uninvoiced_of(AccountId(id)).await?;
    let mut upcoming: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
    for r in &rows {
        let e = upcoming
            .entry((r.seller.0, r.currency.clone()))
            .or_default();
        e.0 += r.amount_minor;
        e.1 += 1;
    }
    Ok(Json(UninvoicedList {
        items: rows
            .into_iter()
            .map(|r| UninvoicedOut {
                id: r.id,
                order_id: r.order_id,
                order_type: r.order_type,
                subscription_id: r.subscription_id,
                plan_id: r.plan_id,
                billed_on: r.billed_on,
                periods: r.periods,
                description: r.description,
                seller_account_id: r.seller.0,
                currency: r.currency,
                amount_minor: r.amount_minor,
                charge_key: r.charge_key,
                created_at: iso(r.created_at),
            })
            .collect(),
        upcoming: upcoming
            .into_iter()
            .map(|((seller, currency), (total, n))| UpcomingOut {
                seller_account_id: seller,
                currency,
                total_minor: total,
                transactions: n,
            })
            .collect(),
    }))
}
