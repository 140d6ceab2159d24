//! The customer panel at `/panel`: home (with a warning for every order waiting for
//! payment), subscriptions with resource gauges, quantity changes priced before they are
//! confirmed, cancel and auto-renew where the customer's privileges allow, invoices and
//! payments with a standalone top-up, users, profile, and the in-panel marketplace.
//!
//! Every action calls the API's own handler (same validation, authorization, events,
//! money rules); every read goes through `Authed::check` on the account it belongs to,
//! so an id edited in the URL that is not the customer's is the 404 page.

use super::layout::csrf_field;
use super::shop::{self, money};
use super::{CsrfForm, Ctx, Pairs, WebError, WebResult, field, page};
use crate::api::billing::{PaymentIn, create_payment};
use crate::api::orders::{
    ChangeIn, PatchSubscriptionIn, cancel_subscription, change_quote, change_subscription,
    pay_order, place_order, sub_for, switch_quote, switch_targets,
};
use crate::api::users::{UpdateUserIn, update_user};
use crate::auth::Authed;
use crate::extract::ApiJson;
use crate::middleware::IDEMPOTENCY_HEADER;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use cascade_domain::account::AccountKind;
use cascade_domain::authz::Action;
use cascade_domain::billing::lifecycle::AutoRenew;
use cascade_domain::catalog::plan::UNLIMITED;
use cascade_domain::catalog::resources::ResourceKind;
use cascade_domain::ids::AccountId;
use cascade_domain::privilege::Privilege;
use cascade_store::documents::DocKind;
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel", get(home))
        .route("/panel/orders/{id}/pay", post(pay))
        .route("/panel/orders/{id}/topup-pay", post(topup_and_pay))
        .route("/panel/subscriptions", get(subscriptions))
        .route("/panel/subscriptions/{id}", get(subscription))
        .route(
            "/panel/subscriptions/{id}/change",
            get(change_preview).post(change),
        )
        .route(
            "/panel/subscriptions/{id}/switch/{plan}",
            get(switch_preview).post(switch),
        )
        .route("/panel/subscriptions/{id}/cancel", post(cancel))
        .route("/panel/subscriptions/{id}/auto-renew", post(auto_renew))
        .route("/panel/billing", get(billing))
        .route("/panel/billing/topup", post(topup))
        .route("/panel/billing/invoices/{id}/pdf", get(invoice_pdf))
        .route("/panel/users", get(users))
        .route("/panel/profile", get(profile).post(save_profile))
        .route("/panel/marketplace", get(marketplace))
        .route("/panel/marketplace/compare", get(compare))
        .route("/panel/marketplace/plans/{id}", get(plan_page).post(order))
}

/// The logged-in customer and its account id.
fn me(ctx: &Ctx) -> Result<(&Authed, AccountId), WebError> {
    let a = ctx.authed()?;
    Ok((a, a.actor.account_id))
}

fn is_customer(ctx: &Ctx) -> bool {
    ctx.account
        .as_ref()
        .is_some_and(|a| a.kind == AccountKind::Customer)
}

fn notice(ctx: &Ctx, q: &Flash) -> Markup {
    html! {
        @if let Some(k) = &q.done {
            @let key = match k.as_str() { "paid" => "billing.topup_done", "changed" => "sub.changed", "cancelled" => "sub.cancelled", "saved" => "profile.saved", "ordered" => "market.ordered", "switched" => "sub.switched", _ => "profile.saved" };
            div class="notice ok" role="status" { p { (ctx.t(key)) } }
        }
    }
}

#[derive(Deserialize, Default)]
struct Flash {
    done: Option<String>,
}

async fn plan_name(st: &AppState, ctx: &Ctx, plan_id: i64) -> String {
    match st.catalog.plan(&st.db, plan_id).await {
        Ok(p) => p.content.name.get(ctx.lang()).to_string(),
        Err(_) => format!("#{plan_id}"),
    }
}

