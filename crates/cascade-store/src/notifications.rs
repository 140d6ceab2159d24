//! Notification storage: templates per seller and event, the outbox of messages, and
//! password reset tokens.
//!
//! **Live inheritance without copies.** A seller without its own template for an event
//! stores nothing; the effective template is found at read time by walking up the
//! account tree (one join on the closure table, nearest ancestor first) to the first
//! seller with its own copy, and to the built-in text of the domain when there is none.
//! So a provider's edit is seen at once by every reseller below that has not edited, and
//! a reseller's first edit (a row of its own) stops following the provider and becomes
//! what its own sub-resellers inherit. Nothing has to be propagated, so nothing can drift.

use crate::tasks::{NewTask, Tasks};
use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{AccountId, UserId};
use cascade_domain::notification::{
    NotificationEvent, RenderError, Rendered, TemplateDoc, TemplateText, render,
};
use serde_json::Value;

/// Where an effective template comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// The account's own copy.
    Own,
    /// Inherited from a seller above.
    Inherited { from: AccountId },
    /// Nobody in the chain has a copy: the built-in text.
    Builtin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveTemplate {
    pub event: NotificationEvent,
    pub source: TemplateSource,
    pub doc: TemplateDoc,
    pub updated_at: Option<Timestamp>,
}

pub struct Notifications<'a>(pub &'a Db);

impl Db {
    pub fn notifications(&self) -> Notifications<'_> {
        Notifications(self)
    }
}

type TextRow = (String, String, String, Option<String>);

fn texts_from(rows: Vec<TextRow>) -> Vec<TemplateText> {
    rows.into_iter()
        .map(|(language, subject, text, html)| TemplateText {
            language,
            subject,
            text,
            html,
        })
        .collect()
}

impl Notifications<'_> {
    /// The template `account` uses for `event`: its own, else the nearest ancestor's,
    /// else the built-in one.
    pub async fn effective(
        &self,
        account: AccountId,
        event: NotificationEvent,
    ) -> StoreResult<EffectiveTemplate> {
        let head: Option<(i64, i64, String, i64)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT t.id, t.account_id, t.default_language, t.updated_at
             FROM account_closure c JOIN notification_templates t ON t.account_id = c.ancestor_id AND t.event = $2
             WHERE c.descendant_id = $1 ORDER BY c.depth LIMIT 1")
            .bind(account.0).bind(event.as_str()).fetch_optional(p).await)?;
        let Some((id, owner, default_language, updated_at)) = head else {
            return Ok(EffectiveTemplate {
                event,
                source: TemplateSource::Builtin,
                doc: event.builtin(),
                updated_at: None,
            });
        };
        let rows: Vec<TextRow> = on_db!(self.0, p => sqlx::query_as(
            "SELECT language, subject, body_text, body_html FROM notification_template_texts WHERE template_id = $1 ORDER BY language")
            .bind(id).fetch_all(p).await)?;
        Ok(EffectiveTemplate {
            event,
            source: if owner == account.0 {
                TemplateSource::Own
            } else {
                TemplateSource::Inherited {
                    from: AccountId(owner),
                }
            },
            doc: TemplateDoc {
                default_language,
                texts: texts_from(rows),
            },
            updated_at: Some(Timestamp(updated_at)),
        })
    }

    /// Render the `event` message that `seller`'s customers get, in the first of
    /// `preferred` languages the template has (else its default language), with `vars`.
    /// The outer error is storage; the inner one a variable the producer did not supply.
    pub async fn compose(
        &self,
        seller: AccountId,
        event: NotificationEvent,
        preferred: &[&str],
        vars: &Value,
    ) -> StoreResult<Result<Rendered, RenderError>> {
        let t = self.effective(seller, event).await?;
        let Some(text) = t.doc.pick(preferred) else {
            return Err(StoreError::Corrupt(format!(
                "notification template {event} of account {seller} has no text"
            )));
        };
        Ok(render(text, vars))
    }

    /// Replace `account`'s own copy of the `event` template with `doc` (creating the copy
    /// on the first edit). Returns whether a copy was created.
    pub async fn save(
        tx: &mut Tx,
        account: AccountId,
        event: NotificationEvent,
        doc: &TemplateDoc,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let existing: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "SELECT id FROM notification_templates WHERE account_id = $1 AND event = $2")
            .bind(account.0).bind(event.as_str()).fetch_optional(c).await)?;
        let (id, created) = match existing {
            Some((id,)) => {
                on_tx!(tx, c => sqlx::query("UPDATE notification_templates SET default_language = $2, updated_at = $3 WHERE id = $1")
                    .bind(id).bind(&doc.default_language).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
                on_tx!(tx, c => sqlx::query("DELETE FROM notification_template_texts WHERE template_id = $1")
                    .bind(id).execute(c).await.map(|r| r.rows_affected()))?;
                (id, false)
            }
            None => {
                let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
                    "INSERT INTO notification_templates (account_id, event, default_language, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $4) RETURNING id")
                    .bind(account.0).bind(event.as_str()).bind(&doc.default_language).bind(now.0).fetch_one(c).await)?;
                (id, true)
            }
        };
        for t in &doc.texts {
            on_tx!(tx, c => sqlx::query(
                "INSERT INTO notification_template_texts (template_id, language, subject, body_text, body_html) VALUES ($1, $2, $3, $4, $5)")
                .bind(id).bind(&t.language).bind(&t.subject).bind(&t.text).bind(&t.html).execute(c).await.map(|r| r.rows_affected()))?;
        }
        Ok(created)
    }

    /// Drop `account`'s own copy: it inherits again. Returns whether there was one.
    pub async fn revert(
        tx: &mut Tx,
        account: AccountId,
        event: NotificationEvent,
    ) -> StoreResult<bool> {
        let existing: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "SELECT id FROM notification_templates WHERE account_id = $1 AND event = $2")
            .bind(account.0).bind(event.as_str()).fetch_optional(c).await)?;
        let Some((id,)) = existing else {
            return Ok(false);
        };
        on_tx!(tx, c => sqlx::query("DELETE FROM notification_template_texts WHERE template_id = $1")
            .bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        on_tx!(tx, c => sqlx::query("DELETE FROM notification_templates WHERE id = $1")
            .bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(true)
    }
}

