//! Who is calling: a session cookie or a bearer API token, resolved on every request.
//!
//! Resolving a session takes five reads (session → user → credentials version →
//! account → effective privileges), which dominated a panel page's cost (issue 5). A
//! resolved session is therefore kept in an in-process cache ([`AuthCache`], on
//! [`moka`]: a well-kept concurrent cache with per-entry time-to-live), keyed by the
//! SHA-256 of the session secret (never the secret itself), holding the user, the
//! account, the effective privileges and the session's expiry.
//!
//! **Staleness bound.** An entry is used only while all of these hold:
//!
//! * it is younger than the cache's time-to-live (`HttpConfig::auth_cache_ttl_ms`,
//!   default 5 s; 0 turns the cache off);
//! * the session has not expired by the request's clock (the expiry is in the entry);
//! * no authentication data changed since it was read, *in this process*: every store
//!   function that writes sessions, tokens, users, role attachments, role grants or an
//!   account's status or profile bumps `cascade_store::auth::auth_generation` (logout,
//!   password change or reset, user disable, role attach/detach, custom role edit,
//!   built-in role sync, account hold/release/cancel, profile edits), and an entry read
//!   under an older generation is discarded. So after such a write commits, this
//!   process refuses a logged-out session, a disabled user, a cancelled account or a
//!   revoked privilege on the very next request.
//!
//! What can be stale, for at most the time-to-live: writes made by *another* process
//! (a second server instance, `cascade` admin commands, a separately run worker), and a
//! read that raced a write's transaction (it began after the write's statement but
//! read before the commit). Deployments running several servers who need zero
//! staleness set `auth_cache_ttl_ms = 0`.
//!
//! Checks that must see the current account state (ordering by a held account, money
//! movements) read the account from the database themselves; the cached account is
//! used for who-is-calling and display (kind, vendor, language, currency). Sessions
//! have a fixed expiry (no sliding expiry), so a request never writes to resolve its
//! session; API tokens are not cached (their `last_used_at` bookkeeping writes at most
//! once a minute per token).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use cascade_domain::account::{Account, AccountStatus};
use cascade_domain::authz::{Action, Actor, Relation, authorize};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{AccountId, TokenId};
use cascade_domain::privilege::PrivilegeSet;
use cascade_domain::user::User;
use cascade_store::auth::{auth_generation, hash_secret};
use rand::RngCore;
use std::sync::Arc;
use std::time::Duration;

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

/// A resolved session, as cached.
#[derive(Debug)]
struct CachedSession {
    /// `auth_generation()` when the entry was read (before the reads).
    generation: u64,
    expires_at: Timestamp,
    user: User,
    account: Account,
    privileges: PrivilegeSet,
}

/// The cache of resolved sessions (see the module documentation for what it may
/// serve stale, and for how long).
pub struct AuthCache {
    sessions: Option<moka::sync::Cache<String, Arc<CachedSession>>>,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache")
            .field("enabled", &self.sessions.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthCache {
    /// A cache whose entries live at most `ttl` (zero: no cache), holding at most
    /// `capacity` sessions.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let sessions = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        Self { sessions }
    }

    /// Forget every entry (the generation check makes this rarely needed).
    pub fn clear(&self) {
        if let Some(c) = &self.sessions {
            c.invalidate_all();
        }
    }

    fn get(&self, key: &str, now: Timestamp) -> Option<Arc<CachedSession>> {
        let c = self.sessions.as_ref()?;
        let e = c.get(key)?;
        if e.generation == auth_generation() && e.expires_at > now {
            Some(e)
        } else {
            c.invalidate(key);
            None
        }
    }
}

/// Resolve the caller from the request headers; `Ok(None)` when no credentials were sent.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Authed>, ApiError> {
    Ok(authenticate_with_account(state, headers)
        .await?
        .map(|(a, _)| a))
}

/// [`authenticate`], also returning the caller's account (the panels show it).
pub async fn authenticate_with_account(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Authed, Account)>, ApiError> {
    let now = state.clock.now();
    let generation = auth_generation();
    let (user_id, via, version, session) = if let Some(secret) = bearer(headers) {
        let Some(token) = state.db.auth().token(secret, now).await? else {
            return Err(
                ApiError::unauthorized().detail("the API token is unknown, expired or revoked")
            );
        };
        state.db.auth().touch_token(token.id, now).await?;
        (token.user_id, Via::Token(token.id), None, None)
    } else {
        let jar = CookieJar::from_headers(headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Ok(None);
        };
        let secret = cookie.value().to_string();
        let key = hash_secret(&secret);
        if let Some(e) = state.auth_cache.get(&key, now) {
            let authed = Authed {
                actor: Actor {
                    user_id: e.user.id,
                    account_id: e.user.account_id,
                    privileges: e.privileges.clone(),
                },
                user: e.user.clone(),
                via: Via::Session(secret),
            };
            return Ok(Some((authed, e.account.clone())));
        }
        let Some(session) = state.db.auth().session(&secret, now).await? else {
            return Err(ApiError::unauthorized().detail("the session has ended; log in again"));
        };
        (
            session.user_id,
            Via::Session(secret),
            Some(session.credentials_version),
            Some((key, session.expires_at)),
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
    if account.status == AccountStatus::Cancelled {
        return Err(ApiError::unauthorized().detail("this account is cancelled"));
    }
    let privileges = state.db.users().privileges(user.id).await?;
    if let (Some((key, expires_at)), Some(c)) = (session, &state.auth_cache.sessions) {
        c.insert(
            key,
            Arc::new(CachedSession {
                generation,
                expires_at,
                user: user.clone(),
                account: account.clone(),
                privileges: privileges.clone(),
            }),
        );
    }
    Ok(Some((
        Authed {
            actor: Actor {
                user_id: user.id,
                account_id: user.account_id,
                privileges,
            },
            user,
            via,
        },
        account,
    )))
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
        // Its own account is depth 0 (the closure's self row): no need to ask.
        let depth = if target == self.actor.account_id {
            Some(0)
        } else {
            state
                .db
                .accounts()
                .relation_depth(self.actor.account_id, target)
                .await?
        };
        let relation = Relation::from_depth(depth);
        authorize(&self.actor, relation, action)?;
        Ok(relation)
    }
}
