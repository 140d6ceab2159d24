//! Orders and subscriptions: their types and state machines.

use crate::account::AccountStatus;
use crate::validation::FieldError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderType {
    /// Sales: creates a subscription.
    So,
    /// Renewal.
    Rn,
    /// Billing: a periodic charge, nothing to provision.
    Bo,
    /// Change: resources added or removed, period or plan switched.
    Ch,
    /// Cancellation, with a refund or a cancellation charge.
    Cl,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::So => "SO",
            OrderType::Rn => "RN",
            OrderType::Bo => "BO",
            OrderType::Ch => "CH",
            OrderType::Cl => "CL",
        }
    }
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s {
            "SO" => Ok(Self::So),
            "RN" => Ok(Self::Rn),
            "BO" => Ok(Self::Bo),
            "CH" => Ok(Self::Ch),
            "CL" => Ok(Self::Cl),
            _ => Err(FieldError::new(
                "type",
                "invalid_order_type",
                format!("unknown order type `{s}`"),
            )),
        }
    }
    /// Whether completing the order needs the service to be provisioned or changed.
    pub fn provisions(self) -> bool {
        !matches!(self, OrderType::Bo | OrderType::Rn)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    New,
    WaitingForPayment,
    Paid,
    Provisioning,
    Completed,
    /// Retryable.
    Failed,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::New,
        OrderStatus::WaitingForPayment,
        OrderStatus::Paid,
        OrderStatus::Provisioning,
        OrderStatus::Completed,
        OrderStatus::Failed,
        OrderStatus::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::WaitingForPayment => "waiting_for_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Provisioning => "provisioning",
            OrderStatus::Completed => "completed",
            OrderStatus::Failed => "failed",
            OrderStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "status",
                    "invalid_order_status",
                    format!("unknown order status `{s}`"),
                )
            })
    }
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Completed | OrderStatus::Cancelled)
    }

    /// Statuses in which an order waits for something outside it (payment, a held
    /// account released, its reseller chain able to pay) before provisioning.
    pub const WAITING: [OrderStatus; 3] = [
        OrderStatus::New,
        OrderStatus::WaitingForPayment,
        OrderStatus::Paid,
    ];
    /// How long an order may wait before a seller is told it needs attention.
    pub const ATTENTION_AFTER_DAYS: i64 = 1;

    /// An order a seller should look at: failed (retryable), or waiting for longer than
    /// [`Self::ATTENTION_AFTER_DAYS`] since its last change (`waited_micros`). The seller
    /// lists (`seller_lists` in the store) select exactly this.
    pub fn needs_attention(self, waited_micros: i64) -> bool {
        self == OrderStatus::Failed
            || (Self::WAITING.contains(&self)
                && waited_micros
                    > Self::ATTENTION_AFTER_DAYS * crate::clock::Timestamp::MICROS_PER_DAY)
    }

    /// new → waiting for payment → paid → provisioning → completed, or → failed
    /// (retryable: back to provisioning) / cancelled (before provisioning finished).
    pub fn transition(self, to: OrderStatus) -> Result<OrderStatus, FieldError> {
        use OrderStatus::*;
        let ok = matches!(
            (self, to),
            (New, WaitingForPayment)
                | (New, Paid)
                | (WaitingForPayment, Paid)
                | (Paid, Provisioning)
                | (Provisioning, Completed)
                | (Provisioning, Failed)
                | (Failed, Provisioning)
                | (New, Cancelled)
                | (WaitingForPayment, Cancelled)
                | (Paid, Cancelled)
                | (Failed, Cancelled)
        );
        if ok {
            Ok(to)
        } else {
            Err(FieldError::new(
                "status",
                "invalid_order_transition",
                format!(
                    "an order cannot go from `{}` to `{}`",
                    self.as_str(),
                    to.as_str()
                ),
            ))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Ordered,
    Active,
    Expired,
    Graced,
    CreditHold,
    AdminHold,
    Cancelled,
    Terminated,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 8] = [
        SubscriptionStatus::Ordered,
        SubscriptionStatus::Active,
        SubscriptionStatus::Expired,
        SubscriptionStatus::Graced,
        SubscriptionStatus::CreditHold,
        SubscriptionStatus::AdminHold,
        SubscriptionStatus::Cancelled,
        SubscriptionStatus::Terminated,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Ordered => "ordered",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Expired => "expired",
            SubscriptionStatus::Graced => "graced",
            SubscriptionStatus::CreditHold => "credit_hold",
            SubscriptionStatus::AdminHold => "admin_hold",
            SubscriptionStatus::Cancelled => "cancelled",
            SubscriptionStatus::Terminated => "terminated",
        }
    }
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "status",
                    "invalid_subscription_status",
                    format!("unknown subscription status `{s}`"),
                )
            })
    }
    /// Billed by the daily run.
    pub fn is_billable(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active | SubscriptionStatus::Graced
        )
    }

    /// ordered → active → (expired →) graced → on hold → cancelled / terminated;
    /// holds are released back to active; a terminated subscription may be restored.
    pub fn transition(self, to: SubscriptionStatus) -> Result<SubscriptionStatus, FieldError> {
        use SubscriptionStatus::*;
        let ok = match (self, to) {
            (Ordered, Active) | (Ordered, Cancelled) => true,
            (Active, Expired)
            | (Active, Graced)
            | (Active, CreditHold)
            | (Active, AdminHold)
            | (Active, Cancelled) => true,
            (Expired, Graced)
            | (Expired, Active)
            | (Expired, Terminated)
            | (Expired, Cancelled) => true,
            (Graced, Active)
            | (Graced, CreditHold)
            | (Graced, AdminHold)
            | (Graced, Terminated)
            | (Graced, Cancelled) => true,
            (CreditHold, Active)
            | (AdminHold, Active)
            | (CreditHold, AdminHold)
            | (AdminHold, CreditHold) => true,
            (CreditHold, Terminated)
            | (AdminHold, Terminated)
            | (CreditHold, Cancelled)
            | (AdminHold, Cancelled) => true,
            (Cancelled, Terminated) => true,
            // Restore (public API), when the service's data still exists.
            (Terminated, Active) => true,
            _ => false,
        };
        if ok {
            Ok(to)
        } else {
            Err(FieldError::new(
                "status",
                "invalid_subscription_transition",
                format!(
                    "a subscription cannot go from `{}` to `{}`",
                    self.as_str(),
                    to.as_str()
                ),
            ))
        }
    }
}

