//! Property tests for synchronization (`catalog::sync`), against an independent reference
//! model of domain.md §3 ("Delegation and synchronization").
//!
//! The reference model works on the JSON form of a plan's content with one small rule
//! table per level (plan, period, rate): *field → the options that update it → the
//! restriction that locks it*. It never calls `sync_copy`. The tree walk of the
//! reference is a plain recursion (parent first), separate from `plan_sync`'s queue.
//!
//! Restriction and option checks (properties 2 and 6) do not use that table: they read
//! the typed fields directly, so the table and the checks keep each other honest.

use cascade_domain::catalog::plan::{
    AfterRefundPeriod, BillingModel, BillingPeriodType, DisplayType, Fee, Period, PeriodUnit,
    PlanContent, Price, Rate, RecurringBasis, RefundRules,
};
use cascade_domain::catalog::sync::{
    Blocked, Change, CopyNode, CopyOutcome, Restriction, Restrictions, Scope, SyncOptions,
    plan_sync, sync_copy,
};
use cascade_domain::catalog::text::Localized;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

// ---------------------------------------------------------------------------------------
// The reference model: a per-field rule table.
// ---------------------------------------------------------------------------------------

/// The eight sync options of domain.md §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Names,
    PlanFees,
    NewPeriods,
    NewResources,
    ResourcePrices,
    ResourceLimits,
    Categories,
    Publication,
}

const ALL_OPTS: [Opt; 8] = [
    Opt::Names,
    Opt::PlanFees,
    Opt::NewPeriods,
    Opt::NewResources,
    Opt::ResourcePrices,
    Opt::ResourceLimits,
    Opt::Categories,
    Opt::Publication,
];

fn on(o: &SyncOptions, x: Opt) -> bool {
    match x {
        Opt::Names => o.names_descriptions,
        Opt::PlanFees => o.plan_fees,
        Opt::NewPeriods => o.new_plans_periods,
        Opt::NewResources => o.new_resources,
        Opt::ResourcePrices => o.resource_prices,
        Opt::ResourceLimits => o.resource_limits,
        Opt::Categories => o.categories,
        Opt::Publication => o.publication,
    }
}

fn locks(r: &Restrictions, l: Restriction) -> bool {
    match l {
        Restriction::Prices => r.prices,
        Restriction::Terms => r.terms,
        Restriction::PlanCategories => r.plan_categories,
        Restriction::ResourceCategories => r.resource_categories,
        Restriction::SalesCategories => r.sales_categories,
        Restriction::Publication => r.publication,
    }
}

/// One line of the table: the JSON key of a field, the options that update it (any one
/// suffices), and the restriction that stops a sync from changing it.
struct Rule {
    key: &'static str,
    opts: &'static [Opt],
    lock: Option<Restriction>,
}

const fn rule(key: &'static str, opts: &'static [Opt], lock: Option<Restriction>) -> Rule {
    Rule { key, opts, lock }
}

use Opt::*;
use Restriction as L;

/// Plan-level fields.
const PLAN_RULES: &[Rule] = &[
    rule("name", &[Names], None),
    rule("short_description", &[Names], None),
    rule("long_description", &[Names], None),
    rule("terms", &[Names], Some(L::Terms)),
    rule(
        "recurring_basis",
        &[PlanFees, ResourcePrices, ResourceLimits],
        Some(L::Prices),
    ),
    rule("plan_category", &[Categories], Some(L::PlanCategories)),
    rule("unique_group", &[Categories], Some(L::PlanCategories)),
    rule("sales_categories", &[Categories], Some(L::SalesCategories)),
    rule("published", &[Opt::Publication], Some(L::Publication)),
    rule("visible", &[Opt::Publication], Some(L::Publication)),
    rule(
        "listing_priority",
        &[Opt::Publication],
        Some(L::Publication),
    ),
];

/// Fields of a period present on both the original and the copy (matched by uid).
const PERIOD_RULES: &[Rule] = &[
    rule("setup", &[PlanFees], Some(L::Prices)),
    rule("recurring", &[PlanFees], Some(L::Prices)),
    rule("renewal", &[PlanFees], Some(L::Prices)),
    rule("transfer", &[PlanFees], Some(L::Prices)),
    rule("cancellation", &[PlanFees], Some(L::Prices)),
    rule("sort", &[PlanFees], Some(L::Prices)),
    rule("refund", &[PlanFees], Some(L::Terms)),
    rule("active", &[NewPeriods], None),
];

/// Fields of a resource rate present on both the original and the copy.
const RATE_RULES: &[Rule] = &[
    rule("setup_fee", &[ResourcePrices], Some(L::Prices)),
    rule("recurring_fee", &[ResourcePrices], Some(L::Prices)),
    rule("overuse_fee", &[ResourcePrices], Some(L::Prices)),
    rule("per_unit", &[ResourcePrices], Some(L::Prices)),
    rule("included", &[ResourceLimits], None),
    rule("min", &[ResourceLimits], None),
    rule("max", &[ResourceLimits], None),
    rule("measurable", &[ResourceLimits], None),
    rule("display", &[ResourceLimits], None),
    rule(
        "resource_category_id",
        &[Categories],
        Some(L::ResourceCategories),
    ),
];

fn to_json(c: &PlanContent) -> Value {
    serde_json::to_value(c).expect("plan content serializes")
}

fn from_json(v: Value) -> PlanContent {
    serde_json::from_value(v).expect("plan content deserializes")
}

fn uid_of(v: &Value) -> String {
    v["uid"].as_str().expect("item has a uid").to_string()
}

fn items<'a>(v: &'a Value, list: &str) -> &'a [Value] {
    v[list].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn find<'a>(v: &'a Value, list: &str, uid: &str) -> Option<&'a Value> {
    items(v, list).iter().find(|x| uid_of(x) == uid)
}

/// What the reference model says one copy becomes.
#[derive(Debug)]
struct Expected {
    content: PlanContent,
    /// Field paths a restriction kept unchanged, with the restriction (as `Debug`).
    blocked: BTreeSet<(String, String)>,
    /// Paths (`periods[uid]`, `rates[uid]`) of the items the sync added.
    added: BTreeSet<String>,
    /// A period or rate was added while the owner's prices are locked.
    withdrawn: bool,
}

