//! Sessions and API tokens. Only SHA-256 hashes of the secrets are stored: a leaked
//! database does not leak working credentials. (A fast hash is right here: the secrets
//! are 256 random bits, not passwords.)

use crate::{Db, StoreResult, Tx, on_db, on_tx};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{TokenId, UserId};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

/// Generation of the data a request's authentication is built from (sessions, tokens,
/// users, their roles and grants, account status and profile), process-wide.
///
/// Every store function that writes such data calls [`auth_changed`], so a cache of
/// resolved callers (the HTTP layer's) can tell an entry read before the write from one
/// read after it, whichever crate made the write, as long as it ran in this process.
/// Writes from another process (a second server, `cascade` admin commands) are not seen
/// here: a cache must bound its entries' age as well.
static AUTH_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current generation (see [`AUTH_GENERATION`]).
pub fn auth_generation() -> u64 {
    AUTH_GENERATION.load(Ordering::Acquire)
}

/// Record that authentication data changed (called by the writing store functions).
pub fn auth_changed() {
    AUTH_GENERATION.fetch_add(1, Ordering::AcqRel);
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A live session, resolved from its cookie.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: UserId,
    pub credentials_version: i64,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

type TokenTuple = (
    i64,
    i64,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn token_from(t: TokenTuple) -> ApiToken {
    ApiToken {
        id: TokenId(t.0),
        user_id: UserId(t.1),
        name: t.2,
        prefix: t.3,
        created_at: Timestamp(t.4),
        expires_at: t.5.map(Timestamp),
        revoked_at: t.6.map(Timestamp),
        last_used_at: t.7.map(Timestamp),
    }
}

const TOKEN_COLUMNS: &str =
    "id, user_id, name, prefix, created_at, expires_at, revoked_at, last_used_at";

pub struct Auth<'a>(pub &'a Db);

impl Db {
    pub fn auth(&self) -> Auth<'_> {
        Auth(self)
    }
}

impl Auth<'_> {
    pub async fn create_session(
        tx: &mut Tx,
        user: UserId,
        secret: &str,
        credentials_version: i64,
        now: Timestamp,
        expires_at: Timestamp,
        source: Option<&str>,
    ) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, credentials_version, created_at, expires_at, source_addr) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(hash_secret(secret)).bind(user.0).bind(credentials_version).bind(now.0).bind(expires_at.0).bind(source)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The session for a cookie secret, if it exists and has not expired.
    pub async fn session(&self, secret: &str, now: Timestamp) -> StoreResult<Option<SessionRow>> {
        let r: Option<(i64, i64, i64, i64)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT id, user_id, credentials_version, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(hash_secret(secret)).bind(now.0).fetch_optional(p).await)?;
        Ok(r.map(|(id, u, v, e)| SessionRow {
            id,
            user_id: UserId(u),
            credentials_version: v,
            expires_at: Timestamp(e),
        }))
    }

    pub async fn delete_session(tx: &mut Tx, secret: &str) -> StoreResult<()> {
        auth_changed();
        on_tx!(tx, c => sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(hash_secret(secret)).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Remove every session of a user except, optionally, one.
    pub async fn delete_sessions_of(
        tx: &mut Tx,
        user: UserId,
        keep_secret: Option<&str>,
    ) -> StoreResult<u64> {
        auth_changed();
        let keep = keep_secret.map(hash_secret).unwrap_or_default();
        Ok(
            on_tx!(tx, c => sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2").bind(user.0).bind(keep).execute(c).await.map(|r| r.rows_affected()))?,
        )
    }

    /// Record that a session was re-issued under a new credentials version (after the
    /// user changed its own password, its current session stays valid).
    pub async fn refresh_session_version(
        tx: &mut Tx,
        secret: &str,
        version: i64,
    ) -> StoreResult<()> {
        auth_changed();
        on_tx!(tx, c => sqlx::query("UPDATE sessions SET credentials_version = $2 WHERE token_hash = $1")
            .bind(hash_secret(secret)).bind(version).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn create_token(
        tx: &mut Tx,
        user: UserId,
        name: &str,
        secret: &str,
        now: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> StoreResult<ApiToken> {
        let prefix: String = secret.chars().take(12).collect();
        let sql = format!(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLUMNS}"
        );
        let t: TokenTuple = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(user.0).bind(name).bind(hash_secret(secret)).bind(prefix).bind(now.0).bind(expires_at.map(|e| e.0))
            .fetch_one(c).await)?;
        Ok(token_from(t))
    }

    /// The token for a bearer secret, if it is neither revoked nor expired.
    pub async fn token(&self, secret: &str, now: Timestamp) -> StoreResult<Option<ApiToken>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
        );
        let t: Option<TokenTuple> = on_db!(self.0, p => sqlx::query_as(&sql).bind(hash_secret(secret)).bind(now.0).fetch_optional(p).await)?;
        Ok(t.map(token_from))
    }

    pub async fn touch_token(&self, id: TokenId, now: Timestamp) -> StoreResult<()> {
        // Best effort bookkeeping, at most once a minute per token to spare writes.
        match self.0 {
            Db::Sqlite { write, .. } => {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)")
                    .bind(id.0)
                    .bind(now.0)
                    .bind(now.0 - 60 * Timestamp::MICROS_PER_SEC)
                    .execute(write)
                    .await?;
            }
            Db::Postgres(p) => {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)")
                    .bind(id.0)
                    .bind(now.0)
                    .bind(now.0 - 60 * Timestamp::MICROS_PER_SEC)
                    .execute(p)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn tokens_of(&self, user: UserId) -> StoreResult<Vec<ApiToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY id");
        let t: Vec<TokenTuple> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(user.0).fetch_all(p).await)?;
        Ok(t.into_iter().map(token_from).collect())
    }

    /// Revoke a token of `user`; false when it does not exist (or is another user's).
    pub async fn revoke_token(
        tx: &mut Tx,
        user: UserId,
        id: TokenId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        auth_changed();
        let n = on_tx!(tx, c => sqlx::query("UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
            .bind(id.0).bind(user.0).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
