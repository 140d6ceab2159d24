//! Synchronization: pushing a plan's changes to its delegated copies.
//!
//! Two pure functions. [`sync_copy`] computes one copy's new content from its original
//! (the copy's parent), the options the syncing party picked and the copy owner's
//! restrictions, with the field-level changes made and the changes a restriction
//! stopped. [`plan_sync`] walks the delegation tree below a plan set-wise (every copy is
//! given at once, nothing is fetched per copy), in the chosen scope, each copy syncing
//! from its parent's *new* content so changes cascade, and stopping below a reseller
//! marked *cascade stop*. The storage layer loads the tree in one query, writes the
//! outcomes, and records them; the preview is the same computation, not applied.
//!
//! **Plan → subscriptions.** A subscription keeps a *snapshot* of the plan content it
//! was sold at (stored beside it), not a reference to the plan's live content: editing
//! or syncing a plan changes nothing a customer already bought until a sync with the
//! [`SyncOptions::subscriptions`] option reaches the seller's copy. We chose a snapshot
//! over a plan-version reference because a synced subscription is generally on *no*
//! version of any plan: its limits and terms change at once while its prices change
//! only from its next billing date, so it holds a mix for up to one period.
//! [`sync_subscription`] splits the copy's new content into the terms in force now (new
//! limits and terms, old prices) and the terms from the next billing date (all new);
//! the billing run picks the terms by the start of the period it charges
//! ([`SubscriptionTerms::for_period`]), so a price never changes retroactively. A lowered
//! limit only blocks new usage: nothing is unprovisioned. A reseller with *cascade stop*
//! keeps its customers' subscriptions as they are ([`CopyOutcome::reaches_subscriptions`]).

use super::plan::{PlanContent, Rate};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;

/// What a sync updates; each independently selectable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncOptions {
    /// Name, short and long descriptions, terms (all languages).
    pub names_descriptions: bool,
    /// Period fees and their properties, refund rules, sort; the recurring price basis.
    pub plan_fees: bool,
    /// Newly added periods appear on the copies (and periods' availability).
    pub new_plans_periods: bool,
    /// Newly added resource rates appear on the copies.
    pub new_resources: bool,
    /// Setup, recurring and overuse fees of resource rates; the recurring price basis.
    pub resource_prices: bool,
    /// Included, min and max units and display of rates; the recurring price basis.
    pub resource_limits: bool,
    /// Sales categories, plan category, resource grouping, unique group.
    pub categories: bool,
    /// Published and visible state, listing priority.
    pub publication: bool,
    /// Also bring existing customer subscriptions of every copy reached (and of the
    /// synced plan itself) to the new content: limits and terms now, prices from each
    /// subscription's next billing date. Off by default.
    pub subscriptions: bool,
}

impl SyncOptions {
    pub fn all() -> Self {
        Self {
            names_descriptions: true,
            plan_fees: true,
            new_plans_periods: true,
            new_resources: true,
            resource_prices: true,
            resource_limits: true,
            categories: true,
            publication: true,
            subscriptions: false,
        }
    }
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// What a reseller's vendor says a sync may never change on that reseller's copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Restrictions {
    pub prices: bool,
    pub terms: bool,
    pub plan_categories: bool,
    pub resource_categories: bool,
    pub sales_categories: bool,
    pub publication: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restriction {
    Prices,
    Terms,
    PlanCategories,
    ResourceCategories,
    SalesCategories,
    Publication,
}

impl Restrictions {
    fn locks(&self, r: Restriction) -> bool {
        match r {
            Restriction::Prices => self.prices,
            Restriction::Terms => self.terms,
            Restriction::PlanCategories => self.plan_categories,
            Restriction::ResourceCategories => self.resource_categories,
            Restriction::SalesCategories => self.sales_categories,
            Restriction::Publication => self.publication,
        }
    }
}

/// One field changed on a copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// One change a restriction stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    pub field: String,
    pub restriction: Restriction,
    pub wanted: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CopySync {
    pub content: PlanContent,
    pub changes: Vec<Change>,
    pub blocked: Vec<Blocked>,
    /// The sync added a period or rate whose price the copy's owner has not chosen (its
    /// prices are locked, or the original's own price is still unconfirmed): the plan
    /// is withdrawn from its store until the owner confirms.
    pub withdrawn: bool,
}

struct Acc<'a> {
    r: &'a Restrictions,
    changes: Vec<Change>,
    blocked: Vec<Blocked>,
}