/// Apply one rule: when the option is picked and the values differ, copy the original's
/// value unless the owner locked the field.
fn apply_rule(
    rule: &Rule,
    dst: &mut Value,
    src: &Value,
    path: String,
    o: &SyncOptions,
    r: &Restrictions,
    blocked: &mut BTreeSet<(String, String)>,
) {
    if !rule.opts.iter().any(|x| on(o, *x)) || dst[rule.key] == src[rule.key] {
        return;
    }
    match rule.lock.filter(|l| locks(r, *l)) {
        Some(l) => {
            blocked.insert((path, format!("{l:?}")));
        }
        None => dst[rule.key] = src[rule.key].clone(),
    }
}

/// The reference model: the copy after a sync from `src` (its parent's content).
fn reference(src: &PlanContent, copy: &PlanContent, o: &SyncOptions, r: &Restrictions) -> Expected {
    let s = to_json(src);
    let mut c = to_json(copy);
    let mut blocked = BTreeSet::new();
    let mut added = BTreeSet::new();
    let mut added_unconfirmed = false;
    for rule in PLAN_RULES {
        apply_rule(rule, &mut c, &s, rule.key.to_string(), o, r, &mut blocked);
    }
    for (list, rules, new_opt) in [
        ("periods", PERIOD_RULES, NewPeriods),
        ("rates", RATE_RULES, NewResources),
    ] {
        let mut out: Vec<Value> = Vec::new();
        // Existing items keep their place; matching ones take the picked fields.
        for item in items(&c, list) {
            let mut item = item.clone();
            let uid = uid_of(&item);
            if let Some(si) = find(&s, list, &uid) {
                for rule in rules {
                    apply_rule(
                        rule,
                        &mut item,
                        si,
                        format!("{list}[{uid}].{}", rule.key),
                        o,
                        r,
                        &mut blocked,
                    );
                }
            }
            out.push(item);
        }
        // Items only the original has are appended in the original's order, flagged
        // unconfirmed when the owner's prices are locked or the original's own price is
        // still unconfirmed (nobody chose it).
        if on(o, new_opt) {
            for si in items(&s, list) {
                let uid = uid_of(si);
                if find(&c, list, &uid).is_none() {
                    let mut n = si.clone();
                    let unconfirmed = r.prices || si.get("unconfirmed") == Some(&json!(true));
                    n["unconfirmed"] = json!(unconfirmed);
                    out.push(n);
                    added.insert(format!("{list}[{uid}]"));
                    added_unconfirmed |= unconfirmed;
                }
            }
        }
        c[list] = Value::Array(out);
    }
    let withdrawn = added_unconfirmed;
    Expected {
        content: from_json(c),
        blocked,
        added,
        withdrawn,
    }
}

// ---------------------------------------------------------------------------------------
// An independent diff of two contents, in the field names of `Change`.
// ---------------------------------------------------------------------------------------

/// Items serialize `unconfirmed` only when true: make it explicit so that values compare.
fn norm(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut()
        && m.contains_key("uid")
        && !m.contains_key("unconfirmed")
    {
        m.insert("unconfirmed".into(), json!(false));
    }
    v
}

/// Every field that differs between `a` and `b`: path → (value in a, value in b).
/// Items are matched by uid; an item only in `b` is `list[uid]` from null.
fn diff(a: &PlanContent, b: &PlanContent) -> BTreeMap<String, (Value, Value)> {
    let (a, b) = (to_json(a), to_json(b));
    let mut d = BTreeMap::new();
    let (ao, bo) = (
        a.as_object().expect("object"),
        b.as_object().expect("object"),
    );
    let keys: BTreeSet<&String> = ao.keys().chain(bo.keys()).collect();
    for k in keys {
        if k == "periods" || k == "rates" {
            continue;
        }
        let (x, y) = (
            ao.get(k).cloned().unwrap_or(Value::Null),
            bo.get(k).cloned().unwrap_or(Value::Null),
        );
        if x != y {
            d.insert(k.clone(), (x, y));
        }
    }
    for list in ["periods", "rates"] {
        for x in items(&a, list) {
            let uid = uid_of(x);
            let x = norm(x);
            match find(&b, list, &uid).map(norm) {
                None => {
                    d.insert(format!("{list}[{uid}]"), (x, Value::Null));
                }
                Some(y) => {
                    let (xo, yo) = (
                        x.as_object().expect("object"),
                        y.as_object().expect("object"),
                    );
                    let keys: BTreeSet<&String> = xo.keys().chain(yo.keys()).collect();
                    for k in keys {
                        let (p, q) = (
                            xo.get(k).cloned().unwrap_or(Value::Null),
                            yo.get(k).cloned().unwrap_or(Value::Null),
                        );
                        if p != q {
                            d.insert(format!("{list}[{uid}].{k}"), (p, q));
                        }
                    }
                }
            }
        }
        for y in items(&b, list) {
            let uid = uid_of(y);
            if find(&a, list, &uid).is_none() {
                d.insert(format!("{list}[{uid}]"), (Value::Null, norm(y)));
            }
        }
    }
    d
}

/// Property 7 for one copy: the changes are exactly the differing fields, with their
/// values, each once; existing items keep their order (new ones are appended).
fn check_preview_exact(
    input: &PlanContent,
    output: &PlanContent,
    changes: &[Change],
) -> Result<(), TestCaseError> {
    let mut got = BTreeMap::new();
    for ch in changes {
        let prev = got.insert(ch.field.clone(), (norm(&ch.from), norm(&ch.to)));
        prop_assert!(
            prev.is_none(),
            "field {} reported twice in {:?}",
            ch.field,
            changes
        );
    }
    let want = diff(input, output);
    let got_keys: BTreeSet<_> = got.keys().collect();
    let want_keys: BTreeSet<_> = want.keys().collect();
    prop_assert_eq!(
        got_keys,
        want_keys,
        "reported changes vs fields that really differ"
    );
    for (k, v) in &want {
        prop_assert_eq!(&got[k], v, "from/to of change {}", k);
    }
    for (pi, po) in [
        (
            uids(&input.periods, |p| &p.uid),
            uids(&output.periods, |p| &p.uid),
        ),
        (
            uids(&input.rates, |r| &r.uid),
            uids(&output.rates, |r| &r.uid),
        ),
    ] {
        prop_assert!(
            po.starts_with(&pi),
            "existing items keep their order: {:?} → {:?}",
            pi,
            po
        );
    }
    Ok(())
}

