//! The seller panel's lists across all customers: invoices (filter by open / overdue /
//! paid and by customer name, view and PDF links), orders (filter by status or "needs
//! attention", retry a failed order's provisioning) and subscriptions (filter by
//! status); each paginated by the API's keyset cursor.
//!
//! Every list and action is the API's (`api::seller_lists`, `api::orders::retry_order`):
//! the same authorization, filters and the domain's "needs attention" rule; this module
//! only lays them out.

use super::layout::{csrf_field, urlencode};
use super::seller::{plans_in_reader_language, see_other, seller};
use super::seller_money::money;
use super::{CsrfForm, Ctx, WebResult, page};
use crate::api::seller_lists::{
    self, CustomerOrderParams, CustomerSubscriptionParams, InvoiceListParams,
};
use crate::extract::ApiQuery;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use cascade_domain::billing::lifecycle::{OrderStatus, SubscriptionStatus};
use maud::{Markup, html};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/seller/invoices", get(invoices_page))
        .route("/seller/orders", get(orders_page))
        .route("/seller/orders/{id}/retry", post(retry))
        .route("/seller/subscriptions", get(subscriptions_page))
}

const PAGE: i64 = 50;

#[derive(Deserialize, Default)]
struct ListQ {
    status: Option<String>,
    customer: Option<String>,
    cursor: Option<String>,
}

impl ListQ {
    fn status(&self) -> Option<String> {
        self.status.clone().filter(|s| !s.is_empty())
    }
    fn customer(&self) -> Option<String> {
        self.customer
            .clone()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_string())
    }
}

/// The filter form of a list: a status select (`(value, translation key)`), and a
/// customer-name search where the list has one.
fn filter_form(
    ctx: &Ctx,
    action: &str,
    statuses: &[(&str, String)],
    status: Option<&str>,
    customer: Option<Option<&str>>,
) -> Markup {
    html! {
        form method="get" action=(action) class="actions" role="search" id="filter" {
            select name="status" aria-label=(ctx.t("seller.lists.status")) {
                option value="" { (ctx.t("seller.lists.any")) }
                @for (v, key) in statuses { option value=(v) selected[status == Some(*v)] { (ctx.t(key)) } }
            }
            @if let Some(c) = customer {
                input type="search" name="customer" value=[c] placeholder=(ctx.t("seller.lists.customer")) aria-label=(ctx.t("seller.lists.customer"));
            }
            button type="submit" { (ctx.t("seller.lists.filter")) }
        }
    }
}

/// The "more" link: the same filters, the next cursor.
fn more_link(
    ctx: &Ctx,
    action: &str,
    next: Option<&str>,
    status: Option<&str>,
    customer: Option<&str>,
) -> Markup {
    html! {
        @if let Some(c) = next {
            p { a id="more" href={ (action) "?cursor=" (urlencode(c))
                @if let Some(s) = status { "&status=" (urlencode(s)) }
                @if let Some(n) = customer { "&customer=" (urlencode(n)) } } { (ctx.t("seller.more")) } }
        }
    }
}

fn empty_row(ctx: &Ctx, cols: u8, empty: bool) -> Markup {
    html! { @if empty { tr { td colspan=(cols) class="muted" { (ctx.t("seller.none")) } } } }
}

async fn invoices_page(State(st): State<AppState>, ctx: Ctx, Query(q): Query<ListQ>) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let (status, customer) = (q.status(), q.customer());
    let list = seller_lists::issued_invoices(
        State(st),
        auth,
        Path(own),
        ApiQuery(InvoiceListParams {
            status: status.clone(),
            customer: customer.clone(),
            limit: Some(PAGE),
            cursor: q.cursor.clone(),
        }),
    )
    .await?
    .0;
    let statuses: Vec<(&str, String)> = ["open", "overdue", "paid"]
        .into_iter()
        .map(|s| (s, format!("seller.inv.status.{s}")))
        .collect();
    let prices = ctx.show_prices();
    let body = html! {
        (filter_form(&ctx, "/seller/invoices", &statuses, status.as_deref(), Some(customer.as_deref())))
        table id="invoices" {
            thead { tr {
                th { (ctx.t("seller.billing.number")) } th { (ctx.t("seller.lists.customer")) }
                th { (ctx.t("seller.money.date")) } th { (ctx.t("seller.money.due")) }
                @if prices { th class="num" { (ctx.t("seller.billing.total")) } th class="num" { (ctx.t("seller.billing.open")) } }
                th { (ctx.t("seller.lists.status")) } th { }
            } }
            tbody {
                @for d in &list.items {
                    tr data-document=(d.id) data-status=(d.status) {
                        td { a href={ "/seller/documents/" (d.id) } { (d.number.as_deref().unwrap_or("—")) } }
                        td { a href={ "/seller/accounts/" (d.account_id) "/money" } { (d.customer_name) } }
                        td { (d.issue_date.as_deref().unwrap_or("")) } td { (d.due_date.as_deref().unwrap_or("")) }
                        @if prices { td class="num" { (money(d.total_minor, &d.currency)) } td class="num" { (money(d.open_minor, &d.currency)) } }
                        td { span class={ "badge " (d.status) } { (ctx.t(&format!("seller.inv.status.{}", d.status))) } }
                        td class="actions" {
                            a href={ "/seller/documents/" (d.id) } { (ctx.t("seller.money.view")) }
                            a href={ "/api/v1/documents/" (d.id) "/pdf" } class="pdf" { "PDF" }
                        }
                    }
                }
                (empty_row(&ctx, 8, list.items.is_empty()))
            }
        }
        (more_link(&ctx, "/seller/invoices", list.next_cursor.as_deref(), status.as_deref(), customer.as_deref()))
    };
    Ok(page(&ctx, ctx.t("seller.inv.title"), body))
}