impl Acc<'_> {
    /// Set `*dst = src` when they differ, unless `lock` stops it.
    fn set<T: Clone + PartialEq + Serialize>(
        &mut self,
        field: impl Into<String>,
        dst: &mut T,
        src: &T,
        lock: Option<Restriction>,
    ) {
        if dst == src {
            return;
        }
        let field = field.into();
        let to = json!(src);
        match lock.filter(|l| self.r.locks(*l)) {
            Some(restriction) => self.blocked.push(Blocked {
                field,
                restriction,
                wanted: to,
            }),
            None => {
                self.changes.push(Change {
                    field,
                    from: json!(dst),
                    to,
                });
                *dst = src.clone();
            }
        }
    }
}

/// Sync one copy from its original. Pure and deterministic.
pub fn sync_copy(
    source: &PlanContent,
    copy: &PlanContent,
    o: &SyncOptions,
    r: &Restrictions,
) -> CopySync {
    use Restriction::*;
    let mut c = copy.clone();
    let mut a = Acc {
        r,
        changes: vec![],
        blocked: vec![],
    };
    let mut added_unconfirmed = false;

    if o.names_descriptions {
        a.set("name", &mut c.name, &source.name, None);
        a.set(
            "short_description",
            &mut c.short_description,
            &source.short_description,
            None,
        );
        a.set(
            "long_description",
            &mut c.long_description,
            &source.long_description,
            None,
        );
        a.set("terms", &mut c.terms, &source.terms, Some(Terms));
    }
    if o.plan_fees || o.resource_prices || o.resource_limits {
        a.set(
            "recurring_basis",
            &mut c.recurring_basis,
            &source.recurring_basis,
            Some(Prices),
        );
    }
    // Existing periods, matched by uid.
    for p in c.periods.iter_mut() {
        let Some(sp) = source.period(&p.uid) else {
            continue;
        };
        let f = |x: &str| format!("periods[{}].{x}", p.uid);
        if o.plan_fees {
            a.set(f("setup"), &mut p.setup, &sp.setup, Some(Prices));
            a.set(
                f("recurring"),
                &mut p.recurring,
                &sp.recurring,
                Some(Prices),
            );
            a.set(f("renewal"), &mut p.renewal, &sp.renewal, Some(Prices));
            a.set(f("transfer"), &mut p.transfer, &sp.transfer, Some(Prices));
            a.set(
                f("cancellation"),
                &mut p.cancellation,
                &sp.cancellation,
                Some(Prices),
            );
            a.set(f("sort"), &mut p.sort, &sp.sort, Some(Prices));
            a.set(f("refund"), &mut p.refund, &sp.refund, Some(Terms));
        }
        if o.new_plans_periods {
            a.set(f("active"), &mut p.active, &sp.active, None);
        }
    }
    // New periods.
    if o.new_plans_periods {
        for sp in &source.periods {
            if copy.period(&sp.uid).is_none() {
                let mut np = sp.clone();
                // Nobody may be sold something at a price nobody chose.
                np.unconfirmed = r.prices || sp.unconfirmed;
                added_unconfirmed |= np.unconfirmed;
                a.changes.push(Change {
                    field: format!("periods[{}]", sp.uid),
                    from: Value::Null,
                    to: json!(np),
                });
                c.periods.push(np);
            }
        }
    }
    // Existing rates.
    for rt in c.rates.iter_mut() {
        let Some(sr) = source.rate(&rt.uid) else {
            continue;
        };
        let f = |x: &str| format!("rates[{}].{x}", rt.uid);
        if o.resource_prices {
            a.set(
                f("setup_fee"),
                &mut rt.setup_fee,
                &sr.setup_fee,
                Some(Prices),
            );
            a.set(
                f("recurring_fee"),
                &mut rt.recurring_fee,
                &sr.recurring_fee,
                Some(Prices),
            );
            a.set(
                f("overuse_fee"),
                &mut rt.overuse_fee,
                &sr.overuse_fee,
                Some(Prices),
            );
            a.set(f("per_unit"), &mut rt.per_unit, &sr.per_unit, Some(Prices));
        }
        if o.resource_limits {
            a.set(f("included"), &mut rt.included, &sr.included, None);
            a.set(f("min"), &mut rt.min, &sr.min, None);
            a.set(f("max"), &mut rt.max, &sr.max, None);
            a.set(f("measurable"), &mut rt.measurable, &sr.measurable, None);
            a.set(f("display"), &mut rt.display, &sr.display, None);
        }
        if o.categories {
            a.set(
                f("resource_category_id"),
                &mut rt.resource_category_id,
                &sr.resource_category_id,
                Some(ResourceCategories),
            );
        }
    }
    if o.new_resources {
        for sr in &source.rates {
            if copy.rate(&sr.uid).is_none() {
                let nr: Rate = Rate {
                    unconfirmed: r.prices || sr.unconfirmed,
                    ..sr.clone()
                };
                added_unconfirmed |= nr.unconfirmed;
                a.changes.push(Change {
                    field: format!("rates[{}]", sr.uid),
                    from: Value::Null,
                    to: json!(nr),
                });
                c.rates.push(nr);
            }
        }
    }
    if o.categories {
        a.set(
            "plan_category",
            &mut c.plan_category,
            &source.plan_category,
            Some(PlanCategories),
        );
        a.set(
            "unique_group",
            &mut c.unique_group,
            &source.unique_group,
            Some(PlanCategories),
        );
        a.set(
            "sales_categories",
            &mut c.sales_categories,
            &source.sales_categories,
            Some(SalesCategories),
        );
    }
    if o.publication {
        a.set(
            "published",
            &mut c.published,
            &source.published,
            Some(Publication),
        );
        a.set(
            "visible",
            &mut c.visible,
            &source.visible,
            Some(Publication),
        );
        a.set(
            "listing_priority",
            &mut c.listing_priority,
            &source.listing_priority,
            Some(Publication),
        );
    }
    let withdrawn = added_unconfirmed;
    CopySync {
        content: c,
        changes: a.changes,
        blocked: a.blocked,
        withdrawn,
    }
}

