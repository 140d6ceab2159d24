//! Which billing screens a customer sees, decided down the reseller chain.
//!
//! The provider decides which billing screens its customers (and, through inheritance,
//! every reseller's customers) see. A reseller may **override** the choice for its own
//! part of the tree; from then on the provider's later changes no longer reach that
//! reseller, nor its sub-resellers, who inherit from it (domain.md §1). The rule is
//! therefore "the nearest account in the chain that has made a choice wins", and
//! [`resolve`] is that rule, pure: storage hands it the chain of own settings from the
//! account itself up to the provider, nearest first.

use serde::{Deserialize, Serialize};

/// The billing screens a seller may show or hide to its customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingScreens {
    /// The invoice list and invoice PDFs.
    pub invoices: bool,
    /// The payment list.
    pub payments: bool,
    /// The account balance and the top-up form.
    pub balance: bool,
}

impl BillingScreens {
    /// Everything visible: what applies when nobody in the chain has chosen.
    pub const ALL: BillingScreens = BillingScreens {
        invoices: true,
        payments: true,
        balance: true,
    };
    /// The screens' names, in display order.
    pub const NAMES: [&'static str; 3] = ["invoices", "payments", "balance"];

    /// Whether the named screen is visible (unknown names are not).
    pub fn shows(&self, name: &str) -> bool {
        match name {
            "invoices" => self.invoices,
            "payments" => self.payments,
            "balance" => self.balance,
            _ => false,
        }
    }
    /// Whether any billing screen is visible at all (else the whole billing page is hidden).
    pub fn any(&self) -> bool {
        self.invoices || self.payments || self.balance
    }
}

impl Default for BillingScreens {
    fn default() -> Self {
        Self::ALL
    }
}

/// The effective setting and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<K> {
    pub screens: BillingScreens,
    /// The account whose own choice applies; `None` when nobody chose (the default).
    pub source: Option<K>,
}

/// Resolve the effective setting from a chain of `(account, own setting)` ordered from
/// the account in question up to the provider (nearest first): the nearest own setting
/// wins; with none, everything is visible.
pub fn resolve<K: Copy>(chain: &[(K, Option<BillingScreens>)]) -> Resolved<K> {
    chain
        .iter()
        .find_map(|(k, s)| {
            s.map(|screens| Resolved {
                screens,
                source: Some(*k),
            })
        })
        .unwrap_or(Resolved {
            screens: BillingScreens::ALL,
            source: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_INVOICES: BillingScreens = BillingScreens {
        invoices: false,
        payments: true,
        balance: true,
    };
    const ONLY_INVOICES: BillingScreens = BillingScreens {
        invoices: true,
        payments: false,
        balance: false,
    };

    #[test]
    fn nobody_chose_everything_is_visible() {
        let r = resolve::<i64>(&[(3, None), (2, None), (1, None)]);
        assert_eq!(r.screens, BillingScreens::ALL);
        assert_eq!(r.source, None);
        assert_eq!(resolve::<i64>(&[]).screens, BillingScreens::ALL);
    }

    #[test]
    fn the_providers_choice_is_inherited_down_the_tree() {
        // customer 4 → L2 3 → L1 2 → provider 1
        let r = resolve(&[(4, None), (3, None), (2, None), (1, Some(NO_INVOICES))]);
        assert_eq!(r.screens, NO_INVOICES);
        assert_eq!(r.source, Some(1));
    }

    #[test]
    fn a_reseller_override_wins_over_the_provider_and_reaches_its_sub_resellers() {
        let provider_changed = Some(ONLY_INVOICES);
        // The L1 overrode: its sub-reseller's customers follow the L1, not the provider.
        let r = resolve(&[
            (4, None),
            (3, None),
            (2, Some(NO_INVOICES)),
            (1, provider_changed),
        ]);
        assert_eq!(r.screens, NO_INVOICES);
        assert_eq!(r.source, Some(2));
        // Another L1 without an override follows the provider's change.
        let r = resolve(&[(6, None), (5, None), (1, provider_changed)]);
        assert_eq!(r.screens, ONLY_INVOICES);
        assert_eq!(r.source, Some(1));
    }

    #[test]
    fn the_nearest_override_wins() {
        let r = resolve(&[(3, Some(ONLY_INVOICES)), (2, Some(NO_INVOICES)), (1, None)]);
        assert_eq!(r.screens, ONLY_INVOICES);
        assert_eq!(r.source, Some(3));
    }

    #[test]
    fn screens_by_name() {
        assert!(NO_INVOICES.shows("payments"));
        assert!(!NO_INVOICES.shows("invoices"));
        assert!(!NO_INVOICES.shows("nonsense"));
        assert!(NO_INVOICES.any());
        let none = BillingScreens {
            invoices: false,
            payments: false,
            balance: false,
        };
        assert!(!none.any());
    }
}
