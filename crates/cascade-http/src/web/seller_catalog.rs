//! The seller panel's technical catalog and store tree: resource types, service
//! templates with their provisioning settings and per-reseller overrides, and the
//! sales category tree with explicit ordering.
//!
//! Like the rest of the seller panel, every page reads and acts through the JSON API's
//! handlers (`crate::api::resources`, `crate::api::sales_categories`,
//! `crate::api::plans`) with the form's values put in the API's request types, so
//! authorization, validation and events are the API's. The effective provisioning
//! settings and where each value comes from are the store's
//! `effective_settings_sourced_for` (the same computation connectors receive, through
//! the API's `effective-settings` endpoint). Category order is the store tree's `sort`,
//! the order the online store and the customer marketplace show; "up" and "down" are
//! explicit moves to the neighbour's position (no drag and drop, no script).

use super::layout::csrf_field;
use super::seller::{bad_field, see_other, seller};
use super::{CsrfForm, Ctx, Pairs, WebError, WebResult, field, page};
use crate::api::plans::{self, LangParam, PlanListParams, UpdatePlanIn};
use crate::api::resources::{
    self, CreateResourceTypeIn, EffectiveParams, LocalizedText, PutOverrideIn, ResourceTypeOut,
    ServiceTemplateOut, SettingIo, UpdateResourceTypeIn, UpdateServiceTemplateIn,
};
use crate::api::sales_categories::{
    self as sales, CreateSalesCategoryIn, MoveSalesCategoryIn, SalesCategoryNodeOut,
    UpdateSalesCategoryIn,
};
use crate::auth::Authed;
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use cascade_domain::account::AccountKind;
use cascade_domain::ids::AccountId;
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/seller/catalog", get(catalog_page))
        .route("/seller/resource-types", post(create_type))
        .route(
            "/seller/resource-types/{id}",
            get(type_page).post(update_type),
        )
        .route("/seller/templates/{id}", get(template_page))
        .route("/seller/templates/{id}/settings", post(save_settings))
        .route("/seller/templates/{id}/override", post(save_override))
        .route(
            "/seller/categories",
            get(categories_page).post(create_category),
        )
        .route("/seller/categories/{id}/rename", post(rename_category))
        .route("/seller/categories/{id}/move", post(move_category))
        .route("/seller/categories/{id}/plans", post(assign_plan))
}

/// Languages a name can be typed in (the panels' languages).
const NAME_LANGS: [&str; 3] = ["en", "fr", "ar"];

/// A multilingual text in the reader's language, else its default.
pub(super) fn text_in(t: &LocalizedText, lang: &str) -> String {
    t.values
        .get(lang)
        .or_else(|| t.values.get(&t.default))
        .cloned()
        .unwrap_or_default()
}

/// `name.<lang>` fields and `name_default` of a form as the API's multilingual text.
fn names_from(f: &Pairs) -> LocalizedText {
    let values = NAME_LANGS
        .iter()
        .filter_map(|l| {
            field(f, &format!("name.{l}"))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| (l.to_string(), v.to_string()))
        })
        .collect();
    LocalizedText {
        default: field(f, "name_default").unwrap_or("en").to_string(),
        values,
    }
}

fn name_inputs(ctx: &Ctx, current: Option<&LocalizedText>) -> Markup {
    let default = current.map(|c| c.default.as_str()).unwrap_or("en");
    html! {
        fieldset {
            legend { (ctx.t("seller.cat.name")) }
            @for l in NAME_LANGS {
                label { (l) input name={ "name." (l) } value=[current.and_then(|c| c.values.get(l))] lang=(l); }
            }
            label { (ctx.t("seller.cat.default_lang"))
                select name="name_default" {
                    @for l in NAME_LANGS { option value=(l) selected[l == default] { (l) } }
                }
            }
        }
    }
}

/// Names of resource types in the reader's language, read through the API's handler
/// (types the caller may not read are left out: the page shows their id).
pub(super) async fn resource_type_names(
    st: &AppState,
    auth: &Authed,
    ids: Vec<i64>,
    lang: &str,
) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        if let Ok(t) = resources::get_resource_type(State(st.clone()), auth.clone(), Path(id)).await
        {
            out.insert(id, text_in(&t.0.name, lang));
        }
    }
    out
}