/// Which copies a sync reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Scope {
    /// Every copy below the plan (down every level, respecting cascade stops).
    AllResellers,
    /// Only the direct resellers' copies; each is marked as having upstream changes
    /// not yet passed down.
    OneLevel,
    /// One direct reseller's copy, with or without the copies below it.
    Reseller { account_id: i64, with_subtree: bool },
}

/// A delegated copy as the tree walk sees it.
#[derive(Debug, Clone)]
pub struct CopyNode {
    pub plan_id: i64,
    pub parent_plan_id: i64,
    pub owner_id: i64,
    pub version: i64,
    pub content: PlanContent,
    pub restrictions: Restrictions,
    pub cascade_stop: bool,
}

/// What a sync does (or would do) to one copy.
#[derive(Debug, Clone)]
pub struct CopyOutcome {
    pub plan_id: i64,
    pub parent_plan_id: i64,
    pub owner_id: i64,
    /// The copy's version the outcome was computed from (optimistic concurrency).
    pub version: i64,
    /// 1 for a direct reseller's copy.
    pub level: u32,
    pub content: PlanContent,
    pub changes: Vec<Change>,
    pub blocked: Vec<Blocked>,
    pub withdrawn: bool,
    /// The copy changed and has copies below it that this sync did not reach.
    pub upstream_pending: bool,
    /// The copy's subscriptions may be updated (false below a cascade stop: the
    /// reseller's own copy is synced, its customers' subscriptions are not).
    pub reaches_subscriptions: bool,
}

