//! The page layout (navigation, help menu, language switcher), the error pages, and the
//! login, logout and language routes every panel shares.

use super::{CsrfForm, Ctx, ErrorMarker, LANG_COOKIE, WebError, WebResult, i18n, local_path, page};
use crate::api::session::{LoginIn, end_session, start_session};
use crate::extract::PeerAddr;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use cascade_domain::account::AccountKind;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/panel") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/lang/{code}", get(set_language))
}

/// A hidden field with the request's CSRF token: put it in every form that posts.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="_csrf" value=(ctx.csrf); }
}

/// Navigation of the logged-in user's panel: `(href, translation key)`.
///
/// Customers get the customer panel; sellers (provider, resellers) get the seller panel,
/// whose pages are added here as they land.
pub fn nav_items(ctx: &Ctx) -> Vec<(&'static str, &'static str)> {
    match ctx.account.as_ref().map(|a| a.kind) {
        Some(AccountKind::Customer) => [
            ("/panel", "nav.home"),
            ("/panel/subscriptions", "nav.subscriptions"),
            ("/panel/marketplace", "nav.marketplace"),
            ("/panel/billing", "nav.billing"),
            ("/panel/users", "nav.users"),
            ("/panel/profile", "nav.profile"),
        ]
        .into_iter()
        // The billing page goes when its sellers hide every billing screen.
        .filter(|(href, _)| *href != "/panel/billing" || ctx.billing_screens.any())
        .collect(),
        Some(_) => [("/panel", "nav.home")]
            .into_iter()
            .chain(super::seller::NAV)
            .chain([("/panel/profile", "nav.profile")])
            .collect(),
        None => vec![],
    }
}

fn nav(ctx: &Ctx, class: &str) -> Markup {
    let current = ctx.path.split('?').next().unwrap_or("");
    html! {
        nav class=(class) aria-label=(ctx.t("nav.label")) {
            ul {
                @for (href, key) in nav_items(ctx) {
                    @let active = current == href || (href != "/panel" && current.starts_with(href));
                    li { a href=(href) aria-current=[active.then_some("page")] { (ctx.t(key)) } }
                }
            }
        }
    }
}

fn help_menu(ctx: &Ctx) -> Markup {
    let c = &ctx.panels.config;
    let links = [
        (&c.help_tickets_url, "help.tickets"),
        (&c.help_qa_url, "help.qa"),
        (&c.help_docs_url, "help.docs"),
    ];
    html! {
        details class="help" {
            summary { (ctx.t("help.title")) }
            ul class="dropdown" {
                @for (url, key) in links {
                    @if !url.is_empty() { li { a href=(url) rel="noopener" { (ctx.t(key)) } } }
                }
                @if !c.support_contact.is_empty() {
                    li class="contact" { span { (ctx.t("help.contact")) ": " } (c.support_contact) }
                }
            }
        }
    }
}

fn languages(ctx: &Ctx) -> Markup {
    html! {
        details class="langs" {
            summary lang=(ctx.lang()) { (ctx.t("lang.switch")) }
            ul class="dropdown" {
                @for (code, name) in i18n::LANGUAGES {
                    li { a href={ "/lang/" (code) "?next=" (urlencode(&ctx.path)) } lang=(code) hreflang=(code) { (name) } }
                }
            }
        }
    }
}

/// Percent-encode a value for a query string.
pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|x| x.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

