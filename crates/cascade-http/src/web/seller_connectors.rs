//! The provider's connector instances and deployment wizard (`/seller/connectors`).
//!
//! Three steps, each a plain form: (1) the seller types the connector's endpoint,
//! shared secret and certificate pin; (2) Cascade reads the connector's signed
//! self-description (the API wizard's own first step, `wizard_describe`: nothing is
//! written) and shows the resource types and the settings schema it offers; (3) on
//! confirmation the API wizard's handler creates the instance, the resource types, the
//! service template and the starter plan in one transaction, then the API's two-way
//! connectivity check runs and its result is shown.
//!
//! Provider only: a reseller (or anyone else) gets the 404 page. Between steps 2 and 3
//! the secret travels back in a hidden field of the page the seller just typed it in
//! (same session, CSRF-protected, `Cache-Control: no-store`); it is never shown
//! elsewhere, and the API never returns it.

use super::layout::csrf_field;
use super::seller::seller;
use super::{CsrfForm, Ctx, WebError, WebResult, page};
use crate::api::connectors::{self, WizardIn};
use crate::auth::Authed;
use crate::state::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use cascade_domain::account::AccountKind;
use cascade_domain::ids::AccountId;
use maud::html;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/seller/connectors", get(connectors_page))
        .route("/seller/connectors/describe", post(describe))
        .route("/seller/connectors/wizard", post(create))
}

/// The provider's own account; a 404 page for anyone else.
fn provider(ctx: &Ctx) -> WebResult<(Authed, i64)> {
    let (auth, own, kind) = seller(ctx)?;
    if kind != AccountKind::Provider {
        return Err(WebError::not_found());
    }
    Ok((auth, own))
}

#[derive(Deserialize)]
struct ConnForm {
    name: String,
    endpoint: String,
    secret: String,
    #[serde(default)]
    cert_pin: String,
    #[serde(default)]
    template_name: String,
}

impl ConnForm {
    fn wizard_in(&self) -> WizardIn {
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        WizardIn {
            name: self.name.trim().to_string(),
            endpoint: self.endpoint.trim().to_string(),
            secret: self.secret.clone(),
            cert_pin: opt(&self.cert_pin),
            timeout_ms: None,
            template_name: opt(&self.template_name),
        }
    }
}

