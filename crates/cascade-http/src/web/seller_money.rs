//! The seller panel's money pages: the dashboard's money cards, an account's invoices
//! and payments (invoice view with lines and allocations, the PDF the API renders),
//! recording a bank transfer or check and applying open payments to invoices. For a
//! reseller, its tier invoices (issued by its vendor on its statement day) are among its
//! invoices, and a table lists what it owes and has not been invoiced yet
//! (`api::wholesale`).
//!
//! Every figure and action goes through the API's handlers (`api::seller_money`,
//! `api::billing`): the same authorization, validation (a bad amount is the API's field
//! error, nothing written) and idempotency. A recorded payment carries a nonce from its
//! form as the `Idempotency-Key`, so a double submit records it once.

use super::layout::csrf_field;
use super::{CsrfForm, Ctx, Pairs, WebError, WebResult, field, page, shop};
use crate::api::billing::{self, ApplyIn, DocumentListParams, DocumentOut, PaymentIn};
use crate::api::seller_money::{self, CurrencyTotalOut};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::middleware::IDEMPOTENCY_HEADER;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use cascade_domain::account::AccountKind;
use maud::{Markup, html};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/seller/accounts/{id}/money", get(money_page))
        .route("/seller/accounts/{id}/payments", post(record_payment))
        .route("/seller/documents/{id}", get(document_page))
        .route("/seller/documents/{id}/apply", post(apply))
}

/// The logged-in seller; anyone else gets a 404.
fn seller(ctx: &Ctx) -> WebResult<Authed> {
    let auth = ctx.authed()?.clone();
    match ctx.account.as_ref() {
        Some(a) if a.kind != AccountKind::Customer => Ok(auth),
        _ => Err(WebError::not_found()),
    }
}

/// An amount in minor units of a currency, exactly: `1234` EUR → `12.34 EUR`.
pub fn money(minor: i64, currency: &str) -> String {
    match cascade_domain::money::Currency::parse(currency) {
        Ok(c) => cascade_domain::money::Money::new(minor, c).to_string(),
        Err(_) => format!("{minor} {currency}"),
    }
}

fn totals(ctx: &Ctx, v: &[CurrencyTotalOut], with_count: bool) -> Markup {
    html! {
        @if v.is_empty() { p class="price" { "0" } }
        @for t in v {
            p class="price" data-currency=(t.currency) {
                (money(t.amount_minor, &t.currency))
                @if with_count { " " span class="muted" { "(" (t.count) " " (ctx.t("seller.money.invoices_count")) ")" } }
            }
        }
    }
}

/// The dashboard's money cards: revenue this month and open invoices, per currency.
/// Without the privilege to see them, no card (the rest of the dashboard stays).
pub async fn dashboard_cards(st: &AppState, ctx: &Ctx, auth: &Authed, account_id: i64) -> Markup {
    if !ctx.show_prices() {
        return html! {};
    }
    let Ok(s) = seller_money::money_summary(State(st.clone()), auth.clone(), Path(account_id))
        .await
        .map(|r| r.0)
    else {
        return html! {};
    };
    html! {
        div class="card" id="revenue-month" {
            h2 { (ctx.t("seller.money.revenue_month")) " " span class="muted" { (s.month) } }
            (totals(ctx, &s.revenue, false))
        }
        div class="card" id="open-invoices" {
            h2 { (ctx.t("seller.money.open_invoices")) }
            (totals(ctx, &s.open_invoices, true))
        }
    }
}

async fn docs(
    st: &AppState,
    auth: &Authed,
    id: i64,
    kind: &str,
) -> Result<Vec<DocumentOut>, WebError> {
    Ok(billing::list_documents(
        State(st.clone()),
        auth.clone(),
        Path(id),
        ApiQuery(DocumentListParams {
            kind: Some(kind.into()),
            limit: Some(100),
            cursor: None,
        }),
    )
    .await?
    .0
    .items)
}

fn nonce() -> String {
    crate::auth::new_secret("pm_")
}