fn uids<T>(v: &[T], f: impl Fn(&T) -> &String) -> Vec<String> {
    v.iter().map(|x| f(x).clone()).collect()
}

// ---------------------------------------------------------------------------------------
// Typed views for properties 2 and 6 (independent of the rule table).
// ---------------------------------------------------------------------------------------

/// The values a restriction protects, on the items `base` has (items a sync adds are new,
/// not changed). Read straight from the typed fields.
fn locked_view(c: &PlanContent, l: Restriction, base: &PlanContent) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let periods = base.periods.iter().filter_map(|p| c.period(&p.uid));
    let rates = base.rates.iter().filter_map(|r| c.rate(&r.uid));
    match l {
        Restriction::Prices => {
            v.push(format!("{:?}", c.recurring_basis));
            for p in periods {
                v.push(format!(
                    "{} {:?} {:?} {:?} {:?} {:?} {}",
                    p.uid, p.setup, p.recurring, p.renewal, p.transfer, p.cancellation, p.sort
                ));
            }
            for r in rates {
                v.push(format!(
                    "{} {:?} {:?} {:?} {}",
                    r.uid, r.setup_fee, r.recurring_fee, r.overuse_fee, r.per_unit
                ));
            }
        }
        Restriction::Terms => {
            v.push(format!("{:?}", c.terms));
            for p in periods {
                v.push(format!("{} {:?}", p.uid, p.refund));
            }
        }
        Restriction::PlanCategories => {
            v.push(format!("{:?} {:?}", c.plan_category, c.unique_group))
        }
        Restriction::ResourceCategories => {
            for r in rates {
                v.push(format!("{} {:?}", r.uid, r.resource_category_id));
            }
        }
        Restriction::SalesCategories => v.push(format!("{:?}", c.sales_categories)),
        Restriction::Publication => v.push(format!(
            "{} {} {}",
            c.published, c.visible, c.listing_priority
        )),
    }
    v
}

const ALL_LOCKS: [Restriction; 6] = [
    Restriction::Prices,
    Restriction::Terms,
    Restriction::PlanCategories,
    Restriction::ResourceCategories,
    Restriction::SalesCategories,
    Restriction::Publication,
];

/// Property 2 for one copy.
fn check_locks_hold(
    input: &PlanContent,
    output: &PlanContent,
    r: &Restrictions,
) -> Result<(), TestCaseError> {
    for l in ALL_LOCKS {
        if locks(r, l) {
            prop_assert_eq!(
                locked_view(output, l, input),
                locked_view(input, l, input),
                "{:?} is locked but changed",
                l
            );
        }
    }
    Ok(())
}

/// The fields only option `x` updates (the recurring basis, shared by three options, is
/// checked separately), on the items `base` has.
fn option_view(c: &PlanContent, x: Opt, base: &PlanContent) -> Vec<String> {
    let periods = || base.periods.iter().filter_map(|p| c.period(&p.uid));
    let rates = || base.rates.iter().filter_map(|r| c.rate(&r.uid));
    match x {
        Names => vec![format!(
            "{:?} {:?} {:?} {:?}",
            c.name, c.short_description, c.long_description, c.terms
        )],
        PlanFees => periods()
            .map(|p| {
                format!(
                    "{} {:?} {:?} {:?} {:?} {:?} {:?} {}",
                    p.uid,
                    p.setup,
                    p.recurring,
                    p.renewal,
                    p.transfer,
                    p.cancellation,
                    p.refund,
                    p.sort
                )
            })
            .collect(),
        NewPeriods => {
            let mut v = uids(&c.periods, |p| &p.uid);
            v.extend(periods().map(|p| format!("{} active={}", p.uid, p.active)));
            v
        }
        NewResources => uids(&c.rates, |r| &r.uid),
        ResourcePrices => rates()
            .map(|r| {
                format!(
                    "{} {:?} {:?} {:?} {}",
                    r.uid, r.setup_fee, r.recurring_fee, r.overuse_fee, r.per_unit
                )
            })
            .collect(),
        ResourceLimits => rates()
            .map(|r| {
                format!(
                    "{} {} {} {} {} {:?}",
                    r.uid, r.included, r.min, r.max, r.measurable, r.display
                )
            })
            .collect(),
        Categories => {
            let mut v = vec![format!(
                "{:?} {:?} {:?}",
                c.plan_category, c.unique_group, c.sales_categories
            )];
            v.extend(rates().map(|r| format!("{} {:?}", r.uid, r.resource_category_id)));
            v
        }
        Opt::Publication => vec![format!(
            "{} {} {}",
            c.published, c.visible, c.listing_priority
        )],
    }
}

/// What no option updates: the structure, the display flags, and whether an existing
/// item awaits price confirmation.
fn frozen_view(c: &PlanContent, base: &PlanContent) -> Vec<String> {
    let mut v = vec![format!(
        "{:?} {:?} {:?} {:?}",
        c.billing_model, c.period_type, c.order_attributes, c.service_parameters
    )];
    for p in base.periods.iter().filter_map(|p| c.period(&p.uid)) {
        v.push(format!(
            "{} {} {:?} {} {}",
            p.uid, p.duration, p.unit, p.trial, p.unconfirmed
        ));
    }
    for r in base.rates.iter().filter_map(|r| c.rate(&r.uid)) {
        v.push(format!(
            "{} {} {} {} {}",
            r.uid, r.resource_type_id, r.show_in_store, r.show_in_panel, r.unconfirmed
        ));
    }
    v
}

