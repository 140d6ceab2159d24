//! Privileges and roles.
//!
//! A role is a set of privileges; some privileges carry an ordered level
//! (`MANAGE_DOMAINS`). A user's effective privileges are the union of its roles, a
//! levelled privilege taking the highest level any role grants.

use crate::validation::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Privilege {
    /// See the accounts below one's own.
    AccountsView,
    /// Create, change, hold and release accounts below one's own; edit one's own account's profile.
    AccountsManage,
    /// Manage the users of one's own account (never one's own roles or status).
    UsersManage,
    /// Manage the users of child and sub-child accounts (any depth below), but not the
    /// users of one's own account, including oneself.
    ManageAffiliatedAccounts,
    /// Create and change custom roles of one's own account.
    RolesManage,
    /// Manage the catalog (resource types, templates, plans, delegation, sync).
    CatalogManage,
    BillingView,
    BillingManage,
    TasksView,
    /// Retry and cancel tasks.
    TasksManage,
    /// Customers may cancel their subscriptions themselves.
    CancelSubscriptions,
    /// Customers may switch auto-renew themselves.
    ChangeAutoRenew,
    /// Prices are shown in the panel. Revoked where a reseller bills from an outside system.
    ShowPrices,
    /// Domain management, with a [`DomainLevel`].
    ManageDomains,
}

impl Privilege {
    pub const ALL: [Privilege; 14] = [
        Privilege::AccountsView,
        Privilege::AccountsManage,
        Privilege::UsersManage,
        Privilege::ManageAffiliatedAccounts,
        Privilege::RolesManage,
        Privilege::CatalogManage,
        Privilege::BillingView,
        Privilege::BillingManage,
        Privilege::TasksView,
        Privilege::TasksManage,
        Privilege::CancelSubscriptions,
        Privilege::ChangeAutoRenew,
        Privilege::ShowPrices,
        Privilege::ManageDomains,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::AccountsView => "ACCOUNTS_VIEW",
            Privilege::AccountsManage => "ACCOUNTS_MANAGE",
            Privilege::UsersManage => "USERS_MANAGE",
            Privilege::ManageAffiliatedAccounts => "MANAGE_AFFILIATED_ACCOUNTS",
            Privilege::RolesManage => "ROLES_MANAGE",
            Privilege::CatalogManage => "CATALOG_MANAGE",
            Privilege::BillingView => "BILLING_VIEW",
            Privilege::BillingManage => "BILLING_MANAGE",
            Privilege::TasksView => "TASKS_VIEW",
            Privilege::TasksManage => "TASKS_MANAGE",
            Privilege::CancelSubscriptions => "CANCEL_SUBSCRIPTIONS",
            Privilege::ChangeAutoRenew => "CHANGE_AUTO_RENEW",
            Privilege::ShowPrices => "SHOW_PRICES",
            Privilege::ManageDomains => "MANAGE_DOMAINS",
        }
    }

    pub fn is_levelled(self) -> bool {
        matches!(self, Privilege::ManageDomains)
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Privilege {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Privilege::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "privilege",
                    "unknown_privilege",
                    format!("unknown privilege `{s}`"),
                )
            })
    }
}

/// Levels of `MANAGE_DOMAINS`, ordered: each level includes everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainLevel {
    Disabled = 0,
    ManageSettings = 1,
    ManageContacts = 2,
    AllowTransferOut = 3,
    /// Allow to place orders: the default for account administrators.
    PlaceOrders = 4,
}

impl DomainLevel {
    pub const ALL: [DomainLevel; 5] = [
        DomainLevel::Disabled,
        DomainLevel::ManageSettings,
        DomainLevel::ManageContacts,
        DomainLevel::AllowTransferOut,
        DomainLevel::PlaceOrders,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DomainLevel::Disabled => "disabled",
            DomainLevel::ManageSettings => "manage_settings",
            DomainLevel::ManageContacts => "manage_contacts",
            DomainLevel::AllowTransferOut => "allow_transfer_out",
            DomainLevel::PlaceOrders => "place_orders",
        }
    }
    pub fn from_i64(v: i64) -> Option<Self> {
        DomainLevel::ALL.into_iter().find(|l| *l as i64 == v)
    }
}

