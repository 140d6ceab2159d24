//! The server-rendered web experiences: the customer panel (`/panel`), the public online
//! store (`/store/{seller}`) and the framework they share (login, layout, translations,
//! CSRF, error pages).
//!
//! Choices, and why:
//!
//! * **Templates: [`maud`]**. Markup is Rust code checked by the compiler (a typo in a
//!   field or a missing variable is a build error, not a blank page), every interpolation
//!   is HTML-escaped unless explicitly marked `PreEscaped`, and there are no template
//!   files to keep in step with their data. It is small (one proc-macro crate) and widely
//!   used; askama would give the same guarantees with separate files and a heavier build.
//! * **No second copy of business rules.** A page that acts calls the same function as
//!   the API endpoint (often the endpoint's handler itself, with the form's values put in
//!   the API's request type), so validation, authorization (`Authed::check`), events and
//!   money rules are the API's. A refused action comes back as the API's problem, shown
//!   as a page.
//! * **One context per request** ([`Ctx`]), built by a middleware: who is logged in
//!   (the API's session cookie, the same `auth` code), the language, the CSRF token. Error
//!   pages are rendered by that middleware too, so a 404 deep inside a handler is the same
//!   localized page as an unknown URL.
//! * **No JavaScript framework.** Forms post; a slider is `<input type=range>` whose value
//!   is shown by an `<output>` (a one-line inline handler, optional: without it the form
//!   still works); menus are `<details>`, which open without script.
//! * **CSS** (`panel.css`, served from the binary) uses logical properties only
//!   (`margin-inline-start`, `inset-inline-end`, …) so `dir="rtl"` mirrors the whole
//!   layout; below 760px the side navigation folds into a menu button.

pub mod catalog_cache;
pub mod csrf;
pub mod customer;
pub mod i18n;
pub mod layout;
pub mod seller;
pub mod seller_accounts;
pub mod seller_catalog;
pub mod seller_connectors;
pub mod seller_lists;
pub mod seller_money;
pub mod seller_notify;
pub mod shop;
pub mod store;

use crate::auth::{Authed, SESSION_COOKIE, authenticate_with_account};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::CookieJar;
use cascade_domain::account::Account;
use cascade_domain::billing::visibility::BillingScreens;
use cascade_domain::privilege::Privilege;
use i18n::Catalog;
use maud::Markup;
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub const LANG_COOKIE: &str = "cascade_lang";
pub const ANON_COOKIE: &str = "cascade_anon";

/// Panel and store settings (the `panels` section of the configuration).
#[derive(Debug, Clone, Default)]
pub struct PanelConfig {
    /// Help menu: where trouble tickets are filed.
    pub help_tickets_url: String,
    /// Help menu: questions and answers.
    pub help_qa_url: String,
    /// Help menu: documentation.
    pub help_docs_url: String,
    /// Help menu: support contacts (an address, a phone number: shown as text).
    pub support_contact: String,
    /// Key of the CSRF HMAC; random per process when unset.
    pub csrf_key: Option<String>,
    /// Store logging.
    pub store_log: store::StoreLogConfig,
}

/// What the web layer keeps for the life of the process.
pub struct PanelState {
    pub config: PanelConfig,
    csrf_key: Vec<u8>,
    pub store_log: store::StoreLog,
}

impl std::fmt::Debug for PanelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PanelState").finish_non_exhaustive()
    }
}

impl PanelState {
    pub fn new(config: PanelConfig) -> Self {
        let csrf_key = match &config.csrf_key {
            Some(k) if !k.is_empty() => k.as_bytes().to_vec(),
            _ => {
                use rand::RngCore;
                let mut k = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut k);
                k
            }
        };
        let store_log = store::StoreLog::new(&config.store_log);
        Self {
            config,
            csrf_key,
            store_log,
        }
    }
}

impl Default for PanelState {
    fn default() -> Self {
        Self::new(PanelConfig::default())
    }
}