/// The top-up-and-pay form for an order (card through the configured gateway).
fn topup_form(ctx: &Ctx, action: &str, minor: i64, currency: &str) -> Markup {
    html! {
        form method="post" action=(action) class="actions topup" {
            (csrf_field(ctx))
            input type="hidden" name="nonce" value=(crate::auth::new_secret("pf_"));
            label { (ctx.t("billing.amount")) " (" (currency) ")" input name="amount" value=(shop::amount_text(minor, currency)) inputmode="decimal" required; }
            label { (ctx.t("billing.card")) input name="card" inputmode="numeric" autocomplete="cc-number" required; }
            button type="submit" class="primary" { (ctx.t("home.topup")) }
        }
    }
}

async fn home(State(st): State<AppState>, ctx: Ctx, Query(q): Query<Flash>) -> WebResult {
    let (auth, acc) = me(&ctx)?;
    if !is_customer(&ctx) {
        return Ok(page(
            &ctx,
            ctx.t("home.title"),
            html! { p { (ctx.t("home.title")) } },
        ));
    }
    auth.check(&st, acc, Action::ViewOrders).await?;
    let waiting = st.db.orders().waiting_for_payment(acc, 100).await?;
    let subs = st
        .db
        .subscriptions()
        .of_account(acc, None, 100)
        .await?
        .items;
    let account = ctx.account.as_ref().ok_or_else(WebError::not_found)?;
    let cur = account.currency.code();
    let balance = if ctx.show_prices() && ctx.billing_screens.balance {
        Some(st.db.documents().balance(acc, cur).await?)
    } else {
        None
    };
    let mut names = BTreeMap::new();
    for s in &subs {
        names.insert(s.id, plan_name(&st, &ctx, s.plan_id).await);
    }
    let body = html! {
        (notice(&ctx, &q))
        @for o in &waiting {
            div class="notice warn order-waits" role="alert" data-order=(o.id) {
                p { @if ctx.show_prices() { (ctx.tr.f("home.order_waits", &[("number", &o.id.to_string()), ("amount", &money(o.total_minor, &o.currency))])) } @else { (ctx.tr.f("home.order_waits_noprice", &[("number", &o.id.to_string())])) } }
                div class="actions" {
                    form method="post" action={ "/panel/orders/" (o.id) "/pay" } class="inline" {
                        (csrf_field(&ctx))
                        button type="submit" { (ctx.t("home.pay_now")) }
                    }
                }
                @if ctx.show_prices() { (topup_form(&ctx, &format!("/panel/orders/{}/topup-pay", o.id), o.total_minor, &o.currency)) }
            }
        }
        @if let Some(b) = balance {
            p class="balance" { (ctx.t("home.balance")) ": " span class="price" { (money(b, cur)) } }
        }
        h2 { (ctx.t("home.subscriptions")) }
        @if subs.is_empty() {
            p { (ctx.t("home.no_subscriptions")) " " a href="/panel/marketplace" { (ctx.t("home.browse")) } }
        } @else {
            (subs_table(&ctx, &subs, &names))
        }
    };
    Ok(page(&ctx, ctx.t("home.title"), body))
}

fn subs_table(
    ctx: &Ctx,
    subs: &[cascade_store::subscriptions::Subscription],
    names: &BTreeMap<i64, String>,
) -> Markup {
    html! {
        table class="subscriptions" {
            thead { tr { th { "#" } th { (ctx.t("sub.plan")) } th { (ctx.t("sub.status")) } th { (ctx.t("sub.expires")) } th {} } }
            tbody {
                @for s in subs {
                    tr {
                        td { (s.id) }
                        td { (names.get(&s.id).cloned().unwrap_or_default()) }
                        td { span class="badge" data-status=(s.status.as_str()) { (ctx.tr.status(s.status.as_str())) } }
                        td { (s.expires_on) }
                        td { a href={ "/panel/subscriptions/" (s.id) } { (ctx.t("sub.view")) } }
                    }
                }
            }
        }
    }
}

async fn pay(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let _ = pay_order(State(st), auth.clone(), Path(id)).await?;
    Ok(Redirect::to("/panel?done=paid").into_response())
}