/// Property 6 for one copy.
fn check_unpicked_options_hold(
    input: &PlanContent,
    output: &PlanContent,
    o: &SyncOptions,
) -> Result<(), TestCaseError> {
    for x in ALL_OPTS {
        if !on(o, x) {
            prop_assert_eq!(
                option_view(output, x, input),
                option_view(input, x, input),
                "option {:?} not picked but its fields changed",
                x
            );
        }
    }
    if !(o.plan_fees || o.resource_prices || o.resource_limits) {
        prop_assert_eq!(
            output.recurring_basis,
            input.recurring_basis,
            "recurring basis changed with no fee/limit option"
        );
    }
    prop_assert_eq!(
        frozen_view(output, input),
        frozen_view(input, input),
        "a field no option updates changed"
    );
    if !o.any() {
        prop_assert_eq!(output, input, "no option picked, yet the copy changed");
    }
    Ok(())
}

/// Property 5 for one copy: the items added are the reference's, each unconfirmed
/// exactly when the owner's prices are locked, and `withdrawn` is true exactly when
/// something was added to a copy whose prices are locked.
fn check_withdrawn(
    input: &PlanContent,
    output: &PlanContent,
    r: &Restrictions,
    withdrawn: bool,
    want: &Expected,
) -> Result<(), TestCaseError> {
    let new_periods: Vec<&Period> = output
        .periods
        .iter()
        .filter(|p| input.period(&p.uid).is_none())
        .collect();
    let new_rates: Vec<&Rate> = output
        .rates
        .iter()
        .filter(|x| input.rate(&x.uid).is_none())
        .collect();
    let added: BTreeSet<String> = new_periods
        .iter()
        .map(|p| format!("periods[{}]", p.uid))
        .chain(new_rates.iter().map(|x| format!("rates[{}]", x.uid)))
        .collect();
    prop_assert_eq!(&added, &want.added, "added items");
    for p in &new_periods {
        prop_assert!(
            p.unconfirmed || !r.prices,
            "added period {} under locked prices must be unconfirmed",
            &p.uid
        );
    }
    for x in &new_rates {
        prop_assert!(
            x.unconfirmed || !r.prices,
            "added rate {} under locked prices must be unconfirmed",
            &x.uid
        );
    }
    let any_unconfirmed =
        new_periods.iter().any(|p| p.unconfirmed) || new_rates.iter().any(|x| x.unconfirmed);
    prop_assert_eq!(want.withdrawn, any_unconfirmed);
    prop_assert_eq!(
        withdrawn,
        want.withdrawn,
        "withdrawn must be true exactly when a period/rate was added to a copy with locked prices \
         (added: {:?}, prices locked: {}, the copy already had unconfirmed prices: {})",
        added,
        r.prices,
        input.has_unconfirmed_prices()
    );
    Ok(())
}

/// Blocked entries: exactly the picked, locked fields where the original differs.
fn check_blocked(
    blocked: &[Blocked],
    want: &BTreeSet<(String, String)>,
) -> Result<(), TestCaseError> {
    let got: BTreeSet<(String, String)> = blocked
        .iter()
        .map(|b| (b.field.clone(), format!("{:?}", b.restriction)))
        .collect();
    prop_assert_eq!(
        got.len(),
        blocked.len(),
        "a blocked field reported twice: {:?}",
        blocked
    );
    prop_assert_eq!(&got, want, "blocked changes");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Generators.
//
// Contents are decoded from random bytes, each byte picking from a small pool (so that
// originals and copies often agree and often differ): far cheaper than a strategy per
// field, and a byte shrinks towards 0, which decodes to the first (plainest) choice and
// to "no" for every chance.
// ---------------------------------------------------------------------------------------

/// Period uids with their fixed structure (duration, unit, trial): the same uid means
/// the same period on the original and every copy.
const PERIODS: [(&str, u32, PeriodUnit, bool); 4] = [
    ("m1", 1, PeriodUnit::Month, false),
    ("m3", 3, PeriodUnit::Month, false),
    ("y1", 1, PeriodUnit::Year, false),
    ("trial", 14, PeriodUnit::Day, true),
];
/// Rate uids with their resource type.
const RATES: [(&str, i64); 4] = [("seats", 1), ("storage", 2), ("mail", 3), ("cpu", 4)];

/// Bytes to decode; past the end every byte is 0.
struct Dice<'a> {
    bytes: &'a [u8],
    next: usize,
}

