//! `/api/v1/accounts/{id}/notification-templates`, `/api/v1/accounts/{id}/outbox` and
//! `/api/v1/password-reset`: a seller's notification templates (effective, own or
//! inherited; edit; revert; preview), the messages queued for an account, and the
//! password reset flow.
//!
//! An edit (`PUT`) replaces the account's whole template (every language version): the
//! first edit of a reseller creates its own copy, which stops following the provider.
//! `DELETE` drops the copy, and the account inherits again. Validation (syntax, unknown
//! variables, languages) is the domain's ([`cascade_domain::notification::validate`]):
//! a bad template is a 422 naming the field and the variable, and nothing is written.
//!
//! Password reset never tells whether a login exists: the request is always 202. The
//! token (256 random bits) is mailed; only its SHA-256 is stored, it expires after
//! [`RESET_TOKEN_TTL_SECS`], and it can be used once.

use super::{ProblemResponses, emit, iso};
use crate::auth::{Authed, new_secret};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, PageOut, PageParams, PeerAddr, decode_cursor};
use crate::password::hash_password_off_runtime;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cascade_domain::account::{Account, AccountKind};
use cascade_domain::authz::Action;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::notification::{
    NotificationEvent, TemplateDoc, TemplateInput, TemplateTextInput, render, validate,
};
use cascade_domain::user::check_password;
use cascade_store::auth::{Auth, hash_secret};
use cascade_store::events::{Events, NewEvent};
use cascade_store::notifications::{
    EffectiveTemplate, NewMessage, Notifications, Outbox, OutboxMessage, PasswordResets,
    TemplateSource,
};
use cascade_store::users::Users;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a password reset token is valid.
pub const RESET_TOKEN_TTL_SECS: i64 = 3600;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates))
        .routes(routes!(get_template, put_template, revert_template))
        .routes(routes!(preview_template))
        .routes(routes!(list_outbox))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TemplateTextIo {
    /// BCP 47 tag, e.g. `en`, `fr`, `ar`.
    pub language: String,
    /// One line; Jinja syntax (`{{ order_id }}`).
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// Optional HTML body (variables are HTML-escaped).
    #[serde(default)]
    pub html: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VariableOut {
    pub name: String,
    pub description: String,
    pub sample: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateOut {
    /// `order_completed`, `invoice_issued`, `payment_failed`, `suspension_deadline`,
    /// `subscription_expiring`, `password_reset`, `welcome_user`.
    pub event: String,
    /// `own` (this account's copy), `inherited` (a seller above), `builtin` (nobody has one).
    pub source: String,
    /// The account whose copy is in effect (absent for `builtin`).
    pub owner_account_id: Option<i64>,
    pub default_language: String,
    pub texts: Vec<TemplateTextIo>,
    /// The variables templates of this event may use.
    pub variables: Vec<VariableOut>,
    pub updated_at: Option<String>,
}

fn template_out(account: AccountId, t: EffectiveTemplate) -> TemplateOut {
    let (source, owner) = match t.source {
        TemplateSource::Own => ("own", Some(account.0)),
        TemplateSource::Inherited { from } => ("inherited", Some(from.0)),
        TemplateSource::Builtin => ("builtin", None),
    };
    TemplateOut {
        event: t.event.as_str().into(),
        source: source.into(),
        owner_account_id: owner,
        default_language: t.doc.default_language,
        texts: t
            .doc
            .texts
            .into_iter()
            .map(|x| TemplateTextIo {
                language: x.language,
                subject: x.subject,
                text: x.text,
                html: x.html,
            })
            .collect(),
        variables: t
            .event
            .variables()
            .into_iter()
            .map(|v| VariableOut {
                name: v.name.into(),
                description: v.description.into(),
                sample: v.sample.into(),
            })
            .collect(),
        updated_at: t.updated_at.map(iso),
    }
}

fn event_of(s: &str) -> ApiResult<NotificationEvent> {
    // An unknown event in the path is a resource that does not exist.
    NotificationEvent::parse(s).map_err(|e| ApiError::not_found().detail(e.message))
}

/// Templates belong to sellers; a customer's are its seller's (read-only).
async fn seller_account(st: &AppState, id: AccountId) -> ApiResult<Account> {
    let a = st.db.accounts().get(id).await?;
    if a.kind == AccountKind::Customer {
        return Err(ApiError::conflict(
            "customers have no notification templates of their own; they receive their seller's",
        ));
    }
    Ok(a)
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/notification-templates", tag = "notifications",
    params(("id" = i64, Path, description = "Seller account"), PageParams),
    responses((status = 200, body = PageOut<TemplateOut>, description = "The effective template of every event, marking own and inherited"), ProblemResponses))]
pub(crate) async fn list_templates(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<TemplateOut>>> {
    let account = AccountId(id);
    auth.check(&st, account, Action::ViewAccount).await?;
    seller_account(&st, account).await?;
    let limit = page.limit()?;
    // The cursor is the position in the fixed list of events.
    let after = page
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .unwrap_or(-1);
    let mut items = Vec::new();
    let mut next = None;
    for (i, ev) in NotificationEvent::ALL.into_iter().enumerate() {
        let i = i as i64;
        if i <= after {
            continue;
        }
        if items.len() as i64 == limit {
            next = Some(i - 1);
            break;
        }
        items.push(template_out(
            account,
            st.db.notifications().effective(account, ev).await?,
        ));
    }
    Ok(Json(PageOut::new(items, next)))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/notification-templates/{event}", tag = "notifications",
    params(("id" = i64, Path, description = "Seller account"), ("event" = String, Path, description = "e.g. order_completed")),
    responses((status = 200, body = TemplateOut), ProblemResponses))]
pub(crate) async fn get_template(
    State(st): State<AppState>,
    auth: Authed,
    Path((id, event)): Path<(i64, String)>,
) -> ApiResult<Json<TemplateOut>> {
    let account = AccountId(id);
    auth.check(&st, account, Action::ViewAccount).await?;
    let ev = event_of(&event)?;
    seller_account(&st, account).await?;
    Ok(Json(template_out(
        account,
        st.db.notifications().effective(account, ev).await?,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateIn {
    /// The language used when the recipient's is missing; must be among `texts`.
    pub default_language: String,
    pub texts: Vec<TemplateTextIo>,
}

fn validated(ev: NotificationEvent, body: &TemplateIn) -> ApiResult<TemplateDoc> {
    Ok(validate(
        ev,
        &TemplateInput {
            default_language: body.default_language.clone(),
            texts: body
                .texts
                .iter()
                .map(|t| TemplateTextInput {
                    language: t.language.clone(),
                    subject: t.subject.clone(),
                    text: t.text.clone(),
                    html: t.html.clone(),
                })
                .collect(),
        },
    )?)
}

#[utoipa::path(put, path = "/api/v1/accounts/{id}/notification-templates/{event}", tag = "notifications",
    params(("id" = i64, Path, description = "Seller account"), ("event" = String, Path, description = "e.g. order_completed")),
    request_body = TemplateIn,
    responses((status = 200, body = TemplateOut, description = "Saved as the account's own copy (created on the first edit)"), ProblemResponses))]
pub(crate) async fn put_template(
    State(st): State<AppState>,
    auth: Authed,
    Path((id, event)): Path<(i64, String)>,
    ApiJson(body): ApiJson<TemplateIn>,
) -> ApiResult<Json<TemplateOut>> {
    let account = AccountId(id);
    auth.check(&st, account, Action::UpdateAccount).await?;
    let ev = event_of(&event)?;
    seller_account(&st, account).await?;
    let doc = validated(ev, &body)?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let created = Notifications::save(&mut tx, account, ev, &doc, now).await?;
    emit(&mut tx, now, "notification_template.saved", account, &auth, "account", account.0,
        json!({"event": ev.as_str(), "created_copy": created, "languages": doc.texts.iter().map(|t| t.language.clone()).collect::<Vec<_>>()})).await?;
    tx.commit().await?;
    Ok(Json(template_out(
        account,
        st.db.notifications().effective(account, ev).await?,
    )))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{id}/notification-templates/{event}", tag = "notifications",
    params(("id" = i64, Path, description = "Seller account"), ("event" = String, Path, description = "e.g. order_completed")),
    responses((status = 200, body = TemplateOut, description = "The own copy is dropped; the template now in effect (inherited or built-in)"), ProblemResponses))]
pub(crate) async fn revert_template(
    State(st): State<AppState>,
    auth: Authed,
    Path((id, event)): Path<(i64, String)>,
) -> ApiResult<Json<TemplateOut>> {
    let account = AccountId(id);
    auth.check(&st, account, Action::UpdateAccount).await?;
    let ev = event_of(&event)?;
    seller_account(&st, account).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if Notifications::revert(&mut tx, account, ev).await? {
        emit(
            &mut tx,
            now,
            "notification_template.reverted",
            account,
            &auth,
            "account",
            account.0,
            json!({"event": ev.as_str()}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(template_out(
        account,
        st.db.notifications().effective(account, ev).await?,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    /// Preferred language (else the template's default).
    #[serde(default)]
    pub language: Option<String>,
    /// A draft to preview instead of the effective template (validated like an edit).
    #[serde(default)]
    pub template: Option<TemplateIn>,
    /// Values overriding the event's sample values.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewOut {
    pub language: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/notification-templates/{event}/preview", tag = "notifications",
    params(("id" = i64, Path, description = "Seller account"), ("event" = String, Path, description = "e.g. order_completed")),
    request_body = PreviewIn,
    responses((status = 200, body = PreviewOut, description = "Rendered with sample variables; nothing is written"), ProblemResponses))]
pub(crate) async fn preview_template(
    State(st): State<AppState>,
    auth: Authed,
    Path((id, event)): Path<(i64, String)>,
    ApiJson(body): ApiJson<PreviewIn>,
) -> ApiResult<Json<PreviewOut>> {
    let account = AccountId(id);
    auth.check(&st, account, Action::ViewAccount).await?;
    let ev = event_of(&event)?;
    seller_account(&st, account).await?;
    let doc = match &body.template {
        Some(t) => validated(ev, t).map_err(|mut e| {
            for f in &mut e.errors {
                f.field = format!("template.{}", f.field);
            }
            e
        })?,
        None => st.db.notifications().effective(account, ev).await?.doc,
    };
    let mut vars = ev.sample_variables();
    match (&mut vars, &body.variables) {
        (_, None) => {}
        (Value::Object(base), Some(Value::Object(over))) => {
            for (k, v) in over {
                if !base.contains_key(k) {
                    return Err(ApiError::field(
                        "variables",
                        "unknown_variable",
                        format!("`{k}` is not a variable of {ev}"),
                    ));
                }
                base.insert(k.clone(), v.clone());
            }
        }
        _ => {
            return Err(ApiError::field(
                "variables",
                "not_an_object",
                "variables must be an object of name → value",
            ));
        }
    }
    let langs: Vec<&str> = body.language.as_deref().into_iter().collect();
    let text = doc
        .pick(&langs)
        .ok_or_else(|| ApiError::conflict("the template has no text"))?;
    let r = render(text, &vars)
        .map_err(|e| ApiError::field("variables", "render_failed", e.to_string()))?;
    Ok(Json(PreviewOut {
        language: r.language,
        subject: r.subject,
        text: r.text,
        html: r.html,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxOut {
    pub id: i64,
    pub event: String,
    pub recipient: String,
    pub language: String,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub created_at: String,
    /// Absent while not delivered (no SMTP configured, or retrying).
    pub sent_at: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

fn outbox_out(m: OutboxMessage) -> OutboxOut {
    // A password reset message carries a live secret: never shown through the API.
    let secret = m.template == NotificationEvent::PasswordReset.as_str();
    OutboxOut {
        id: m.id,
        event: m.template,
        recipient: m.recipient,
        language: m.language,
        subject: m.subject,
        text: if secret { None } else { m.body_text },
        html: if secret { None } else { m.body_html },
        created_at: iso(m.created_at),
        sent_at: m.sent_at.map(iso),
        attempts: m.attempts,
        last_error: m.last_error,
    }
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/outbox", tag = "notifications",
    params(("id" = i64, Path, description = "Account"), PageParams),
    responses((status = 200, body = PageOut<OutboxOut>, description = "Messages about the account, newest first"), ProblemResponses))]
async fn list_outbox(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<OutboxOut>>> {
    let account = AccountId(id);
    auth.check(&st, account, Action::ViewAccount).await?;
    let p = st
        .db
        .outbox()
        .list_for_account(account, page.after()?, page.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(outbox_out).collect(),
        p.next,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequestIn {
    pub login: String,
}

#[utoipa::path(post, path = "/api/v1/password-reset", tag = "session", request_body = ResetRequestIn,
    responses((status = 202, description = "Accepted; if the login exists and is enabled, a reset code is mailed to its address"), ProblemResponses))]
async fn request_reset(
    State(st): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiJson(body): ApiJson<ResetRequestIn>,
) -> ApiResult<StatusCode> {
    let started = tokio::time::Instant::now();
    let login = body.login.trim();
    if login.is_empty() || login.len() > 200 {
        return Err(ApiError::field(
            "login",
            "invalid_login",
            "a login is required",
        ));
    }
    let now = st.clock.now();
    let login_key = [format!("reset:{}", login.to_lowercase())];
    let addr_key = [format!(
        "reset-addr:{}",
        peer.map(|p| p.ip().to_string()).unwrap_or_default()
    )];
    let wait = [
        st.reset_throttle.locked(&login_key, now),
        st.reset_addr_throttle.locked(&addr_key, now),
    ];
    if let Some(wait) = wait.into_iter().flatten().max() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Too many password-reset requests",
        )
        .detail(format!("try again in {wait} seconds")));
    }
    // Every request counts, known login or not: the limit tells nothing about existence.
    st.reset_throttle.record_failure(&login_key, now);
    st.reset_addr_throttle.record_failure(&addr_key, now);
    let issued = issue_reset(&st, login).await;
    // The answer takes the same time whether a mail was prepared or not: pad to a floor
    // above the time preparing one takes, so timing does not reveal which logins exist.
    tokio::time::sleep_until(started + RESET_RESPONSE_FLOOR).await;
    issued.map(|()| StatusCode::ACCEPTED)
}

/// The least time a password-reset request takes to answer (see [`request_reset`]).
pub const RESET_RESPONSE_FLOOR: std::time::Duration = std::time::Duration::from_millis(250);

/// Prepare and queue the reset mail if `login` names an enabled user; nothing otherwise.
async fn issue_reset(st: &AppState, login: &str) -> ApiResult<()> {
    let creds = st.db.users().credentials_by_login(login).await?;
    let Some(user) = creds.map(|c| c.user).filter(|u| !u.disabled) else {
        // Same answer whether the login exists or not.
        return Ok(());
    };
    let account = st.db.accounts().get(user.account_id).await?;
    let seller = match account.vendor_id {
        Some(v) => st.db.accounts().get(v).await?,
        None => account.clone(),
    };
    let now = st.clock.now();
    let expires = Timestamp(now.0 + RESET_TOKEN_TTL_SECS * 1_000_000);
    let token = new_secret("prt_");
    let vars = json!({
        "login": user.login.as_str(), "token": token,
        "expires_at": chrono::DateTime::from_timestamp_micros(expires.0).map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default(),
        "recipient_name": user.display_name, "account_name": account.name, "seller_name": seller.name,
    });
    let mut langs: Vec<&str> = user.language.iter().map(|l| l.as_str()).collect();
    langs.push(account.language.as_str());
    let rendered = st
        .db
        .notifications()
        .compose(seller.id, NotificationEvent::PasswordReset, &langs, &vars)
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "password reset template does not render");
            ApiError::internal()
        })?;
    let mut tx = st.db.begin().await?;
    PasswordResets::create(&mut tx, user.id, &hash_secret(&token), expires, now).await?;
    // The variables are stored without the token: the outbox is not a second copy of it.
    let mut stored = vars.clone();
    stored["token"] = json!("(hidden)");
    Outbox::queue_with_delivery(
        &mut tx,
        &NewMessage {
            account_id: Some(account.id),
            user_id: Some(user.id),
            template: NotificationEvent::PasswordReset.as_str().into(),
            recipient: user.email.as_str().into(),
            language: rendered.language,
            payload: stored,
            subject: rendered.subject,
            body_text: rendered.text,
            body_html: rendered.html,
            dedup_key: None,
        },
        now,
    )
    .await?;
    Events::emit(
        &mut tx,
        NewEvent {
            kind: "user.password_reset_requested",
            account_id: Some(account.id),
            actor_user_id: None,
            subject_type: "user",
            subject_id: user.id.0,
            payload: json!({}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmIn {
    /// The code from the mail.
    pub token: String,
    pub new_password: String,
}

#[utoipa::path(post, path = "/api/v1/password-reset/confirm", tag = "session", request_body = ResetConfirmIn,
    responses((status = 204, description = "Password changed; every session of the user is ended"), ProblemResponses))]
async fn confirm_reset(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<ResetConfirmIn>,
) -> ApiResult<StatusCode> {
    check_password(&body.new_password).map_err(|e| ApiError::from(e.under("new_password")))?;
    let new_pw = body.new_password.clone();
    let new_hash = hash_password_off_runtime(new_pw).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let Some(user) = PasswordResets::consume(&mut tx, &hash_secret(body.token.trim()), now).await?
    else {
        return Err(ApiError::field(
            "token",
            "invalid_token",
            "the code is unknown, already used or expired; request a new one",
        ));
    };
    let u = Users::get_in(&mut tx, user).await?;
    Users::set_password(&mut tx, user, &new_hash, now).await?;
    Auth::delete_sessions_of(&mut tx, user, None).await?;
    PasswordResets::void_all(&mut tx, user, now).await?;
    Events::emit(
        &mut tx,
        NewEvent {
            kind: "user.password_changed",
            account_id: Some(u.account_id),
            actor_user_id: None,
            subject_type: "user",
            subject_id: user.0,
            payload: json!({"via": "password_reset"}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
