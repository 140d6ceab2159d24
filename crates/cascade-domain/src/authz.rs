//! The authorization rule, in one place.
//!
//! A user acts on its own account and, as its privileges allow, on the accounts below
//! it — never on siblings or ancestors. Every endpoint asks [`authorize`] with the
//! relation between the actor's account and the target's account (computed by storage
//! from the account closure table) and the action it is about to take.
//!
//! Targets outside the actor's subtree are reported as [`Denied::NotFound`], so a
//! reseller cannot even learn that another reseller's account, user or task exists.

use crate::ids::{AccountId, UserId};
use crate::privilege::{Privilege, PrivilegeSet};

/// Who is acting.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub privileges: PrivilegeSet,
}

/// Where the target account stands relative to the actor's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The actor's own account.
    Own,
    /// An account below the actor's, `depth` levels down (1 = child).
    Descendant { depth: u32 },
    /// Anything else: ancestors, siblings, other branches, or nothing at all.
    Unrelated,
}

impl Relation {
    pub fn from_depth(depth: Option<i64>) -> Relation {
        match depth {
            Some(0) => Relation::Own,
            Some(d) if d > 0 => Relation::Descendant { depth: d as u32 },
            _ => Relation::Unrelated,
        }
    }
}

/// What the actor wants to do to the target account (or something it owns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ViewAccount,
    /// Change an account's profile data.
    UpdateAccount,
    /// Hold, release or cancel an account.
    ChangeAccountStatus,
    /// Create an account with the target as its vendor.
    CreateAccountUnder,
    /// List or read the users of the target account.
    ViewUsers,
    /// Create a user in the target account.
    CreateUser,
    /// Change, disable or (re)assign roles of a user of the target account.
    /// `is_self` is true when the user acted on is the actor.
    ManageUser {
        is_self: bool,
    },
    ViewRoles,
    ManageRoles,
    ViewTasks,
    ManageTasks,
    /// Read a seller's catalog objects (plans, templates, resource types, categories).
    ViewCatalog,
    /// Create, change, delegate and synchronize catalog objects owned by the target.
    ManageCatalog,
    /// Set a reseller's synchronization restrictions and cascade stop: its vendor's job.
    ManageSyncSettings,
    /// Place an order (buy, change, renew) for the target customer account.
    PlaceOrder,
    /// Read the target account's orders, subscriptions and their charges.
    ViewOrders,
    /// Cancel, restore or reconfigure a subscription of the target account.
    /// `self_service` names the privilege a customer needs to do this to its own
    /// subscriptions (`CANCEL_SUBSCRIPTIONS`, `CHANGE_AUTO_RENEW`); sellers above the
    /// customer do not need it (they act where an outside system manages subscriptions).
    ManageSubscriptions {
        self_service: Option<Privilege>,
    },
    /// Read an account's money documents, balance and credit terms.
    ViewBilling,
    /// Record payments, issue memos and refunds, manage customer classes and credit terms.
    ManageBilling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The target is not in the actor's subtree: behave as if it did not exist.
    #[error("not found")]
    NotFound,
    /// Visible, but the actor lacks a privilege.
    #[error("missing privilege {0}")]
    MissingPrivilege(Privilege),
    /// Visible, but this action is never allowed in this relation.
    #[error("{0}")]
    NotAllowed(&'static str),
}