/// The document around every page.
pub fn layout(ctx: &Ctx, title: &str, body: Markup) -> Markup {
    let logged_in = ctx.auth.is_some();
    html! {
        (DOCTYPE)
        html lang=(ctx.lang()) dir=(ctx.tr.dir()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (ctx.t("brand")) }
                link rel="stylesheet" href="/static/panel.css";
            }
            body {
                header class="top" {
                    @if logged_in {
                        details class="menu-button" {
                            summary aria-label=(ctx.t("nav.menu")) { "☰ " (ctx.t("nav.menu")) }
                            (nav(ctx, "mobile-nav"))
                        }
                    }
                    a class="brand" href="/panel" { (ctx.t("brand")) }
                    div class="tools" {
                        (help_menu(ctx))
                        (languages(ctx))
                        @if let Some(a) = &ctx.auth {
                            span class="who" { (a.user.display_name) @if let Some(acc) = &ctx.account { " · " (acc.name) } }
                            form method="post" action="/logout" class="inline" {
                                (csrf_field(ctx))
                                button type="submit" class="link" { (ctx.t("nav.logout")) }
                            }
                        } @else {
                            a href="/login" { (ctx.t("nav.login")) }
                        }
                    }
                }
                div class={ "frame" @if logged_in { " with-nav" } } {
                    @if logged_in { (nav(ctx, "side-nav")) }
                    main id="main" {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
    }
}

/// The page for a failed request: 404 (also for anything outside the caller's reach),
/// 403 (a refused form), 409/422 (the API's explanation, in the API's words).
pub fn error_page(ctx: &Ctx, status: StatusCode, m: &ErrorMarker) -> Markup {
    let (title, text) = match status.as_u16() {
        404 => (ctx.t("error.404.title"), ctx.t("error.404.text")),
        403 => (ctx.t("error.403.title"), ctx.t("error.403.text")),
        500..=599 => (ctx.t("error.500.title"), ctx.t("error.500.text")),
        _ => (ctx.t("error.refused.title"), ctx.t("error.refused.text")),
    };
    let body = html! {
        div class={ "notice error status-" (status.as_u16()) } {
            p { (text) }
            @if status.as_u16() != 404 {
                @if let Some(d) = &m.detail { p class="detail" { (d) } }
                @if !m.fields.is_empty() { ul { @for f in &m.fields { li { (f) } } } }
            }
        }
        p { a href="/panel" { (ctx.t("error.back")) } }
    };
    layout(ctx, title, body)
}

#[derive(Deserialize)]
struct NextQ {
    next: Option<String>,
}

fn login_form(ctx: &Ctx, next: &str, failed: bool) -> Response {
    let body = html! {
        @if failed { div class="notice error" role="alert" { p { (ctx.t("login.failed")) } } }
        form method="post" action="/login" class="card narrow" {
            (csrf_field(ctx))
            input type="hidden" name="next" value=(next);
            label { (ctx.t("login.login")) input name="login" autocomplete="username" required; }
            label { (ctx.t("login.password")) input name="password" type="password" autocomplete="current-password" required; }
            button type="submit" class="primary" { (ctx.t("login.submit")) }
        }
    };
    page(ctx, ctx.t("login.title"), body)
}

async fn login_page(ctx: Ctx, Query(q): Query<NextQ>) -> Response {
    if ctx.auth.is_some() {
        return Redirect::to(&local_path(q.next.as_deref(), "/panel")).into_response();
    }
    login_form(&ctx, &local_path(q.next.as_deref(), "/panel"), false)
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
    next: Option<String>,
}

async fn login(
    State(st): State<AppState>,
    ctx: Ctx,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    jar: CookieJar,
    CsrfForm(f): CsrfForm<LoginForm>,
) -> WebResult {
    let next = local_path(f.next.as_deref(), "/panel");
    let body = LoginIn {
        login: f.login,
        password: f.password,
    };
    match start_session(&st, peer, &headers, &body).await {
        Ok((cookie, _)) => Ok((jar.add(cookie), Redirect::to(&next)).into_response()),
        Err(e)
            if e.status == StatusCode::UNAUTHORIZED
                || e.status == StatusCode::UNPROCESSABLE_ENTITY =>
        {
            let mut r = login_form(&ctx, &next, true);
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct Empty {}

async fn logout(
    State(st): State<AppState>,
    ctx: Ctx,
    jar: CookieJar,
    CsrfForm(_): CsrfForm<Empty>,
) -> WebResult {
    if let Some(a) = &ctx.auth {
        end_session(&st, a).await?;
    }
    Ok((
        jar.remove(Cookie::build(crate::auth::SESSION_COOKIE).path("/").build()),
        Redirect::to("/login"),
    )
        .into_response())
}

/// The language switcher: remembered in a cookie (the profile's preferred language is
/// the lasting choice), then back to the page.
async fn set_language(
    Path(code): Path<String>,
    Query(q): Query<NextQ>,
    jar: CookieJar,
) -> WebResult {
    let lang = i18n::supported(&code).ok_or_else(WebError::not_found)?;
    let cookie = Cookie::build((LANG_COOKIE, lang))
        .path("/")
        .same_site(SameSite::Lax)
        .http_only(true)
        .build();
    Ok((
        jar.add(cookie),
        Redirect::to(&local_path(q.next.as_deref(), "/panel")),
    )
        .into_response())
}
