//! Who is calling: a session cookie or a bearer API token, resolved on every request.
//!
//! Each request re-reads the user: a disabled user, a revoked or expired token, or a
//! session issued before a password change (its `credentials_version` is older) is
//! refused at once, with no cache to wait out.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use cascade_domain::authz::{Action, Actor, Relation, authorize};
use cascade_domain::ids::{AccountId, TokenId};
use cascade_domain::user::User;
use rand::RngCore;

pub const SESSION_COOKIE: &str = "cascade_session";

#[derive(Debug, Clone)]
pub enum Via {
    Session(String),
    Token(TokenId),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Authed {
    pub actor: Actor,
    pub user: User,
    pub via: Via,
}

/// 32 random bytes, URL-safe base64, with a prefix saying what the secret is.
pub fn new_secret(prefix: &str) -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Resolve the caller from the request headers; `Ok(None)` when no credentials were sent.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Authed>, ApiError> {
    let now = state.clock.now();
    let (user_id, via, version) = if let Some(secret) = bearer(headers) {
        let Some(token) = state.db.auth().token(secret, now).await? else {
            return Err(
                ApiError::unauthorized().detail("the API token is unknown, expired or revoked")
            );
        };
        state.db.auth().touch_token(token.id, now).await?;
        (token.user_id, Via::Token(token.id), None)
    } else {
        let jar = CookieJar::from_headers(headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Ok(None);
        };
        let secret = cookie.value().to_string();
        let Some(session) = state.db.auth().session(&secret, now).await? else {
            return Err(ApiError::unauthorized().detail("the session has ended; log in again"));
        };
        (
            session.user_id,
            Via::Session(secret),
            Some(session.credentials_version),
        )
    };
    let user = state.db.users().get(user_id).await?;
    if user.disabled {
        return Err(ApiError::unauthorized().detail("this user is disabled"));
    }
    if let Some(v) = version
        && state.db.users().credentials_version(user_id).await? != v
    {
        return Err(ApiError::unauthorized().detail("the session has ended; log in again"));
    }
    let account = state.db.accounts().get(user.account_id).await?;
    if account.status == cascade_domain::account::AccountStatus::Cancelled {
        return Err(ApiError::unauthorized().detail("this account is cancelled"));
    }
    let privileges = state.db.users().privileges(user.id).await?;
    Ok(Some(Authed {
        actor: Actor {
            user_id: user.id,
            account_id: user.account_id,
            privileges,
        },
        user,
        via,
    }))
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(a) = parts.extensions.get::<Authed>() {
            return Ok(a.clone());
        }
        let a = authenticate(state, &parts.headers)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        parts.extensions.insert(a.clone());
        Ok(a)
    }
}

impl Authed {
    /// The one gate every endpoint passes: where does `target` stand relative to the
    /// caller's account, and does the authorization rule allow `action` there?
    pub async fn check(
        &self,
        state: &AppState,
        target: AccountId,
        action: Action,
    ) -> Result<Relation, ApiError> {
        let relation = Relation::from_depth(
            state
                .db
                .accounts()
                .relation_depth(self.actor.account_id, target)
                .await?,
        );
        authorize(&self.actor, relation, action)?;
        Ok(relation)
    }
}
