//! Which tasks an event creates.
//!
//! A plain table in code rather than subscriptions stored in the database: the set of
//! reactions is part of the program, reviewed and tested with it (a test checks that
//! every routed task kind has a built-in handler). Every routed task carries the event's
//! payload and account; the store links it to the event.
//!
//! Events whose kind is not in the table create no task; they are still marked done by
//! the dispatcher, because events are also the audit trail and are kept for that alone.

use cascade_store::events::Event;
use cascade_store::tasks::NewTask;

/// Event kind → task kinds it creates.
///
/// - `user.created` → `notify.welcome_user`: the welcome mail. The payload carries
///   `user_id`, `login`, `email`, `display_name` and `language`.
/// - `account.created` → nothing yet; provisioning defaults for new accounts will hang
///   here. Listed so the choice is visible.
/// - `order.paid` → `orders.provision`: chain check, then provisioning of a paid order.
///   The payload carries `order_id`.
/// - `order.completed` → `notify.order_completed`: the order-completed mail to the
///   customer's users (payload `order_id`, `type`).
/// - `payment.declined` → `notify.payment_failed`: the payment-failed mail (payload
///   `amount_minor`, `currency`, optional `message` and `reference`).
///
/// - `subscription.suspension_notice` → `notify.suspension_deadline`: the PAYG
///   suspension-deadline mail (payload `subscription_id`, `suspension_deadline`,
///   `balance_minor`, `currency`).
/// - `invoice.issued` → `notify.invoice_issued` (the daily billing run, one per invoice;
///   payload `document_id`, `invoice_number`, `total_minor`, `currency`, `due_date`).
/// - `subscription.expiring` → `notify.subscription_expiring` (the daily billing run, a
///   subscription that will not renew ends soon; payload `subscription_id`,
///   `expires_on`, `plan_name`).
///
/// - `subscription.suspended` / `.resumed` / `.terminated` (emitted by the status seam,
///   `Subscriptions::move_status`, in the transaction of the move) →
///   `subscriptions.sync_service` (the connector suspends, resumes or unprovisions) and
///   `notify.subscription_status` (the mail to the customer).
pub const ROUTES: &[(&str, &[&str])] = &[
    ("user.created", &["notify.welcome_user"]),
    ("account.created", &[]),
    ("order.paid", &["orders.provision"]),
    // Connectors follow the subscription's status (suspend, resume, unprovision). A
    // restore is announced as `subscription.resumed` too (the status seam emits it), so
    // the audit event `subscription.restored` routes nothing: one task per transition.
    ("subscription.restored", &[]),
    ("subscription.cancelled", &["subscriptions.sync_service"]),
    (
        "subscription.suspended",
        &["subscriptions.sync_service", "notify.subscription_status"],
    ),
    (
        "subscription.resumed",
        &["subscriptions.sync_service", "notify.subscription_status"],
    ),
    (
        "subscription.terminated",
        &["subscriptions.sync_service", "notify.subscription_status"],
    ),
    ("order.completed", &["notify.order_completed"]),
    ("payment.declined", &["notify.payment_failed"]),
    (
        "subscription.suspension_notice",
        &["notify.suspension_deadline"],
    ),
    ("invoice.issued", &["notify.invoice_issued"]),
    ("subscription.expiring", &["notify.subscription_expiring"]),
];

/// The tasks to create for `event` (none for kinds not in [`ROUTES`]).
pub fn route(event: &Event) -> Vec<NewTask> {
    ROUTES
        .iter()
        .find(|(kind, _)| *kind == event.kind)
        .map(|(_, tasks)| {
            tasks
                .iter()
                .map(|t| NewTask::new(*t, event.account_id, event.payload.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;
    use cascade_domain::clock::Timestamp;
    use cascade_domain::ids::{AccountId, EventId};
    use serde_json::json;

    fn event(kind: &str) -> Event {
        Event {
            id: EventId(1),
            kind: kind.into(),
            account_id: Some(AccountId(7)),
            actor_user_id: None,
            subject_type: "user".into(),
            subject_id: 3,
            payload: json!({"user_id": 3, "email": "a@b.example"}),
            state: "pending".into(),
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn user_created_becomes_a_welcome_mail() {
        let tasks = route(&event("user.created"));
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].kind, "notify.welcome_user");
        assert_eq!(tasks[0].account_id, Some(AccountId(7)));
        assert_eq!(tasks[0].payload["email"], "a@b.example");
    }

    #[test]
    fn unrouted_events_create_nothing() {
        assert!(route(&event("account.created")).is_empty());
        assert!(route(&event("something.unknown")).is_empty());
    }

    #[test]
    fn every_routed_task_kind_has_a_builtin_handler() {
        let registry = Registry::with_builtin();
        for (event_kind, tasks) in ROUTES {
            for t in *tasks {
                assert!(
                    registry.get(t).is_some(),
                    "{event_kind} routes to {t}, which has no built-in handler"
                );
            }
        }
    }
}