/// The task kind that delivers one outbox message (payload `outbox_id`); the worker's
/// notification module handles it.
pub const DELIVER_TASK: &str = "notify.deliver";

/// A rendered message to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub account_id: Option<AccountId>,
    pub user_id: Option<UserId>,
    /// The notification event (`order_completed`, …).
    pub template: String,
    pub recipient: String,
    pub language: String,
    /// The variables the message was rendered with.
    pub payload: Value,
    pub subject: String,
    pub body_text: String,
    pub body_html: Option<String>,
    /// Producers that must queue a message at most once set this.
    pub dedup_key: Option<String>,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub account_id: Option<AccountId>,
    pub user_id: Option<UserId>,
    pub template: String,
    pub recipient: String,
    pub language: String,
    pub payload: Value,
    pub subject: Option<String>,
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

type OutboxRow = (
    i64,
    Option<i64>,
    Option<i64>,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    i32,
    Option<String>,
);
const OUTBOX_COLUMNS: &str = "id, account_id, user_id, template, recipient, language, payload, subject, body_text, body_html, created_at, sent_at, attempts, last_error";

fn outbox_from(r: OutboxRow) -> OutboxMessage {
    OutboxMessage {
        id: r.0,
        account_id: r.1.map(AccountId),
        user_id: r.2.map(UserId),
        template: r.3,
        recipient: r.4,
        language: r.5,
        payload: serde_json::from_str(&r.6).unwrap_or(Value::Null),
        subject: r.7,
        body_text: r.8,
        body_html: r.9,
        created_at: Timestamp(r.10),
        sent_at: r.11.map(Timestamp),
        attempts: r.12.into(),
        last_error: r.13,
    }
}

pub struct Outbox<'a>(pub &'a Db);

impl Db {
    pub fn outbox(&self) -> Outbox<'_> {
        Outbox(self)
    }
}

