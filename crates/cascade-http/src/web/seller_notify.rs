//! The seller panel's notification templates: per event, whether the template in effect
//! is the seller's own copy, inherited live from a seller above (the provider), or the
//! built-in one; per language, edit, preview with the event's sample variables, and
//! revert to the inherited template.
//!
//! Everything goes through the API's handlers (`crate::api::notifications`): the first
//! edit makes the seller's own copy (the store's `Notifications::save`), validation is
//! the domain's (`cascade_domain::notification::validate`), so a bad template is the
//! API's 422 naming the field, shown as a page, and nothing is written. Editing one
//! language sends the whole template (every language) as the API's `PUT` does, with
//! that language's text replaced.

use super::layout::csrf_field;
use super::seller::{see_other, seller};
use super::{CsrfForm, Ctx, WebResult, page};
use crate::api::notifications::{
    self, PreviewIn, PreviewOut, TemplateIn, TemplateOut, TemplateTextIo,
};
use crate::auth::Authed;
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/seller/notifications", get(list_page))
        .route("/seller/notifications/{event}", get(event_page).post(save))
        .route("/seller/notifications/{event}/preview", post(preview))
        .route("/seller/notifications/{event}/revert", post(revert))
}

async fn list_page(State(st): State<AppState>, ctx: Ctx) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let list = notifications::list_templates(
        State(st),
        auth,
        Path(own),
        ApiQuery(PageParams {
            limit: Some(100),
            cursor: None,
        }),
    )
    .await?
    .0;
    let body = html! {
        p class="muted" { (ctx.t("seller.nt.help")) }
        table id="notification-templates" {
            thead { tr { th { (ctx.t("seller.nt.event")) } th { (ctx.t("seller.nt.source")) } th { (ctx.t("seller.nt.languages")) } } }
            tbody {
                @for t in &list.items {
                    tr data-event=(t.event) data-source=(t.source) {
                        td { a href={ "/seller/notifications/" (t.event) } { (ctx.t(&format!("seller.nt.ev.{}", t.event))) } }
                        td { span class="badge" { (ctx.t(&format!("seller.nt.src.{}", t.source))) } }
                        td { @for x in &t.texts { code lang=(x.language) { (x.language) } " " } }
                    }
                }
            }
        }
    };
    Ok(page(&ctx, ctx.t("seller.nt.title"), body))
}

#[derive(Deserialize, Default)]
struct LangQ {
    lang: Option<String>,
}

async fn effective(st: &AppState, auth: &Authed, own: i64, event: &str) -> WebResult<TemplateOut> {
    Ok(notifications::get_template(
        State(st.clone()),
        auth.clone(),
        Path((own, event.to_string())),
    )
    .await?
    .0)
}

/// The edited language: the one asked for, else the reader's when the template has it,
/// else the template's default.
fn pick_lang(t: &TemplateOut, asked: Option<&str>, reader: &str) -> String {
    asked
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .or_else(|| {
            t.texts
                .iter()
                .any(|x| x.language == reader)
                .then(|| reader.to_string())
        })
        .unwrap_or_else(|| t.default_language.clone())
}

/// The form's draft of one language (subject, text, optional HTML).
#[derive(Deserialize)]
struct DraftForm {
    lang: String,
    subject: String,
    text: String,
    #[serde(default)]
    html: String,
}

/// The whole template with the draft's language replaced (or added).
fn with_draft(t: &TemplateOut, d: &DraftForm) -> TemplateIn {
    let draft = TemplateTextIo {
        language: d.lang.trim().to_string(),
        subject: d.subject.clone(),
        text: d.text.replace("\r\n", "\n"),
        html: Some(d.html.replace("\r\n", "\n")).filter(|h| !h.trim().is_empty()),
    };
    let mut texts: Vec<TemplateTextIo> = t
        .texts
        .iter()
        .filter(|x| x.language != draft.language)
        .map(|x| TemplateTextIo {
            language: x.language.clone(),
            subject: x.subject.clone(),
            text: x.text.clone(),
            html: x.html.clone(),
        })
        .collect();
    texts.push(draft);
    TemplateIn {
        default_language: t.default_language.clone(),
        texts,
    }
}