/// The lifecycle event a status move announces, if any: entering a hold (credit or
/// administrative) from a running status is a **suspension**, leaving a hold or a
/// termination for `active` is a **resumption** (a restore resumes), entering
/// `terminated` is a **termination**. Moving between the two holds changes nothing the
/// service sees, so it announces nothing. The store emits the event in the transaction
/// that moves the status (see `Subscriptions::move_status`), so every transition is
/// announced exactly once; connectors and notifications follow the event.
pub fn lifecycle_event(from: SubscriptionStatus, to: SubscriptionStatus) -> Option<&'static str> {
    use SubscriptionStatus::*;
    let held = |s: SubscriptionStatus| matches!(s, CreditHold | AdminHold);
    if from == to {
        return None;
    }
    if held(to) && !held(from) {
        Some("subscription.suspended")
    } else if to == Terminated {
        Some("subscription.terminated")
    } else if to == Active && (held(from) || from == Terminated) {
        Some("subscription.resumed")
    } else {
        None
    }
}

/// How an account's subscriptions follow a move of the account's status (an account
/// hold or its release). Subscriptions remember that the **account** held them
/// (`held_by = account`), so a release resumes those and nothing else: not one held by
/// its own pay-as-you-go deadline, not one on the other kind of hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldFollow {
    /// The account went on hold: its running subscriptions (active, graced) move to this
    /// hold status (a suspension each), and those the account already held under the
    /// other kind switch to it (still suspended: no event).
    Hold(SubscriptionStatus),
    /// The account's hold of this kind was lifted: the subscriptions it held go back to
    /// active (a resumption each).
    Release(SubscriptionStatus),
    /// Nothing to move (e.g. a cancellation).
    Nothing,
}

/// The subscription hold status matching an account hold.
pub fn hold_status_of(account: AccountStatus) -> Option<SubscriptionStatus> {
    match account {
        AccountStatus::CreditHold => Some(SubscriptionStatus::CreditHold),
        AccountStatus::AdminHold => Some(SubscriptionStatus::AdminHold),
        AccountStatus::Active | AccountStatus::Cancelled => None,
    }
}

/// What an account status move from `from` to `to` does to its subscriptions.
pub fn hold_follow(from: AccountStatus, to: AccountStatus) -> HoldFollow {
    if from == to {
        return HoldFollow::Nothing;
    }
    match (hold_status_of(from), hold_status_of(to), to) {
        (_, Some(hold), _) => HoldFollow::Hold(hold),
        (Some(held), None, AccountStatus::Active) => HoldFollow::Release(held),
        _ => HoldFollow::Nothing,
    }
}