/// Decide whether `actor` may perform `action` on an account in `relation` to it.
pub fn authorize(actor: &Actor, relation: Relation, action: Action) -> Result<(), Denied> {
    use Action::*;
    use Privilege::*;
    let own = match relation {
        Relation::Unrelated => return Err(Denied::NotFound),
        Relation::Own => true,
        Relation::Descendant { .. } => false,
    };
    let need = |p: Privilege| {
        if actor.privileges.has(p) {
            Ok(())
        } else {
            Err(Denied::MissingPrivilege(p))
        }
    };
    let need_any = |a: Privilege, b: Privilege| {
        if actor.privileges.has(a) || actor.privileges.has(b) {
            Ok(())
        } else {
            Err(Denied::MissingPrivilege(a))
        }
    };
    match action {
        ViewAccount if own => Ok(()),
        ViewAccount => need_any(AccountsView, AccountsManage),
        UpdateAccount => need(AccountsManage),
        ChangeAccountStatus if own => Err(Denied::NotAllowed(
            "an account's status is changed by its vendor, not by itself",
        )),
        ChangeAccountStatus => need(AccountsManage),
        CreateAccountUnder => need(AccountsManage),
        ViewUsers | CreateUser if own => need(UsersManage),
        ViewUsers | CreateUser => need(ManageAffiliatedAccounts),
        ManageUser { is_self: true } => Err(Denied::NotAllowed(
            "users cannot change their own roles or status",
        )),
        ManageUser { .. } if own => need(UsersManage),
        // MANAGE_AFFILIATED_ACCOUNTS: users of child and sub-child accounts only.
        ManageUser { .. } => need(ManageAffiliatedAccounts),
        ViewRoles if own => Ok(()),
        ViewRoles => need_any(ManageAffiliatedAccounts, RolesManage),
        ManageRoles if own => need(RolesManage),
        ManageRoles => Err(Denied::NotAllowed(
            "custom roles are managed by their own account",
        )),
        ViewTasks => need_any(TasksView, TasksManage),
        ManageTasks => need(TasksManage),
        ViewCatalog if own => Ok(()),
        ViewCatalog => need_any(CatalogManage, AccountsView),
        ManageCatalog => need(CatalogManage),
        ManageSyncSettings if own => Err(Denied::NotAllowed(
            "a reseller's synchronization settings are set by its vendor",
        )),
        ManageSyncSettings => need(CatalogManage),
        PlaceOrder => need_any(AccountsManage, BillingManage),
        ViewOrders if own => Ok(()),
        ViewOrders => need_any(AccountsView, BillingView),
        ManageSubscriptions {
            self_service: Some(p),
        } if own => need(p).and_then(|()| need_any(AccountsManage, BillingManage)),
        ManageSubscriptions { .. } => need_any(AccountsManage, BillingManage),
        ViewBilling if own => Ok(()),
        ViewBilling => need_any(BillingView, BillingManage),
        ManageBilling => need(BillingManage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privilege::{BuiltinRole, Grant};

    fn actor(grants: Vec<Grant>) -> Actor {
        Actor {
            user_id: UserId(1),
            account_id: AccountId(1),
            privileges: PrivilegeSet::from_grants(grants),
        }
    }

    #[test]
    fn unrelated_targets_are_invisible_whatever_the_privileges() {
        let a = actor(BuiltinRole::AccountAdmin.grants());
        for action in [
            Action::ViewAccount,
            Action::UpdateAccount,
            Action::ViewUsers,
            Action::ViewTasks,
            Action::CreateAccountUnder,
        ] {
            assert_eq!(
                authorize(&a, Relation::Unrelated, action),
                Err(Denied::NotFound)
            );
        }
    }

    #[test]
    fn manage_affiliated_accounts_semantics() {
        let a = actor(vec![Grant::plain(Privilege::ManageAffiliatedAccounts)]);
        // Users of child and sub-child accounts: yes.
        for depth in [1, 2, 5] {
            assert!(
                authorize(
                    &a,
                    Relation::Descendant { depth },
                    Action::ManageUser { is_self: false }
                )
                .is_ok()
            );
            assert!(authorize(&a, Relation::Descendant { depth }, Action::CreateUser).is_ok());
        }
        // Users of one's own account: no (that is USERS_MANAGE), and never oneself.
        assert_eq!(
            authorize(&a, Relation::Own, Action::ManageUser { is_self: false }),
            Err(Denied::MissingPrivilege(Privilege::UsersManage))
        );
        assert!(authorize(&a, Relation::Own, Action::ManageUser { is_self: true }).is_err());
        // Own-account user management alone does not reach below.
        let b = actor(vec![Grant::plain(Privilege::UsersManage)]);
        assert!(authorize(&b, Relation::Own, Action::ManageUser { is_self: false }).is_ok());
        assert!(
            authorize(
                &b,
                Relation::Descendant { depth: 1 },
                Action::ManageUser { is_self: false }
            )
            .is_err()
        );
    }

    #[test]
    fn admins_cannot_lock_themselves_out() {
        let a = actor(BuiltinRole::AccountAdmin.grants());
        assert!(authorize(&a, Relation::Own, Action::ManageUser { is_self: true }).is_err());
        assert!(authorize(&a, Relation::Own, Action::ChangeAccountStatus).is_err());
        assert!(
            authorize(
                &a,
                Relation::Descendant { depth: 1 },
                Action::ChangeAccountStatus
            )
            .is_ok()
        );
    }

    #[test]
    fn staff_roles() {
        let billing = actor(BuiltinRole::BillingStaff.grants());
        assert!(
            authorize(
                &billing,
                Relation::Descendant { depth: 3 },
                Action::ViewAccount
            )
            .is_ok()
        );
        assert!(
            authorize(
                &billing,
                Relation::Descendant { depth: 1 },
                Action::UpdateAccount
            )
            .is_err()
        );
        assert!(authorize(&billing, Relation::Own, Action::ViewTasks).is_err());
        let tech = actor(BuiltinRole::TechnicalStaff.grants());
        assert!(
            authorize(
                &tech,
                Relation::Descendant { depth: 1 },
                Action::ManageTasks
            )
            .is_ok()
        );
        assert!(authorize(&tech, Relation::Own, Action::CreateUser).is_err());
    }

    #[test]
    fn catalog_actions() {
        let tech = actor(BuiltinRole::TechnicalStaff.grants());
        assert!(authorize(&tech, Relation::Own, Action::ManageCatalog).is_ok());
        assert!(
            authorize(
                &tech,
                Relation::Descendant { depth: 1 },
                Action::ManageSyncSettings
            )
            .is_ok()
        );
        assert!(
            authorize(&tech, Relation::Own, Action::ManageSyncSettings).is_err(),
            "a reseller cannot lift its own restrictions"
        );
        let billing = actor(BuiltinRole::BillingStaff.grants());
        assert!(authorize(&billing, Relation::Own, Action::ViewCatalog).is_ok());
        assert_eq!(
            authorize(&billing, Relation::Own, Action::ManageCatalog),
            Err(Denied::MissingPrivilege(Privilege::CatalogManage))
        );
        assert_eq!(
            authorize(&billing, Relation::Unrelated, Action::ViewCatalog),
            Err(Denied::NotFound)
        );
    }

    #[test]
    fn order_actions() {
        let admin = actor(BuiltinRole::AccountAdmin.grants());
        let cancel = Action::ManageSubscriptions {
            self_service: Some(Privilege::CancelSubscriptions),
        };
        for rel in [Relation::Own, Relation::Descendant { depth: 2 }] {
            assert!(authorize(&admin, rel, Action::PlaceOrder).is_ok());
            assert!(authorize(&admin, rel, Action::ViewOrders).is_ok());
            assert!(authorize(&admin, rel, cancel).is_ok());
        }
        assert_eq!(
            authorize(&admin, Relation::Unrelated, Action::ViewOrders),
            Err(Denied::NotFound)
        );
        // A customer user without CANCEL_SUBSCRIPTIONS cannot cancel its own subscriptions…
        let no_cancel = actor(vec![
            Grant::plain(Privilege::AccountsManage),
            Grant::plain(Privilege::BillingManage),
        ]);
        assert_eq!(
            authorize(&no_cancel, Relation::Own, cancel),
            Err(Denied::MissingPrivilege(Privilege::CancelSubscriptions))
        );
        assert!(
            authorize(
                &no_cancel,
                Relation::Own,
                Action::ManageSubscriptions { self_service: None }
            )
            .is_ok()
        );
        // …while its vendor's staff can, for it.
        assert!(authorize(&no_cancel, Relation::Descendant { depth: 1 }, cancel).is_ok());
        // Billing staff see and place orders below; technical staff do neither.
        let billing = actor(BuiltinRole::BillingStaff.grants());
        assert!(
            authorize(
                &billing,
                Relation::Descendant { depth: 1 },
                Action::ViewOrders
            )
            .is_ok()
        );
        assert!(
            authorize(
                &billing,
                Relation::Descendant { depth: 1 },
                Action::PlaceOrder
            )
            .is_ok()
        );
        let tech = actor(BuiltinRole::TechnicalStaff.grants());
        assert!(authorize(&tech, Relation::Own, Action::ViewOrders).is_ok());
        assert_eq!(
            authorize(&tech, Relation::Own, Action::PlaceOrder),
            Err(Denied::MissingPrivilege(Privilege::AccountsManage))
        );
    }

    #[test]
    fn billing_actions() {
        let billing = actor(BuiltinRole::BillingStaff.grants());
        for rel in [
            Relation::Own,
            Relation::Descendant { depth: 1 },
            Relation::Descendant { depth: 3 },
        ] {
            assert!(authorize(&billing, rel, Action::ViewBilling).is_ok());
            assert!(authorize(&billing, rel, Action::ManageBilling).is_ok());
        }
        assert_eq!(
            authorize(&billing, Relation::Unrelated, Action::ViewBilling),
            Err(Denied::NotFound)
        );
        assert_eq!(
            authorize(&billing, Relation::Unrelated, Action::ManageBilling),
            Err(Denied::NotFound)
        );
        // Anyone sees its own account's documents; below, only with a billing privilege.
        let tech = actor(BuiltinRole::TechnicalStaff.grants());
        assert!(authorize(&tech, Relation::Own, Action::ViewBilling).is_ok());
        assert_eq!(
            authorize(
                &tech,
                Relation::Descendant { depth: 1 },
                Action::ViewBilling
            ),
            Err(Denied::MissingPrivilege(Privilege::BillingView))
        );
        assert_eq!(
            authorize(&tech, Relation::Own, Action::ManageBilling),
            Err(Denied::MissingPrivilege(Privilege::BillingManage))
        );
        let viewer = actor(vec![Grant::plain(Privilege::BillingView)]);
        assert!(
            authorize(
                &viewer,
                Relation::Descendant { depth: 2 },
                Action::ViewBilling
            )
            .is_ok()
        );
        assert_eq!(
            authorize(
                &viewer,
                Relation::Descendant { depth: 2 },
                Action::ManageBilling
            ),
            Err(Denied::MissingPrivilege(Privilege::BillingManage))
        );
        let admin = actor(BuiltinRole::AccountAdmin.grants());
        assert!(authorize(&admin, Relation::Own, Action::ManageBilling).is_ok());
    }

    #[test]
    fn relation_from_depth() {
        assert_eq!(Relation::from_depth(Some(0)), Relation::Own);
        assert_eq!(
            Relation::from_depth(Some(2)),
            Relation::Descendant { depth: 2 }
        );
        assert_eq!(Relation::from_depth(None), Relation::Unrelated);
    }
}