/// A card payment through the API (idempotent on the form's nonce).
pub(crate) async fn card_topup(
    st: &AppState,
    auth: &Authed,
    acc: AccountId,
    pairs: &Pairs,
    apply_to: Option<Vec<i64>>,
) -> Result<(), WebError> {
    let account = st.db.accounts().get(acc).await?;
    let cur = account.currency.code();
    let amount =
        shop::parse_amount(field(pairs, "amount").unwrap_or(""), cur).ok_or_else(|| {
            WebError::from(crate::error::ApiError::field(
                "amount",
                "invalid_amount",
                "an amount such as 12.50",
            ))
        })?;
    let mut headers = HeaderMap::new();
    if let Some(n) = field(pairs, "nonce").filter(|n| !n.is_empty() && n.len() < 100)
        && let Ok(v) = HeaderValue::from_str(&format!("panel-topup-{}-{n}", acc.0))
    {
        headers.insert(IDEMPOTENCY_HEADER, v);
    }
    let body = PaymentIn {
        amount_minor: amount,
        currency: cur.to_string(),
        method: "card".into(),
        card_number: field(pairs, "card").map(str::to_string),
        apply_to,
        external_ref: None,
    };
    let r = create_payment(
        State(st.clone()),
        auth.clone(),
        Path(acc.0),
        headers,
        ApiJson(body),
    )
    .await?;
    if r.status() == axum::http::StatusCode::ACCEPTED {
        return Err(WebError::from(crate::error::ApiError::conflict(
            "the card payment is pending; the order is paid once it is confirmed",
        )));
    }
    Ok(())
}

async fn topup_and_pay(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(pairs): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, acc) = me(&ctx)?;
    // The order must be the customer's (404 otherwise) before any money moves.
    let order = st.db.orders().get(id).await?;
    auth.check(&st, order.account_id, Action::PlaceOrder)
        .await?;
    if order.account_id != acc {
        return Err(WebError::not_found());
    }
    card_topup(&st, auth, acc, &pairs, None).await?;
    let _ = pay_order(State(st), auth.clone(), Path(id)).await?;
    Ok(Redirect::to("/panel?done=paid").into_response())
}

async fn subscriptions(State(st): State<AppState>, ctx: Ctx) -> WebResult {
    let (auth, acc) = me(&ctx)?;
    auth.check(&st, acc, Action::ViewOrders).await?;
    let subs = st
        .db
        .subscriptions()
        .of_account(acc, None, 200)
        .await?
        .items;
    let mut names = BTreeMap::new();
    for s in &subs {
        names.insert(s.id, plan_name(&st, &ctx, s.plan_id).await);
    }
    let body = html! {
        @if subs.is_empty() { p { (ctx.t("home.no_subscriptions")) } } @else { (subs_table(&ctx, &subs, &names)) }
    };
    Ok(page(&ctx, ctx.t("sub.title"), body))
}

