//! The public online store, one per seller at `/store/{seller}`: the catalog by sales
//! category, plan pages, a cart (the configured plan), then sign-up, order and payment in
//! one form; domain search; and the store's own activity log.
//!
//! No login is needed to browse. Checkout is the API's own checkout (the core of
//! `POST /place-order-and-authorize`, `api::checkout::checkout`): the customer under the
//! seller, its administrator with the built-in account-admin role, the order and the card
//! payment in one transaction — all or nothing, so a refused order leaves no account.
//! Then it opens the same session the API's login opens.

use super::layout::csrf_field;
use super::shop::{self, money};
use super::{CsrfForm, Ctx, Pairs, WebError, WebResult, field, page};
use crate::api::accounts::ContactIn;
use crate::api::checkout::{
    CheckoutAccountIn, CheckoutIn, CheckoutPaymentIn, CheckoutUserIn, checkout as api_checkout,
};
use crate::api::session::{LoginIn, start_session};
use crate::extract::PeerAddr;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use cascade_domain::account::{Account, AccountKind, AccountStatus};
use cascade_domain::domains::{self, Tld};
use cascade_domain::ids::AccountId;
use maud::html;
use serde::Deserialize;
use std::io::Write;
use std::sync::Mutex;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/store/{seller}", get(catalog))
        .route("/store/{seller}/plans/{id}", get(plan_page))
        .route("/store/{seller}/cart", get(cart))
        .route("/store/{seller}/checkout", post(checkout))
        .route("/store/{seller}/domains", get(domain_search))
}

/// A seller with a store: the provider or a reseller, not cancelled.
async fn seller(st: &AppState, id: i64) -> Result<Account, WebError> {
    let a = st.db.accounts().get(AccountId(id)).await?;
    if a.kind == AccountKind::Customer || a.status == AccountStatus::Cancelled {
        return Err(WebError::not_found());
    }
    Ok(a)
}

async fn on_sale(
    st: &AppState,
    s: &Account,
    id: i64,
) -> Result<cascade_store::plans::Plan, WebError> {
    let p = st.db.plans().get(id).await?;
    if p.owner_account_id != s.id || !p.on_sale() {
        return Err(WebError::not_found());
    }
    Ok(p)
}

fn store_nav(ctx: &Ctx, s: &Account) -> maud::Markup {
    html! {
        p class="actions store-nav" {
            a href={ "/store/" (s.id.0) } { (ctx.t("store.catalog")) }
            a href={ "/store/" (s.id.0) "/domains" } { (ctx.t("store.domains")) }
            @if ctx.auth.is_none() { a href="/login" { (ctx.t("store.have_account")) } }
        }
    }
}

async fn catalog(State(st): State<AppState>, ctx: Ctx, Path(sid): Path<i64>) -> WebResult {
    let s = seller(&st, sid).await?;
    let tree = st.db.sales_categories().tree(s.id).await?;
    let plans = shop::plans_on_sale(&st, s.id).await?;
    st.panels
        .store_log
        .log(st.clock.now(), "debug", sid, "catalog_viewed", &[]);
    let body = html! {
        (store_nav(&ctx, &s))
        p { (ctx.tr.f("store.welcome", &[("seller", &s.name)])) }
        (shop::catalog(&ctx, &tree, &plans, &|id| format!("/store/{sid}/plans/{id}"), None))
    };
    Ok(page(
        &ctx,
        &ctx.tr.f("store.title", &[("seller", &s.name)]),
        body,
    ))
}

async fn plan_page(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((sid, id)): Path<(i64, i64)>,
) -> WebResult {
    let s = seller(&st, sid).await?;
    let p = on_sale(&st, &s, id).await?;
    let names = shop::resource_names(&st, &ctx, &p.content).await;
    let body = html! {
        (store_nav(&ctx, &s))
        @if let Some(d) = &p.content.long_description { p { (d.get(ctx.lang())) } }
        form method="get" action={ "/store/" (sid) "/cart" } class="card order-form" {
            input type="hidden" name="plan" value=(p.id);
            (shop::order_fields(&ctx, &p, &names))
            button type="submit" class="primary" { (ctx.t("store.add_to_cart")) }
        }
    };
    Ok(page(&ctx, p.content.name.get(ctx.lang()), body))
}