/// The request's context: who, in which language, with which CSRF token.
#[derive(Clone)]
pub struct Ctx {
    pub tr: &'static Catalog,
    pub auth: Option<Authed>,
    pub account: Option<Account>,
    /// What the CSRF token is bound to: `s:` + session secret, or `a:` + anonymous id.
    binding: String,
    pub csrf: String,
    /// Path and query of the request (for "back here" links).
    pub path: String,
    pub panels: Arc<PanelState>,
    /// For a customer: the billing screens its sellers let it see (all for anyone else).
    pub billing_screens: BillingScreens,
}

impl Ctx {
    pub fn lang(&self) -> &'static str {
        self.tr.lang
    }
    pub fn t<'a>(&'a self, key: &'a str) -> &'a str {
        self.tr.t(key)
    }
    /// Prices are shown unless the user lacks `SHOW_PRICES` (anonymous store visitors see them).
    pub fn show_prices(&self) -> bool {
        self.auth
            .as_ref()
            .is_none_or(|a| a.actor.privileges.has(Privilege::ShowPrices))
    }
    pub fn has(&self, p: Privilege) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| a.actor.privileges.has(p))
    }
    /// The logged-in caller, or a redirect to the login page.
    pub fn authed(&self) -> Result<&Authed, WebError> {
        self.auth.as_ref().ok_or(WebError::Login)
    }
    fn csrf_ok(&self, submitted: &str) -> bool {
        csrf::verify(&self.panels_key(), &self.binding, submitted)
    }
    fn panels_key(&self) -> Vec<u8> {
        self.panels.csrf_key.clone()
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, WebError> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| WebError::status(StatusCode::INTERNAL_SERVER_ERROR))
    }
}

fn pick_language(
    jar: &CookieJar,
    headers: &axum::http::HeaderMap,
    auth: Option<&Authed>,
    account: Option<&Account>,
) -> &'static str {
    if let Some(l) = jar
        .get(LANG_COOKIE)
        .and_then(|c| i18n::supported(c.value()))
    {
        return l;
    }
    if let Some(l) = auth
        .and_then(|a| a.user.language.as_ref())
        .and_then(|l| i18n::supported(l.as_str()))
    {
        return l;
    }
    if let Some(l) = account.and_then(|a| i18n::supported(a.language.as_str())) {
        return l;
    }
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(i18n::supported))
        .unwrap_or("en")
}

/// Build the context of a request (and the anonymous cookie to set, if it had none).
async fn build_ctx(
    st: &AppState,
    parts_headers: &axum::http::HeaderMap,
    path: String,
) -> (Ctx, Option<String>) {
    let jar = CookieJar::from_headers(parts_headers);
    // A stale or invalid session is simply "not logged in" for a page.
    let (auth, account) = match authenticate_with_account(st, parts_headers).await {
        Ok(Some((a, acc))) => (Some(a), Some(acc)),
        _ => (None, None),
    };
    let mut new_anon = None;
    let binding = match (&auth, jar.get(SESSION_COOKIE), jar.get(ANON_COOKIE)) {
        (Some(_), Some(s), _) => format!("s:{}", s.value()),
        (_, _, Some(a)) => format!("a:{}", a.value()),
        _ => {
            let id = crate::auth::new_secret("an_");
            let b = format!("a:{id}");
            new_anon = Some(id);
            b
        }
    };
    let lang = pick_language(&jar, parts_headers, auth.as_ref(), account.as_ref());
    // For customers only: which billing screens their sellers show (one indexed query,
    // cached with the catalog reads).
    let billing_screens = match &account {
        Some(a) if a.kind == cascade_domain::account::AccountKind::Customer => st
            .catalog
            .billing_screens(&st.db, a.id.0)
            .await
            .unwrap_or_default(),
        _ => BillingScreens::ALL,
    };
    let csrf = csrf::token(&st.panels.csrf_key, &binding);
    (
        Ctx {
            tr: i18n::catalog(lang),
            auth,
            account,
            binding,
            csrf,
            path,
            panels: st.panels.clone(),
            billing_screens,
        },
        new_anon,
    )
}