/// An account's invoices and payments, with the forms to record and apply payments.
async fn money_page(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    let auth = seller(&ctx)?;
    if id == auth.actor.account_id.0 {
        return Err(WebError::not_found());
    }
    let acc = crate::api::accounts::get_account(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let invoices = docs(&st, &auth, id, "invoice").await?;
    let payments = docs(&st, &auth, id, "payment").await?;
    let open_invoices: Vec<&DocumentOut> = invoices
        .iter()
        .filter(|d| d.open_minor > 0 && d.status == "issued")
        .collect();
    let cur = &acc.currency;
    // A reseller: what it owes its vendors and its next tier invoices will bill.
    let wholesale = if acc.kind == "reseller" {
        Some(
            crate::api::wholesale::uninvoiced(State(st.clone()), auth.clone(), Path(id))
                .await?
                .0,
        )
    } else {
        None
    };
    let body = html! {
        p { strong { (acc.name) } " · " a href={ "/seller/accounts/" (id) "/billing" } { (ctx.t("seller.billing.link")) } }
        h2 { (ctx.t("seller.money.invoices")) }
        table id="invoices" {
            thead { tr { th { (ctx.t("seller.billing.number")) } th { (ctx.t("seller.money.date")) } th { (ctx.t("seller.money.due")) }
                th class="num" { (ctx.t("seller.billing.total")) } th class="num" { (ctx.t("seller.billing.open")) } th { } } }
            tbody {
                @for d in &invoices {
                    tr data-document=(d.id) {
                        td { a href={ "/seller/documents/" (d.id) } { (d.number.as_deref().unwrap_or("—")) } }
                        td { (d.issue_date.as_deref().unwrap_or("")) } td { (d.due_date.as_deref().unwrap_or("")) }
                        td class="num" { (money(d.total_minor, &d.currency)) } td class="num" { (money(d.open_minor, &d.currency)) }
                        td class="actions" { a href={ "/seller/documents/" (d.id) } { (ctx.t("seller.money.view")) } a href={ "/api/v1/documents/" (d.id) "/pdf" } { "PDF" } }
                    }
                }
                @if invoices.is_empty() { tr { td colspan="6" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        @if let Some(w) = &wholesale {
            h2 { (ctx.t("seller.money.wholesale")) }
            p class="muted" { (ctx.t("seller.money.wholesale_hint")) }
            table id="uninvoiced-wholesale" {
                thead { tr { th { (ctx.t("seller.money.order")) } th { (ctx.t("seller.money.date")) } th class="num" { (ctx.t("seller.billing.total")) } } }
                tbody {
                    @for i in &w.items {
                        tr data-wholesale=(i.id) {
                            td {
                                @if let (Some(t), Some(o)) = (&i.order_type, i.order_id) { (t) " #" (o) }
                                @else { (i.description.as_deref().unwrap_or("")) " · " (i.periods) " " (ctx.t("seller.money.periods")) }
                            }
                            td { (i.created_at.get(..10).unwrap_or(&i.created_at)) }
                            td class="num" { (money(i.amount_minor, &i.currency)) }
                        }
                    }
                    @if w.items.is_empty() { tr { td colspan="3" class="muted" { (ctx.t("seller.none")) } } }
                }
            }
        }
        h2 { (ctx.t("seller.money.payments")) }
        table id="payments" {
            thead { tr { th { (ctx.t("seller.billing.number")) } th { (ctx.t("seller.money.date")) } th { (ctx.t("seller.money.method")) }
                th { (ctx.t("seller.money.reference")) } th class="num" { (ctx.t("seller.billing.total")) } th class="num" { (ctx.t("seller.money.unapplied")) } th { } } }
            tbody {
                @for d in &payments {
                    tr data-document=(d.id) {
                        td { a href={ "/seller/documents/" (d.id) } { (d.number.as_deref().unwrap_or("—")) } }
                        td { (d.issue_date.as_deref().unwrap_or("")) }
                        td { (d.method.as_deref().map(|m| ctx.t(match m { "bank_transfer" => "seller.money.bank_transfer", "check" => "seller.money.check", _ => "seller.money.card" })).unwrap_or("")) }
                        td { (d.external_ref.as_deref().unwrap_or("")) }
                        td class="num" { (money(d.total_minor, &d.currency)) } td class="num" { (money(d.open_minor, &d.currency)) }
                        td class="actions" {
                            @if d.open_minor > 0 && !open_invoices.is_empty() {
                                (apply_form(&ctx, d, &open_invoices))
                            }
                        }
                    }
                }
                @if payments.is_empty() { tr { td colspan="7" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        h2 class="section-title" { (ctx.t("seller.money.record")) }
        form method="post" action={ "/seller/accounts/" (id) "/payments" } class="card narrow" id="record-payment" {
            (csrf_field(&ctx))
            input type="hidden" name="nonce" value=(nonce());
            label { (ctx.t("seller.money.amount")) " (" (cur) ")" input name="amount" inputmode="decimal" required; }
            label { (ctx.t("seller.money.method"))
                select name="method" {
                    option value="bank_transfer" { (ctx.t("seller.money.bank_transfer")) }
                    option value="check" { (ctx.t("seller.money.check")) }
                }
            }
            label { (ctx.t("seller.money.reference")) input name="external_ref"; }
            @if !open_invoices.is_empty() {
                fieldset {
                    legend { (ctx.t("seller.money.apply_to")) }
                    @for d in &open_invoices {
                        label { input type="checkbox" name="apply_to" value=(d.id); " " (d.number.as_deref().unwrap_or("—")) " · " (money(d.open_minor, &d.currency)) }
                    }
                }
            }
            p class="muted" { (ctx.t("seller.money.standalone_hint")) }
            button type="submit" class="primary" { (ctx.t("seller.money.record")) }
        }
    };
    Ok(page(&ctx, ctx.t("seller.money.title"), body))
}

fn apply_form(ctx: &Ctx, payment: &DocumentOut, open: &[&DocumentOut]) -> Markup {
    html! {
        form method="post" action={ "/seller/documents/" (payment.id) "/apply" } class="inline apply" {
            (csrf_field(ctx))
            select name="invoice_id" aria-label=(ctx.t("seller.money.apply_to")) {
                @for d in open.iter().filter(|d| d.currency == payment.currency) {
                    option value=(d.id) { (d.number.as_deref().unwrap_or("—")) " · " (money(d.open_minor, &d.currency)) }
                }
            }
            input name="amount" inputmode="decimal" size="8" required
                value=(shop::amount_text(payment.open_minor, &payment.currency)) aria-label=(ctx.t("seller.money.amount"));
            button type="submit" { (ctx.t("seller.money.apply")) }
        }
    }
}

fn bad_amount(name: &str) -> WebError {
    ApiError::field(name, "invalid_amount", "an amount such as 12.50").into()
}

/// Record a bank transfer or check through the API (idempotent on the form's nonce).
async fn record_payment(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let auth = seller(&ctx)?;
    let acc = crate::api::accounts::get_account(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let cur = acc.currency.as_str();
    let amount = shop::parse_amount(field(&f, "amount").unwrap_or(""), cur)
        .ok_or_else(|| bad_amount("amount"))?;
    let mut apply_to = Vec::new();
    for (k, v) in &f {
        if k == "apply_to" {
            apply_to.push(v.parse::<i64>().map_err(|_| {
                WebError::from(ApiError::field(
                    "apply_to",
                    "unknown_invoice",
                    "no such invoice of this account",
                ))
            })?);
        }
    }
    let mut headers = HeaderMap::new();
    if let Some(n) = field(&f, "nonce").filter(|n| !n.is_empty() && n.len() < 100)
        && let Ok(v) = HeaderValue::from_str(&format!("panel-payment-{id}-{n}"))
    {
        headers.insert(IDEMPOTENCY_HEADER, v);
    }
    let body = PaymentIn {
        amount_minor: amount,
        currency: cur.to_string(),
        method: field(&f, "method").unwrap_or("").to_string(),
        card_number: None,
        apply_to: Some(apply_to),
        external_ref: field(&f, "external_ref")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    };
    billing::create_payment(State(st), auth, Path(id), headers, ApiJson(body)).await?;
    Ok(Redirect::to(&format!("/seller/accounts/{id}/money")).into_response())
}

/// Apply an open payment to an invoice of the same account.
async fn apply(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let auth = seller(&ctx)?;
    let payment = billing::get_document(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let amount = shop::parse_amount(field(&f, "amount").unwrap_or(""), &payment.currency)
        .ok_or_else(|| bad_amount("amount_minor"))?;
    let invoice_id = field(&f, "invoice_id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            WebError::from(ApiError::field(
                "invoice_id",
                "unknown_invoice",
                "no such invoice of this account",
            ))
        })?;
    let _ = billing::apply_payment(
        State(st),
        auth,
        Path(id),
        ApiJson(ApplyIn {
            invoice_id,
            amount_minor: amount,
        }),
    )
    .await?;
    Ok(Redirect::to(&format!("/seller/accounts/{}/money", payment.account_id)).into_response())
}

/// One document: its lines, allocations and the PDF.
async fn document_page(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    let auth = seller(&ctx)?;
    let d = billing::get_document(State(st), auth, Path(id)).await?.0;
    let lines = d.lines.as_deref().unwrap_or(&[]);
    let allocations = d.allocations.as_deref().unwrap_or(&[]);
    let title = d.number.clone().unwrap_or_else(|| format!("#{}", d.id));
    let body = html! {
        p class="actions" {
            a href={ "/seller/accounts/" (d.account_id) "/money" } { (ctx.t("seller.money.back")) }
            @if d.kind == "invoice" { a href={ "/api/v1/documents/" (d.id) "/pdf" } { "PDF" } }
        }
        dl id="document" {
            dt { (ctx.t("seller.billing.type")) } dd { code { (d.kind) } }
            dt { (ctx.t("seller.money.date")) } dd { (d.issue_date.as_deref().unwrap_or("")) }
            @if let Some(due) = &d.due_date { dt { (ctx.t("seller.money.due")) } dd { (due) } }
            dt { (ctx.t("seller.billing.total")) } dd class="price" { (money(d.total_minor, &d.currency)) }
            dt { (ctx.t("seller.billing.open")) } dd { (money(d.open_minor, &d.currency)) }
        }
        @if !lines.is_empty() {
            table id="lines" {
                thead { tr { th { (ctx.t("seller.money.description")) } th class="num" { (ctx.t("seller.money.quantity")) } th class="num" { (ctx.t("seller.billing.total")) } } }
                tbody { @for l in lines { tr { td { (l.description) } td class="num" { (l.quantity) } td class="num" { (money(l.amount_minor, &d.currency)) } } } }
            }
        }
        h2 { (ctx.t("seller.money.allocations")) }
        table id="allocations" {
            tbody {
                @for a in allocations {
                    tr {
                        td { a href={ "/seller/documents/" (if a.from_document_id == d.id { a.to_document_id } else { a.from_document_id }) } { "#" (if a.from_document_id == d.id { a.to_document_id } else { a.from_document_id }) } }
                        td class="num" { (money(a.amount_minor, &d.currency)) }
                    }
                }
                @if allocations.is_empty() { tr { td colspan="2" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
    };
    Ok(page(&ctx, &title, body))
}