async fn subscription(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<Flash>,
) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let (sub, _) = sub_for(&st, auth, id, Action::ViewOrders).await?;
    let plan = st.db.plans().get(sub.plan_id).await?;
    let names = shop::resource_names(&st, &ctx, &plan.content).await;
    let kinds = shop::rate_kinds(&st, &plan.content).await;
    let usage = st
        .db
        .subscriptions()
        .unbilled_usage(sub.id, &sub.start_date, "9999-12-31")
        .await?;
    let rates: Vec<_> = plan
        .content
        .rates
        .iter()
        .filter(|r| r.show_in_panel)
        .collect();
    let changeable: Vec<_> = rates.iter().filter(|r| r.max != r.min).collect();
    let active = sub.status.as_str() == "active";
    // Buttons only where the API would accept the action (the same authorization rule:
    // the self-service privilege and the right to manage subscriptions).
    let may = |p: Privilege| {
        auth.check(
            &st,
            sub.account_id,
            Action::ManageSubscriptions {
                self_service: Some(p),
            },
        )
    };
    let may_auto_renew = may(Privilege::ChangeAutoRenew).await.is_ok();
    let may_cancel = may(Privilege::CancelSubscriptions).await.is_ok();
    // Upgrades and downgrades: the plans the API's CH order accepts for this subscription.
    let targets = if active
        && auth
            .check(&st, sub.account_id, Action::PlaceOrder)
            .await
            .is_ok()
    {
        switch_targets(&st, &sub, &plan).await?
    } else {
        Vec::new()
    };
    let body = html! {
        (notice(&ctx, &q))
        div class="card" {
            p { (ctx.t("sub.plan")) ": " strong { (plan.content.name.get(ctx.lang())) } }
            p { (ctx.t("sub.status")) ": " span class="badge" data-status=(sub.status.as_str()) { (ctx.tr.status(sub.status.as_str())) } }
            @if let Some(d) = &sub.held_on { p class="held-on" { (ctx.tr.f("sub.held_on", &[("date", d)])) } }
            @if let Some(d) = &sub.terminated_on { p class="terminated-on" { (ctx.tr.f("sub.terminated_on", &[("date", d)])) } }
            p { (ctx.t("sub.expires")) ": " (sub.expires_on) " · " (ctx.t("sub.next_bill")) ": " (sub.next_bill_date) }
            p { (ctx.t("sub.auto_renew")) ": " (auto_renew_text(&ctx, &sub.auto_renew)) }
        }
        h2 { (ctx.t("sub.resources")) }
        div class="card gauges" {
            // A gauge for every limited quantity resource (usage against the limit); a
            // boolean resource (its type's kind) is a feature, shown on or off.
            @for r in &rates {
                @let limit = sub.quantities.get(&r.uid).copied().unwrap_or(r.included);
                @if kinds.get(&r.uid) == Some(&ResourceKind::Boolean) {
                    @let name = rate_name(&names, &r.uid);
                    @let on = ResourceKind::Boolean.is_on(limit);
                    div.feature.on[on].off[!on] data-rate=(r.uid) data-on=(on) {
                        span { (name) }
                        span class="switch-state" { @if on { "✓ " (ctx.t("sub.resource_on")) } @else { "✗ " (ctx.t("sub.resource_off")) } }
                    }
                } @else if limit != UNLIMITED {
                    @let used = usage.get(&r.uid).copied().unwrap_or(0);
                    @let name = rate_name(&names, &r.uid);
                    div class="gauge" data-rate=(r.uid) {
                        div class="label" { span { (name) } span { (ctx.tr.f("sub.usage_of", &[("used", &used.to_string()), ("limit", &limit.to_string())])) } }
                        meter min="0" max=(limit.max(1)) high=((limit * 9 / 10).max(1)) value=(used) { (used) " / " (limit) }
                    }
                }
            }
        }
        @if active && !changeable.is_empty() {
            h2 { (ctx.t("sub.change")) }
            form method="get" action={ "/panel/subscriptions/" (sub.id) "/change" } class="card" {
                @for r in &changeable {
                    @let name = rate_name(&names, &r.uid);
                    (shop::quantity_input(&ctx, &format!("q.{}", r.uid), &name, r, sub.quantities.get(&r.uid).copied().unwrap_or(r.included)))
                }
                button type="submit" { (ctx.t("sub.preview")) }
            }
        }
        @if !targets.is_empty() {
            h2 { (ctx.t("sub.upgrade")) }
            ul class="card switch-plans" {
                @for (p, _) in &targets {
                    li data-plan=(p.id) {
                        strong { (p.content.name.get(ctx.lang())) }
                        " "
                        a class="button" href={ "/panel/subscriptions/" (sub.id) "/switch/" (p.id) } { (ctx.t("sub.upgrade_to")) }
                    }
                }
            }
        }
        @if active {
            div class="actions" {
                @if may_auto_renew {
                    @let (mode, label) = if matches!(sub.auto_renew, AutoRenew::Off) { ("on_expiry", "sub.auto_renew_on") } else { ("off", "sub.auto_renew_off") };
                    (post_button(&ctx, &format!("/panel/subscriptions/{}/auto-renew", sub.id), &[("mode", mode)], None, ctx.t(label)))
                }
                @if may_cancel {
                    (post_button(&ctx, &format!("/panel/subscriptions/{}/cancel", sub.id), &[], Some("danger"), ctx.t("sub.cancel")))
                }
            }
        }
    };
    Ok(page(
        &ctx,
        &ctx.tr.f("sub.one", &[("id", &sub.id.to_string())]),
        body,
    ))
}

