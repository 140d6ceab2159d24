//! The provider and reseller panel at `/seller` (one panel, adapted to the tier).
//!
//! Every page reads and acts through the API's handlers (`crate::api::…`), called with the
//! page's values put in the API's request types: authorization (`Authed::check`),
//! validation, events and the sync digest are the API's, never a second copy. A refused
//! action comes back as the API's problem, rendered as a page by the framework.
//!
//! Pages: dashboard; accounts (browse the tree, search, create, hold/release); plans
//! (view, edit retail prices of one's own plan or copy); synchronization (options and
//! scope, preview with what a restriction blocked, apply with the preview's digest, audit
//! trail); reseller synchronization settings (restrictions, cascade stop); task manager
//! (filter, retry, cancel).

use super::layout::{csrf_field, urlencode};
use super::{CsrfForm, Ctx, Pairs, WebError, WebResult, field, page};
use crate::api::accounts::{
    self, ChangeStatusIn, CreateAccountIn, ListParams, NewAccountKind, StatusIn,
};
use crate::api::plans::{self, LangParam, PlanListParams, SyncIn, SyncSettingsIo, UpdatePlanIn};
use crate::api::tasks::{self, TaskParams};
use crate::auth::Authed;
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use cascade_domain::account::AccountKind;
use cascade_domain::catalog::plan::Price;
use cascade_domain::catalog::sync::{Restrictions, Scope, SyncOptions};
use maud::{Markup, html};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/seller",
            get(|| async { Redirect::to("/seller/dashboard") }),
        )
        .route("/seller/dashboard", get(dashboard))
        .route("/seller/accounts", get(accounts_page).post(create_account))
        .route("/seller/accounts/{id}/status", post(account_status))
        .route(
            "/seller/accounts/{id}/sync-settings",
            get(sync_settings_page).post(save_sync_settings),
        )
        .route("/seller/accounts/{id}/billing", get(account_billing))
        .route("/seller/plans", get(plans_page))
        .route("/seller/plans/{id}", get(plan_page))
        .route("/seller/plans/{id}/prices", post(save_prices))
        .route("/seller/plans/{id}/delegate", post(delegate))
        .route("/seller/plans/{id}/sync/preview", post(sync_preview))
        .route("/seller/plans/{id}/sync", post(sync_apply))
        .route("/seller/tasks", get(tasks_page))
        .route("/seller/tasks/{id}/{action}", post(task_action))
        .merge(super::seller_money::routes())
        .merge(super::seller_accounts::routes())
        .merge(super::seller_catalog::routes())
        .merge(super::seller_notify::routes())
        .merge(super::seller_connectors::routes())
        .merge(super::seller_lists::routes())
}

/// The seller panel's navigation (`href`, translation key).
pub const NAV: [(&str, &str); 11] = [
    ("/seller/dashboard", "seller.nav.dashboard"),
    ("/seller/accounts", "seller.nav.accounts"),
    ("/seller/orders", "seller.nav.orders"),
    ("/seller/subscriptions", "seller.nav.subscriptions"),
    ("/seller/invoices", "seller.nav.invoices"),
    ("/seller/plans", "seller.nav.plans"),
    ("/seller/catalog", "seller.nav.catalog"),
    ("/seller/categories", "seller.nav.categories"),
    ("/seller/notifications", "seller.nav.notifications"),
    ("/seller/tasks", "seller.nav.tasks"),
    ("/seller/billing-visibility", "seller.nav.visibility"),
];

/// The logged-in seller (provider or reseller); anyone else gets a 404.
pub(super) fn seller(ctx: &Ctx) -> WebResult<(Authed, i64, AccountKind)> {
    let auth = ctx.authed()?.clone();
    let acc = ctx.account.as_ref().ok_or_else(WebError::not_found)?;
    if acc.kind == AccountKind::Customer {
        return Err(WebError::not_found());
    }
    Ok((auth, acc.id.0, acc.kind))
}

pub(super) fn see_other(to: &str) -> axum::response::Response {
    Redirect::to(to).into_response()
}

/// A price (millionths of a currency unit) as a decimal: `12.5` → `12.50`.
pub fn price_text(p: Price) -> String {
    let sign = if p.0 < 0 { "-" } else { "" };
    let abs = p.0.unsigned_abs();
    let scale = Price::SCALE as u64;
    let mut frac = format!("{:06}", abs % scale);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{sign}{}.{frac}", abs / scale)
}

/// A decimal typed in a form (`12`, `12.5`, `12,50`) as a price; `None` when it is not one.
pub fn parse_price(s: &str) -> Option<Price> {
    let s = s.trim().replace(',', ".");
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 6
    {
        return None;
    }
    let units: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_v: i64 = format!("{frac:0<6}").parse().ok()?;
    units
        .checked_mul(Price::SCALE)?
        .checked_add(frac_v)
        .map(Price)
}

pub(super) fn bad_field(name: &str, message: &str) -> WebError {
    crate::error::ApiError::field(name, "invalid", message).into()
}

// ---------------------------------------------------------------------------------------
// Dashboard