fn render_event(
    ctx: &Ctx,
    t: &TemplateOut,
    lang: &str,
    draft: Option<&DraftForm>,
    shown: Option<&PreviewOut>,
) -> axum::response::Response {
    let current = t.texts.iter().find(|x| x.language == lang);
    let subject = draft
        .map(|d| d.subject.clone())
        .or_else(|| current.map(|c| c.subject.clone()))
        .unwrap_or_default();
    let text = draft
        .map(|d| d.text.clone())
        .or_else(|| current.map(|c| c.text.clone()))
        .unwrap_or_default();
    let html_body = draft
        .map(|d| d.html.clone())
        .or_else(|| current.and_then(|c| c.html.clone()))
        .unwrap_or_default();
    let action = format!("/seller/notifications/{}", t.event);
    let title = ctx.t(&format!("seller.nt.ev.{}", t.event)).to_string();
    let body = html! {
        p id="template-source" data-source=(t.source) {
            span class="badge" { (ctx.t(&format!("seller.nt.src.{}", t.source))) } " "
            span class="muted" { (ctx.t(&format!("seller.nt.src_help.{}", t.source))) }
        }
        nav class="actions" aria-label=(ctx.t("seller.nt.languages")) {
            @for x in &t.texts {
                a href={ (action) "?lang=" (x.language) } aria-current=[(x.language == lang).then_some("page")] lang=(x.language) { (x.language) }
            }
        }
        form method="post" action=(action) class="card" id="template-form" {
            (csrf_field(ctx))
            label { (ctx.t("seller.nt.language")) input name="lang" value=(lang) size="6" required; }
            label { (ctx.t("seller.nt.subject")) input name="subject" value=(subject) required; }
            label { (ctx.t("seller.nt.text")) textarea name="text" rows="8" style="display:block;inline-size:100%" { (text) } }
            label { (ctx.t("seller.nt.html")) textarea name="html" rows="4" style="display:block;inline-size:100%" { (html_body) } }
            div class="actions" {
                button type="submit" class="primary" { (ctx.t("seller.save")) }
                button type="submit" formaction={ (action) "/preview" } id="preview-button" { (ctx.t("seller.nt.preview")) }
            }
        }
        @if t.source == "own" {
            form method="post" action={ (action) "/revert" } class="actions" id="revert" {
                (csrf_field(ctx))
                button type="submit" class="danger" { (ctx.t("seller.nt.revert")) }
            }
        }
        @if let Some(p) = shown {
            section class="card" id="preview" {
                h2 { (ctx.t("seller.nt.preview")) " (" (p.language) ")" }
                p { strong { (p.subject) } }
                pre { (p.text) }
            }
        }
        h2 class="section-title" { (ctx.t("seller.nt.variables")) }
        table id="variables" {
            tbody { @for v in &t.variables { tr { td { code { "{{ " (v.name) " }}" } } td { (v.description) } td class="muted" { (v.sample) } } } }
        }
        p { a href="/seller/notifications" { (ctx.t("seller.nt.back")) } }
    };
    page(ctx, &title, body)
}

async fn event_page(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(event): Path<String>,
    Query(q): Query<LangQ>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let t = effective(&st, &auth, own, &event).await?;
    let lang = pick_lang(&t, q.lang.as_deref(), ctx.lang());
    Ok(render_event(&ctx, &t, &lang, None, None))
}

async fn save(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(event): Path<String>,
    CsrfForm(f): CsrfForm<DraftForm>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let t = effective(&st, &auth, own, &event).await?;
    let body = with_draft(&t, &f);
    let _ = notifications::put_template(State(st), auth, Path((own, event.clone())), ApiJson(body))
        .await?;
    Ok(see_other(&format!(
        "/seller/notifications/{event}?lang={}",
        super::layout::urlencode(f.lang.trim())
    )))
}

/// Render the draft with the event's sample variables; nothing is written.
async fn preview(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(event): Path<String>,
    CsrfForm(f): CsrfForm<DraftForm>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let t = effective(&st, &auth, own, &event).await?;
    let out = notifications::preview_template(
        State(st),
        auth,
        Path((own, event)),
        ApiJson(PreviewIn {
            language: Some(f.lang.trim().to_string()),
            template: Some(with_draft(&t, &f)),
            variables: None,
        }),
    )
    .await?
    .0;
    let lang = f.lang.trim().to_string();
    Ok(render_event(&ctx, &t, &lang, Some(&f), Some(&out)))
}

#[derive(Deserialize)]
struct Empty {}

async fn revert(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(event): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> WebResult {
    let (auth, own, _) = seller(&ctx)?;
    let _ = notifications::revert_template(State(st), auth, Path((own, event.clone()))).await?;
    Ok(see_other(&format!("/seller/notifications/{event}")))
}