impl<'a> Dice<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, next: 0 }
    }
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        b
    }
    fn pick<T: Clone>(&mut self, pool: &[T]) -> T {
        pool[usize::from(self.byte()) % pool.len()].clone()
    }
    /// True with about `percent` % probability; false for byte 0.
    fn chance(&mut self, percent: u32) -> bool {
        u32::from(255 - self.byte()) * 100 < percent * 256
    }
    fn maybe<T>(&mut self, percent: u32, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.chance(percent) {
            Some(f(self))
        } else {
            None
        }
    }
    /// A permutation of `v` (identity for zero bytes).
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let back = usize::from(self.byte()) % (i + 1);
            v.swap(i, i - back);
        }
    }

    fn text(&mut self) -> Localized {
        match self.byte() % 4 {
            0 => Localized::new("en", "Office"),
            1 => Localized::new("en", "Office Pro"),
            2 => Localized::new("en", "Office").with("fr", "Bureau"),
            _ => Localized::new("en", "Mail").with("fr", "Courrier"),
        }
    }
    fn price(&mut self) -> Price {
        Price(self.pick(&[1_000_000, 0, 500_000, 10_000_000]))
    }
    fn fee(&mut self) -> Fee {
        Fee {
            amount: self.price(),
            description: self.maybe(20, Self::text),
            show_zero: self.chance(20),
        }
    }
    fn code(&mut self) -> String {
        self.pick(&["office", "mail", "hosting"]).to_string()
    }

    fn period(&mut self, i: usize) -> Period {
        let (uid, duration, unit, trial) = PERIODS[i];
        Period {
            uid: uid.into(),
            duration,
            unit,
            trial,
            active: !self.chance(20),
            setup: self.fee(),
            recurring: self.fee(),
            renewal: self.fee(),
            transfer: self.fee(),
            cancellation: self.fee(),
            refund: RefundRules {
                full_refund_days: self.pick(&[30, 0]),
                non_refundable: Price(self.pick(&[0, 1_000_000])),
                after: self.pick(&[AfterRefundPeriod::Prorated, AfterRefundPeriod::NoRefund]),
            },
            sort: self.pick(&[0, 1]),
            unconfirmed: self.chance(10),
        }
    }

    fn rate(&mut self, i: usize) -> Rate {
        let (uid, resource_type_id) = RATES[i];
        Rate {
            uid: uid.into(),
            resource_type_id,
            resource_category_id: self.pick(&[None, Some(1), Some(2)]),
            included: self.pick(&[1, 0, 5]),
            min: self.pick(&[0, 1]),
            max: self.pick(&[100, -1]),
            setup_fee: self.price(),
            recurring_fee: self.price(),
            overuse_fee: self.price(),
            per_unit: self.pick(&[true, false]),
            measurable: self.pick(&[false, true]),
            show_in_store: !self.chance(20),
            show_in_panel: !self.chance(20),
            display: self.pick(&[
                DisplayType::Spinner,
                DisplayType::Slider {
                    min: 1,
                    max: 100,
                    step: 1,
                },
                DisplayType::Slider {
                    min: 0,
                    max: 50,
                    step: 5,
                },
            ]),
            unconfirmed: self.chance(10),
        }
    }

    /// A content with every pool period and rate, in pool order.
    fn full_content(&mut self) -> PlanContent {
        PlanContent {
            name: self.text(),
            short_description: self.maybe(70, Self::text),
            long_description: self.maybe(30, Self::text),
            terms: self.maybe(30, Self::text),
            plan_category: self.maybe(70, Self::code),
            sales_categories: (0..self.byte() % 3).map(|_| self.code()).collect(),
            unique_group: self.maybe(30, Self::code),
            published: !self.chance(30),
            visible: !self.chance(30),
            listing_priority: self.pick(&[0, 1, 2]),
            billing_model: BillingModel::ChargeBeforeBillingPeriod,
            period_type: BillingPeriodType::MonthlyOnStatementDay,
            recurring_basis: self.pick(&[
                RecurringBasis::BillingPeriod,
                RecurringBasis::SubscriptionPeriod,
            ]),
            periods: (0..PERIODS.len()).map(|i| self.period(i)).collect(),
            rates: (0..RATES.len()).map(|i| self.rate(i)).collect(),
            order_attributes: vec![],
            service_parameters: vec![],
        }
    }

    /// An original: some of the pool's periods (at least one) and rates, in any order.
    fn source(&mut self) -> PlanContent {
        let mut c = self.full_content();
        c.periods.retain(|_| !self.chance(30));
        if c.periods.is_empty() {
            c.periods.push(self.period(0));
        }
        c.rates.retain(|_| !self.chance(30));
        self.shuffle(&mut c.periods);
        self.shuffle(&mut c.rates);
        c
    }
}

/// Enough bytes for one content and its edits (`derive` reads at most about 260).
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 264)
}

/// Plan fields a copy's owner may edit (or the original changed since the copy was made).
const PLAN_EDITABLE: &[&str] = &[
    "name",
    "short_description",
    "long_description",
    "terms",
    "plan_category",
    "sales_categories",
    "unique_group",
    "published",
    "visible",
    "listing_priority",
    "recurring_basis",
];
const PERIOD_EDITABLE: &[&str] = &[
    "active",
    "setup",
    "recurring",
    "renewal",
    "transfer",
    "cancellation",
    "refund",
    "sort",
    "unconfirmed",
];
const RATE_EDITABLE: &[&str] = &[
    "resource_category_id",
    "included",
    "min",
    "max",
    "setup_fee",
    "recurring_fee",
    "overuse_fee",
    "per_unit",
    "measurable",
    "show_in_store",
    "show_in_panel",
    "display",
    "unconfirmed",
];

fn take_key(dst: &mut Value, src: &Value, key: &str) {
    match src.get(key) {
        Some(v) => dst[key] = v.clone(),
        None => {
            dst.as_object_mut().expect("object").remove(key);
        }
    }
}

/// A copy made from `parent` and then edited: each editable field takes the value of
/// a random full content `alt` with some probability; some of the parent's items are
/// missing (the parent added them later) and some of `alt`'s items are present (the
/// parent removed them since).
fn derive(parent: &PlanContent, d: &mut Dice) -> PlanContent {
    let alt = d.full_content();
    let (p, a) = (to_json(parent), to_json(&alt));
    let mut out = p.clone();
    for k in PLAN_EDITABLE {
        if d.chance(35) {
            take_key(&mut out, &a, k);
        }
    }
    for (list, editable) in [("periods", PERIOD_EDITABLE), ("rates", RATE_EDITABLE)] {
        let mut v = Vec::new();
        for item in items(&p, list) {
            if d.chance(20) {
                continue; // added to the parent after this copy was made
            }
            let mut item = item.clone();
            let alt_item = find(&a, list, &uid_of(&item)).expect("alt has every uid");
            for k in editable {
                if d.chance(25) {
                    take_key(&mut item, alt_item, k);
                }
            }
            v.push(item);
        }
        for item in items(&a, list) {
            if find(&p, list, &uid_of(item)).is_none() && d.chance(12) {
                v.push(item.clone()); // removed from the parent since
            }
        }
        out[list] = Value::Array(v);
    }
    from_json(out)
}

fn options() -> impl Strategy<Value = SyncOptions> {
    any::<[bool; 8]>().prop_map(|b| SyncOptions {
        names_descriptions: b[0],
        plan_fees: b[1],
        new_plans_periods: b[2],
        new_resources: b[3],
        resource_prices: b[4],
        resource_limits: b[5],
        categories: b[6],
        publication: b[7],
        subscriptions: false,
    })
}

fn restrictions() -> impl Strategy<Value = Restrictions> {
    prop::array::uniform6(prop::bool::weighted(0.3)).prop_map(|b| Restrictions {
        prices: b[0],
        terms: b[1],
        plan_categories: b[2],
        resource_categories: b[3],
        sales_categories: b[4],
        publication: b[5],
    })
}

/// One copy synced on its own.
#[derive(Clone)]
struct One {
    source: PlanContent,
    copy: PlanContent,
    o: SyncOptions,
    r: Restrictions,
}