impl Outbox<'_> {
    /// Queue `m`. With a dedup key already in the outbox nothing is inserted and the
    /// existing message's id is returned with `false`: two producers racing on the same
    /// key cannot both insert (unique index, `ON CONFLICT DO NOTHING`), on either backend.
    pub async fn queue(tx: &mut Tx, m: &NewMessage, now: Timestamp) -> StoreResult<(i64, bool)> {
        let inserted: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO outbox (account_id, user_id, template, recipient, language, payload, subject, body_text, body_html, dedup_key, created_at, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0) ON CONFLICT (dedup_key) DO NOTHING RETURNING id")
            .bind(m.account_id.map(|a| a.0)).bind(m.user_id.map(|u| u.0)).bind(&m.template).bind(&m.recipient)
            .bind(&m.language).bind(m.payload.to_string()).bind(&m.subject).bind(&m.body_text).bind(&m.body_html)
            .bind(&m.dedup_key).bind(now.0).fetch_optional(c).await)?;
        if let Some((id,)) = inserted {
            return Ok((id, true));
        }
        let key = m.dedup_key.as_deref().ok_or(StoreError::NotFound)?;
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as("SELECT id FROM outbox WHERE dedup_key = $1")
            .bind(key).fetch_one(c).await)?;
        Ok((id, false))
    }

    /// Queue `m` and, when it is new, a [`DELIVER_TASK`] for it, in `tx`: for producers
    /// outside the worker (a password reset requested over HTTP). Returns the outbox id.
    pub async fn queue_with_delivery(
        tx: &mut Tx,
        m: &NewMessage,
        now: Timestamp,
    ) -> StoreResult<i64> {
        let (id, new) = Self::queue(tx, m, now).await?;
        if new {
            Tasks::enqueue(
                tx,
                NewTask::new(
                    DELIVER_TASK,
                    m.account_id,
                    serde_json::json!({"outbox_id": id}),
                ),
                now,
            )
            .await?;
        }
        Ok(id)
    }

    pub async fn get(&self, id: i64) -> StoreResult<OutboxMessage> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
        let r: OutboxRow = on_db!(self.0, p => sqlx::query_as(&sql).bind(id).fetch_one(p).await)?;
        Ok(outbox_from(r))
    }

    /// Messages about `account`, newest first.
    pub async fn list_for_account(
        &self,
        account: AccountId,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<OutboxMessage>> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<OutboxRow> = on_db!(self.0, p => sqlx::query_as(&sql)
            .bind(account.0).bind(before.unwrap_or(i64::MAX)).bind(limit + 1).fetch_all(p).await)?;
        Ok(Page::from_rows(
            rows.into_iter().map(outbox_from).collect(),
            limit,
            |m| m.id,
        ))
    }

    /// Record an accepted send. Only the first call marks; returns whether it did. A sent
    /// password reset message loses its body: the outbox keeps no live secret once the
    /// mail is out.
    pub async fn mark_sent(&self, id: i64, now: Timestamp) -> StoreResult<bool> {
        let n = on_db!(self.0, p => sqlx::query(
            "UPDATE outbox SET sent_at = $2, attempts = attempts + 1, last_error = NULL,
                 body_text = CASE WHEN template = 'password_reset' THEN NULL ELSE body_text END,
                 body_html = CASE WHEN template = 'password_reset' THEN NULL ELSE body_html END
             WHERE id = $1 AND sent_at IS NULL")
            .bind(id).bind(now.0).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Record a failed attempt (the message stays unsent).
    pub async fn record_failure(&self, id: i64, error: &str) -> StoreResult<()> {
        on_db!(self.0, p => sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1 AND sent_at IS NULL")
            .bind(id).bind(error).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}

pub struct PasswordResets<'a>(pub &'a Db);

impl Db {
    pub fn password_resets(&self) -> PasswordResets<'_> {
        PasswordResets(self)
    }
}

impl PasswordResets<'_> {
    /// Store a reset token (by its hash) for `user`, valid until `expires_at`.
    pub async fn create(
        tx: &mut Tx,
        user: UserId,
        token_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query(
            "INSERT INTO password_reset_tokens (user_id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user.0).bind(token_hash).bind(expires_at.0).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Use the token with this hash: the user it belongs to if it is unused and not
    /// expired, and it can never be used again. One statement, so two concurrent
    /// confirmations cannot both succeed.
    pub async fn consume(
        tx: &mut Tx,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<UserId>> {
        let row: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "UPDATE password_reset_tokens SET used_at = $2
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING user_id")
            .bind(token_hash).bind(now.0).fetch_optional(c).await)?;
        Ok(row.map(|(u,)| UserId(u)))
    }

    /// Void every unused token of `user` (after a successful reset).
    pub async fn void_all(tx: &mut Tx, user: UserId, now: Timestamp) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query(
            "UPDATE password_reset_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
            .bind(user.0).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
