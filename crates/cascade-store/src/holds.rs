//! Account holds and the subscriptions they move; termination of what stayed on hold.
//!
//! An account hold (credit hold raised by the daily run, administrative hold by a
//! seller) suspends the account's running subscriptions **in the transaction of the
//! hold**, set-wise (one `UPDATE … RETURNING` per source status), each move announced
//! once through the status seam ([`Subscriptions::announce_move`]: the
//! `subscription.suspended` event, which the worker routes to the connector and the
//! status mail). The subscriptions remember that their account held them (`held_by =
//! 'account'`, migration 14), so lifting the hold resumes exactly those: not one held by
//! its own pay-as-you-go deadline (`held_by = 'payg'`), not one on the other kind of
//! hold. Every write is guarded by the status it moves from, so holding twice moves and
//! announces nothing the second time. The rules (which statuses move where) are the
//! domain's [`hold_follow`]; this module only writes them.
//!
//! Termination: the daily run terminates subscriptions on credit hold for longer than
//! their class's hold period and subscriptions that expired without renewal once the
//! grace period has passed ([`termination_candidates`], [`Subscriptions::terminate`]),
//! recording `terminated_on`; the `subscription.terminated` event makes the connector
//! unprovision. An administrative hold is a person's decision and is never ended by the
//! run.

use crate::subscriptions::Subscriptions;
use crate::{Db, StoreResult, Tx, on_db, on_tx};
use cascade_domain::account::AccountStatus;
use cascade_domain::billing::lifecycle::{HoldFollow, RUNNING, SubscriptionStatus, hold_follow};
use cascade_domain::billing::payments::CreditTerms;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;

/// `held_by` of a subscription its account's hold suspended.
pub const BY_ACCOUNT: &str = "account";
/// `held_by` of a subscription its own pay-as-you-go deadline suspended.
pub const BY_PAYG: &str = "payg";

/// What an account status move did to its subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldMoves {
    /// Suspended (active or graced → on hold).
    pub suspended: Vec<i64>,
    /// Resumed (on hold → active).
    pub resumed: Vec<i64>,
    /// Switched from one kind of hold to the other (still suspended).
    pub switched: Vec<i64>,
}

impl HoldMoves {
    /// How many subscriptions moved.
    pub fn moved(&self) -> usize {
        self.suspended.len() + self.resumed.len() + self.switched.len()
    }
}