fn one() -> impl Strategy<Value = One> {
    (bytes(), bytes(), options(), restrictions()).prop_map(|(a, b, o, r)| {
        let source = Dice::new(&a).source();
        let copy = derive(&source, &mut Dice::new(&b));
        One { source, copy, o, r }
    })
}

#[derive(Debug, Clone)]
struct NodeSeed {
    parent: Index,
    restrictions: Restrictions,
    cascade_stop: bool,
    version: i64,
    bytes: Vec<u8>,
}

fn node_seed() -> impl Strategy<Value = NodeSeed> {
    (
        any::<Index>(),
        restrictions(),
        prop::bool::weighted(0.25),
        1..5i64,
        bytes(),
    )
        .prop_map(
            |(parent, restrictions, cascade_stop, version, bytes)| NodeSeed {
                parent,
                restrictions,
                cascade_stop,
                version,
                bytes,
            },
        )
}

/// Counter-examples print each content as one line of JSON.
fn compact(c: &PlanContent) -> String {
    serde_json::to_string(c).expect("plan content serializes")
}

impl std::fmt::Debug for One {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "\n  options: {:?}\n  restrictions: {:?}", self.o, self.r)?;
        writeln!(f, "  source: {}", compact(&self.source))?;
        write!(f, "  copy:   {}", compact(&self.copy))
    }
}

const SOURCE_ID: i64 = 1;
const MAX_DEPTH: u32 = 4;
const MAX_FANOUT: usize = 3;

/// A sync of a plan over its delegation tree.
#[derive(Clone)]
struct Case {
    source: PlanContent,
    copies: Vec<CopyNode>,
    scope: Scope,
    o: SyncOptions,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "\n  scope: {:?}\n  options: {:?}", self.scope, self.o)?;
        writeln!(f, "  source (plan {SOURCE_ID}): {}", compact(&self.source))?;
        for c in &self.copies {
            writeln!(
                f,
                "  copy {} (parent {}, owner {}, version {}, cascade_stop: {}, {:?}): {}",
                c.plan_id,
                c.parent_plan_id,
                c.owner_id,
                c.version,
                c.cascade_stop,
                c.restrictions,
                compact(&c.content)
            )?;
        }
        Ok(())
    }
}

