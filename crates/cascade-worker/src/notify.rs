//! Notification tasks: they queue messages in the `outbox` table; the notifications
//! module delivers them. Queuing rather than sending from the task keeps delivery
//! (SMTP, its retries and rate limits) out of the task queue, and makes "queue this
//! mail" a database write that can be made idempotent.
//!
//! Idempotency: a retried or re-claimed task must not queue the mail twice, so
//! [`queue_once`] inserts with a deduplication key (`<template>:<user id>`) under a
//! unique index and `ON CONFLICT DO NOTHING`: two workers racing on the same user
//! cannot both insert, on either backend, without any lock.

use crate::handler::{TaskContext, TaskError, TaskHandler};
use async_trait::async_trait;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{AccountId, UserId};
use cascade_store::tasks::Task;
use cascade_store::{StoreResult, Tx, on_tx};
use serde_json::Value;

/// One message to queue for a user.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub account_id: Option<AccountId>,
    pub user_id: UserId,
    pub template: &'static str,
    pub recipient: String,
    pub language: String,
    pub payload: Value,
}

/// Insert `msg` into the outbox unless a message with the same template for the same
/// user is already there. Returns whether a row was inserted.
pub async fn queue_once(tx: &mut Tx, msg: &OutboxMessage, now: Timestamp) -> StoreResult<bool> {
    let dedup = format!("{}:{}", msg.template, msg.user_id);
    let n = on_tx!(tx, c => sqlx::query(
        "INSERT INTO outbox (account_id, user_id, template, recipient, language, payload, dedup_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (dedup_key) DO NOTHING")
        .bind(msg.account_id.map(|a| a.0)).bind(msg.user_id.0).bind(msg.template).bind(&msg.recipient)
        .bind(&msg.language).bind(msg.payload.to_string()).bind(dedup).bind(now.0)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// `notify.welcome_user`: queue the `welcome_user` mail for a new user. The task payload
/// is the `user.created` event payload (`user_id`, `login`, `email`, `display_name`,
/// `language`); it is passed to the template as is.
#[derive(Debug, Clone, Copy, Default)]
pub struct WelcomeUser;

impl WelcomeUser {
    pub const KIND: &'static str = "notify.welcome_user";
    pub const TEMPLATE: &'static str = "welcome_user";
}

#[async_trait]
impl TaskHandler for WelcomeUser {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    async fn run(&self, ctx: &TaskContext, task: &Task) -> Result<(), TaskError> {
        let p = &task.payload;
        // A malformed payload will not improve with retries: fail at once.
        let user_id = p
            .get("user_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| TaskError::permanent("payload has no integer `user_id`"))?;
        let email = p
            .get("email")
            .and_then(Value::as_str)
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| TaskError::permanent("payload has no `email`"))?;
        let language = p
            .get("language")
            .and_then(Value::as_str)
            .filter(|l| !l.trim().is_empty())
            .unwrap_or("en");
        let msg = OutboxMessage {
            account_id: task.account_id,
            user_id: UserId(user_id),
            template: Self::TEMPLATE,
            recipient: email.to_string(),
            language: language.to_string(),
            payload: p.clone(),
        };
        let mut tx = ctx.db.begin().await?;
        let queued = queue_once(&mut tx, &msg, ctx.clock.now()).await?;
        tx.commit().await?;
        if queued {
            tracing::info!(task_id = %task.id, user_id, "welcome mail queued");
        } else {
            tracing::info!(task_id = %task.id, user_id, "welcome mail already queued; nothing to do");
        }
        Ok(())
    }
}