/// The cart: the configured plan, its first charge, and the sign-up and payment form.
async fn cart(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(sid): Path<i64>,
    Query(pairs): Query<Pairs>,
) -> WebResult {
    let s = seller(&st, sid).await?;
    let plan_id = field(&pairs, "plan")
        .and_then(|v| v.parse().ok())
        .ok_or_else(WebError::not_found)?;
    let p = on_sale(&st, &s, plan_id).await?;
    let req = shop::order_request(&p, &pairs);
    let names = shop::resource_names(&st, &ctx, &p.content).await;
    let period = p.content.periods.iter().find(|x| x.uid == req.period_uid);
    let carried: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, _)| {
            k == "plan"
                || k == "period"
                || k.starts_with("q.")
                || k.starts_with("a.")
                || k.starts_with("s.")
        })
        .collect();
    let body = html! {
        (store_nav(&ctx, &s))
        h2 { (ctx.t("store.cart")) }
        div class="card cart" {
            p { strong { (p.content.name.get(ctx.lang())) } }
            @if let Some(per) = period {
                p { (ctx.t("market.period")) ": " (per.duration) " " (shop::unit(&ctx, per))
                    @if ctx.show_prices() { " — " span class="price" { (shop::price(per.recurring.amount, &p.currency)) } } }
            }
            ul {
                @for (uid, n) in &req.quantities { li { (names.get(uid).cloned().unwrap_or_else(|| uid.clone())) ": " strong class="qty-chosen" { (n) } } }
                @for (k, v) in &req.parameters { li { (k) ": " (v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())) } }
                @for (k, v) in &req.attributes { li { (k) ": " (v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())) } }
            }
        }
        form method="post" action={ "/store/" (sid) "/checkout" } class="card checkout narrow" {
            (csrf_field(&ctx))
            input type="hidden" name="nonce" value=(crate::auth::new_secret("pf_"));
            @for (k, v) in &carried { input type="hidden" name=(k) value=(v); }
            h2 { (ctx.t("store.signup")) }
            label { (ctx.t("store.company")) input name="name" required maxlength="200"; }
            label { (ctx.t("store.email")) input name="email" type="email" required; }
            label { (ctx.t("store.login")) input name="login" required autocomplete="username"; }
            label { (ctx.t("store.password")) input name="password" type="password" required minlength="12" autocomplete="new-password"; }
            label { (ctx.t("store.country")) input name="country" required maxlength="2" value=(s.country.as_str()); }
            h2 { (ctx.t("store.payment")) }
            label { (ctx.t("store.card")) input name="card" inputmode="numeric" autocomplete="cc-number"; }
            button type="submit" class="primary" { (ctx.t("store.order_and_pay")) }
        }
    };
    Ok(page(&ctx, ctx.t("store.checkout"), body))
}

/// The store's sign-up form as the API's checkout request: the customer (named, with
/// its e-mail and country, in the visitor's language), its administrator, the one
/// configured plan, and the card when one was given.
fn checkout_request(
    vendor: &Account,
    p: &cascade_store::plans::Plan,
    pairs: &Pairs,
    lang: &str,
) -> CheckoutIn {
    let f = |k: &str| field(pairs, k).unwrap_or("").trim().to_string();
    let card = f("card");
    CheckoutIn {
        vendor_id: vendor.id.0,
        account: CheckoutAccountIn {
            name: f("name"),
            contact: Some(ContactIn {
                email: Some(f("email")),
                phone: None,
                address_line1: None,
                address_line2: None,
                city: None,
                postal_code: None,
                tax_id: None,
            }),
            country: f("country").to_ascii_uppercase(),
            language: lang.to_string(),
            currency: None,
            customer_class_id: None,
        },
        user: CheckoutUserIn {
            login: f("login"),
            display_name: f("name"),
            email: f("email"),
            language: Some(lang.to_string()),
            password: Some(field(pairs, "password").unwrap_or("").to_string()),
            role_ids: None,
        },
        items: vec![shop::order_request(p, pairs)],
        payment: (!card.is_empty()).then(|| CheckoutPaymentIn {
            method: "card".into(),
            card_number: Some(card),
        }),
    }
}

