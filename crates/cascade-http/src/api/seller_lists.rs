//! A seller's lists across all its customers: `/api/v1/accounts/{id}/issued-invoices`
//! (every invoice the seller issued, to customers and resellers alike),
//! `/customer-orders` and `/customer-subscriptions` (what the seller's customers
//! bought from it), newest first, keyset-paginated. The seller panel's invoices, orders
//! and subscriptions pages show exactly these.
//!
//! Who may read: the seller's own users and the sellers above it, with the privileges
//! that let them read one account's documents (`Action::ViewBilling`) or orders
//! (`Action::ViewOrders`). A customer account has no such list: 404. What "needs
//! attention" means is the domain's rule (`OrderStatus::needs_attention`).

use super::{ProblemResponses, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiQuery, PageOut, PageParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use cascade_domain::account::AccountKind;
use cascade_domain::authz::Action;
use cascade_domain::billing::lifecycle::{OrderStatus, SubscriptionStatus};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_store::seller_lists::{InvoiceFilter, OrderFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issued_invoices))
        .routes(routes!(customer_orders))
        .routes(routes!(customer_subscriptions))
}

/// The seller `id`, readable by the caller for `action`; a customer account is a 404.
async fn seller(st: &AppState, auth: &Authed, id: i64, action: Action) -> ApiResult<AccountId> {
    auth.check(st, AccountId(id), action).await?;
    let acc = st.db.accounts().get(AccountId(id)).await?;
    if acc.kind == AccountKind::Customer {
        return Err(ApiError::not_found().detail("a customer sells nothing"));
    }
    Ok(acc.id)
}

fn page(limit: Option<i64>, cursor: &Option<String>) -> PageParams {
    PageParams {
        limit,
        cursor: cursor.clone(),
    }
}

fn today(st: &AppState) -> ApiResult<String> {
    chrono::DateTime::from_timestamp_micros(st.clock.now().0)
        .map(|d| d.date_naive().to_string())
        .ok_or_else(ApiError::internal)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvoiceListParams {
    /// `open` (something left to pay, overdue included), `overdue` (open after the due
    /// date) or `paid`; all by default.
    pub status: Option<String>,
    /// Part of the customer's name (case-insensitive).
    pub customer: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedInvoiceOut {
    pub id: i64,
    pub number: Option<String>,
    /// The customer (or reseller) billed.
    pub account_id: i64,
    pub customer_name: String,
    pub currency: String,
    pub total_minor: i64,
    pub open_minor: i64,
    pub issue_date: Option<String>,
    pub due_date: Option<String>,
    /// `open`, `overdue` or `paid`, on the application clock's today.
    pub status: String,
}

/// `open`, `overdue` or `paid` for an invoice on `today`.
fn invoice_status(open_minor: i64, due_date: Option<&str>, today: &str) -> &'static str {
    match (open_minor > 0, due_date) {
        (false, _) => "paid",
        (true, Some(due)) if due < today => "overdue",
        (true, _) => "open",
    }
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/issued-invoices", tag = "billing", params(("id" = i64, Path, description = "The seller"), InvoiceListParams),
    responses((status = 200, body = PageOut<IssuedInvoiceOut>, description = "The invoices the seller issued, newest first"), ProblemResponses))]