async fn dashboard(State(st): State<AppState>, ctx: Ctx) -> WebResult {
    let (auth, account_id, kind) = seller(&ctx)?;
    let failed = tasks::list_tasks(
        State(st.clone()),
        auth.clone(),
        ApiQuery(TaskParams {
            state: Some("failed".into()),
            limit: Some(100),
            ..Default::default()
        }),
    )
    .await
    .map(|r| r.0.items.len())
    .ok();
    let children = accounts::list_children(
        State(st.clone()),
        auth.clone(),
        Path(account_id),
        ApiQuery(ListParams {
            limit: Some(100),
            ..Default::default()
        }),
    )
    .await
    .map(|r| r.0.items.len())
    .ok();
    let plans = plans::list_plans(
        State(st.clone()),
        auth.clone(),
        Path(account_id),
        ApiQuery(PlanListParams {
            limit: Some(100),
            ..Default::default()
        }),
    )
    .await
    .map(|r| r.0.items)
    .unwrap_or_default();
    let pending = plans
        .iter()
        .filter(|p| p.withdrawn || p.upstream_changes)
        .count();
    let tier = if kind == AccountKind::Provider {
        ctx.t("seller.tier.provider")
    } else {
        ctx.t("seller.tier.reseller")
    };
    let count = |n: Option<usize>| {
        n.map(|n| {
            if n >= 100 {
                "100+".to_string()
            } else {
                n.to_string()
            }
        })
    };
    // Without the privilege to read orders, no card (the rest of the dashboard stays).
    let orders_attention = crate::api::seller_lists::attention_count(&st, &auth, account_id, 100)
        .await
        .ok();
    let money_cards = super::seller_money::dashboard_cards(&st, &ctx, &auth, account_id).await;
    let body = html! {
        p class="muted" { (tier) }
        div class="grid" {
            div class="card" id="failed-tasks" {
                h2 { (ctx.t("seller.dash.failed_tasks")) }
                p class="price" { (count(failed).unwrap_or_else(|| "—".into())) }
                a href="/seller/tasks?state=failed" { (ctx.t("seller.dash.open")) }
            }
            div class="card" id="direct-accounts" {
                h2 { (ctx.t("seller.dash.accounts")) }
                p class="price" { (count(children).unwrap_or_else(|| "—".into())) }
                a href="/seller/accounts" { (ctx.t("seller.dash.open")) }
            }
            @if let Some(n) = orders_attention {
                div class="card" id="orders-attention" {
                    h2 { (ctx.t("seller.dash.orders_attention")) }
                    p class="price" { (count(Some(n as usize)).unwrap_or_default()) }
                    a href="/seller/orders?status=attention" { (ctx.t("seller.dash.open")) }
                }
            }
            div class="card" id="plans-attention" {
                h2 { (ctx.t("seller.dash.plans_attention")) }
                p class="price" { (pending) " / " (plans.len()) }
                a href="/seller/plans" { (ctx.t("seller.dash.open")) }
            }
            (money_cards)
        }
    };
    Ok(page(&ctx, ctx.t("seller.dash.title"), body))
}

// ---------------------------------------------------------------------------------------
// Accounts

#[derive(Deserialize, Default)]
struct AccountsQ {
    /// The account whose children are listed (the caller's own by default).
    under: Option<i64>,
    q: Option<String>,
    cursor: Option<String>,
    /// After a hold / release: how many subscriptions it suspended / resumed.
    held: Option<usize>,
    released: Option<usize>,
}