/// Sign up, order and pay: the API's own checkout (`api::checkout::checkout`, the core of
/// `place-order-and-authorize`) in one transaction, so a refused order, a taken login or
/// a declined card leaves no account behind; then the new administrator is logged in.
async fn checkout(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(sid): Path<i64>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    jar: CookieJar,
    CsrfForm(pairs): CsrfForm<Pairs>,
) -> WebResult {
    let s = seller(&st, sid).await?;
    let plan_id = field(&pairs, "plan")
        .and_then(|v| v.parse().ok())
        .ok_or_else(WebError::not_found)?;
    let p = on_sale(&st, &s, plan_id).await?;
    let log = |level: &str, event: &str, fields: &[(&str, String)]| {
        st.panels
            .store_log
            .log(st.clock.now(), level, sid, event, fields)
    };
    let out = match api_checkout(
        &st,
        None,
        &s,
        checkout_request(&s, &p, &pairs, ctx.lang()),
        &headers,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            log("warn", "checkout_refused", &[("code", e.code.to_string())]);
            return Err(e.into());
        }
    };
    log("info", "signup", &[("account", out.account.id.to_string())]);
    for o in &out.orders {
        log(
            "info",
            "order",
            &[
                ("order", o.id.to_string()),
                ("total", money(o.total_minor, &o.currency)),
            ],
        );
    }
    if out.payment.status != "none" {
        log("info", "payment", &[("status", out.payment.status.clone())]);
    }
    let login = LoginIn {
        login: field(&pairs, "login").unwrap_or("").trim().to_string(),
        password: field(&pairs, "password").unwrap_or("").to_string(),
    };
    let (cookie, _) = start_session(&st, peer, &headers, &login).await?;
    // The panel's home shows the order, and warns while it waits for payment.
    Ok((jar.add(cookie), Redirect::to("/panel?done=ordered")).into_response())
}

#[derive(Deserialize)]
struct DomainQ {
    q: Option<String>,
}

/// The TLDs on sale. A stand-in until the registrar integration lands: a fixed list with
/// popularity and listing priority as a registrar's plans would give them.
fn tlds() -> Vec<Tld> {
    [
        ("com", true, 1),
        ("net", true, 2),
        ("org", true, 3),
        ("eu", false, 10),
        ("io", false, 11),
        ("de", false, 12),
        ("fr", false, 13),
        ("info", false, 14),
        ("biz", false, 15),
    ]
    .into_iter()
    .map(|(n, p, prio)| Tld {
        name: n.into(),
        popular: p,
        priority: prio,
    })
    .collect()
}

/// Deterministic stand-in availability (documented in the page): a name is taken when
/// the SHA-256 of it starts with a byte below 64 (about a quarter of names).
fn stand_in_available(domain: &str) -> bool {
    use sha2::Digest;
    sha2::Sha256::digest(domain.as_bytes())[0] >= 64
}

async fn domain_search(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(sid): Path<i64>,
    Query(q): Query<DomainQ>,
) -> WebResult {
    let s = seller(&st, sid).await?;
    let query = q.q.unwrap_or_default();
    let r = domains::search(&query, &tlds(), &stand_in_available);
    if !query.is_empty() {
        st.panels.store_log.log(
            st.clock.now(),
            "info",
            sid,
            "domain_search",
            &[("q", query.chars().take(80).collect())],
        );
    }
    let row = |c: &domains::Candidate| {
        html! {
            li class={ "domain " @if c.available { "available" } @else { "taken" } } {
                strong { (c.domain) } " — " @if c.available { (ctx.t("store.available")) } @else { span class="muted" { (ctx.t("store.taken")) } }
            }
        }
    };
    let body = html! {
        (store_nav(&ctx, &s))
        form method="get" action={ "/store/" (sid) "/domains" } class="card actions" {
            label { (ctx.t("store.domain_name")) input name="q" value=(query) required; }
            button type="submit" class="primary" { (ctx.t("store.search")) }
        }
        @if let Some(e) = &r.exact {
            section class="results" {
                h2 { (ctx.t("store.exact")) }
                ul class="exact" { (row(e)) }
                @if !r.popular.is_empty() { h3 { (ctx.t("store.popular")) } ul class="popular" { @for c in &r.popular { (row(c)) } } }
            }
            @if !r.other.is_empty() {
                section class="results section-title" {
                    h2 { (ctx.t("store.other")) }
                    ul class="other" { @for c in &r.other { (row(c)) } }
                }
            }
            p class="muted" { (ctx.t("store.stand_in")) }
        }
    };
    Ok(page(&ctx, ctx.t("store.domains"), body))
}