/// Statuses an account hold suspends.
pub const RUNNING: [SubscriptionStatus; 2] =
    [SubscriptionStatus::Active, SubscriptionStatus::Graced];

/// When a subscription renews by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum AutoRenew {
    Off,
    OnExpiry,
    DaysBefore { days: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_events_follow_the_service_state() {
        use SubscriptionStatus::*;
        assert_eq!(
            lifecycle_event(Active, CreditHold),
            Some("subscription.suspended")
        );
        assert_eq!(
            lifecycle_event(Graced, AdminHold),
            Some("subscription.suspended")
        );
        assert_eq!(
            lifecycle_event(CreditHold, AdminHold),
            None,
            "still suspended"
        );
        assert_eq!(
            lifecycle_event(AdminHold, Active),
            Some("subscription.resumed")
        );
        assert_eq!(
            lifecycle_event(Terminated, Active),
            Some("subscription.resumed")
        );
        assert_eq!(
            lifecycle_event(CreditHold, Terminated),
            Some("subscription.terminated")
        );
        assert_eq!(
            lifecycle_event(Graced, Terminated),
            Some("subscription.terminated")
        );
        assert_eq!(lifecycle_event(Ordered, Active), None);
        assert_eq!(lifecycle_event(Expired, Active), None);
        assert_eq!(lifecycle_event(Active, Active), None);
    }

    #[test]
    fn subscriptions_follow_account_holds() {
        use AccountStatus as A;
        use SubscriptionStatus as S;
        assert_eq!(
            hold_follow(A::Active, A::CreditHold),
            HoldFollow::Hold(S::CreditHold)
        );
        assert_eq!(
            hold_follow(A::Active, A::AdminHold),
            HoldFollow::Hold(S::AdminHold)
        );
        assert_eq!(
            hold_follow(A::CreditHold, A::AdminHold),
            HoldFollow::Hold(S::AdminHold)
        );
        assert_eq!(
            hold_follow(A::CreditHold, A::Active),
            HoldFollow::Release(S::CreditHold)
        );
        assert_eq!(
            hold_follow(A::AdminHold, A::Active),
            HoldFollow::Release(S::AdminHold)
        );
        assert_eq!(
            hold_follow(A::CreditHold, A::CreditHold),
            HoldFollow::Nothing
        );
        assert_eq!(hold_follow(A::AdminHold, A::Cancelled), HoldFollow::Nothing);
        for s in RUNNING {
            for h in [S::CreditHold, S::AdminHold] {
                assert!(s.transition(h).is_ok());
                assert_eq!(lifecycle_event(s, h), Some("subscription.suspended"));
                assert_eq!(lifecycle_event(h, S::Active), Some("subscription.resumed"));
            }
        }
    }

    #[test]
    fn order_flow() {
        use OrderStatus::*;
        let path = [
            New,
            WaitingForPayment,
            Paid,
            Provisioning,
            Failed,
            Provisioning,
            Completed,
        ];
        for w in path.windows(2) {
            assert!(w[0].transition(w[1]).is_ok(), "{:?} → {:?}", w[0], w[1]);
        }
        assert!(Completed.transition(Cancelled).is_err());
        assert!(
            Provisioning.transition(Cancelled).is_err(),
            "provisioning must end first"
        );
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()).unwrap(), s);
        }
    }

    #[test]
    fn subscription_flow() {
        use SubscriptionStatus::*;
        for (a, b) in [
            (Ordered, Active),
            (Active, Graced),
            (Graced, CreditHold),
            (CreditHold, Active),
            (Active, Cancelled),
            (Cancelled, Terminated),
            (Terminated, Active),
        ] {
            assert!(a.transition(b).is_ok(), "{a:?} → {b:?}");
        }
        assert!(Terminated.transition(Cancelled).is_err());
        assert!(Ordered.transition(Graced).is_err());
        assert!(Active.is_billable() && !CreditHold.is_billable());
    }

    #[test]
    fn orders_need_attention_when_failed_or_waiting_over_a_day() {
        let day = crate::clock::Timestamp::MICROS_PER_DAY;
        assert!(OrderStatus::Failed.needs_attention(0));
        assert!(!OrderStatus::WaitingForPayment.needs_attention(day));
        assert!(OrderStatus::WaitingForPayment.needs_attention(day + 1));
        assert!(OrderStatus::New.needs_attention(2 * day));
        assert!(OrderStatus::Paid.needs_attention(2 * day));
        assert!(!OrderStatus::Provisioning.needs_attention(2 * day));
        assert!(!OrderStatus::Completed.needs_attention(30 * day));
        assert!(!OrderStatus::Cancelled.needs_attention(30 * day));
    }
}