fn case_with(opts: BoxedStrategy<SyncOptions>) -> impl Strategy<Value = Case> {
    (
        bytes(),
        prop::collection::vec(node_seed(), 0..10),
        prop::collection::vec(node_seed(), 0..3),
        (0..4u8, any::<Index>(), any::<bool>()),
        opts,
        (any::<Index>(), any::<bool>()),
    )
        .prop_map(
            |(source, seeds, strays, (scope_kind, who, with_subtree), o, (rot, rev))| {
                let source = Dice::new(&source).source();
                let mut copies: Vec<CopyNode> = Vec::new();
                let mut depth: HashMap<i64, u32> = HashMap::from([(SOURCE_ID, 0)]);
                let mut kids: HashMap<i64, usize> = HashMap::new();
                for (i, s) in seeds.iter().enumerate() {
                    let cands: Vec<i64> = std::iter::once(SOURCE_ID)
                        .chain(copies.iter().map(|c| c.plan_id))
                        .filter(|id| {
                            depth[id] < MAX_DEPTH && kids.get(id).copied().unwrap_or(0) < MAX_FANOUT
                        })
                        .collect();
                    let parent = cands[s.parent.index(cands.len())];
                    let parent_content = if parent == SOURCE_ID {
                        &source
                    } else {
                        &copies
                            .iter()
                            .find(|c| c.plan_id == parent)
                            .expect("parent")
                            .content
                    };
                    let content = derive(parent_content, &mut Dice::new(&s.bytes));
                    // Ids out of creation order, so that walk order is not creation order.
                    let plan_id = 10 + (i as i64 * 7) % 13;
                    depth.insert(plan_id, depth[&parent] + 1);
                    *kids.entry(parent).or_default() += 1;
                    copies.push(CopyNode {
                        plan_id,
                        parent_plan_id: parent,
                        owner_id: 1000 + plan_id,
                        version: s.version,
                        content,
                        restrictions: s.restrictions,
                        cascade_stop: s.cascade_stop,
                    });
                }
                // Copies of another plan: never reached.
                for (i, s) in strays.iter().enumerate() {
                    let plan_id = 500 + i as i64;
                    copies.push(CopyNode {
                        plan_id,
                        parent_plan_id: if i == 0 { 999 } else { plan_id - 1 },
                        owner_id: 1000 + plan_id,
                        version: s.version,
                        content: derive(&source, &mut Dice::new(&s.bytes)),
                        restrictions: s.restrictions,
                        cascade_stop: s.cascade_stop,
                    });
                }
                let scope = match scope_kind {
                    0 => Scope::AllResellers,
                    1 => Scope::OneLevel,
                    _ => {
                        // Mostly a direct reseller; sometimes a deeper one, a stray or nobody.
                        let mut accounts: Vec<i64> = copies
                            .iter()
                            .filter(|c| c.parent_plan_id == SOURCE_ID)
                            .map(|c| c.owner_id)
                            .collect();
                        accounts.extend(accounts.clone());
                        accounts.extend(copies.iter().map(|c| c.owner_id));
                        accounts.push(4242);
                        Scope::Reseller {
                            account_id: accounts[who.index(accounts.len())],
                            with_subtree,
                        }
                    }
                };
                if !copies.is_empty() {
                    let n = rot.index(copies.len());
                    copies.rotate_left(n);
                }
                if rev {
                    copies.reverse();
                }
                Case {
                    source,
                    copies,
                    scope,
                    o,
                }
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    case_with(options().boxed())
}

// ---------------------------------------------------------------------------------------
// The reference walk of the tree.
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct ExpectedNode {
    level: u32,
    parent_plan_id: i64,
    e: Expected,
    upstream_pending: bool,
}

/// Parent first, by plain recursion: which copies the sync reaches and what each becomes.
fn reference_tree(case: &Case) -> BTreeMap<i64, ExpectedNode> {
    let mut out = BTreeMap::new();
    walk(case, SOURCE_ID, &case.source, 1, &mut out);
    out
}

fn walk(
    case: &Case,
    parent_id: i64,
    parent_content: &PlanContent,
    level: u32,
    out: &mut BTreeMap<i64, ExpectedNode>,
) {
    for n in case.copies.iter().filter(|c| c.parent_plan_id == parent_id) {
        let in_scope = level > 1
            || match case.scope {
                Scope::AllResellers | Scope::OneLevel => true,
                Scope::Reseller { account_id, .. } => n.owner_id == account_id,
            };
        if !in_scope {
            continue;
        }
        let e = reference(parent_content, &n.content, &case.o, &n.restrictions);
        let scope_descends = match case.scope {
            Scope::AllResellers => true,
            Scope::OneLevel => false,
            Scope::Reseller { with_subtree, .. } => with_subtree,
        };
        let descends = scope_descends && !n.cascade_stop;
        let has_kids = case.copies.iter().any(|c| c.parent_plan_id == n.plan_id);
        let upstream_pending = !descends && has_kids && e.content != n.content;
        if descends {
            walk(case, n.plan_id, &e.content, level + 1, out);
        }
        out.insert(
            n.plan_id,
            ExpectedNode {
                level,
                parent_plan_id: parent_id,
                e,
                upstream_pending,
            },
        );
    }
}

fn node(case: &Case, id: i64) -> &CopyNode {
    case.copies
        .iter()
        .find(|c| c.plan_id == id)
        .expect("outcome for a known copy")
}

fn run(case: &Case) -> Vec<CopyOutcome> {
    plan_sync(SOURCE_ID, &case.source, &case.copies, case.scope, &case.o)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Keep a failing run short, and write no regression file next to the test.
        max_shrink_iters: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Properties of one copy (`sync_copy`): small counter-examples.
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// 1 (one copy). The copy equals the reference model; blocked = picked, locked, differing.
    #[test]
    fn copy_matches_reference(c in one()) {
        let got = sync_copy(&c.source, &c.copy, &c.o, &c.r);
        let want = reference(&c.source, &c.copy, &c.o, &c.r);
        prop_assert_eq!(&got.content, &want.content);
        check_blocked(&got.blocked, &want.blocked)?;
    }

    /// 2 (one copy). A locked field never changes.
    #[test]
    fn copy_locked_fields_hold(c in one()) {
        let got = sync_copy(&c.source, &c.copy, &c.o, &c.r);
        check_locks_hold(&c.copy, &got.content, &c.r)?;
    }

    /// 4 (one copy). Syncing the synced copy again changes nothing and withdraws nothing.
    #[test]
    fn copy_sync_is_idempotent(c in one()) {
        let first = sync_copy(&c.source, &c.copy, &c.o, &c.r);
        let again = sync_copy(&c.source, &first.content, &c.o, &c.r);
        prop_assert!(again.changes.is_empty(), "second sync changed {:?}", again.changes);
        prop_assert!(!again.withdrawn);
        prop_assert_eq!(&again.content, &first.content);
    }

    /// 5 (one copy). Withdrawn exactly when an item was added under locked prices.
    #[test]
    fn copy_withdrawn_exactly_when_added_under_locked_prices(c in one()) {
        let got = sync_copy(&c.source, &c.copy, &c.o, &c.r);
        let want = reference(&c.source, &c.copy, &c.o, &c.r);
        check_withdrawn(&c.copy, &got.content, &c.r, got.withdrawn, &want)?;
    }

    /// 6 (one copy). Options not picked leave their fields alone.
    #[test]
    fn copy_unpicked_options_hold(c in one()) {
        let got = sync_copy(&c.source, &c.copy, &c.o, &c.r);
        check_unpicked_options_hold(&c.copy, &got.content, &c.o)?;
    }

    /// 7 (one copy). The preview is exact.
    #[test]
    fn copy_preview_is_exact(c in one()) {
        let got = sync_copy(&c.source, &c.copy, &c.o, &c.r);
        check_preview_exact(&c.copy, &got.content, &got.changes)?;
    }
}

// ---------------------------------------------------------------------------------------
// Properties of a whole sync (`plan_sync`).
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// 1. Reached copies are exactly those the scope and cascade stops allow, each once,
    /// after its parent, at its level, equal to the reference walk (parent's new content
    /// first); identity fields are carried; `upstream_pending` as documented.
    #[test]
    fn tree_matches_reference(case in case()) {
        let out = run(&case);
        let want = reference_tree(&case);
        let got_ids: Vec<i64> = out.iter().map(|x| x.plan_id).collect();
        let got_set: BTreeSet<i64> = got_ids.iter().copied().collect();
        prop_assert_eq!(got_set.len(), got_ids.len(), "a copy appears twice: {:?}", got_ids);
        prop_assert_eq!(got_set, want.keys().copied().collect::<BTreeSet<_>>(), "reached copies");
        for (i, x) in out.iter().enumerate() {
            let w = &want[&x.plan_id];
            let n = node(&case, x.plan_id);
            if x.parent_plan_id != SOURCE_ID {
                prop_assert!(got_ids[..i].contains(&x.parent_plan_id), "copy {} before its parent {}", x.plan_id, x.parent_plan_id);
            }
            prop_assert_eq!(x.level, w.level, "level of {}", x.plan_id);
            prop_assert_eq!(x.parent_plan_id, w.parent_plan_id);
            prop_assert_eq!((x.owner_id, x.version), (n.owner_id, n.version));
            prop_assert_eq!(&x.content, &w.e.content, "content of copy {}", x.plan_id);
            check_blocked(&x.blocked, &w.e.blocked)?;
            prop_assert_eq!(x.upstream_pending, w.upstream_pending, "upstream_pending of {}", x.plan_id);
        }
    }

    /// 2. No field a copy's owner locked changes, checked on the values themselves.
    #[test]
    fn tree_locked_fields_hold(case in case()) {
        for x in run(&case) {
            let n = node(&case, x.plan_id);
            check_locks_hold(&n.content, &x.content, &n.restrictions)?;
        }
    }

    /// 3. Nothing below a cascade-stop copy is in the outcomes (so nothing there changes).
    #[test]
    fn tree_cascade_stop_stops(case in case()) {
        let out = run(&case);
        let parent: HashMap<i64, i64> = case.copies.iter().map(|c| (c.plan_id, c.parent_plan_id)).collect();
        for x in &out {
            let mut up = x.parent_plan_id;
            while let Some(n) = case.copies.iter().find(|c| c.plan_id == up) {
                prop_assert!(!n.cascade_stop, "copy {} reached below cascade-stop copy {}", x.plan_id, n.plan_id);
                up = parent[&up];
            }
            prop_assert_eq!(up, SOURCE_ID, "copy {} is not below the plan", x.plan_id);
        }
    }

    /// 4. Applying the outcomes and running the same sync again changes nothing.
    #[test]
    fn tree_sync_is_idempotent(case in case()) {
        let out = run(&case);
        let mut applied = case.clone();
        for x in &out {
            applied.copies.iter_mut().find(|c| c.plan_id == x.plan_id).expect("known copy").content = x.content.clone();
        }
        let again = run(&applied);
        prop_assert_eq!(again.iter().map(|x| x.plan_id).collect::<Vec<_>>(), out.iter().map(|x| x.plan_id).collect::<Vec<_>>());
        for (a, x) in again.iter().zip(&out) {
            prop_assert!(a.changes.is_empty(), "copy {} changed again: {:?}", a.plan_id, a.changes);
            prop_assert!(!a.withdrawn, "copy {} withdrawn again", a.plan_id);
            prop_assert_eq!(&a.content, &x.content);
        }
    }

    /// 5. `withdrawn` exactly when a period/rate was added to a copy whose prices are
    /// locked, and then the added item is unconfirmed (and only then).
    #[test]
    fn tree_withdrawn_exactly_when_added_under_locked_prices(case in case()) {
        let want = reference_tree(&case);
        for x in run(&case) {
            let n = node(&case, x.plan_id);
            check_withdrawn(&n.content, &x.content, &n.restrictions, x.withdrawn, &want[&x.plan_id].e)
                .map_err(|e| TestCaseError::fail(format!("copy {}: {e}", x.plan_id)))?;
        }
    }

    /// 6. Options not picked never change their fields.
    #[test]
    fn tree_unpicked_options_hold(case in case()) {
        for x in run(&case) {
            let n = node(&case, x.plan_id);
            check_unpicked_options_hold(&n.content, &x.content, &case.o)?;
        }
    }

    /// 6'. With no option picked, every outcome is its input copy, and nothing is reported.
    #[test]
    fn tree_no_options_change_nothing(case in case_with(Just(SyncOptions::default()).boxed())) {
        for x in run(&case) {
            let n = node(&case, x.plan_id);
            prop_assert_eq!(&x.content, &n.content);
            prop_assert!(x.changes.is_empty() && x.blocked.is_empty() && !x.withdrawn && !x.upstream_pending);
        }
    }

    /// 7. Every change is a real difference and every difference is a change.
    #[test]
    fn tree_preview_is_exact(case in case()) {
        for x in run(&case) {
            let n = node(&case, x.plan_id);
            check_preview_exact(&n.content, &x.content, &x.changes)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Generator sanity: the trees and contents really exercise what the properties claim.
// ---------------------------------------------------------------------------------------

#[test]
fn generators_cover_the_interesting_cases() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (
        mut deep,
        mut stopped_with_kids,
        mut added_locked,
        mut blocked,
        mut changed,
        mut reseller_hits,
        mut pre_unconfirmed,
    ) = (0, 0, 0, 0, 0, 0, 0);
    let strategy = case();
    for _ in 0..200 {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        let out = run(&case);
        deep += usize::from(out.iter().any(|x| x.level >= 3));
        stopped_with_kids +=
            usize::from(case.copies.iter().any(|c| {
                c.cascade_stop && case.copies.iter().any(|k| k.parent_plan_id == c.plan_id)
            }));
        added_locked += usize::from(out.iter().any(|x| {
            node(&case, x.plan_id).restrictions.prices && x.changes.iter().any(|c| c.from.is_null())
        }));
        blocked += usize::from(out.iter().any(|x| !x.blocked.is_empty()));
        changed += usize::from(out.iter().any(|x| !x.changes.is_empty()));
        reseller_hits +=
            usize::from(matches!(case.scope, Scope::Reseller { .. }) && !out.is_empty());
        pre_unconfirmed += usize::from(
            case.copies
                .iter()
                .any(|c| c.content.has_unconfirmed_prices()),
        );
    }
    for (what, n) in [
        ("trees three levels deep", deep),
        ("cascade stops with copies below", stopped_with_kids),
        ("items added under locked prices", added_locked),
        ("blocked changes", blocked),
        ("changes", changed),
        ("reseller scopes that reach a copy", reseller_hits),
        ("copies already awaiting confirmation", pre_unconfirmed),
    ] {
        assert!(n >= 10, "only {n} of 200 generated cases have {what}");
    }
}

// ---------------------------------------------------------------------------------------
// The smallest counter-example property 5 finds, by hand.
// ---------------------------------------------------------------------------------------

/// A copy still awaiting confirmation of a period added by an earlier sync (its owner's
/// prices are locked) receives another new period: the sync adds a period whose price
/// the owner has not chosen, so the outcome must say `withdrawn` (doc of
/// `CopySync::withdrawn`; domain.md §3).
#[test]
fn adding_to_a_copy_already_awaiting_confirmation_withdraws() {
    let base = Dice::new(&[]).full_content();
    let (m1, y1) = (base.periods[0].clone(), base.periods[2].clone());
    let source = PlanContent {
        periods: vec![m1.clone(), y1],
        rates: vec![],
        ..base.clone()
    };
    let copy = PlanContent {
        periods: vec![Period {
            unconfirmed: true,
            ..m1
        }],
        rates: vec![],
        ..base
    };
    let o = SyncOptions {
        new_plans_periods: true,
        ..SyncOptions::default()
    };
    let r = Restrictions {
        prices: true,
        ..Restrictions::default()
    };
    let s = sync_copy(&source, &copy, &o, &r);
    assert!(
        s.content.period("y1").is_some_and(|p| p.unconfirmed),
        "y1 is added, unconfirmed"
    );
    assert!(
        s.withdrawn,
        "a period was added to a copy whose prices are locked, yet withdrawn is false"
    );
}
