//! Login, logout, the current user, password change, API tokens.

use super::users::{GrantOut, UserOut, grants_out, user_out};
use super::{ProblemResponses, emit, iso};
use crate::auth::{Authed, SESSION_COOKIE, Via, new_secret};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::extract::PeerAddr;
use crate::password::{dummy_hash, hash_password_off_runtime, verify_password};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::TokenId;
use cascade_domain::user::check_password;
use cascade_domain::validation::bounded_text;
use cascade_store::auth::{ApiToken, Auth};
use cascade_store::users::Users;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login, logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub login: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeOut {
    pub user: UserOut,
    pub account_id: i64,
    pub account_name: String,
    pub account_kind: String,
    /// Effective privileges (union of the user's roles).
    pub privileges: Vec<GrantOut>,
}

async fn me_out(st: &AppState, auth: &Authed) -> ApiResult<MeOut> {
    let account = st.db.accounts().get(auth.user.account_id).await?;
    Ok(MeOut {
        user: user_out(st, auth.user.clone()).await?,
        account_id: account.id.0,
        account_name: account.name,
        account_kind: account.kind.as_str().into(),
        privileges: grants_out(&auth.actor.privileges.grants()),
    })
}

/// The client's address: the socket peer (a proxy's `X-Forwarded-For` is not trusted
/// blindly, since anyone could send it).
fn source(headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    let _ = headers;
    peer.map(|p| p.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = LoginIn,
    responses((status = 200, body = MeOut, description = "Logged in; the session cookie is set"), ProblemResponses))]
async fn login(
    State(st): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginIn>,
) -> ApiResult<(CookieJar, Json<MeOut>)> {
    let (cookie, auth) = start_session(&st, peer, &headers, &body).await?;
    Ok((jar.add(cookie), Json(me_out(&st, &auth).await?)))
}