/// Sync the copies of `source` (plan `source_id`) in `scope`. `copies` holds every copy
/// below the source (any depth; others are ignored). Outcomes are in walk order: a copy
/// always after its parent.
pub fn plan_sync(
    source_id: i64,
    source: &PlanContent,
    copies: &[CopyNode],
    scope: Scope,
    o: &SyncOptions,
) -> Vec<CopyOutcome> {
    let mut children: HashMap<i64, Vec<&CopyNode>> = HashMap::new();
    for c in copies {
        children.entry(c.parent_plan_id).or_default().push(c);
    }
    for v in children.values_mut() {
        v.sort_by_key(|c| c.plan_id);
    }
    let mut out = Vec::new();
    // (copy, its parent's new content, level)
    let mut queue: std::collections::VecDeque<(&CopyNode, PlanContent, u32)> =
        std::collections::VecDeque::new();
    for c in children.get(&source_id).into_iter().flatten() {
        let take = match scope {
            Scope::AllResellers | Scope::OneLevel => true,
            Scope::Reseller { account_id, .. } => c.owner_id == account_id,
        };
        if take {
            queue.push_back((c, source.clone(), 1));
        }
    }
    let descend = |level: u32| match scope {
        Scope::AllResellers => true,
        Scope::OneLevel => false,
        Scope::Reseller { with_subtree, .. } => with_subtree || level > 1,
    };
    while let Some((node, parent, level)) = queue.pop_front() {
        let s = sync_copy(&parent, &node.content, o, &node.restrictions);
        let kids = children
            .get(&node.plan_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let goes_down = descend(level) && !node.cascade_stop;
        if goes_down {
            for k in kids {
                queue.push_back((k, s.content.clone(), level + 1));
            }
        }
        out.push(CopyOutcome {
            plan_id: node.plan_id,
            parent_plan_id: node.parent_plan_id,
            owner_id: node.owner_id,
            version: node.version,
            level,
            upstream_pending: !goes_down && !kids.is_empty() && !s.changes.is_empty(),
            content: s.content,
            changes: s.changes,
            blocked: s.blocked,
            withdrawn: s.withdrawn,
            reaches_subscriptions: !node.cascade_stop,
        });
    }
    out
}

/// The plan terms a subscription holds: those in force, and new prices waiting for the
/// start of a period.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionTerms {
    pub current: PlanContent,
    /// `(first day, content)`: in force for periods starting on or after that day.
    pub next: Option<(String, PlanContent)>,
}

impl SubscriptionTerms {
    /// The terms for a period starting on `day` (ISO date).
    pub fn for_period(&self, day: &str) -> &PlanContent {
        match &self.next {
            Some((from, next)) if day >= from.as_str() => next,
            _ => &self.current,
        }
    }
}

/// `content` with the prices of `prices` wherever both have the same period or rate
/// (and the old recurring basis): what changes at once when prices must wait.
fn keep_prices(content: &PlanContent, prices: &PlanContent) -> PlanContent {
    let mut c = content.clone();
    c.recurring_basis = prices.recurring_basis;
    for p in c.periods.iter_mut() {
        if let Some(o) = prices.period(&p.uid) {
            p.setup = o.setup.clone();
            p.recurring = o.recurring.clone();
            p.renewal = o.renewal.clone();
            p.transfer = o.transfer.clone();
            p.cancellation = o.cancellation.clone();
        }
    }
    for r in c.rates.iter_mut() {
        if let Some(o) = prices.rate(&r.uid) {
            r.setup_fee = o.setup_fee;
            r.recurring_fee = o.recurring_fee;
            r.overuse_fee = o.overuse_fee;
            r.per_unit = o.per_unit;
        }
    }
    c
}