/// Store logging settings (`panels.store_log.*`).
#[derive(Debug, Clone)]
pub struct StoreLogConfig {
    pub enabled: bool,
    /// `error`, `warn`, `info` or `debug`: the least severe level written.
    pub level: String,
    /// Append to this file (none: only the process log).
    pub file: Option<String>,
    /// `text` or `json`.
    pub format: String,
    /// Also send each record as an RFC 5424 syslog datagram over UDP to `host:port`.
    pub syslog: Option<String>,
}

impl Default for StoreLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            level: "info".into(),
            file: None,
            format: "text".into(),
            syslog: None,
        }
    }
}

fn rank(level: &str) -> u8 {
    match level {
        "error" => 0,
        "warn" => 1,
        "info" => 2,
        _ => 3,
    }
}

/// The store's activity log: visits that matter (sign-ups, orders, payments, searches),
/// written where the configuration says, in the configured format.
pub struct StoreLog {
    config: StoreLogConfig,
    file: Option<Mutex<std::fs::File>>,
    syslog: Option<std::net::UdpSocket>,
}

impl StoreLog {
    pub fn new(config: &StoreLogConfig) -> Self {
        let file = config
            .file
            .as_ref()
            .filter(|_| config.enabled)
            .and_then(|path| {
                match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    Ok(f) => Some(Mutex::new(f)),
                    Err(e) => {
                        tracing::warn!(error = %e, path, "cannot open the store log file");
                        None
                    }
                }
            });
        let syslog = config
            .syslog
            .as_ref()
            .filter(|_| config.enabled)
            .and_then(|addr| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
                s.connect(addr).ok()?;
                Some(s)
            });
        Self {
            config: config.clone(),
            file,
            syslog,
        }
    }

    /// One record: `event` with key/value fields, if `level` passes the threshold.
    pub fn log(
        &self,
        now: cascade_domain::clock::Timestamp,
        level: &str,
        seller: i64,
        event: &str,
        fields: &[(&str, String)],
    ) {
        if !self.config.enabled || rank(level) > rank(&self.config.level) {
            return;
        }
        let now = crate::api::iso(now);
        let line = if self.config.format == "json" {
            let mut m = serde_json::Map::new();
            m.insert("ts".into(), now.clone().into());
            m.insert("level".into(), level.into());
            m.insert("seller".into(), seller.into());
            m.insert("event".into(), event.into());
            for (k, v) in fields {
                m.insert((*k).into(), v.clone().into());
            }
            serde_json::Value::Object(m).to_string()
        } else {
            let mut s = format!("{now} {level} seller={seller} event={event}");
            for (k, v) in fields {
                s.push_str(&format!(" {k}={v:?}"));
            }
            s
        };
        tracing::info!(target: "cascade::store", seller, event, "{line}");
        if let Some(f) = &self.file
            && let Ok(mut f) = f.lock()
        {
            let _ = writeln!(f, "{line}");
        }
        if let Some(s) = &self.syslog {
            // RFC 5424: facility local0 (16), severity from the level.
            let sev = match level {
                "error" => 3,
                "warn" => 4,
                "info" => 6,
                _ => 7,
            };
            let msg = format!(
                "<{}>1 {now} - cascade-store - {event} - {line}",
                16 * 8 + sev
            );
            let _ = s.send(msg.as_bytes());
        }
    }
}