impl Subscriptions<'_> {
    /// Move the subscriptions of `account` after its status moved from `from` to `to`
    /// (in the caller's transaction, the one that moved the account). `day` is the
    /// date the hold starts (`YYYY-MM-DD`, the run date or today).
    pub async fn follow_account_status(
        tx: &mut Tx,
        account: AccountId,
        from: AccountStatus,
        to: AccountStatus,
        day: &str,
        now: Timestamp,
    ) -> StoreResult<HoldMoves> {
        let mut moves = HoldMoves::default();
        match hold_follow(from, to) {
            HoldFollow::Hold(hold) => {
                for running in RUNNING {
                    let ids =
                        Self::move_set(tx, account, running, hold, Some(day), false, now).await?;
                    for id in &ids {
                        Self::announce_move(tx, *id, account, running, hold, now).await?;
                    }
                    moves.suspended.extend(ids);
                }
                let other = match hold {
                    SubscriptionStatus::CreditHold => SubscriptionStatus::AdminHold,
                    _ => SubscriptionStatus::CreditHold,
                };
                moves.switched =
                    Self::move_set(tx, account, other, hold, Some(day), true, now).await?;
            }
            HoldFollow::Release(held) => {
                let ids = Self::move_set(
                    tx,
                    account,
                    held,
                    SubscriptionStatus::Active,
                    None,
                    true,
                    now,
                )
                .await?;
                for id in &ids {
                    Self::announce_move(tx, *id, account, held, SubscriptionStatus::Active, now)
                        .await?;
                }
                moves.resumed = ids;
            }
            HoldFollow::Nothing => {}
        }
        Ok(moves)
    }

    /// One set-wise move of an account's subscriptions from `from` to `to`: onto a
    /// hold (`held_on = Some(day)`, `held_by = account`) or off it (`None`: cleared).
    /// `account_held_only`: only those the account's hold put there.
    async fn move_set(
        tx: &mut Tx,
        account: AccountId,
        from: SubscriptionStatus,
        to: SubscriptionStatus,
        held_on: Option<&str>,
        account_held_only: bool,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        let held_by = held_on.map(|_| BY_ACCOUNT);
        let rows: Vec<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "UPDATE subscriptions SET status = $3, held_on = $4, held_by = $5, version = version + 1, updated_at = $6
             WHERE account_id = $1 AND status = $2 AND ($7 = FALSE OR held_by = 'account') RETURNING id")
            .bind(account.0).bind(from.as_str()).bind(to.as_str()).bind(held_on).bind(held_by).bind(now.0)
            .bind(account_held_only).fetch_all(c).await)?;
        let mut ids: Vec<i64> = rows.into_iter().map(|r| r.0).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Record that the pay-as-you-go check held a subscription on `day` (the status
    /// was written by the caller).
    pub async fn mark_payg_hold(tx: &mut Tx, id: i64, day: Option<&str>) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query("UPDATE subscriptions SET held_on = $2, held_by = $3 WHERE id = $1")
            .bind(id).bind(day).bind(day.map(|_| BY_PAYG)).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Terminate a subscription still in `from` (and, for a hold, still held since
    /// `held_on`), recording `day` as its termination date; announces
    /// `subscription.terminated`. False when it moved meanwhile (nothing written).
    pub async fn terminate(
        tx: &mut Tx,
        c: &TerminationCandidate,
        day: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let moved = on_tx!(tx, x => sqlx::query(
            "UPDATE subscriptions SET status = 'terminated', terminated_on = $3, held_on = NULL, held_by = NULL,
                version = version + 1, updated_at = $4
             WHERE id = $1 AND status = $2 AND version = $5")
            .bind(c.subscription_id).bind(c.status.as_str()).bind(day).bind(now.0).bind(c.version)
            .execute(x).await.map(|r| r.rows_affected()))?;
        if moved == 0 {
            return Ok(false);
        }
        Self::announce_move(
            tx,
            c.subscription_id,
            c.account_id,
            c.status,
            SubscriptionStatus::Terminated,
            now,
        )
        .await?;
        Ok(true)
    }

    /// A restored subscription is no longer terminated: clear its termination date.
    pub async fn clear_termination(tx: &mut Tx, id: i64) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query("UPDATE subscriptions SET terminated_on = NULL WHERE id = $1")
            .bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}

/// A subscription the daily run may terminate: on credit hold since `since`, or expired
/// (term end `since`), with its account's credit terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminationCandidate {
    pub subscription_id: i64,
    pub account_id: AccountId,
    pub status: SubscriptionStatus,
    pub version: i64,
    /// `held_on` for a hold, `expires_on` for an expiry.
    pub since: String,
    pub terms: CreditTerms,
}

/// The subscriptions on credit hold (with a hold date) or expired, after
/// `after_subscription`, at most `limit`, by id (the run pages through them).
pub async fn termination_candidates(
    db: &Db,
    after_subscription: i64,
    limit: i64,
) -> StoreResult<Vec<TerminationCandidate>> {
    type Row = (
        i64,
        i64,
        String,
        i64,
        Option<String>,
        String,
        Option<i32>,
        Option<i32>,
    );
    let rows: Vec<Row> = on_db!(db, p => sqlx::query_as(
        "SELECT s.id, s.account_id, s.status, s.version, s.held_on, s.expires_on, c.grace_days, c.hold_days
         FROM subscriptions s JOIN accounts a ON a.id = s.account_id
         LEFT JOIN customer_classes c ON c.id = a.customer_class_id
         WHERE s.id > $1 AND ((s.status = 'credit_hold' AND s.held_on IS NOT NULL) OR s.status = 'expired')
         ORDER BY s.id LIMIT $2")
        .bind(after_subscription).bind(limit).fetch_all(p).await)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, account, status, version, held_on, expires_on, grace, hold) in rows {
        let status = SubscriptionStatus::parse(&status)
            .map_err(|e| crate::StoreError::Corrupt(format!("subscription {id}: {}", e.message)))?;
        let mut terms = CreditTerms::default();
        if let Some(g) = grace {
            terms.grace_days = g.max(0) as u32;
        }
        if let Some(h) = hold {
            terms.hold_days = h.max(0) as u32;
        }
        let since = match status {
            SubscriptionStatus::CreditHold => held_on.unwrap_or_default(),
            _ => expires_on,
        };
        out.push(TerminationCandidate {
            subscription_id: id,
            account_id: AccountId(account),
            status,
            version,
            since,
            terms,
        });
    }
    Ok(out)
}

/// The payment path: an account on credit hold whose last overdue invoice or debit memo
/// was just paid (in the caller's transaction) is released at once, with the
/// subscriptions its hold suspended (`account.credit_released`, one
/// `subscription.resumed` each), instead of waiting for the next daily run. `None`
/// when the account is not on credit hold or still owes something overdue on `today`
/// (an administrative hold is never lifted by a payment).
pub async fn release_if_settled(
    tx: &mut Tx,
    account: AccountId,
    today: &str,
    now: Timestamp,
) -> StoreResult<Option<HoldMoves>> {
    let a = crate::accounts::Accounts::get_in(tx, account).await?;
    if a.status != AccountStatus::CreditHold {
        return Ok(None);
    }
    let (oldest,): (Option<String>,) = on_tx!(tx, c => sqlx::query_as(
        "SELECT MIN(due_date) FROM documents
         WHERE account_id = $1 AND status = 'issued' AND kind IN ('invoice', 'debit_memo') AND open_minor > 0
           AND due_date IS NOT NULL AND due_date < $2")
        .bind(account.0).bind(today).fetch_one(c).await)?;
    if oldest.is_some() {
        return Ok(None);
    }
    crate::accounts::Accounts::set_status(tx, account, AccountStatus::Active, now).await?;
    let moves = Subscriptions::follow_account_status(
        tx,
        account,
        AccountStatus::CreditHold,
        AccountStatus::Active,
        today,
        now,
    )
    .await?;
    crate::events::Events::emit(
        tx,
        crate::events::NewEvent {
            kind: "account.credit_released",
            account_id: Some(account),
            actor_user_id: None,
            subject_type: "account",
            subject_id: account.0,
            payload: serde_json::json!({"automatic": true, "reason": "paid", "subscriptions_resumed": moves.resumed}),
        },
        now,
    )
    .await?;
    Ok(Some(moves))
}