async fn connectors_page(State(st): State<AppState>, ctx: Ctx) -> WebResult {
    let (auth, own) = provider(&ctx)?;
    let list = connectors::list(State(st), auth, Path(own)).await?.0;
    let body = html! {
        table id="instances" {
            thead { tr { th { (ctx.t("seller.wiz.name")) } th { (ctx.t("seller.cat.service")) } th { (ctx.t("seller.wiz.endpoint")) } th { (ctx.t("seller.wiz.last_check")) } } }
            tbody {
                @for i in &list {
                    tr data-instance=(i.id) {
                        td { (i.name) } td { code { (i.service) } } td { code { (i.endpoint) } }
                        td { @match i.last_check_ok {
                            Some(true) => span class="badge" { (ctx.t("seller.wiz.ok")) },
                            Some(false) => span class="badge" title=[i.last_check_message.as_deref()] { (ctx.t("seller.wiz.failed")) },
                            None => span class="muted" { "—" },
                        } }
                    }
                }
                @if list.is_empty() { tr { td colspan="4" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        h2 class="section-title" { (ctx.t("seller.wiz.step1")) }
        p class="muted" { (ctx.t("seller.wiz.help")) }
        form method="post" action="/seller/connectors/describe" class="card narrow" id="wizard" {
            (csrf_field(&ctx))
            label { (ctx.t("seller.wiz.name")) input name="name" required; }
            label { (ctx.t("seller.wiz.endpoint")) input name="endpoint" type="url" placeholder="https://connector.example:8443" required; }
            label { (ctx.t("seller.wiz.secret")) input name="secret" type="password" autocomplete="off" required; }
            label { (ctx.t("seller.wiz.pin")) input name="cert_pin" placeholder="sha256 hex"; }
            label { (ctx.t("seller.wiz.template_name")) input name="template_name"; }
            button type="submit" class="primary" { (ctx.t("seller.wiz.fetch")) }
        }
    };
    Ok(page(&ctx, ctx.t("seller.wiz.title"), body))
}

async fn describe(
    State(st): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<ConnForm>,
) -> WebResult {
    let (auth, own) = provider(&ctx)?;
    let (_, d) = connectors::wizard_describe(&st, &auth, AccountId(own), &f.wizard_in()).await?;
    let body = html! {
        p id="described" { strong { (d.name) } " · " code { (d.service) } " · " (ctx.t("seller.wiz.protocol")) " " (d.protocol) }
        h2 { (ctx.t("seller.cat.types")) }
        table id="offered-types" {
            thead { tr { th { (ctx.t("seller.cat.code")) } th { (ctx.t("seller.cat.name")) } th { (ctx.t("seller.cat.unit")) } th { (ctx.t("seller.wiz.measurable")) } th class="num" { (ctx.t("seller.cat.default_limit")) } } }
            tbody {
                @for r in &d.resource_types {
                    tr { td { code { (r.code) } } td { (r.name) } td { (r.unit) }
                        td { @if r.measurable { (ctx.t("seller.wiz.yes")) @if let Some(u) = &r.usage { " (" (serde_json::to_value(u).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) ")" } } @else { (ctx.t("seller.wiz.no")) } }
                        td class="num" { @if r.default_limit < 0 { "∞" } @else { (r.default_limit) } } }
                }
            }
        }
        h2 class="section-title" { (ctx.t("seller.wiz.schema")) }
        table id="settings-schema" {
            thead { tr { th { (ctx.t("seller.cat.key")) } th { (ctx.t("seller.cat.type")) } th { (ctx.t("seller.wiz.required")) } th { (ctx.t("seller.wiz.default")) } th { } } }
            tbody {
                @for s in &d.settings {
                    tr { td { code { (s.key) } } td { (s.kind) } td { @if s.required { (ctx.t("seller.wiz.yes")) } @else { (ctx.t("seller.wiz.no")) } }
                        td { (s.default.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "—".into())) }
                        td class="muted" { (s.description.as_deref().unwrap_or("")) } }
                }
                @if d.settings.is_empty() { tr { td colspan="5" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        p class="muted" { (ctx.t("seller.wiz.will_create")) }
        form method="post" action="/seller/connectors/wizard" class="actions" id="confirm" {
            (csrf_field(&ctx))
            input type="hidden" name="name" value=(f.name);
            input type="hidden" name="endpoint" value=(f.endpoint);
            input type="hidden" name="secret" value=(f.secret);
            input type="hidden" name="cert_pin" value=(f.cert_pin);
            input type="hidden" name="template_name" value=(f.template_name);
            button type="submit" class="primary" { (ctx.t("seller.wiz.confirm")) }
            a href="/seller/connectors" { (ctx.t("seller.cancel")) }
        }
    };
    Ok(page(&ctx, ctx.t("seller.wiz.step2"), body))
}

async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    CsrfForm(f): CsrfForm<ConnForm>,
) -> WebResult {
    let (auth, own) = provider(&ctx)?;
    let (_, out) = connectors::wizard(
        State(st.clone()),
        auth.clone(),
        Path(own),
        crate::extract::ApiJson(f.wizard_in()),
    )
    .await?;
    let out = out.0;
    // The two-way check, as `POST /connector-instances/{id}/check` with no body: the
    // connector calls back this server at the Host the request came to.
    let check = connectors::check(
        State(st),
        auth,
        Path(out.instance.id),
        headers,
        Bytes::new(),
    )
    .await?
    .0;
    let body = html! {
        h2 { (ctx.t("seller.wiz.created")) }
        table id="created" {
            tbody {
                tr { td { (ctx.t("seller.wiz.instance")) } td data-instance=(out.instance.id) { (out.instance.name) " · " code { (out.instance.service) } } }
                tr { td { (ctx.t("seller.cat.types")) } td { @for (code, id) in &out.resource_type_ids { a href={ "/seller/resource-types/" (id) } { code { (code) } } " " } } }
                tr { td { (ctx.t("seller.wiz.template")) } td { a href={ "/seller/templates/" (out.service_template_id) } id="created-template" { "#" (out.service_template_id) } } }
                tr { td { (ctx.t("seller.wiz.plan")) } td { a href={ "/seller/plans/" (out.starter_plan_id) } id="created-plan" { "#" (out.starter_plan_id) } } }
            }
        }
        h2 class="section-title" { (ctx.t("seller.wiz.check")) }
        table id="check" {
            tbody {
                tr data-ok=(check.outbound_ok) { td { (ctx.t("seller.wiz.outbound")) } td { span class="badge" { @if check.outbound_ok { (ctx.t("seller.wiz.ok")) } @else { (ctx.t("seller.wiz.failed")) } } } td { (check.outbound_message) } }
                tr data-ok=(check.callback_ok) { td { (ctx.t("seller.wiz.callback")) } td { span class="badge" { @if check.callback_ok { (ctx.t("seller.wiz.ok")) } @else { (ctx.t("seller.wiz.failed")) } } } td { (check.callback_message) } }
            }
        }
        p { a href="/seller/connectors" { (ctx.t("seller.wiz.back")) } }
    };
    Ok(page(&ctx, ctx.t("seller.wiz.done"), body))
}