/// The web layer's middleware: builds the [`Ctx`], renders error pages, sets the
/// anonymous cookie that binds CSRF tokens before login.
pub async fn web_context(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let (ctx, new_anon) = build_ctx(&st, req.headers(), path).await;
    req.extensions_mut().insert(ctx.clone());
    let mut res = next.run(req).await;
    if let Some(marker) = res.extensions().get::<ErrorMarker>().cloned() {
        let status = res.status();
        res = (
            status,
            Html(layout::error_page(&ctx, status, &marker).into_string()),
        )
            .into_response();
    }
    if let Some(id) = new_anon {
        let cookie = format!(
            "{ANON_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax{}",
            if st.config.secure_cookies {
                "; Secure"
            } else {
                ""
            }
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// What went wrong, carried from a handler to the middleware that renders the page.
#[derive(Debug, Clone)]
pub struct ErrorMarker {
    pub detail: Option<String>,
    pub fields: Vec<String>,
}

/// A page that could not be served.
#[derive(Debug)]
pub enum WebError {
    /// Not logged in: to the login page, and back afterwards.
    Login,
    Status(StatusCode, ErrorMarker),
}

impl WebError {
    pub fn status(s: StatusCode) -> Self {
        WebError::Status(
            s,
            ErrorMarker {
                detail: None,
                fields: vec![],
            },
        )
    }
    pub fn not_found() -> Self {
        Self::status(StatusCode::NOT_FOUND)
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        if e.status == StatusCode::UNAUTHORIZED && e.code != "invalid_credentials" {
            return WebError::Login;
        }
        WebError::Status(
            e.status,
            ErrorMarker {
                detail: e.detail.clone().or_else(|| Some(e.title.to_string())),
                fields: e
                    .errors
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect(),
            },
        )
    }
}

impl From<cascade_store::StoreError> for WebError {
    fn from(e: cascade_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::Login => Redirect::to("/login").into_response(),
            WebError::Status(s, marker) => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = s;
                r.extensions_mut().insert(marker);
                r
            }
        }
    }
}

pub type WebResult<T = Response> = Result<T, WebError>;

/// A page: the layout around `body`.
pub fn page(ctx: &Ctx, title: &str, body: Markup) -> Response {
    Html(layout::layout(ctx, title, body).into_string()).into_response()
}

/// A posted form, accepted only with a valid CSRF token (`_csrf`) for this session;
/// without one the request is refused with a 403 page before the handler runs, so
/// nothing changes.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = WebError;
    async fn from_request(req: Request, st: &AppState) -> Result<Self, WebError> {
        let ctx = req
            .extensions()
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| WebError::status(StatusCode::INTERNAL_SERVER_ERROR))?;
        let bytes = axum::body::Bytes::from_request(req, st)
            .await
            .map_err(|_| WebError::status(StatusCode::BAD_REQUEST))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let token = pairs
            .iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if !ctx.csrf_ok(token) {
            return Err(WebError::Status(
                StatusCode::FORBIDDEN,
                ErrorMarker {
                    detail: Some(ctx.t("error.csrf").to_string()),
                    fields: vec![],
                },
            ));
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(CsrfForm)
            .map_err(|e| {
                WebError::Status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorMarker {
                        detail: Some(e.to_string()),
                        fields: vec![],
                    },
                )
            })
    }
}

/// A form's fields as name/value pairs (for forms with fields named by data).
pub type Pairs = Vec<(String, String)>;

pub fn field<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A relative path inside the site (never an absolute or protocol-relative URL):
/// "back here" parameters cannot send a user elsewhere.
pub fn local_path(next: Option<&str>, default: &str) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => default.to_string(),
    }
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("panel.css"),
    )
        .into_response()
}

/// The web routes (panel, store, login), with their context middleware.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/static/panel.css", get(css))
        .merge(layout::routes())
        .merge(customer::routes())
        .merge(seller::routes())
        .merge(store::routes())
        .layer(axum::middleware::from_fn_with_state(state, web_context))
}

/// Unknown URLs: a problem document under `/api/`, the localized 404 page elsewhere.
pub async fn fallback(State(st): State<AppState>, req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        return ApiError::not_found()
            .detail("no such endpoint")
            .into_response();
    }
    let path = req.uri().path().to_string();
    let (ctx, _) = build_ctx(&st, req.headers(), path).await;
    let html = layout::error_page(
        &ctx,
        StatusCode::NOT_FOUND,
        &ErrorMarker {
            detail: None,
            fields: vec![],
        },
    );
    (StatusCode::NOT_FOUND, Html(html.into_string())).into_response()
}