fn page_of(limit: i64) -> ApiQuery<PageParams> {
    ApiQuery(PageParams {
        limit: Some(limit),
        cursor: None,
    })
}

// ---------------------------------------------------------------------------------------
// Catalog: resource types and service templates

/// The templates a seller works with: its own, and those its plans (copies of its
/// vendors' plans included) are built on.
async fn templates_of(
    st: &AppState,
    auth: &Authed,
    own: i64,
) -> WebResult<Vec<ServiceTemplateOut>> {
    let mut out =
        resources::list_service_templates(State(st.clone()), auth.clone(), Path(own), page_of(200))
            .await?
            .0
            .items;
    let plans = plans::list_plans(
        State(st.clone()),
        auth.clone(),
        Path(own),
        ApiQuery(PlanListParams {
            limit: Some(200),
            ..Default::default()
        }),
    )
    .await?
    .0
    .items;
    let mut seen: BTreeSet<i64> = out.iter().map(|t| t.id).collect();
    for p in plans {
        if seen.insert(p.template_id)
            && let Ok(t) = resources::get_service_template(
                State(st.clone()),
                auth.clone(),
                Path(p.template_id),
            )
            .await
        {
            out.push(t.0);
        }
    }
    Ok(out)
}

async fn catalog_page(State(st): State<AppState>, ctx: Ctx) -> WebResult {
    let (auth, own, kind) = seller(&ctx)?;
    let types =
        resources::list_resource_types(State(st.clone()), auth.clone(), Path(own), page_of(200))
            .await?
            .0
            .items;
    let templates = templates_of(&st, &auth, own).await?;
    let body = html! {
        @if kind == AccountKind::Provider {
            p class="actions" { a href="/seller/connectors" class="button" id="open-wizard" { (ctx.t("seller.wiz.title")) } }
        }
        h2 { (ctx.t("seller.cat.types")) }
        table id="resource-types" {
            thead { tr {
                th { (ctx.t("seller.cat.code")) } th { (ctx.t("seller.cat.name")) }
                th { (ctx.t("seller.cat.unit")) } th { (ctx.t("seller.cat.service")) }
            } }
            tbody {
                @for t in &types {
                    tr data-type=(t.id) {
                        td { a href={ "/seller/resource-types/" (t.id) } { code { (t.code) } } }
                        td { (text_in(&t.name, ctx.lang())) }
                        td { (t.unit) } td { code { (t.service) } }
                    }
                }
                @if types.is_empty() { tr { td colspan="4" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        h2 class="section-title" { (ctx.t("seller.cat.new_type")) }
        form method="post" action="/seller/resource-types" class="card narrow" id="create-type" {
            (csrf_field(&ctx))
            label { (ctx.t("seller.cat.code")) input name="code" required; }
            label { (ctx.t("seller.cat.service")) input name="service" required; }
            label { (ctx.t("seller.cat.unit")) input name="unit" required; }
            (kind_select(&ctx, "quantity"))
            (name_inputs(&ctx, None))
            button type="submit" class="primary" { (ctx.t("seller.cat.create")) }
        }
        h2 class="section-title" { (ctx.t("seller.cat.templates")) }
        table id="templates" {
            thead { tr { th { (ctx.t("seller.cat.name")) } th { (ctx.t("seller.cat.origin")) } th class="num" { (ctx.t("seller.cat.settings")) } } }
            tbody {
                @for t in &templates {
                    tr data-template=(t.id) {
                        td { a href={ "/seller/templates/" (t.id) } { (t.name) } }
                        td { @if t.owner_account_id == own { (ctx.t("seller.cat.own")) } @else { (ctx.t("seller.cat.vendors")) } }
                        td class="num" { (t.settings.len()) }
                    }
                }
                @if templates.is_empty() { tr { td colspan="3" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
    };
    Ok(page(&ctx, ctx.t("seller.cat.title"), body))
}

async fn create_type(
    State(st): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let body = CreateResourceTypeIn {
        code: field(&f, "code").unwrap_or_default().trim().to_string(),
        service: field(&f, "service").unwrap_or_default().trim().to_string(),
        unit: field(&f, "unit").unwrap_or_default().trim().to_string(),
        name: names_from(&f),
        description: None,
        category_id: None,
        kind: field(&f, "kind").map(|k| k.trim().to_string()),
    };
    let (_, t) = resources::create_resource_type(State(st), auth, Path(own), ApiJson(body)).await?;
    Ok(see_other(&format!("/seller/resource-types/{}", t.0.id)))
}

async fn type_page(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let t: ResourceTypeOut = resources::get_resource_type(State(st), auth, Path(id))
        .await?
        .0;
    let mine = t.owner_account_id == own;
    let body = html! {
        p class="muted" { code { (t.code) } " · " (t.unit) " · " code { (t.service) }
            @if !mine { " · " (ctx.t("seller.cat.vendors")) } }
        @if mine {
            form method="post" action={ "/seller/resource-types/" (t.id) } class="card narrow" id="edit-type" {
                (csrf_field(&ctx))
                label { (ctx.t("seller.cat.code")) input name="code" value=(t.code) required; }
                label { (ctx.t("seller.cat.service")) input name="service" value=(t.service) required; }
                label { (ctx.t("seller.cat.unit")) input name="unit" value=(t.unit) required; }
                (kind_select(&ctx, &t.kind))
                (name_inputs(&ctx, Some(&t.name)))
                button type="submit" class="primary" { (ctx.t("seller.save")) }
            }
        } @else {
            table { tbody { @for (l, v) in &t.name.values { tr { td { (l) } td { (v) } } } } }
        }
        p { a href="/seller/catalog" { (ctx.t("seller.cat.back")) } }
    };
    Ok(page(&ctx, &text_in(&t.name, ctx.lang()), body))
}

async fn update_type(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let s = |k: &str| field(&f, k).map(|v| v.trim().to_string());
    let body = UpdateResourceTypeIn {
        code: s("code"),
        service: s("service"),
        unit: s("unit"),
        name: Some(names_from(&f)),
        description: None,
        category_id: None,
        kind: s("kind"),
    };
    let _ = resources::update_resource_type(State(st), auth, Path(id), ApiJson(body)).await?;
    Ok(see_other(&format!("/seller/resource-types/{id}")))
}

/// The resource kind chooser: a quantity (limits, gauges) or a boolean (on/off).
fn kind_select(ctx: &Ctx, current: &str) -> Markup {
    html! {
        label { (ctx.t("seller.cat.kind"))
            select name="kind" {
                @for k in ["quantity", "boolean"] {
                    option value=(k) selected[current == k] { (ctx.t(&format!("seller.cat.kind_{k}"))) }
                }
            }
        }
    }
}

/// A setting's value as a form shows it.
fn setting_text(s: &SettingIo) -> String {
    match &s.value {
        serde_json::Value::String(v) => v.clone(),
        other => other.to_string(),
    }
}

/// A typed value from a form: integers and booleans parsed, anything unparsable passed
/// on as text so the domain's validation names the field.
fn setting_from(kind: &str, raw: &str) -> SettingIo {
    let raw = raw.trim();
    let value = match kind {
        "integer" => raw
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| raw.into()),
        "boolean" => match raw {
            "true" => true.into(),
            "false" => false.into(),
            o => o.into(),
        },
        _ => raw.into(),
    };
    SettingIo {
        kind: kind.to_string(),
        value,
    }
}

fn setting_input(name: &str, s: &SettingIo, label: &str) -> Markup {
    let v = setting_text(s);
    html! {
        @match s.kind.as_str() {
            "boolean" => select name=(name) aria-label=(label) {
                option value="true" selected[v == "true"] { "true" }
                option value="false" selected[v == "false"] { "false" }
            },
            "integer" => input name=(name) value=(v) inputmode="numeric" aria-label=(label);,
            _ => input name=(name) value=(v) aria-label=(label);,
        }
    }
}

async fn account_name(st: &AppState, id: i64) -> String {
    st.db
        .accounts()
        .get(AccountId(id))
        .await
        .map(|a| a.name)
        .unwrap_or_else(|_| format!("#{id}"))
}

async fn template_page(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    let (auth, own, kind) = seller(&ctx)?;
    let t = resources::get_service_template(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let mine = t.owner_account_id == own;
    let eff = resources::effective_settings(
        State(st.clone()),
        auth.clone(),
        Path(id),
        ApiQuery(EffectiveParams { account_id: own }),
    )
    .await?
    .0;
    let overrides = resources::list_overrides(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let own_override: BTreeMap<String, SettingIo> = overrides
        .iter()
        .find(|o| o.account_id == own)
        .map(|o| o.settings.clone())
        .unwrap_or_default();
    let mut names: BTreeMap<i64, String> = BTreeMap::new();
    for a in eff
        .sources
        .values()
        .flatten()
        .chain(overrides.iter().map(|o| &o.account_id))
    {
        if !names.contains_key(a) {
            names.insert(*a, account_name(&st, *a).await);
        }
    }
    let type_names = resource_type_names(
        &st,
        &auth,
        t.resources.iter().map(|r| r.resource_type_id).collect(),
        ctx.lang(),
    )
    .await;
    let body = html! {
        p class="muted" { @if mine { (ctx.t("seller.cat.own")) } @else { (ctx.t("seller.cat.vendors")) } }
        h2 { (ctx.t("seller.cat.resources")) }
        table id="template-resources" {
            thead { tr { th { (ctx.t("seller.cat.type")) } th class="num" { (ctx.t("seller.cat.default_limit")) } } }
            tbody {
                @for r in &t.resources {
                    tr { td { (type_names.get(&r.resource_type_id).cloned().unwrap_or_else(|| format!("#{}", r.resource_type_id))) } td class="num" { @if r.default_limit < 0 { "∞" } @else { (r.default_limit) } } }
                }
                @if t.resources.is_empty() { tr { td colspan="2" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        h2 class="section-title" { (ctx.t("seller.cat.effective")) }
        p class="muted" { (ctx.t("seller.cat.effective_help")) }
        table id="effective" {
            thead { tr { th { (ctx.t("seller.cat.key")) } th { (ctx.t("seller.cat.value")) } th { (ctx.t("seller.cat.from")) } } }
            tbody {
                @for (k, v) in &eff.settings {
                    @let from = eff.sources.get(k).copied().flatten();
                    tr data-key=(k) {
                        td { code { (k) } } td { (setting_text(v)) }
                        td data-source=(from.map(|a| a.to_string()).unwrap_or_else(|| "template".into())) {
                            @match from {
                                None => { (ctx.t("seller.cat.from_template")) },
                                Some(a) if a == own => { (ctx.t("seller.cat.from_own")) },
                                Some(a) => { (ctx.t("seller.cat.from_vendor")) " " (names.get(&a).cloned().unwrap_or_default()) },
                            }
                        }
                    }
                }
                @if eff.settings.is_empty() { tr { td colspan="3" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        @if mine {
            h2 class="section-title" { (ctx.t("seller.cat.edit_settings")) }
            (settings_form(&ctx, &format!("/seller/templates/{id}/settings"), "template-settings",
                &["seller.cat.key", "seller.cat.type", "seller.cat.value", "seller.cat.remove"],
                html! { label { (ctx.t("seller.cat.name")) input name="name" value=(t.name) required; } },
                html! {
                    @for (k, v) in &t.settings {
                        tr {
                            td { code { (k) } } td { (v.kind) }
                            td { (setting_input(&format!("s.{k}"), v, k)) }
                            td { input type="checkbox" name={ "del." (k) } value="1" aria-label=(ctx.t("seller.cat.remove")); }
                        }
                    }
                    tr {
                        td { input name="new_key" placeholder=(ctx.t("seller.cat.new_key")) aria-label=(ctx.t("seller.cat.new_key")); }
                        td { select name="new_type" aria-label=(ctx.t("seller.cat.type")) { option value="string" { "string" } option value="integer" { "integer" } option value="boolean" { "boolean" } } }
                        td { input name="new_value" aria-label=(ctx.t("seller.cat.value")); }
                        td { }
                    }
                }))
        }
        @if kind == AccountKind::Reseller && !t.settings.is_empty() {
            h2 class="section-title" { (ctx.t("seller.cat.override")) }
            p class="muted" { (ctx.t("seller.cat.override_help")) }
            (settings_form(&ctx, &format!("/seller/templates/{id}/override"), "override",
                &["seller.cat.key", "seller.cat.override_on", "seller.cat.value"],
                html! {},
                html! {
                    @for (k, v) in &t.settings {
                        @let cur = own_override.get(k);
                        tr {
                            td { code { (k) } " " span class="muted" { (v.kind) } }
                            td { input type="checkbox" name={ "on." (k) } value="1" checked[cur.is_some()] aria-label=(ctx.t("seller.cat.override_on")); }
                            td { (setting_input(&format!("s.{k}"), cur.unwrap_or(eff.settings.get(k).unwrap_or(v)), k)) }
                        }
                    }
                }))
        }
        @if !overrides.is_empty() {
            h2 class="section-title" { (ctx.t("seller.cat.overrides")) }
            table id="overrides" {
                tbody {
                    @for o in &overrides {
                        tr { td { (names.get(&o.account_id).cloned().unwrap_or_default()) }
                            td { @for (k, v) in &o.settings { code { (k) } " = " (setting_text(v)) " " } } }
                    }
                }
            }
        }
        p { a href="/seller/catalog" { (ctx.t("seller.cat.back")) } }
    };
    Ok(page(&ctx, &t.name, body))
}

/// A template's settings form (its own settings, or a reseller's override): the CSRF
/// field, `extra` fields, a table of `rows` under the `head` columns, a save button.
fn settings_form(
    ctx: &Ctx,
    action: &str,
    id: &str,
    head: &[&str],
    extra: Markup,
    rows: Markup,
) -> Markup {
    html! {
        form method="post" action=(action) class="card" id=(id) {
            (csrf_field(ctx))
            (extra)
            table {
                thead { tr { @for h in head { th { (ctx.t(h)) } } } }
                tbody { (rows) }
            }
            button type="submit" class="primary" { (ctx.t("seller.save")) }
        }
    }
}

async fn save_settings(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let t = resources::get_service_template(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    if t.owner_account_id != own {
        // A vendor's template is used, not changed: the API's refusal.
        return Err(crate::error::ApiError::forbidden(
            "this object belongs to a vendor above your account: it can be used, not changed",
        )
        .into());
    }
    let mut settings = BTreeMap::new();
    for (k, v) in &t.settings {
        if field(&f, &format!("del.{k}")).is_some() {
            continue;
        }
        let raw = field(&f, &format!("s.{k}")).map(str::to_string);
        settings.insert(
            k.clone(),
            raw.map(|r| setting_from(&v.kind, &r)).unwrap_or(v.clone()),
        );
    }
    if let Some(k) = field(&f, "new_key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        let kind = field(&f, "new_type").unwrap_or("string");
        settings.insert(
            k.to_string(),
            setting_from(kind, field(&f, "new_value").unwrap_or_default()),
        );
    }
    let body = UpdateServiceTemplateIn {
        name: field(&f, "name").map(|n| n.trim().to_string()),
        resources: None,
        settings: Some(settings),
    };
    let _ = resources::update_service_template(State(st), auth, Path(id), ApiJson(body)).await?;
    Ok(see_other(&format!("/seller/templates/{id}")))
}

/// The reseller's own override: the checked keys with their values; none checked
/// removes the override (back to the inherited values).
async fn save_override(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let t = resources::get_service_template(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let settings: BTreeMap<String, SettingIo> = t
        .settings
        .iter()
        .filter(|(k, _)| field(&f, &format!("on.{k}")).is_some())
        .map(|(k, v)| {
            let raw = field(&f, &format!("s.{k}")).unwrap_or_default();
            (k.clone(), setting_from(&v.kind, raw))
        })
        .collect();
    if settings.is_empty() {
        match resources::delete_override(State(st), auth, Path((id, own))).await {
            Ok(_) => {}
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e.into()),
        }
    } else {
        let _ = resources::put_override(
            State(st),
            auth,
            Path((id, own)),
            ApiJson(PutOverrideIn { settings }),
        )
        .await?;
    }
    Ok(see_other(&format!("/seller/templates/{id}")))
}

// ---------------------------------------------------------------------------------------
// Sales category tree

fn flatten<'a>(
    nodes: &'a [SalesCategoryNodeOut],
    depth: usize,
    out: &mut Vec<(usize, usize, &'a SalesCategoryNodeOut)>,
) {
    for n in nodes {
        out.push((depth, nodes.len(), n));
        flatten(&n.children, depth + 1, out);
    }
}

async fn categories_page(State(st): State<AppState>, ctx: Ctx) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let tree = sales::get_tree(State(st.clone()), auth.clone(), Path(own))
        .await?
        .0
        .items;
    let plans = super::seller::plans_in_reader_language(st, auth, own, &ctx)
        .await?
        .items
        .into_iter()
        .filter(|p| p.owner_account_id == own)
        .collect::<Vec<_>>();
    let mut rows = Vec::new();
    flatten(&tree, 0, &mut rows);
    let body = html! {
        p class="muted" { (ctx.t("seller.sc.help")) " " a href={ "/store/" (own) } id="store-link" { (ctx.t("seller.sc.view_store")) } }
        table id="categories" {
            thead { tr { th { (ctx.t("seller.cat.name")) } th { (ctx.t("seller.cat.code")) } th { (ctx.t("seller.sc.order")) } th { (ctx.t("seller.sc.plans")) } } }
            tbody {
                @for (depth, siblings, n) in &rows {
                    @let c = &n.category;
                    @let in_cat: Vec<_> = plans.iter().filter(|p| p.content.sales_categories.iter().any(|x| x == &c.code)).collect();
                    tr data-category=(c.id) data-sort=(c.sort) {
                        td style={ "padding-inline-start:" (0.5 + 1.5 * *depth as f32) "em" } {
                            form method="post" action={ "/seller/categories/" (c.id) "/rename" } class="inline" {
                                (csrf_field(&ctx))
                                input name="name" value=(text_in(&c.name, ctx.lang())) aria-label=(ctx.t("seller.cat.name")) size="18";
                                button type="submit" { (ctx.t("seller.sc.rename")) }
                            }
                        }
                        td { code { (c.code) } }
                        td class="actions" {
                            form method="post" action={ "/seller/categories/" (c.id) "/move" } class="inline" {
                                (csrf_field(&ctx))
                                input type="hidden" name="dir" value="up";
                                button type="submit" disabled[c.sort == 0] aria-label=(ctx.t("seller.sc.up")) title=(ctx.t("seller.sc.up")) { "↑" }
                            }
                            form method="post" action={ "/seller/categories/" (c.id) "/move" } class="inline" {
                                (csrf_field(&ctx))
                                input type="hidden" name="dir" value="down";
                                button type="submit" disabled[c.sort as usize + 1 >= *siblings] aria-label=(ctx.t("seller.sc.down")) title=(ctx.t("seller.sc.down")) { "↓" }
                            }
                        }
                        td {
                            @for p in &in_cat {
                                form method="post" action={ "/seller/categories/" (c.id) "/plans" } class="inline" {
                                    (csrf_field(&ctx))
                                    input type="hidden" name="plan_id" value=(p.id);
                                    input type="hidden" name="op" value="remove";
                                    span class="badge" { (p.display_name) } " "
                                    button type="submit" class="link" aria-label=(ctx.t("seller.sc.unassign")) { "×" }
                                }
                            }
                            @if n.children.is_empty() {
                                @let others: Vec<_> = plans.iter().filter(|p| !in_cat.iter().any(|q| q.id == p.id)).collect();
                                @if !others.is_empty() {
                                    form method="post" action={ "/seller/categories/" (c.id) "/plans" } class="inline" {
                                        (csrf_field(&ctx))
                                        input type="hidden" name="op" value="add";
                                        select name="plan_id" aria-label=(ctx.t("seller.sc.assign")) {
                                            @for p in others { option value=(p.id) { (p.display_name) } }
                                        }
                                        button type="submit" { (ctx.t("seller.sc.assign")) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan="4" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        h2 class="section-title" { (ctx.t("seller.sc.new")) }
        form method="post" action="/seller/categories" class="card narrow" id="create-category" {
            (csrf_field(&ctx))
            label { (ctx.t("seller.cat.code")) input name="code" required; }
            label { (ctx.t("seller.cat.name")) input name="name" required; }
            label { (ctx.t("seller.sc.parent"))
                select name="parent_id" {
                    option value="" { (ctx.t("seller.sc.root")) }
                    @for (depth, _, n) in &rows {
                        option value=(n.category.id) { (" ".repeat(*depth * 2)) (text_in(&n.category.name, ctx.lang())) }
                    }
                }
            }
            button type="submit" class="primary" { (ctx.t("seller.cat.create")) }
        }
    };
    Ok(page(&ctx, ctx.t("seller.sc.title"), body))
}

#[derive(Deserialize)]
struct NewCategoryForm {
    code: String,
    name: String,
    parent_id: Option<String>,
}

async fn create_category(
    State(st): State<AppState>,
    ctx: Ctx,
    CsrfForm(f): CsrfForm<NewCategoryForm>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let parent_id = match f.parent_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(
            p.parse()
                .map_err(|_| bad_field("parent_id", "a category of this store"))?,
        ),
    };
    let lang = ctx.lang().to_string();
    let body = CreateSalesCategoryIn {
        code: f.code.trim().to_string(),
        name: LocalizedText {
            default: lang.clone(),
            values: BTreeMap::from([(lang, f.name.trim().to_string())]),
        },
        parent_id,
        sort: None,
    };
    let _ = sales::create_category(State(st), auth, Path(own), ApiJson(body)).await?;
    Ok(see_other("/seller/categories"))
}

#[derive(Deserialize)]
struct RenameForm {
    name: String,
}

/// Rename in the reader's language; the other languages keep their text.
async fn rename_category(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<RenameForm>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let c = sales::get_category(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let mut name = c.name;
    name.values
        .insert(ctx.lang().to_string(), f.name.trim().to_string());
    let body = UpdateSalesCategoryIn {
        code: None,
        name: Some(name),
    };
    let _ = sales::update_category(State(st), auth, Path(id), ApiJson(body)).await?;
    Ok(see_other("/seller/categories"))
}

#[derive(Deserialize)]
struct MoveForm {
    dir: String,
}

async fn move_category(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<MoveForm>,
) -> WebResult {
    let (auth, _, _) = seller(&ctx)?;
    let c = sales::get_category(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let sort = match f.dir.as_str() {
        "up" if c.sort > 0 => i64::from(c.sort) - 1,
        "up" => return Ok(see_other("/seller/categories")),
        "down" => i64::from(c.sort) + 1,
        _ => return Err(bad_field("dir", "up or down")),
    };
    let body = MoveSalesCategoryIn {
        parent_id: None,
        sort: Some(sort),
    };
    let _ = sales::move_category(State(st), auth, Path(id), ApiJson(body)).await?;
    Ok(see_other("/seller/categories"))
}

#[derive(Deserialize)]
struct AssignForm {
    plan_id: i64,
    op: String,
}

/// List a plan in the category, or take it out: the plan's `sales_categories`, changed
/// through the plan update (the plan's owner only, with the API's checks).
async fn assign_plan(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<AssignForm>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let c = sales::get_category(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let plan = plans::get_plan(
        State(st.clone()),
        auth.clone(),
        Path(f.plan_id),
        ApiQuery(LangParam { lang: None }),
    )
    .await?
    .0;
    if plan.owner_account_id != own || c.owner_account_id != own {
        return Err(WebError::not_found());
    }
    let mut content = plan.content;
    match f.op.as_str() {
        "add" if !content.sales_categories.contains(&c.code) => {
            content.sales_categories.push(c.code.clone())
        }
        "add" => {}
        "remove" => content.sales_categories.retain(|x| x != &c.code),
        _ => return Err(bad_field("op", "add or remove")),
    }
    let _ = plans::update_plan(
        State(st),
        auth,
        Path(f.plan_id),
        ApiJson(UpdatePlanIn {
            content,
            expected_version: Some(plan.version),
        }),
    )
    .await?;
    Ok(see_other("/seller/categories"))
}