async fn orders_page(State(st): State<AppState>, ctx: Ctx, Query(q): Query<ListQ>) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let status = q.status();
    let list = seller_lists::customer_orders(
        State(st),
        auth,
        Path(own),
        ApiQuery(CustomerOrderParams {
            status: status.clone(),
            limit: Some(PAGE),
            cursor: q.cursor.clone(),
        }),
    )
    .await?
    .0;
    let statuses: Vec<(&str, String)> =
        std::iter::once(("attention", "seller.orders.attention".to_string()))
            .chain(
                OrderStatus::ALL
                    .into_iter()
                    .map(|s| (s.as_str(), format!("seller.order.status.{}", s.as_str()))),
            )
            .collect();
    let prices = ctx.show_prices();
    let body = html! {
        (filter_form(&ctx, "/seller/orders", &statuses, status.as_deref(), None))
        table id="orders" {
            thead { tr {
                th { "#" } th { (ctx.t("seller.billing.type")) } th { (ctx.t("seller.lists.status")) }
                th { (ctx.t("seller.lists.customer")) } @if prices { th class="num" { (ctx.t("seller.billing.total")) } }
                th { (ctx.t("seller.lists.date")) } th { }
            } }
            tbody {
                @for o in &list.items {
                    tr data-order=(o.id) data-status=(o.status) {
                        td { (o.id) } td { code { (o.order_type) } }
                        td {
                            span class="badge" { (ctx.t(&format!("seller.order.status.{}", o.status))) }
                            @if o.needs_attention { " " span class="badge warn attention" { (ctx.t("seller.orders.attention")) } }
                            @if let Some(r) = &o.reason { br; small class="muted" { (r) } }
                        }
                        td { a href={ "/seller/accounts/" (o.account_id) "/billing" } { (o.customer_name) } }
                        @if prices { td class="num" { (money(o.total_minor, &o.currency)) } }
                        td { (o.created_at.get(..10).unwrap_or(&o.created_at)) }
                        td class="actions" {
                            @if o.status == OrderStatus::Failed.as_str() {
                                form method="post" action={ "/seller/orders/" (o.id) "/retry" } class="inline" {
                                    (csrf_field(&ctx))
                                    button type="submit" { (ctx.t("seller.orders.retry")) }
                                }
                            }
                        }
                    }
                }
                (empty_row(&ctx, 7, list.items.is_empty()))
            }
        }
        (more_link(&ctx, "/seller/orders", list.next_cursor.as_deref(), status.as_deref(), None))
    };
    Ok(page(&ctx, ctx.t("seller.orders.title"), body))
}

#[derive(Deserialize)]
struct Empty {}

/// Retry a failed order's provisioning through the API (its rules: only failed orders).
async fn retry(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<Empty>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let _ = crate::api::orders::retry_order(State(st), auth, Path(id)).await?;
    Ok(see_other("/seller/orders"))
}

async fn subscriptions_page(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListQ>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let status = q.status();
    let list = seller_lists::customer_subscriptions(
        State(st.clone()),
        auth.clone(),
        Path(own),
        ApiQuery(CustomerSubscriptionParams {
            status: status.clone(),
            limit: Some(PAGE),
            cursor: q.cursor.clone(),
        }),
    )
    .await?
    .0;
    // Customers buy the seller's own plans (originals or its copies): one list names them.
    let names: std::collections::HashMap<i64, String> =
        plans_in_reader_language(st, auth, own, &ctx)
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|p| (p.id, p.display_name))
                    .collect()
            })
            .unwrap_or_default();
    let statuses: Vec<(&str, String)> = SubscriptionStatus::ALL
        .into_iter()
        .map(|s| (s.as_str(), format!("seller.sub.status.{}", s.as_str())))
        .collect();
    let body = html! {
        (filter_form(&ctx, "/seller/subscriptions", &statuses, status.as_deref(), None))
        table id="subscriptions" {
            thead { tr {
                th { "#" } th { (ctx.t("seller.plans.name")) } th { (ctx.t("seller.lists.customer")) }
                th { (ctx.t("seller.lists.status")) } th { (ctx.t("seller.billing.next_bill")) }
            } }
            tbody {
                @for s in &list.items {
                    tr data-subscription=(s.id) data-status=(s.status) {
                        td { (s.id) }
                        td { a href={ "/seller/plans/" (s.plan_id) } { (names.get(&s.plan_id).cloned().unwrap_or_else(|| format!("#{}", s.plan_id))) } " · " (s.period_uid) }
                        td { a href={ "/seller/accounts/" (s.account_id) "/billing" } { (s.customer_name) } }
                        td { span class="badge" { (ctx.t(&format!("seller.sub.status.{}", s.status))) } }
                        td { (s.next_bill_date) }
                    }
                }
                (empty_row(&ctx, 5, list.items.is_empty()))
            }
        }
        (more_link(&ctx, "/seller/subscriptions", list.next_cursor.as_deref(), status.as_deref(), None))
    };
    Ok(page(&ctx, ctx.t("seller.subs.title"), body))
}