/// Check a login and password (throttled, argon2) and open a session: the one login
/// path, shared by `POST /api/v1/session` and the panels' login form.
pub(crate) async fn start_session(
    st: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &LoginIn,
) -> ApiResult<(Cookie<'static>, Authed)> {
    let now = st.clock.now();
    let login_key = format!("login:{}", body.login.trim().to_lowercase());
    let addr_key = format!("addr:{}", source(headers, peer));
    let keys = [login_key.clone(), addr_key];
    if body.login.len() > 200 || body.password.len() > 4096 {
        return Err(ApiError::field(
            "login",
            "too_long",
            "login or password too long",
        ));
    }
    if let Some(wait) = st.throttle.locked(&keys, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "Too many failed logins",
        )
        .detail(format!("try again in {wait} seconds")));
    }
    let creds = st.db.users().credentials_by_login(&body.login).await?;
    // Verify against a dummy hash when the login is unknown, so timing and answer are
    // the same for "no such login" and "wrong password".
    let hash = creds.as_ref().and_then(|c| c.password_hash.clone());
    let password = body.password.clone();
    let ok = tokio::task::spawn_blocking(move || {
        verify_password(&password, hash.as_deref().unwrap_or(dummy_hash()))
    })
    .await
    .unwrap_or(false);
    // Users of a cancelled account are refused like a wrong password.
    let account_open = match &creds {
        Some(c) => {
            st.db.accounts().get(c.user.account_id).await?.status
                != cascade_domain::account::AccountStatus::Cancelled
        }
        None => false,
    };
    let Some(creds) =
        creds.filter(|c| ok && account_open && c.password_hash.is_some() && !c.user.disabled)
    else {
        st.throttle.record_failure(&keys, now);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Login failed",
        )
        .detail("wrong login or password"));
    };
    st.throttle.clear(&login_key);
    let secret = new_secret("cs_");
    let expires = now.plus_secs(st.config.session_ttl_secs);
    let mut tx = st.db.begin().await?;
    Auth::create_session(
        &mut tx,
        creds.user.id,
        &secret,
        creds.credentials_version,
        now,
        expires,
        peer.map(|p| p.ip().to_string()).as_deref(),
    )
    .await?;
    tx.commit().await?;
    let cookie = Cookie::build((SESSION_COOKIE, secret.clone()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(st.config.secure_cookies)
        .path("/")
        .build();
    let privileges = st.db.users().privileges(creds.user.id).await?;
    let auth = Authed {
        actor: cascade_domain::authz::Actor {
            user_id: creds.user.id,
            account_id: creds.user.account_id,
            privileges,
        },
        user: creds.user,
        via: Via::Session(secret),
    };
    Ok((cookie, auth))
}

#[utoipa::path(delete, path = "/api/v1/session", tag = "session", responses((status = 204, description = "Logged out"), ProblemResponses))]
async fn logout(
    State(st): State<AppState>,
    auth: Authed,
    jar: CookieJar,
) -> ApiResult<(StatusCode, CookieJar)> {
    end_session(&st, &auth).await?;
    Ok((
        StatusCode::NO_CONTENT,
        jar.remove(Cookie::build(SESSION_COOKIE).path("/").build()),
    ))
}

/// End the caller's session (nothing to do for a token).
pub(crate) async fn end_session(st: &AppState, auth: &Authed) -> ApiResult<()> {
    if let Via::Session(secret) = &auth.via {
        let mut tx = st.db.begin().await?;
        Auth::delete_session(&mut tx, secret).await?;
        tx.commit().await?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/me", tag = "session", responses((status = 200, body = MeOut), ProblemResponses))]
async fn me(State(st): State<AppState>, auth: Authed) -> ApiResult<Json<MeOut>> {
    Ok(Json(me_out(&st, &auth).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordIn {
    pub current_password: String,
    pub new_password: String,
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "session", request_body = PasswordIn,
    responses((status = 204, description = "Changed; other sessions of the user are ended"), ProblemResponses))]
async fn change_password(
    State(st): State<AppState>,
    auth: Authed,
    ApiJson(body): ApiJson<PasswordIn>,
) -> ApiResult<StatusCode> {
    check_password(&body.new_password).map_err(|e| ApiError::from(e.under("new_password")))?;
    let hash = st.db.users().password_hash(auth.user.id).await?;
    let current = body.current_password.clone();
    let ok =
        tokio::task::spawn_blocking(move || hash.is_some_and(|h| verify_password(&current, &h)))
            .await
            .unwrap_or(false);
    if !ok {
        return Err(ApiError::field(
            "current_password",
            "wrong_password",
            "the current password is wrong",
        ));
    }
    let new_pw = body.new_password.clone();
    let new_hash = hash_password_off_runtime(new_pw).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let version = Users::set_password(&mut tx, auth.user.id, &new_hash, now).await?;
    let keep = match &auth.via {
        Via::Session(s) => Some(s.as_str()),
        Via::Token(_) => None,
    };
    Auth::delete_sessions_of(&mut tx, auth.user.id, keep).await?;
    if let Some(s) = keep {
        Auth::refresh_session_version(&mut tx, s, version).await?;
    }
    emit(
        &mut tx,
        now,
        "user.password_changed",
        auth.user.account_id,
        &auth,
        "user",
        auth.user.id.0,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    pub id: i64,
    pub name: String,
    /// The first characters of the secret, to tell tokens apart.
    pub prefix: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl From<ApiToken> for TokenOut {
    fn from(t: ApiToken) -> Self {
        TokenOut {
            id: t.id.0,
            name: t.name,
            prefix: t.prefix,
            created_at: iso(t.created_at),
            expires_at: t.expires_at.map(iso),
            revoked_at: t.revoked_at.map(iso),
            last_used_at: t.last_used_at.map(iso),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewTokenOut {
    #[serde(flatten)]
    pub token: TokenOut,
    /// The secret: shown once, store it now. Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    pub name: String,
    /// Lifetime in days (1–3650); no expiry when absent.
    pub expires_in_days: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/me/tokens", tag = "tokens", responses((status = 200, body = Vec<TokenOut>), ProblemResponses))]
async fn list_tokens(State(st): State<AppState>, auth: Authed) -> ApiResult<Json<Vec<TokenOut>>> {
    Ok(Json(
        st.db
            .auth()
            .tokens_of(auth.user.id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/me/tokens", tag = "tokens", request_body = TokenIn,
    responses((status = 201, body = NewTokenOut), ProblemResponses))]
async fn create_token(
    State(st): State<AppState>,
    auth: Authed,
    ApiJson(body): ApiJson<TokenIn>,
) -> ApiResult<(StatusCode, Json<NewTokenOut>)> {
    let name = bounded_text(&body.name, 100).map_err(|e| ApiError::from(e.under("name")))?;
    let now = st.clock.now();
    let expires = match body.expires_in_days {
        None => None,
        Some(d) if (1..=3650).contains(&d) => {
            Some(Timestamp(now.0 + d * Timestamp::MICROS_PER_DAY))
        }
        Some(_) => {
            return Err(ApiError::field(
                "expires_in_days",
                "out_of_range",
                "between 1 and 3650 days",
            ));
        }
    };
    let secret = new_secret("cat_");
    let mut tx = st.db.begin().await?;
    let token = Auth::create_token(&mut tx, auth.user.id, &name, &secret, now, expires).await?;
    emit(
        &mut tx,
        now,
        "token.created",
        auth.user.account_id,
        &auth,
        "api_token",
        token.id.0,
        json!({"name": name}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(NewTokenOut {
            token: token.into(),
            secret,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/me/tokens/{id}", tag = "tokens", params(("id" = i64, Path)),
    responses((status = 204, description = "Revoked: refused from now on"), ProblemResponses))]
async fn revoke_token(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if !Auth::revoke_token(&mut tx, auth.user.id, TokenId(id), now).await? {
        return Err(ApiError::not_found());
    }
    emit(
        &mut tx,
        now,
        "token.revoked",
        auth.user.account_id,
        &auth,
        "api_token",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