impl FromStr for DomainLevel {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainLevel::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "level",
                    "unknown_level",
                    format!("unknown MANAGE_DOMAINS level `{s}`"),
                )
            })
    }
}

/// One privilege as granted by a role; `level` only for levelled privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub privilege: Privilege,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<DomainLevel>,
}

impl Grant {
    pub fn plain(privilege: Privilege) -> Self {
        Self {
            privilege,
            level: None,
        }
    }

    /// Validate a grant: levelled privileges need a level, others must not have one.
    pub fn parse(privilege: &str, level: Option<&str>) -> Result<Grant, FieldError> {
        let privilege: Privilege = privilege.parse()?;
        match (privilege.is_levelled(), level) {
            (true, Some(l)) => Ok(Grant {
                privilege,
                level: Some(l.parse()?),
            }),
            (true, None) => Err(FieldError::new(
                "level",
                "level_required",
                format!("{privilege} needs a level"),
            )),
            (false, None) => Ok(Grant::plain(privilege)),
            (false, Some(_)) => Err(FieldError::new(
                "level",
                "level_not_allowed",
                format!("{privilege} has no levels"),
            )),
        }
    }
}

/// The effective privileges of a user: union of its roles' grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivilegeSet(BTreeMap<Privilege, DomainLevel>);

impl PrivilegeSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_grants(grants: impl IntoIterator<Item = Grant>) -> Self {
        let mut s = Self::new();
        for g in grants {
            s.add(g);
        }
        s
    }

    pub fn add(&mut self, g: Grant) {
        // For plain privileges the level is meaningless; store the top level so that
        // `covers` compares only levelled privileges by level.
        let level = if g.privilege.is_levelled() {
            g.level.unwrap_or(DomainLevel::Disabled)
        } else {
            DomainLevel::PlaceOrders
        };
        let e = self.0.entry(g.privilege).or_insert(level);
        if level > *e {
            *e = level;
        }
    }

    pub fn has(&self, p: Privilege) -> bool {
        match self.0.get(&p) {
            None => false,
            Some(l) => !p.is_levelled() || *l > DomainLevel::Disabled,
        }
    }

    /// The level of `MANAGE_DOMAINS` (`Disabled` when not granted).
    pub fn domain_level(&self) -> DomainLevel {
        self.0
            .get(&Privilege::ManageDomains)
            .copied()
            .unwrap_or(DomainLevel::Disabled)
    }

    /// Whether the user may act on domains at `needed` or above.
    pub fn allows_domains(&self, needed: DomainLevel) -> bool {
        needed > DomainLevel::Disabled && self.domain_level() >= needed
    }

    /// Whether every grant of `other` is also held here, at least at the same level.
    /// A user may only hand out what it holds itself.
    pub fn covers(&self, other: &PrivilegeSet) -> bool {
        other.0.iter().all(|(p, l)| {
            if p.is_levelled() && *l == DomainLevel::Disabled {
                return true;
            }
            self.0.get(p).is_some_and(|mine| mine >= l)
        })
    }

    pub fn grants(&self) -> Vec<Grant> {
        self.0
            .iter()
            .map(|(p, l)| Grant {
                privilege: *p,
                level: if p.is_levelled() { Some(*l) } else { None },
            })
            .collect()
    }
}

/// The roles every installation has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinRole {
    AccountAdmin,
    BillingStaff,
    TechnicalStaff,
}

impl BuiltinRole {
    pub const ALL: [BuiltinRole; 3] = [
        BuiltinRole::AccountAdmin,
        BuiltinRole::BillingStaff,
        BuiltinRole::TechnicalStaff,
    ];