pub(crate) async fn issued_invoices(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<InvoiceListParams>,
) -> ApiResult<Json<PageOut<IssuedInvoiceOut>>> {
    let filter = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => InvoiceFilter::All,
        Some("open") => InvoiceFilter::Open,
        Some("overdue") => InvoiceFilter::Overdue,
        Some("paid") => InvoiceFilter::Paid,
        Some(_) => {
            return Err(ApiError::field(
                "status",
                "invalid_invoice_status",
                "open, overdue or paid",
            ));
        }
    };
    let p = page(q.limit, &q.cursor);
    let (limit, before) = (p.limit()?, p.after()?);
    let seller = seller(&st, &auth, id, Action::ViewBilling).await?;
    let today = today(&st)?;
    let list = st
        .db
        .documents()
        .issued_invoices(seller, filter, &today, q.customer.as_deref(), before, limit)
        .await?;
    let items = list
        .items
        .into_iter()
        .map(|d| IssuedInvoiceOut {
            status: invoice_status(d.open_minor, d.due_date.as_deref(), &today).into(),
            id: d.id,
            number: d.number,
            account_id: d.account_id,
            customer_name: d.customer_name,
            currency: d.currency,
            total_minor: d.total_minor,
            open_minor: d.open_minor,
            issue_date: d.issue_date,
            due_date: d.due_date,
        })
        .collect();
    Ok(Json(PageOut::new(items, list.next)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CustomerOrderParams {
    /// An order status, or `attention`: failed, or waiting (new, waiting for payment,
    /// paid) for more than a day.
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerOrderOut {
    pub id: i64,
    pub account_id: i64,
    pub customer_name: String,
    /// `SO`, `RN`, `BO`, `CH` or `CL`.
    #[serde(rename = "type")]
    pub order_type: String,
    pub status: String,
    /// Why the order waits or failed.
    pub reason: Option<String>,
    pub currency: String,
    pub total_minor: i64,
    /// Failed, or waiting for more than a day.
    pub needs_attention: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/customer-orders", tag = "orders", params(("id" = i64, Path, description = "The seller"), CustomerOrderParams),
    responses((status = 200, body = PageOut<CustomerOrderOut>, description = "The orders of the seller's customers, newest first"), ProblemResponses))]
pub(crate) async fn customer_orders(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<CustomerOrderParams>,
) -> ApiResult<Json<PageOut<CustomerOrderOut>>> {
    let now = st.clock.now();
    let waiting_since = now.minus_days(OrderStatus::ATTENTION_AFTER_DAYS);
    let filter = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => OrderFilter::All,
        Some("attention") => OrderFilter::NeedsAttention { waiting_since },
        Some(s) => OrderFilter::Status(OrderStatus::parse(s)?.as_str().into()),
    };
    let p = page(q.limit, &q.cursor);
    let (limit, before) = (p.limit()?, p.after()?);
    let seller = seller(&st, &auth, id, Action::ViewOrders).await?;
    let list = st
        .db
        .orders()
        .of_vendor(seller, &filter, before, limit)
        .await?;
    let mut items = Vec::with_capacity(list.items.len());
    for o in list.items {
        let status = OrderStatus::parse(&o.status)?;
        items.push(CustomerOrderOut {
            needs_attention: status.needs_attention(now.0 - o.updated_at),
            id: o.id,
            account_id: o.account_id,
            customer_name: o.customer_name,
            order_type: o.order_type,
            status: o.status,
            reason: o.reason,
            currency: o.currency,
            total_minor: o.total_minor,
            created_at: iso(Timestamp(o.created_at)),
            updated_at: iso(Timestamp(o.updated_at)),
        });
    }
    Ok(Json(PageOut::new(items, list.next)))
}

/// How many orders of the seller's customers need attention (up to `cap`).
pub(crate) async fn attention_count(
    st: &AppState,
    auth: &Authed,
    id: i64,
    cap: i64,
) -> ApiResult<i64> {
    let seller = seller(st, auth, id, Action::ViewOrders).await?;
    let since = st.clock.now().minus_days(OrderStatus::ATTENTION_AFTER_DAYS);
    Ok(st.db.orders().needing_attention(seller, since, cap).await?)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CustomerSubscriptionParams {
    /// A subscription status.
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerSubscriptionOut {
    pub id: i64,
    pub account_id: i64,
    pub customer_name: String,
    pub plan_id: i64,
    pub period_uid: String,
    pub status: String,
    pub next_bill_date: String,
    pub expires_on: String,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/customer-subscriptions", tag = "orders", params(("id" = i64, Path, description = "The seller"), CustomerSubscriptionParams),
    responses((status = 200, body = PageOut<CustomerSubscriptionOut>, description = "The subscriptions of the seller's customers, newest first"), ProblemResponses))]
pub(crate) async fn customer_subscriptions(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<CustomerSubscriptionParams>,
) -> ApiResult<Json<PageOut<CustomerSubscriptionOut>>> {
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(SubscriptionStatus::parse)
        .transpose()?;
    let p = page(q.limit, &q.cursor);
    let (limit, before) = (p.limit()?, p.after()?);
    let seller = seller(&st, &auth, id, Action::ViewOrders).await?;
    let list = st
        .db
        .subscriptions()
        .of_vendor(seller, status.map(|s| s.as_str()), before, limit)
        .await?;
    let items = list
        .items
        .into_iter()
        .map(|s| CustomerSubscriptionOut {
            id: s.id,
            account_id: s.account_id,
            customer_name: s.customer_name,
            plan_id: s.plan_id,
            period_uid: s.period_uid,
            status: s.status,
            next_bill_date: s.next_bill_date,
            expires_on: s.expires_on,
        })
        .collect();
    Ok(Json(PageOut::new(items, list.next)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_status_follows_open_balance_and_due_date() {
        assert_eq!(invoice_status(0, Some("2020-01-01"), "2026-01-01"), "paid");
        assert_eq!(
            invoice_status(5, Some("2025-12-31"), "2026-01-01"),
            "overdue"
        );
        assert_eq!(invoice_status(5, Some("2026-01-01"), "2026-01-01"), "open");
        assert_eq!(invoice_status(5, None, "2026-01-01"), "open");
    }
}