fn auto_renew_text(ctx: &Ctx, a: &AutoRenew) -> String {
    match a {
        AutoRenew::Off => ctx.t("sub.auto_renew.off").to_string(),
        AutoRenew::OnExpiry => ctx.t("sub.auto_renew.on_expiry").to_string(),
        AutoRenew::DaysBefore { days } => ctx
            .tr
            .f("sub.auto_renew.days_before", &[("days", &days.to_string())]),
    }
}

fn quantities_of(pairs: &Pairs) -> BTreeMap<String, i64> {
    pairs
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("q.")?.to_string(), v.trim().parse().ok()?)))
        .collect()
}

/// Step one of a change: the prorated price, computed by the API's pricing, then confirm.
/// A one-button form that posts (with the CSRF token and `hidden` fields) to `action`:
/// the subscription page's and the plan-switch page's actions.
fn post_button(
    ctx: &Ctx,
    action: &str,
    hidden: &[(&str, &str)],
    class: Option<&str>,
    label: &str,
) -> Markup {
    html! {
        form method="post" action=(action) class="inline" {
            (csrf_field(ctx))
            @for (k, v) in hidden { input type="hidden" name=(k) value=(v); }
            button type="submit" class=[class] { (label) }
        }
    }
}

/// A resource rate's name in the reader's language (its key when the type has none).
fn rate_name(names: &BTreeMap<String, String>, uid: &str) -> String {
    names.get(uid).cloned().unwrap_or_else(|| uid.to_string())
}

async fn change_preview(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(pairs): Query<Pairs>,
) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let q = quantities_of(&pairs);
    let (total, cur) = change_quote(&st, auth, id, &q).await?;
    let body = html! {
        div class="card" {
            @if ctx.show_prices() {
                p { (ctx.t("sub.prorated")) ": " span class="price prorated" { (money(total, cur.code())) } }
            }
            ul { @for (k, v) in &q { li { (k) ": " (v) } } }
            form method="post" action={ "/panel/subscriptions/" (id) "/change" } {
                (csrf_field(&ctx))
                @for (k, v) in &q { input type="hidden" name={ "q." (k) } value=(v); }
                button type="submit" class="primary" { (ctx.t("sub.confirm")) }
            }
        }
    };
    Ok(page(&ctx, ctx.t("sub.preview_title"), body))
}

async fn change(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(pairs): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let body = ChangeIn {
        quantities: Some(quantities_of(&pairs)),
        period_uid: None,
        defer: false,
        plan_id: None,
    };
    let _ = change_subscription(State(st), auth.clone(), Path(id), ApiJson(body)).await?;
    Ok(Redirect::to(&format!("/panel/subscriptions/{id}?done=changed")).into_response())
}

/// Step one of a plan switch: the prorated price (charge or credit) computed by the
/// API's own switch pricing, the new plan's quantities, and for a downgrade the choice to
/// wait for the next billing date.
async fn switch_preview(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((id, plan_id)): Path<(i64, i64)>,
) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let q = switch_quote(&st, auth, id, plan_id).await?;
    let (sub, _) = sub_for(&st, auth, id, Action::PlaceOrder).await?;
    let from = plan_name(&st, &ctx, sub.plan_id).await;
    let to = q.switch.plan.content.name.get(ctx.lang()).to_string();
    let names = shop::resource_names(&st, &ctx, &q.switch.plan.content).await;
    let cur = q.currency.code();
    let days = [
        ("remaining", q.remaining_days.to_string()),
        ("days", q.period_days.to_string()),
    ];
    let days: Vec<(&str, &str)> = days.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let date = q.effective_on.to_string();
    let action = format!("/panel/subscriptions/{id}/switch/{plan_id}");
    let body = html! {
        div class="card switch-preview" {
            p { (ctx.t("sub.plan")) ": " strong { (from) } " → " strong class="to" { (to) } }
            ul class="switch-quantities" {
                @for (uid, n) in &q.switch.quantities {
                    li { (rate_name(&names, uid)) ": " (n) }
                }
            }
            @if ctx.show_prices() {
                @if q.total_minor > 0 {
                    p { (ctx.tr.f("sub.switch_charge", &days)) ": " span class="price prorated" { (money(q.total_minor, cur)) } }
                } @else if q.total_minor < 0 {
                    p { (ctx.tr.f("sub.switch_credit", &days)) ": " span class="price prorated credit" { (money(-q.total_minor, cur)) } }
                } @else {
                    p { (ctx.t("sub.switch_free")) }
                }
            }
            @if q.total_minor < 0 {
                p class="deferrable" { (ctx.tr.f("sub.switch_deferrable", &[("date", &date)])) }
            }
            div class="actions" {
                (post_button(&ctx, &action, &[], Some("primary"), ctx.t("sub.switch_now")))
                @if q.total_minor < 0 {
                    (post_button(&ctx, &action, &[("defer", "1")], Some("defer"), &ctx.tr.f("sub.switch_later", &[("date", &date)])))
                }
            }
        }
    };
    Ok(page(
        &ctx,
        &ctx.tr
            .f("sub.switch_title", &[("from", &from), ("to", &to)]),
        body,
    ))
}