    pub fn key(self) -> &'static str {
        match self {
            BuiltinRole::AccountAdmin => "account_admin",
            BuiltinRole::BillingStaff => "billing_staff",
            BuiltinRole::TechnicalStaff => "technical_staff",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BuiltinRole::AccountAdmin => "Account administrator",
            BuiltinRole::BillingStaff => "Billing staff",
            BuiltinRole::TechnicalStaff => "Technical staff",
        }
    }

    pub fn grants(self) -> Vec<Grant> {
        use Privilege::*;
        let plain = |ps: &[Privilege]| ps.iter().map(|p| Grant::plain(*p)).collect::<Vec<_>>();
        match self {
            BuiltinRole::AccountAdmin => {
                let mut g: Vec<Grant> = Privilege::ALL
                    .iter()
                    .filter(|p| !p.is_levelled())
                    .map(|p| Grant::plain(*p))
                    .collect();
                g.push(Grant {
                    privilege: ManageDomains,
                    level: Some(DomainLevel::PlaceOrders),
                });
                g
            }
            BuiltinRole::BillingStaff => {
                plain(&[AccountsView, BillingView, BillingManage, ShowPrices])
            }
            BuiltinRole::TechnicalStaff => {
                let mut g = plain(&[AccountsView, TasksView, TasksManage, CatalogManage]);
                g.push(Grant {
                    privilege: ManageDomains,
                    level: Some(DomainLevel::ManageSettings),
                });
                g
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_levels_are_ordered_and_cumulative() {
        let s = PrivilegeSet::from_grants([Grant {
            privilege: Privilege::ManageDomains,
            level: Some(DomainLevel::ManageContacts),
        }]);
        assert!(s.allows_domains(DomainLevel::ManageSettings));
        assert!(s.allows_domains(DomainLevel::ManageContacts));
        assert!(!s.allows_domains(DomainLevel::AllowTransferOut));
        assert!(!s.allows_domains(DomainLevel::PlaceOrders));
        let disabled = PrivilegeSet::from_grants([Grant {
            privilege: Privilege::ManageDomains,
            level: Some(DomainLevel::Disabled),
        }]);
        assert!(!disabled.has(Privilege::ManageDomains));
        assert!(!disabled.allows_domains(DomainLevel::ManageSettings));
    }

    #[test]
    fn union_takes_highest_level() {
        let s = PrivilegeSet::from_grants(
            BuiltinRole::TechnicalStaff
                .grants()
                .into_iter()
                .chain(BuiltinRole::AccountAdmin.grants()),
        );
        assert_eq!(s.domain_level(), DomainLevel::PlaceOrders);
    }

    #[test]
    fn admin_covers_everything_staff_do_not() {
        let admin = PrivilegeSet::from_grants(BuiltinRole::AccountAdmin.grants());
        let billing = PrivilegeSet::from_grants(BuiltinRole::BillingStaff.grants());
        let tech = PrivilegeSet::from_grants(BuiltinRole::TechnicalStaff.grants());
        assert!(admin.covers(&billing) && admin.covers(&tech));
        assert!(!billing.covers(&tech));
        assert!(!tech.covers(&admin));
        for p in Privilege::ALL {
            assert!(admin.has(p), "{p}");
        }
    }

    #[test]
    fn grant_parsing() {
        assert!(Grant::parse("MANAGE_DOMAINS", None).is_err());
        assert!(Grant::parse("SHOW_PRICES", Some("place_orders")).is_err());
        assert_eq!(
            Grant::parse("MANAGE_DOMAINS", Some("manage_contacts"))
                .unwrap()
                .level,
            Some(DomainLevel::ManageContacts)
        );
        assert_eq!(
            Grant::parse("FLY", None).unwrap_err().code,
            "unknown_privilege"
        );
        for p in Privilege::ALL {
            assert_eq!(p.as_str().parse::<Privilege>().unwrap(), p);
        }
    }
}