async fn accounts_page(
    State(st): State<AppState>,
    ctx: Ctx,
    Query(q): Query<AccountsQ>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let under = q.under.unwrap_or(own);
    let search = q.q.clone().filter(|s| !s.trim().is_empty());
    let parent = accounts::get_account(State(st.clone()), auth.clone(), Path(under))
        .await?
        .0;
    let params = ListParams {
        q: search.clone(),
        limit: Some(50),
        cursor: q.cursor.clone(),
        ..Default::default()
    };
    // A search looks through the whole subtree; browsing shows one level.
    let list = if search.is_some() {
        accounts::list_descendants(
            State(st.clone()),
            auth.clone(),
            Path(under),
            ApiQuery(params),
        )
        .await?
    } else {
        accounts::list_children(
            State(st.clone()),
            auth.clone(),
            Path(under),
            ApiQuery(params),
        )
        .await?
    }
    .0;
    let moved = match (q.held, q.released) {
        (Some(n), _) => Some(ctx.tr.f("seller.accounts.held_n", &[("n", &n.to_string())])),
        (None, Some(n)) => Some(
            ctx.tr
                .f("seller.accounts.released_n", &[("n", &n.to_string())]),
        ),
        _ => None,
    };
    let body = html! {
        @if let Some(m) = &moved { div class="notice ok" role="status" id="moved" { p { (m) } } }
        nav class="actions" aria-label=(ctx.t("seller.accounts.path")) {
            @if under != own {
                a href="/seller/accounts" { (ctx.t("seller.accounts.top")) }
                @if let Some(v) = parent.vendor_id.filter(|v| *v != own) {
                    a href={ "/seller/accounts?under=" (v) } { (ctx.t("seller.accounts.up")) }
                }
            }
            strong { (parent.name) }
        }
        form method="get" action="/seller/accounts" class="actions" role="search" {
            input type="hidden" name="under" value=(under);
            input type="search" name="q" value=[search.as_deref()] placeholder=(ctx.t("seller.accounts.search"));
            button type="submit" { (ctx.t("seller.accounts.search")) }
        }
        table id="accounts" {
            thead { tr {
                th { (ctx.t("seller.accounts.name")) } th { (ctx.t("seller.accounts.kind")) }
                th { (ctx.t("seller.accounts.status")) } th { }
            } }
            tbody {
                @for a in &list.items {
                    tr data-account=(a.id) {
                        td {
                            @if a.kind == "reseller" {
                                a href={ "/seller/accounts?under=" (a.id) } { (a.name) }
                            } @else { (a.name) }
                        }
                        td { (ctx.t(&format!("seller.kind.{}", a.kind))) }
                        td { span class="badge" { (ctx.t(&format!("seller.status.{}", a.status))) } }
                        td class="actions" {
                            form method="post" action={ "/seller/accounts/" (a.id) "/status" } class="inline" {
                                (csrf_field(&ctx))
                                input type="hidden" name="next" value=(ctx.path);
                                @if a.status == "active" {
                                    input type="hidden" name="status" value="admin_hold";
                                    button type="submit" { (ctx.t("seller.accounts.hold")) }
                                } @else if a.status != "cancelled" {
                                    input type="hidden" name="status" value="active";
                                    button type="submit" { (ctx.t("seller.accounts.release")) }
                                }
                            }
                            a href={ "/seller/accounts/" (a.id) "/billing" } { (ctx.t("seller.billing.link")) }
                            a href={ "/seller/accounts/" (a.id) "/money" } { (ctx.t("seller.money.link")) }
                            a href={ "/seller/accounts/" (a.id) "/users" } { (ctx.t("seller.users.link")) }
                            @if a.kind == "reseller" {
                                a href={ "/seller/accounts/" (a.id) "/billing-visibility" } { (ctx.t("seller.visibility.link")) }
                                a href={ "/seller/accounts/" (a.id) "/sync-settings" } { (ctx.t("seller.sync.settings")) }
                            }
                        }
                    }
                }
                @if list.items.is_empty() { tr { td colspan="4" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        @if let Some(c) = &list.next_cursor {
            p { a href={ "/seller/accounts?under=" (under) "&cursor=" (urlencode(c)) @if let Some(s) = &search { "&q=" (urlencode(s)) } } { (ctx.t("seller.more")) } }
        }
        h2 class="section-title" { (ctx.t("seller.accounts.create")) }
        form method="post" action="/seller/accounts" class="card narrow" id="create-account" {
            (csrf_field(&ctx))
            input type="hidden" name="vendor_id" value=(under);
            label { (ctx.t("seller.accounts.kind"))
                select name="kind" {
                    option value="customer" { (ctx.t("seller.kind.customer")) }
                    option value="reseller" { (ctx.t("seller.kind.reseller")) }
                }
            }
            label { (ctx.t("seller.accounts.name")) input name="name" required; }
            label { (ctx.t("seller.accounts.email")) input name="email" type="email"; }
            label { (ctx.t("seller.accounts.country")) input name="country" value=(parent.country) maxlength="2" required; }
            label { (ctx.t("seller.accounts.language")) input name="language" value=(parent.language) required; }
            button type="submit" class="primary" { (ctx.t("seller.accounts.create")) }
        }
    };
    Ok(page(&ctx, ctx.t("seller.accounts.title"), body))
}

#[derive(Deserialize)]
struct CreateForm {
    vendor_id: i64,
    kind: String,
    name: String,
    email: Option<String>,
    country: String,
    language: String,
}

async fn create_account(
    State(st): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<CreateForm>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let kind = match f.kind.as_str() {
        "reseller" => NewAccountKind::Reseller,
        "customer" => NewAccountKind::Customer,
        _ => return Err(bad_field("kind", "customer or reseller")),
    };
    let body = CreateAccountIn {
        vendor_id: f.vendor_id,
        kind,
        name: f.name,
        contact: f
            .email
            .filter(|e| !e.trim().is_empty())
            .map(|e| accounts::ContactIn {
                email: Some(e),
                ..Default::default()
            }),
        country: f.country,
        language: f.language,
        currency: None,
        customer_class_id: None,
    };
    let _ = accounts::create_account(State(st), auth, ApiJson(body)).await?;
    Ok(see_other(&format!(
        "/seller/accounts?under={}",
        f.vendor_id
    )))
}

#[derive(Deserialize)]
struct StatusForm {
    status: String,
    next: Option<String>,
}

async fn account_status(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<StatusForm>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let status = match f.status.as_str() {
        "admin_hold" => StatusIn::AdminHold,
        "active" => StatusIn::Active,
        _ => return Err(bad_field("status", "admin_hold or active")),
    };
    let moved = accounts::change_status(
        State(st),
        auth,
        Path(id),
        ApiJson(ChangeStatusIn {
            status,
            reason: None,
        }),
    )
    .await?
    .0;
    // The list says how many subscriptions followed the hold or the release.
    let next = super::local_path(f.next.as_deref(), "/seller/accounts");
    let (word, n) = match f.status.as_str() {
        "admin_hold" => ("held", moved.subscriptions_suspended.len()),
        _ => ("released", moved.subscriptions_resumed.len()),
    };
    let base: String = next
        .split('?')
        .next()
        .unwrap_or("/seller/accounts")
        .to_string();
    let kept: Vec<&str> = next
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter(|p| !p.starts_with("held=") && !p.starts_with("released="))
                .collect()
        })
        .unwrap_or_default();
    let mut query = kept.join("&");
    if !query.is_empty() {
        query.push('&');
    }
    Ok(see_other(&format!("{base}?{query}{word}={n}")))
}

const RESTRICTIONS: [&str; 6] = [
    "prices",
    "terms",
    "plan_categories",
    "resource_categories",
    "sales_categories",
    "publication",
];

fn restriction(r: &Restrictions, name: &str) -> bool {
    match name {
        "prices" => r.prices,
        "terms" => r.terms,
        "plan_categories" => r.plan_categories,
        "resource_categories" => r.resource_categories,
        "sales_categories" => r.sales_categories,
        _ => r.publication,
    }
}

async fn sync_settings_page(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let acc = accounts::get_account(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let s = plans::get_sync_settings(State(st), auth, Path(id)).await?.0;
    let body = html! {
        p { strong { (acc.name) } }
        form method="post" action={ "/seller/accounts/" (id) "/sync-settings" } class="card narrow" id="sync-settings" {
            (csrf_field(&ctx))
            fieldset {
                legend { (ctx.t("seller.sync.restrictions")) }
                @for r in RESTRICTIONS {
                    label { input type="checkbox" name={ "r_" (r) } value="1" checked[restriction(&s.restrictions, r)]; " " (ctx.t(&format!("seller.restriction.{r}"))) }
                }
            }
            label { input type="checkbox" name="cascade_stop" value="1" checked[s.cascade_stop]; " " (ctx.t("seller.sync.cascade_stop")) }
            button type="submit" class="primary" { (ctx.t("seller.save")) }
        }
    };
    Ok(page(&ctx, ctx.t("seller.sync.settings"), body))
}

async fn save_sync_settings(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let on = |n: &str| field(&f, n).is_some();
    let body = SyncSettingsIo {
        restrictions: Restrictions {
            prices: on("r_prices"),
            terms: on("r_terms"),
            plan_categories: on("r_plan_categories"),
            resource_categories: on("r_resource_categories"),
            sales_categories: on("r_sales_categories"),
            publication: on("r_publication"),
        },
        cascade_stop: on("cascade_stop"),
    };
    let _ = plans::put_sync_settings(State(st), auth, Path(id), ApiJson(body)).await?;
    Ok(see_other(&format!("/seller/accounts/{id}/sync-settings")))
}

/// An amount in minor units of a currency, e.g. `12.50 EUR`.
fn money(minor: i64, currency: &str) -> String {
    match cascade_domain::money::Currency::parse(currency) {
        Ok(c) => cascade_domain::money::Money::new(minor, c).to_string(),
        Err(_) => format!("{minor} {currency}"),
    }
}

/// An account's orders, subscriptions and documents (invoice PDFs from the API).
async fn account_billing(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    if id == own {
        return Err(WebError::not_found());
    }
    let acc = accounts::get_account(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let first = || {
        ApiQuery(PageParams {
            limit: Some(50),
            cursor: None,
        })
    };
    let orders =
        crate::api::orders::list_orders(State(st.clone()), auth.clone(), Path(id), first())
            .await?
            .0;
    let subs =
        crate::api::orders::list_subscriptions(State(st.clone()), auth.clone(), Path(id), first())
            .await?
            .0;
    let docs = crate::api::billing::list_documents(
        State(st),
        auth,
        Path(id),
        ApiQuery(crate::api::billing::DocumentListParams {
            kind: None,
            limit: Some(50),
            cursor: None,
        }),
    )
    .await?
    .0;
    let prices = ctx.show_prices();
    let body = html! {
        p { strong { (acc.name) } " · " span class="badge" { (ctx.t(&format!("seller.status.{}", acc.status))) } }
        h2 { (ctx.t("seller.billing.orders")) }
        table id="orders" {
            thead { tr { th { "#" } th { (ctx.t("seller.billing.type")) } th { (ctx.t("seller.accounts.status")) } @if prices { th class="num" { (ctx.t("seller.billing.total")) } } } }
            tbody {
                @for o in &orders.items {
                    tr { td { (o.id) } td { code { (o.order_type) } } td { span class="badge" { (o.status) } } @if prices { td class="num" { (money(o.total_minor, &o.currency)) } } }
                }
                @if orders.items.is_empty() { tr { td colspan="4" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        h2 { (ctx.t("seller.billing.subscriptions")) }
        table id="subscriptions" {
            thead { tr { th { "#" } th { (ctx.t("seller.plans.name")) } th { (ctx.t("seller.accounts.status")) } th { (ctx.t("seller.billing.next_bill")) } } }
            tbody {
                @for s in &subs.items {
                    tr { td { (s.id) } td { "#" (s.plan_id) " · " (s.period_uid) } td { span class="badge" { (s.status) } } td { (s.next_bill_date) } }
                }
                @if subs.items.is_empty() { tr { td colspan="4" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        h2 { (ctx.t("seller.billing.documents")) }
        table id="documents" {
            thead { tr { th { (ctx.t("seller.billing.number")) } th { (ctx.t("seller.billing.type")) } th { (ctx.t("seller.accounts.status")) }
                @if prices { th class="num" { (ctx.t("seller.billing.total")) } th class="num" { (ctx.t("seller.billing.open")) } } th { } } }
            tbody {
                @for d in &docs.items {
                    tr {
                        td { (d.number.as_deref().unwrap_or("—")) } td { code { (d.kind) } } td { span class="badge" { (d.status) } }
                        @if prices { td class="num" { (money(d.total_minor, &d.currency)) } td class="num" { (money(d.open_minor, &d.currency)) } }
                        td { @if d.kind == "invoice" { a href={ "/api/v1/documents/" (d.id) "/pdf" } { "PDF" } } }
                    }
                }
                @if docs.items.is_empty() { tr { td colspan="6" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
    };
    Ok(page(&ctx, ctx.t("seller.billing.title"), body))
}

// ---------------------------------------------------------------------------------------
// Plans, prices, delegation and synchronization

/// The plans `own` works with (its own and its vendors' copies), named in the reader's
/// language: the plans page and the store-category page list the same.
pub(super) async fn plans_in_reader_language(
    st: AppState,
    auth: Authed,
    own: i64,
    ctx: &Ctx,
) -> Result<crate::extract::PageOut<plans::PlanOut>, WebError> {
    Ok(plans::list_plans(
        State(st),
        auth,
        Path(own),
        ApiQuery(PlanListParams {
            lang: Some(ctx.lang().into()),
            limit: Some(200),
            ..Default::default()
        }),
    )
    .await?
    .0)
}

async fn plans_page(State(st): State<AppState>, ctx: Ctx) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let list = plans_in_reader_language(st, auth, own, &ctx).await?;
    let body = html! {
        table id="plans" {
            thead { tr {
                th { (ctx.t("seller.plans.name")) } th { (ctx.t("seller.plans.origin")) }
                th { (ctx.t("seller.plans.state")) }
            } }
            tbody {
                @for p in list.items.iter().filter(|p| p.owner_account_id == own) {
                    tr {
                        td { a href={ "/seller/plans/" (p.id) } { (p.display_name) } }
                        td { @if p.parent_plan_id.is_some() { (ctx.t("seller.plans.copy")) } @else { (ctx.t("seller.plans.original")) } }
                        td {
                            @if p.on_sale { span class="badge" { (ctx.t("seller.plans.on_sale")) } " " }
                            @if p.withdrawn { span class="badge" { (ctx.t("seller.plans.withdrawn")) } " " }
                            @if p.upstream_changes { span class="badge" { (ctx.t("seller.plans.upstream")) } }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&ctx, ctx.t("seller.plans.title"), body))
}

async fn plan_page(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    plan_view(st, &ctx, id, None).await
}

/// A plan's page; with `refused`, the reason a save was refused shown above the form
/// (answered with the refusal's status: nothing was written).
async fn plan_view(
    st: AppState,
    ctx: &Ctx,
    id: i64,
    refused: Option<(StatusCode, super::ErrorMarker)>,
) -> WebResult {
    let ctx = ctx.clone();
    let (auth, own, _) = seller(&ctx)?;
    let plan = plans::get_plan(
        State(st.clone()),
        auth.clone(),
        Path(id),
        ApiQuery(LangParam {
            lang: Some(ctx.lang().into()),
        }),
    )
    .await?
    .0;
    if plan.owner_account_id != own {
        return Err(WebError::not_found());
    }
    let rt_names = super::seller_catalog::resource_type_names(
        &st,
        &auth,
        plan.content
            .rates
            .iter()
            .map(|r| r.resource_type_id)
            .collect(),
        ctx.lang(),
    )
    .await;
    let copies = plans::list_copies(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let resellers = accounts::list_children(
        State(st.clone()),
        auth.clone(),
        Path(own),
        ApiQuery(ListParams {
            kind: Some("reseller".into()),
            limit: Some(200),
            ..Default::default()
        }),
    )
    .await
    .map(|r| r.0.items)
    .unwrap_or_default();
    let runs = plans::list_sync_runs(
        State(st),
        auth,
        Path(id),
        ApiQuery(PageParams {
            limit: Some(20),
            cursor: None,
        }),
    )
    .await?
    .0;
    let names: std::collections::HashMap<i64, String> =
        resellers.iter().map(|a| (a.id, a.name.clone())).collect();
    let cur = &plan.currency;
    let c = &plan.content;
    let body = html! {
        p class="muted" {
            @if plan.parent_plan_id.is_some() { (ctx.t("seller.plans.copy")) } @else { (ctx.t("seller.plans.original")) }
            " · " (cur) " · v" (plan.version)
        }
        h2 { (ctx.t("seller.plans.terms")) }
        @if let Some((_, m)) = &refused {
            div class="notice error" role="alert" id="prices-error" {
                p { (ctx.t("seller.plans.not_saved")) @if let Some(d) = m.detail.as_ref().filter(|_| m.fields.is_empty()) { " " (d) } }
                @if !m.fields.is_empty() { ul { @for f in &m.fields { li { code { (f) } } } } }
            }
        }
        form method="post" action={ "/seller/plans/" (id) "/prices" } id="prices" {
            (csrf_field(&ctx))
            input type="hidden" name="expected_version" value=(plan.version);
            table {
                thead { tr {
                    th { (ctx.t("seller.plans.period")) }
                    @for k in PERIOD_FEES { th class="num" { (ctx.t(&format!("seller.plans.{k}"))) } }
                } }
                tbody {
                    @for p in &c.periods {
                        tr {
                            td { (p.duration) " " (ctx.t(&format!("seller.unit.{}", serde_json::to_value(p.unit).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())))
                                @if p.unconfirmed { " " span class="badge" { (ctx.t("seller.plans.unconfirmed")) } } }
                            @for (k, fee) in [("setup", &p.setup), ("recurring", &p.recurring), ("renewal", &p.renewal), ("transfer", &p.transfer), ("cancellation", &p.cancellation)] {
                                td class="num" { (amount_input(&ctx, &format!("period.{}.{k}", p.uid), k, fee.amount)) }
                            }
                        }
                    }
                }
            }
            @if !c.rates.is_empty() {
                @let limits_editable = plan.parent_plan_id.is_none();
                table id="rates" {
                    thead { tr {
                        th { (ctx.t("seller.plans.resource")) }
                        @for k in RATE_LIMITS { th class="num" { (ctx.t(&format!("seller.plans.{k}"))) } }
                        th class="num" { (ctx.t("seller.plans.setup")) }
                        th class="num" { (ctx.t("seller.plans.recurring")) } th class="num" { (ctx.t("seller.plans.overuse")) }
                    } }
                    tbody {
                        @for r in &c.rates {
                            tr data-rate=(r.uid) {
                                td { (rt_names.get(&r.resource_type_id).cloned().unwrap_or_else(|| format!("#{}", r.resource_type_id))) }
                                @for (k, v) in [("included", r.included), ("min", r.min), ("max", r.max)] {
                                    td class="num" {
                                        @if limits_editable {
                                            input name={ "rate." (r.uid) "." (k) } value=(v) inputmode="numeric" size="6" aria-label=(ctx.t(&format!("seller.plans.{k}")));
                                        } @else { span data-limit=(k) { (v) } }
                                    }
                                }
                                @for (k, fee) in [("setup", r.setup_fee), ("recurring", r.recurring_fee), ("overuse", r.overuse_fee)] {
                                    td class="num" { (amount_input(&ctx, &format!("rate.{}.{k}", r.uid), k, fee)) }
                                }
                            }
                        }
                    }
                }
                p class="muted" {
                    @if limits_editable { (ctx.t("seller.plans.unlimited_hint")) } @else { (ctx.t("seller.plans.limits_locked")) }
                }
            }
            p { button type="submit" class="primary" { (ctx.t("seller.plans.save")) } }
        }

        h2 class="section-title" { (ctx.t("seller.plans.copies")) }
        table id="copies" {
            tbody {
                @for cp in &copies {
                    tr { td { (names.get(&cp.owner_account_id).cloned().unwrap_or_else(|| format!("#{}", cp.owner_account_id))) } td { "#" (cp.id) } }
                }
                @if copies.is_empty() { tr { td class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        @let undelegated: Vec<_> = resellers.iter().filter(|r| !copies.iter().any(|c| c.owner_account_id == r.id)).collect();
        @if !undelegated.is_empty() {
            form method="post" action={ "/seller/plans/" (id) "/delegate" } class="actions" {
                (csrf_field(&ctx))
                select name="reseller_id" aria-label=(ctx.t("seller.plans.delegate")) {
                    @for r in undelegated { option value=(r.id) { (r.name) } }
                }
                button type="submit" { (ctx.t("seller.plans.delegate")) }
            }
        }

        @if !copies.is_empty() {
            h2 class="section-title" { (ctx.t("seller.sync.title")) }
            form method="post" action={ "/seller/plans/" (id) "/sync/preview" } class="card" id="sync" {
                (csrf_field(&ctx))
                fieldset {
                    legend { (ctx.t("seller.sync.options")) }
                    @for o in SYNC_OPTIONS {
                        label { input type="checkbox" name={ "o_" (o) } value="1"; " " (ctx.t(&format!("seller.sync.opt.{o}"))) }
                    }
                }
                label { (ctx.t("seller.sync.scope"))
                    select name="scope" {
                        option value="all" { (ctx.t("seller.sync.scope.all")) }
                        option value="one_level" { (ctx.t("seller.sync.scope.one_level")) }
                        @for cp in &copies {
                            @let n = names.get(&cp.owner_account_id).cloned().unwrap_or_else(|| format!("#{}", cp.owner_account_id));
                            option value={ "r:" (cp.owner_account_id) ":1" } { (n) " + " (ctx.t("seller.sync.scope.subtree")) }
                            option value={ "r:" (cp.owner_account_id) ":0" } { (n) }
                        }
                    }
                }
                button type="submit" class="primary" { (ctx.t("seller.sync.preview")) }
            }
        }

        h2 class="section-title" { (ctx.t("seller.sync.audit")) }
        table id="sync-runs" {
            thead { tr {
                th { (ctx.t("seller.sync.when")) } th class="num" { (ctx.t("seller.sync.reached")) }
                th class="num" { (ctx.t("seller.sync.changed")) } th class="num" { (ctx.t("seller.sync.failed")) }
            } }
            tbody {
                @for r in &runs.items {
                    tr { td { (r.created_at) } td class="num" { (r.copies_total) } td class="num" { (r.copies_changed) } td class="num" { (r.copies_failed) } }
                }
                @if runs.items.is_empty() { tr { td colspan="4" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
    };
    let mut res = page(&ctx, &plan.display_name, body);
    if let Some((status, _)) = refused {
        *res.status_mut() = status;
    }
    Ok(res)
}

const PERIOD_FEES: [&str; 5] = ["setup", "recurring", "renewal", "transfer", "cancellation"];
const RATE_LIMITS: [&str; 3] = ["included", "min", "max"];

fn amount_input(ctx: &Ctx, name: &str, label: &str, amount: Price) -> Markup {
    html! {
        input name=(name) value=(price_text(amount)) inputmode="decimal" size="8" aria-label=(ctx.t(&format!("seller.plans.{label}")));
    }
}

/// Save a plan's fees and (on an original) its rates' limits through the API's update:
/// the API validates (min ≤ included ≤ max, no negatives, a copy's structure locked)
/// and writes all or nothing. A refusal re-renders the page with the reasons.
async fn save_prices(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    match write_terms(st.clone(), &ctx, id, &f).await {
        Ok(()) => Ok(see_other(&format!("/seller/plans/{id}"))),
        Err(WebError::Status(status, marker))
            if status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::CONFLICT =>
        {
            plan_view(st, &ctx, id, Some((status, marker))).await
        }
        Err(e) => Err(e),
    }
}

async fn write_terms(st: AppState, ctx: &Ctx, id: i64, f: &Pairs) -> WebResult<()> {
    let (auth, own, _) = seller(ctx)?;
    let plan = plans::get_plan(
        State(st.clone()),
        auth.clone(),
        Path(id),
        ApiQuery(LangParam { lang: None }),
    )
    .await?
    .0;
    if plan.owner_account_id != own {
        return Err(WebError::not_found());
    }
    let mut content = plan.content;
    let read = |name: String, into: &mut Price| -> WebResult<()> {
        if let Some(v) = field(f, &name) {
            *into =
                parse_price(v).ok_or_else(|| bad_field(&name, "a decimal amount, e.g. 12.50"))?;
        }
        Ok(())
    };
    // Whole units; the API's validation judges the values (a copy's are locked there).
    let units = |name: String, into: &mut i64| -> WebResult<()> {
        if let Some(v) = field(f, &name) {
            *into = v
                .trim()
                .parse()
                .map_err(|_| bad_field(&name, "a whole number of units (−1: unlimited)"))?;
        }
        Ok(())
    };
    for p in &mut content.periods {
        read(format!("period.{}.setup", p.uid), &mut p.setup.amount)?;
        read(
            format!("period.{}.recurring", p.uid),
            &mut p.recurring.amount,
        )?;
        read(format!("period.{}.renewal", p.uid), &mut p.renewal.amount)?;
        read(format!("period.{}.transfer", p.uid), &mut p.transfer.amount)?;
        read(
            format!("period.{}.cancellation", p.uid),
            &mut p.cancellation.amount,
        )?;
    }
    for r in &mut content.rates {
        units(format!("rate.{}.included", r.uid), &mut r.included)?;
        units(format!("rate.{}.min", r.uid), &mut r.min)?;
        units(format!("rate.{}.max", r.uid), &mut r.max)?;
        read(format!("rate.{}.setup", r.uid), &mut r.setup_fee)?;
        read(format!("rate.{}.recurring", r.uid), &mut r.recurring_fee)?;
        read(format!("rate.{}.overuse", r.uid), &mut r.overuse_fee)?;
    }
    let expected_version = field(f, "expected_version").and_then(|v| v.parse().ok());
    let _ = plans::update_plan(
        State(st),
        auth,
        Path(id),
        ApiJson(UpdatePlanIn {
            content,
            expected_version,
        }),
    )
    .await?;
    Ok(())
}

#[derive(Deserialize)]
struct DelegateForm {
    reseller_id: i64,
}

async fn delegate(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<DelegateForm>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let _ = plans::delegate_plan(
        State(st),
        auth,
        Path(id),
        ApiJson(plans::DelegateIn {
            reseller_id: f.reseller_id,
        }),
    )
    .await?;
    Ok(see_other(&format!("/seller/plans/{id}")))
}

const SYNC_OPTIONS: [&str; 9] = [
    "names_descriptions",
    "plan_fees",
    "new_plans_periods",
    "new_resources",
    "resource_prices",
    "resource_limits",
    "categories",
    "publication",
    "subscriptions",
];

/// The sync request a form describes (options `o_*`, scope, digest).
fn sync_in(f: &Pairs) -> WebResult<SyncIn> {
    let on = |n: &str| field(f, &format!("o_{n}")).is_some();
    let options = SyncOptions {
        names_descriptions: on("names_descriptions"),
        plan_fees: on("plan_fees"),
        new_plans_periods: on("new_plans_periods"),
        new_resources: on("new_resources"),
        resource_prices: on("resource_prices"),
        resource_limits: on("resource_limits"),
        categories: on("categories"),
        publication: on("publication"),
        subscriptions: on("subscriptions"),
    };
    let scope = match field(f, "scope").unwrap_or("all") {
        "all" => Scope::AllResellers,
        "one_level" => Scope::OneLevel,
        s => {
            let mut it = s.strip_prefix("r:").unwrap_or("").split(':');
            let account_id = it
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad_field("scope", "all, one_level or a reseller"))?;
            Scope::Reseller {
                account_id,
                with_subtree: it.next() == Some("1"),
            }
        }
    };
    Ok(SyncIn {
        options,
        scope,
        expected_digest: field(f, "digest").map(str::to_string),
    })
}

/// Hidden fields that carry a sync request from the preview to the apply button.
fn sync_hidden(f: &Pairs) -> Markup {
    html! {
        @for (k, v) in f.iter().filter(|(k, _)| k.starts_with("o_") || k == "scope") {
            input type="hidden" name=(k) value=(v);
        }
    }
}

/// A value in a sync preview: fees and prices as decimals, the rest as written.
fn change_text(field: &str, v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(o) if o.get("amount").is_some_and(|a| a.is_i64()) => {
            price_text(Price(o["amount"].as_i64().unwrap_or_default()))
        }
        serde_json::Value::Number(n) if field.ends_with("_fee") => {
            price_text(Price(n.as_i64().unwrap_or_default()))
        }
        other => json_text(other),
    }
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    }
}

async fn sync_preview(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let body_in = sync_in(&f)?;
    let preview = plans::sync_preview(State(st.clone()), auth.clone(), Path(id), ApiJson(body_in))
        .await?
        .0;
    let names: std::collections::HashMap<i64, String> = accounts::list_descendants(
        State(st),
        auth,
        Path(own),
        ApiQuery(ListParams {
            kind: Some("reseller".into()),
            limit: Some(200),
            ..Default::default()
        }),
    )
    .await
    .map(|r| r.0.items.into_iter().map(|a| (a.id, a.name)).collect())
    .unwrap_or_default();
    let body = html! {
        p id="sync-summary" {
            (ctx.t("seller.sync.reached")) ": " strong { (preview.copies_reached) } " · "
            (ctx.t("seller.sync.changed")) ": " strong { (preview.copies_changed) }
            @if preview.subscriptions_changed > 0 || f.iter().any(|(k, _)| k == "o_subscriptions") {
                " · " (ctx.t("seller.sync.subscriptions")) ": " strong id="sync-subscriptions" { (preview.subscriptions_changed) }
            }
        }
        @for cp in &preview.copies {
            section class="card" data-copy=(cp.plan_id) {
                h2 { (names.get(&cp.owner_account_id).cloned().unwrap_or_else(|| format!("#{}", cp.owner_account_id)))
                    " " span class="muted" { "(" (ctx.t("seller.sync.level")) " " (cp.level) ")" } }
                @if cp.withdrawn { p class="notice warn" { (ctx.t("seller.sync.withdrawn")) } }
                @if cp.upstream_pending { p class="notice warn" { (ctx.t("seller.sync.upstream_pending")) } }
                @if cp.subscriptions_changed > 0 { p class="muted" data-subscriptions=(cp.subscriptions_changed) { (ctx.t("seller.sync.subscriptions")) ": " (cp.subscriptions_changed) } }
                @if cp.changes.is_empty() { p class="muted" { (ctx.t("seller.sync.no_change")) } }
                @else {
                    table class="changes" {
                        thead { tr { th { (ctx.t("seller.sync.field")) } th { (ctx.t("seller.sync.from")) } th { (ctx.t("seller.sync.to")) } } }
                        tbody { @for ch in &cp.changes { tr { td { code { (ch.field) } } td { (change_text(&ch.field, &ch.from)) } td { (change_text(&ch.field, &ch.to)) } } } }
                    }
                }
                @if !cp.blocked.is_empty() {
                    h3 { (ctx.t("seller.sync.blocked")) }
                    table class="blocked" {
                        tbody { @for b in &cp.blocked { tr {
                            td { code { (b.field) } }
                            td { (ctx.t(&format!("seller.restriction.{}", json_text(&serde_json::to_value(b.restriction).unwrap_or_default())))) }
                            td { (change_text(&b.field, &b.wanted)) }
                        } } }
                    }
                }
            }
        }
        form method="post" action={ "/seller/plans/" (id) "/sync" } class="actions" id="apply" {
            (csrf_field(&ctx))
            (sync_hidden(&f))
            input type="hidden" name="digest" value=(preview.digest);
            button type="submit" class="primary" { (ctx.t("seller.sync.apply")) }
            a href={ "/seller/plans/" (id) } { (ctx.t("seller.cancel")) }
        }
    };
    Ok(page(&ctx, ctx.t("seller.sync.preview_title"), body))
}

async fn sync_apply(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let body_in = sync_in(&f)?;
    if body_in.expected_digest.is_none() {
        return Err(bad_field("digest", "apply a sync from its preview"));
    }
    let _ = plans::sync_apply(State(st), auth, Path(id), ApiJson(body_in)).await?;
    Ok(see_other(&format!("/seller/plans/{id}#sync-runs")))
}

// ---------------------------------------------------------------------------------------
// Task manager

#[derive(Deserialize, Default)]
struct TasksQ {
    state: Option<String>,
    kind: Option<String>,
    cursor: Option<String>,
}

const TASK_STATES: [&str; 5] = ["pending", "running", "done", "failed", "cancelled"];

async fn tasks_page(State(st): State<AppState>, ctx: Ctx, Query(q): Query<TasksQ>) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let state = q.state.clone().filter(|s| !s.is_empty());
    let kind = q.kind.clone().filter(|s| !s.is_empty());
    let list = tasks::list_tasks(
        State(st),
        auth,
        ApiQuery(TaskParams {
            state: state.clone(),
            kind: kind.clone(),
            limit: Some(50),
            cursor: q.cursor.clone(),
            ..Default::default()
        }),
    )
    .await?
    .0;
    let body = html! {
        form method="get" action="/seller/tasks" class="actions" {
            select name="state" aria-label=(ctx.t("seller.tasks.state")) {
                option value="" { (ctx.t("seller.tasks.any")) }
                @for s in TASK_STATES { option value=(s) selected[state.as_deref() == Some(s)] { (ctx.t(&format!("seller.task.{s}"))) } }
            }
            input name="kind" value=[kind.as_deref()] placeholder=(ctx.t("seller.tasks.kind"));
            button type="submit" { (ctx.t("seller.tasks.filter")) }
        }
        table id="tasks" {
            thead { tr {
                th { "#" } th { (ctx.t("seller.tasks.kind")) } th { (ctx.t("seller.tasks.state")) }
                th class="num" { (ctx.t("seller.tasks.attempts")) } th { (ctx.t("seller.tasks.error")) } th { }
            } }
            tbody {
                @for t in &list.items {
                    tr {
                        td { (t.id) } td { code { (t.kind) } }
                        td { span class="badge" { (ctx.t(&format!("seller.task.{}", t.state))) } }
                        td class="num" { (t.attempts) "/" (t.max_attempts) }
                        td { (t.last_error.as_deref().unwrap_or("")) }
                        td class="actions" {
                            @if t.state == "failed" || t.state == "cancelled" {
                                form method="post" action={ "/seller/tasks/" (t.id) "/retry" } class="inline" {
                                    (csrf_field(&ctx)) button type="submit" { (ctx.t("seller.tasks.retry")) }
                                }
                            }
                            @if t.state == "pending" || t.state == "failed" {
                                form method="post" action={ "/seller/tasks/" (t.id) "/cancel" } class="inline" {
                                    (csrf_field(&ctx)) button type="submit" class="danger" { (ctx.t("seller.tasks.cancel")) }
                                }
                            }
                        }
                    }
                }
                @if list.items.is_empty() { tr { td colspan="6" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        @if let Some(c) = &list.next_cursor {
            p { a href={ "/seller/tasks?cursor=" (urlencode(c)) @if let Some(s) = &state { "&state=" (urlencode(s)) } @if let Some(k) = &kind { "&kind=" (urlencode(k)) } } { (ctx.t("seller.more")) } }
        }
    };
    Ok(page(&ctx, ctx.t("seller.tasks.title"), body))
}

#[derive(Deserialize)]
struct Empty {}

async fn task_action(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((id, action)): Path<(i64, String)>,
    CsrfForm(_): CsrfForm<Empty>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let _ = match action.as_str() {
        "retry" => tasks::retry_task(State(st), auth, Path(id)).await?,
        "cancel" => tasks::cancel_task(State(st), auth, Path(id)).await?,
        _ => return Err(WebError::status(StatusCode::NOT_FOUND)),
    };
    Ok(see_other("/seller/tasks"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_and_written_as_decimals() {
        assert_eq!(parse_price("12.5"), Some(Price(12_500_000)));
        assert_eq!(parse_price("12,50"), Some(Price(12_500_000)));
        assert_eq!(parse_price(" 7 "), Some(Price::units(7)));
        assert_eq!(parse_price("0.000001"), Some(Price(1)));
        assert_eq!(parse_price("-1"), None);
        assert_eq!(parse_price("1.0000001"), None);
        assert_eq!(parse_price("abc"), None);
        assert_eq!(parse_price(""), None);
        assert_eq!(parse_price("."), None);
        assert_eq!(price_text(Price(12_500_000)), "12.50");
        assert_eq!(price_text(Price(1)), "0.000001");
        assert_eq!(price_text(Price::units(3)), "3.00");
    }
}