/// Confirm a plan switch: a CH order through the API's own handler.
async fn switch(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((id, plan_id)): Path<(i64, i64)>,
    CsrfForm(pairs): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let body = ChangeIn {
        quantities: None,
        period_uid: None,
        defer: field(&pairs, "defer") == Some("1"),
        plan_id: Some(plan_id),
    };
    let _ = change_subscription(State(st), auth.clone(), Path(id), ApiJson(body)).await?;
    Ok(Redirect::to(&format!("/panel/subscriptions/{id}?done=switched")).into_response())
}

async fn cancel(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let _ = cancel_subscription(State(st), auth.clone(), Path(id)).await?;
    Ok(Redirect::to(&format!("/panel/subscriptions/{id}?done=cancelled")).into_response())
}

async fn auto_renew(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(pairs): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let mode = if field(&pairs, "mode") == Some("off") {
        AutoRenew::Off
    } else {
        AutoRenew::OnExpiry
    };
    let _ = crate::api::orders::patch_subscription(
        State(st),
        auth.clone(),
        Path(id),
        ApiJson(PatchSubscriptionIn { auto_renew: mode }),
    )
    .await?;
    Ok(Redirect::to(&format!("/panel/subscriptions/{id}?done=saved")).into_response())
}

/// One of the customer's own invoices as PDF, only while its sellers show the invoices
/// screen (`cascade_domain::billing::visibility`): hidden, or not the customer's own
/// invoice, is the 404 page. The panel links here, never to the API.
async fn invoice_pdf(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    let (auth, acc) = me(&ctx)?;
    if !ctx.billing_screens.invoices {
        return Err(WebError::not_found());
    }
    let d = match st.db.documents().get(id).await {
        Ok(d) => d,
        Err(cascade_store::StoreError::NotFound) => return Err(WebError::not_found()),
        Err(e) => return Err(e.into()),
    };
    if d.account_id != acc || d.kind != DocKind::Invoice {
        return Err(WebError::not_found());
    }
    Ok(crate::api::billing::document_pdf(State(st), auth.clone(), Path(id)).await?)
}