/// Bring a subscription to its seller's copy content `copy` on `today`, its next
/// billing date being `next_bill_date`. Limits, terms, names take effect at once;
/// prices from the next billing date (the terms then are `copy` itself). `None` when
/// nothing changes from `today` on. Pending prices already in force (their first day
/// reached by both `today` and the next billing date) count as current.
pub fn sync_subscription(
    terms: &SubscriptionTerms,
    copy: &PlanContent,
    today: &str,
    next_bill_date: &str,
) -> Option<SubscriptionTerms> {
    let day = next_bill_date.min(today);
    let in_force = terms.for_period(day);
    let now = keep_prices(copy, in_force);
    let next = (now != *copy).then(|| (next_bill_date.max(today).to_string(), copy.clone()));
    let new = SubscriptionTerms { current: now, next };
    let old = SubscriptionTerms {
        current: in_force.clone(),
        next: terms.next.clone().filter(|(from, _)| from.as_str() > day),
    };
    (new != old).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::plan::Price;
    use crate::catalog::plan::fixtures::*;

    #[test]
    fn fees_flow_unless_prices_are_locked() {
        let copy = plan();
        let mut src = plan();
        src.periods[0].recurring.amount = Price::units(11);
        let o = SyncOptions {
            plan_fees: true,
            ..Default::default()
        };
        let s = sync_copy(&src, &copy, &o, &Restrictions::default());
        assert_eq!(s.content.periods[0].recurring.amount, Price::units(11));
        assert_eq!(s.changes.len(), 1);
        assert_eq!(s.changes[0].field, "periods[m1].recurring");
        let locked = sync_copy(
            &src,
            &copy,
            &o,
            &Restrictions {
                prices: true,
                ..Default::default()
            },
        );
        assert_eq!(locked.content, copy);
        assert_eq!(locked.blocked[0].restriction, Restriction::Prices);
    }

    #[test]
    fn options_not_picked_change_nothing() {
        let copy = plan();
        let mut src = plan();
        src.name = crate::catalog::text::Localized::new("en", "Renamed");
        src.published = false;
        src.rates[0].max = 50;
        let s = sync_copy(
            &src,
            &copy,
            &SyncOptions {
                plan_fees: true,
                ..Default::default()
            },
            &Restrictions::default(),
        );
        assert!(s.changes.is_empty());
        assert_eq!(s.content, copy);
    }

    #[test]
    fn new_period_on_locked_prices_withdraws() {
        let copy = plan();
        let mut src = plan();
        src.periods.push(period("q3", 3, 28));
        let o = SyncOptions {
            new_plans_periods: true,
            ..Default::default()
        };
        let s = sync_copy(
            &src,
            &copy,
            &o,
            &Restrictions {
                prices: true,
                ..Default::default()
            },
        );
        assert!(s.withdrawn);
        assert!(s.content.period("q3").unwrap().unconfirmed);
        let free = sync_copy(&src, &copy, &o, &Restrictions::default());
        assert!(!free.withdrawn && !free.content.period("q3").unwrap().unconfirmed);
        // A second identical sync changes nothing.
        let again = sync_copy(
            &src,
            &s.content,
            &o,
            &Restrictions {
                prices: true,
                ..Default::default()
            },
        );
        assert!(again.changes.is_empty() && !again.withdrawn);
    }

    fn node(id: i64, parent: i64, owner: i64, content: &PlanContent) -> CopyNode {
        CopyNode {
            plan_id: id,
            parent_plan_id: parent,
            owner_id: owner,
            version: 1,
            content: content.clone(),
            restrictions: Restrictions::default(),
            cascade_stop: false,
        }
    }

    #[test]
    fn scopes_and_cascade_stop() {
        let base = plan();
        let mut src = plan();
        src.name = crate::catalog::text::Localized::new("en", "New name");
        // source 1 → copies 2 (owner 20), 3 (owner 30); 2 → 4 (owner 40); 4 → 5 (owner 50)
        let mut nodes = vec![
            node(2, 1, 20, &base),
            node(3, 1, 30, &base),
            node(4, 2, 40, &base),
            node(5, 4, 50, &base),
        ];
        let o = SyncOptions {
            names_descriptions: true,
            ..Default::default()
        };
        let all = plan_sync(1, &src, &nodes, Scope::AllResellers, &o);
        assert_eq!(
            all.iter().map(|x| x.plan_id).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        assert!(all.iter().all(|x| x.changes.len() == 1));

        let one = plan_sync(1, &src, &nodes, Scope::OneLevel, &o);
        assert_eq!(
            one.iter().map(|x| x.plan_id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(
            one[0].upstream_pending,
            "2 has copies below that were not synced"
        );
        assert!(!one[1].upstream_pending, "3 has no copies below");

        let r = plan_sync(
            1,
            &src,
            &nodes,
            Scope::Reseller {
                account_id: 20,
                with_subtree: true,
            },
            &o,
        );
        assert_eq!(
            r.iter().map(|x| x.plan_id).collect::<Vec<_>>(),
            vec![2, 4, 5]
        );
        let r = plan_sync(
            1,
            &src,
            &nodes,
            Scope::Reseller {
                account_id: 20,
                with_subtree: false,
            },
            &o,
        );
        assert_eq!(r.iter().map(|x| x.plan_id).collect::<Vec<_>>(), vec![2]);

        nodes[2].cascade_stop = true; // copy 4's owner stops the cascade
        let stopped = plan_sync(1, &src, &nodes, Scope::AllResellers, &o);
        assert_eq!(
            stopped.iter().map(|x| x.plan_id).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn subscriptions_get_limits_now_and_prices_from_the_next_billing_date() {
        let sold = plan();
        let mut copy = plan();
        copy.periods[0].recurring.amount = Price::units(20);
        copy.rates[0].max = 5;
        let terms = SubscriptionTerms {
            current: sold.clone(),
            next: None,
        };
        let s = sync_subscription(&terms, &copy, "2025-01-10", "2025-02-01").unwrap();
        assert_eq!(s.current.rates[0].max, 5, "the lower limit applies now");
        assert_eq!(
            s.current.periods[0].recurring.amount,
            Price::units(10),
            "the current period keeps its price"
        );
        assert_eq!(s.next.as_ref().unwrap().0, "2025-02-01");
        assert_eq!(
            s.for_period("2025-01-01").periods[0].recurring.amount,
            Price::units(10)
        );
        assert_eq!(
            s.for_period("2025-02-01").periods[0].recurring.amount,
            Price::units(20)
        );
        // The same sync again changes nothing; a sync without price changes has no next.
        assert_eq!(
            sync_subscription(&s, &copy, "2025-01-11", "2025-02-01"),
            None
        );
        let mut limits_only = sold.clone();
        limits_only.rates[0].max = 7;
        let l = sync_subscription(&terms, &limits_only, "2025-01-10", "2025-02-01").unwrap();
        assert_eq!((l.current.rates[0].max, l.next), (7, None));
        // Pending prices in force by the day of a later sync are the current ones: the
        // same content again changes nothing; a newer price waits for the next date.
        assert_eq!(
            sync_subscription(&s, &copy, "2025-02-05", "2025-03-01"),
            None
        );
        let mut newer = copy.clone();
        newer.periods[0].recurring.amount = Price::units(30);
        let later = sync_subscription(&s, &newer, "2025-02-05", "2025-03-01").unwrap();
        assert_eq!(later.current, copy);
        assert_eq!(later.next, Some(("2025-03-01".to_string(), newer)));
    }

    #[test]
    fn cascade_stop_keeps_the_stopped_resellers_subscriptions() {
        let base = plan();
        let mut src = plan();
        src.rates[0].max = 3;
        let mut nodes = vec![node(2, 1, 20, &base), node(3, 2, 30, &base)];
        nodes[0].cascade_stop = true;
        let o = SyncOptions {
            resource_limits: true,
            subscriptions: true,
            ..Default::default()
        };
        let out = plan_sync(1, &src, &nodes, Scope::AllResellers, &o);
        assert_eq!(out.len(), 1, "nothing below the stop");
        assert_eq!(
            out[0].content.rates[0].max, 3,
            "the stopped reseller's copy is synced"
        );
        assert!(!out[0].reaches_subscriptions);
    }

    #[test]
    fn locked_middle_tier_keeps_its_prices_and_so_do_its_children() {
        let base = plan();
        let mut src = plan();
        src.periods[0].recurring.amount = Price::units(99);
        let mut nodes = vec![node(2, 1, 20, &base), node(3, 2, 30, &base)];
        nodes[0].restrictions.prices = true;
        let out = plan_sync(
            1,
            &src,
            &nodes,
            Scope::AllResellers,
            &SyncOptions {
                plan_fees: true,
                ..Default::default()
            },
        );
        assert_eq!(out[0].content.periods[0].recurring.amount, Price::units(10));
        assert_eq!(
            out[1].content.periods[0].recurring.amount,
            Price::units(10),
            "children sync from their parent's copy"
        );
    }
}