async fn billing(State(st): State<AppState>, ctx: Ctx, Query(q): Query<Flash>) -> WebResult {
    let (auth, acc) = me(&ctx)?;
    auth.check(&st, acc, Action::ViewBilling).await?;
    // Screens the sellers hide are not there at all; with none left, neither is the page.
    let screens = ctx.billing_screens;
    if !screens.any() {
        return Err(WebError::not_found());
    }
    let account = ctx.account.as_ref().ok_or_else(WebError::not_found)?;
    let cur = account.currency.code();
    let invoices = if screens.invoices {
        st.db
            .documents()
            .of_account(acc, Some(DocKind::Invoice), None, 100)
            .await?
            .items
    } else {
        vec![]
    };
    let payments = if screens.payments {
        st.db
            .documents()
            .of_account(acc, Some(DocKind::Payment), None, 100)
            .await?
            .items
    } else {
        vec![]
    };
    let prices = ctx.show_prices();
    let balance = if prices && screens.balance {
        Some(st.db.documents().balance(acc, cur).await?)
    } else {
        None
    };
    let body = html! {
        (notice(&ctx, &q))
        @if let Some(b) = balance { p class="balance" { (ctx.t("billing.balance")) ": " span class="price" { (money(b, cur)) } } }
        @if screens.invoices {
        h2 { (ctx.t("billing.invoices")) }
        @if invoices.is_empty() { p { (ctx.t("billing.none")) } } @else {
            table class="invoices" {
                thead { tr { th { (ctx.t("billing.number")) } th { (ctx.t("billing.date")) } th { (ctx.t("billing.status")) }
                    @if prices { th class="num" { (ctx.t("billing.total")) } th class="num" { (ctx.t("billing.open")) } } th {} } }
                tbody { @for d in &invoices { tr {
                    td { (d.number.clone().unwrap_or_default()) } td { (d.issue_date.clone().unwrap_or_default()) } td { span class="badge" data-status=(d.status) { (ctx.tr.status(&d.status)) } }
                    @if prices { td class="num" { (money(d.total_minor, &d.currency)) } td class="num" { (money(d.open_minor, &d.currency)) } }
                    td { a href={ "/panel/billing/invoices/" (d.id) "/pdf" } { (ctx.t("billing.pdf")) } }
                } } }
            }
        }
        }
        @if screens.payments {
        h2 { (ctx.t("billing.payments")) }
        @if payments.is_empty() { p { (ctx.t("billing.none")) } } @else {
            table class="payments" {
                thead { tr { th { (ctx.t("billing.number")) } th { (ctx.t("billing.date")) } th { (ctx.t("billing.method")) } @if prices { th class="num" { (ctx.t("billing.amount")) } } } }
                tbody { @for d in &payments { tr {
                    td { (d.number.clone().unwrap_or_default()) } td { (d.issue_date.clone().unwrap_or_default()) } td { (ctx.tr.status(d.method.as_deref().unwrap_or_default())) }
                    @if prices { td class="num" { (money(d.total_minor, &d.currency)) } }
                } } }
            }
        }
        }
        @if prices && screens.balance && ctx.has(Privilege::BillingManage) {
            h2 { (ctx.t("billing.topup")) }
            div class="card" { (topup_form(&ctx, "/panel/billing/topup", 0, cur)) }
        }
    };
    Ok(page(&ctx, ctx.t("billing.title"), body))
}

async fn topup(
    State(st): State<AppState>,
    ctx: Ctx,
    CsrfForm(pairs): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, acc) = me(&ctx)?;
    if !ctx.billing_screens.balance {
        return Err(WebError::not_found());
    }
    card_topup(&st, auth, acc, &pairs, None).await?;
    Ok(Redirect::to("/panel/billing?done=paid").into_response())
}

async fn users(State(st): State<AppState>, ctx: Ctx) -> WebResult {
    let (auth, acc) = me(&ctx)?;
    auth.check(&st, acc, Action::ViewUsers).await?;
    let list = st.db.users().list_for_account(acc, None, 200).await?.items;
    let body = html! {
        table class="users" {
            thead { tr { th { (ctx.t("users.login")) } th { (ctx.t("users.name")) } th { (ctx.t("users.email")) } th { (ctx.t("users.status")) } } }
            tbody { @for u in &list { tr {
                td { (u.login.as_str()) } td { (u.display_name) } td { (u.email.as_str()) }
                td { @if u.disabled { (ctx.t("users.disabled")) } @else { (ctx.t("users.active")) } }
            } } }
        }
    };
    Ok(page(&ctx, ctx.t("users.title"), body))
}

async fn profile(ctx: Ctx, Query(q): Query<Flash>) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let current = auth
        .user
        .language
        .as_ref()
        .map(|l| l.as_str().to_string())
        .unwrap_or_default();
    let body = html! {
        (notice(&ctx, &q))
        form method="post" action="/panel/profile" class="card narrow" {
            (csrf_field(&ctx))
            label { (ctx.t("profile.language"))
                select name="language" {
                    @for (code, name) in super::i18n::LANGUAGES {
                        option value=(code) selected[current == code] lang=(code) { (name) }
                    }
                }
            }
            button type="submit" class="primary" { (ctx.t("profile.save")) }
        }
    };
    Ok(page(&ctx, ctx.t("profile.title"), body))
}

async fn save_profile(
    State(st): State<AppState>,
    ctx: Ctx,
    jar: axum_extra::extract::CookieJar,
    CsrfForm(pairs): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, _) = me(&ctx)?;
    let body = UpdateUserIn {
        display_name: None,
        email: None,
        language: field(&pairs, "language").map(str::to_string),
    };
    let _ = update_user(State(st), auth.clone(), Path(auth.user.id.0), ApiJson(body)).await?;
    // The saved preference rules from now on: forget the switcher's cookie.
    let jar = jar.remove(
        axum_extra::extract::cookie::Cookie::build(super::LANG_COOKIE)
            .path("/")
            .build(),
    );
    Ok((jar, Redirect::to("/panel/profile?done=saved")).into_response())
}

/// The customer's vendor: whose catalog the marketplace shows.
fn vendor(ctx: &Ctx) -> Result<AccountId, WebError> {
    ctx.account
        .as_ref()
        .and_then(|a| a.vendor_id)
        .ok_or_else(WebError::not_found)
}

async fn marketplace(State(st): State<AppState>, ctx: Ctx) -> WebResult {
    let (auth, acc) = me(&ctx)?;
    auth.check(&st, acc, Action::ViewAccount).await?;
    let v = vendor(&ctx)?;
    let tree = st.catalog.tree(&st.db, v.0).await?;
    let plans = shop::plans_on_sale(&st, v).await?;
    let body = shop::catalog(
        &ctx,
        &tree,
        &plans,
        &|id| format!("/panel/marketplace/plans/{id}"),
        Some("/panel/marketplace/compare"),
    );
    Ok(page(&ctx, ctx.t("market.title"), body))
}

/// A plan of the customer's vendor, on sale; anything else is not found.
async fn offered(
    st: &AppState,
    ctx: &Ctx,
    id: i64,
) -> Result<cascade_store::plans::Plan, WebError> {
    let v = vendor(ctx)?;
    let p = st.db.plans().get(id).await?;
    if p.owner_account_id != v || !p.on_sale() {
        return Err(WebError::not_found());
    }
    Ok(p)
}

async fn compare(State(st): State<AppState>, ctx: Ctx, Query(pairs): Query<Pairs>) -> WebResult {
    me(&ctx)?;
    let mut plans = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "plan") {
        if let Ok(id) = v.parse() {
            plans.push(offered(&st, &ctx, id).await?);
        }
    }
    let mut names = BTreeMap::new();
    for p in &plans {
        names.extend(shop::resource_names(&st, &ctx, &p.content).await);
    }
    let body = html! {
        (shop::compare_table(&ctx, &plans, &names))
        div class="actions" { @for p in &plans { a class="button" href={ "/panel/marketplace/plans/" (p.id) } { (ctx.t("market.buy")) " " (p.content.name.get(ctx.lang())) } } }
    };
    Ok(page(&ctx, ctx.t("market.compare"), body))
}

async fn plan_page(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    me(&ctx)?;
    let p = offered(&st, &ctx, id).await?;
    let names = shop::resource_names(&st, &ctx, &p.content).await;
    let body = html! {
        @if let Some(d) = &p.content.long_description { p { (d.get(ctx.lang())) } }
        form method="post" action={ "/panel/marketplace/plans/" (p.id) } class="card order-form" {
            (csrf_field(&ctx))
            (shop::order_fields(&ctx, &p, &names))
            button type="submit" class="primary" { (ctx.t("market.place_order")) }
        }
    };
    Ok(page(&ctx, p.content.name.get(ctx.lang()), body))
}

async fn order(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(pairs): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, acc) = me(&ctx)?;
    let p = offered(&st, &ctx, id).await?;
    let body = shop::order_request(&p, &pairs);
    let _ = place_order(State(st), auth.clone(), Path(acc.0), ApiJson(body)).await?;
    Ok(Redirect::to("/panel?done=ordered").into_response())
}
