//! What the in-panel marketplace and the public store share: the seller's sales
//! category tree with its plans in order, plan comparison, the order form (period,
//! quantities as slider or spinner, order attributes and service parameters only when
//! the plan defines them), and reading that form back into the API's order request.

use super::Ctx;
use crate::api::orders::PlaceOrderIn;
use crate::state::AppState;
use cascade_domain::catalog::plan::{
    Attribute, AttributeKind, DisplayType, PlanContent, Price, UNLIMITED,
};
use cascade_domain::catalog::resources::{ResourceKind, ResourceTypeId};
use cascade_domain::catalog::sales::SalesTreeNode;
use cascade_domain::ids::AccountId;
use cascade_domain::money::{Currency, Money};
use cascade_store::plans::Plan;
use maud::{Markup, PreEscaped, html};
use std::collections::BTreeMap;

/// A price in millionths, shown in minor units by the one rounding rule.
pub fn price(p: Price, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(c) => Money::new(crate::api::orders::pricing::minor(p, c), c).to_string(),
        Err(_) => String::new(),
    }
}

pub fn money(minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(c) => Money::new(minor, c).to_string(),
        Err(_) => minor.to_string(),
    }
}

/// The seller's plans on sale, by listing priority.
pub async fn plans_on_sale(
    st: &AppState,
    seller: AccountId,
) -> Result<std::sync::Arc<Vec<Plan>>, super::WebError> {
    Ok(st.catalog.plans_on_sale(&st.db, seller.0).await?)
}

/// The kind of each rate's resource type (quantity or boolean), by rate uid; a rate whose
/// type cannot be read counts as a quantity.
pub async fn rate_kinds(st: &AppState, content: &PlanContent) -> BTreeMap<String, ResourceKind> {
    let mut kinds = BTreeMap::new();
    for r in &content.rates {
        let kind = st
            .db
            .resource_types()
            .get(ResourceTypeId(r.resource_type_id))
            .await
            .map(|t| t.kind)
            .unwrap_or_default();
        kinds.insert(r.uid.clone(), kind);
    }
    kinds
}

/// A resource type's name in the user's language.
pub async fn resource_names(
    st: &AppState,
    ctx: &Ctx,
    content: &PlanContent,
) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for r in &content.rates {
        let name = match st
            .db
            .resource_types()
            .get(ResourceTypeId(r.resource_type_id))
            .await
        {
            Ok(t) => {
                let n = t.name.get(ctx.lang()).to_string();
                if t.unit.is_empty() {
                    n
                } else {
                    format!("{n} ({})", t.unit)
                }
            }
            Err(_) => r.uid.clone(),
        };
        names.insert(r.uid.clone(), name);
    }
    names
}

fn plan_card(ctx: &Ctx, p: &Plan, href: &str, compare: bool) -> Markup {
    let c = &p.content;
    let first = c.periods.iter().filter(|x| x.active).min_by_key(|x| x.sort);
    html! {
        article class="card plan" data-plan=(p.id) {
            h3 { a href=(href) { (c.name.get(ctx.lang())) } }
            @if let Some(d) = &c.short_description { p class="muted" { (d.get(ctx.lang())) } }
            @if ctx.show_prices() {
                @if let Some(per) = first {
                    p class="price" { (price(per.recurring.amount, &p.currency)) " / " (per.duration) " " (unit(ctx, per)) }
                }
            }
            div class="actions" {
                a class="button" href=(href) { (ctx.t("market.buy")) }
                @if compare { label class="inline" { input type="checkbox" name="plan" value=(p.id); " " (ctx.t("market.compare")) } }
            }
        }
    }
}

/// The category tree in its order, each leaf with its plans by listing priority; plans in
/// no category of the tree come last.
pub fn catalog(
    ctx: &Ctx,
    tree: &[SalesTreeNode],
    plans: &[Plan],
    plan_href: &dyn Fn(i64) -> String,
    compare_action: Option<&str>,
) -> Markup {
    fn node(
        ctx: &Ctx,
        n: &SalesTreeNode,
        plans: &[Plan],
        href: &dyn Fn(i64) -> String,
        compare: bool,
        depth: usize,
    ) -> Markup {
        let code = n.category.code.as_str();
        let here: Vec<&Plan> = plans
            .iter()
            .filter(|p| p.content.sales_categories.iter().any(|c| c == code))
            .collect();
        html! {
            section class="category" data-category=(code) {
                @if depth == 0 { h2 { (n.category.name.get(ctx.lang())) } } @else { h3 { (n.category.name.get(ctx.lang())) } }
                @if !here.is_empty() {
                    div class="grid" { @for p in here { (plan_card(ctx, p, &href(p.id), compare)) } }
                }
                @for c in &n.children { (node(ctx, c, plans, href, compare, depth + 1)) }
            }
        }
    }
    let mut codes = Vec::new();
    fn collect(n: &SalesTreeNode, out: &mut Vec<String>) {
        out.push(n.category.code.as_str().to_string());
        for c in &n.children {
            collect(c, out);
        }
    }
    for n in tree {
        collect(n, &mut codes);
    }
    let rest: Vec<&Plan> = plans
        .iter()
        .filter(|p| !p.content.sales_categories.iter().any(|c| codes.contains(c)))
        .collect();
    let compare = compare_action.is_some();
    let inner = html! {
        @for n in tree { (node(ctx, n, plans, plan_href, compare, 0)) }
        @if !rest.is_empty() {
            section class="category" {
                @if !tree.is_empty() { h2 { (ctx.t("market.plan")) } }
                div class="grid" { @for p in &rest { (plan_card(ctx, p, &plan_href(p.id), compare)) } }
            }
        }
        @if plans.is_empty() { p { (ctx.t("market.no_plans")) } }
    };
    match compare_action {
        Some(action) => html! {
            form method="get" action=(action) {
                (inner)
                @if plans.len() > 1 { button type="submit" { (ctx.t("market.compare_selected")) } }
            }
        },
        None => inner,
    }
}

/// Plans side by side: periods and fees, resources with included units and limits.
pub fn compare_table(ctx: &Ctx, plans: &[Plan], names: &BTreeMap<String, String>) -> Markup {
    let mut rows: Vec<String> = Vec::new();
    for p in plans {
        for r in &p.content.rates {
            let n = names.get(&r.uid).cloned().unwrap_or_else(|| r.uid.clone());
            if !rows.contains(&n) {
                rows.push(n);
            }
        }
    }
    html! {
        table class="compare" {
            thead { tr { th {} @for p in plans { th { (p.content.name.get(ctx.lang())) } } } }
            tbody {
                @if ctx.show_prices() {
                    tr { th { (ctx.t("market.recurring")) } @for p in plans { td {
                        @for per in p.content.periods.iter().filter(|x| x.active) {
                            div { (price(per.recurring.amount, &p.currency)) " / " (per.duration) " " (unit(ctx, per)) }
                        }
                    } } }
                }
                @for row in &rows {
                    tr { th { (row) } @for p in plans { td {
                        @if let Some(r) = p.content.rates.iter().find(|r| names.get(&r.uid) == Some(row)) {
                            (ctx.t("market.included")) ": " (limit_text(ctx, r.included))
                        } @else { "—" }
                    } } }
                }
            }
        }
    }
}

pub fn limit_text(ctx: &Ctx, n: i64) -> String {
    if n == UNLIMITED {
        ctx.t("sub.unlimited").to_string()
    } else {
        n.to_string()
    }
}

fn attribute_input(ctx: &Ctx, prefix: &str, a: &Attribute) -> Markup {
    let name = format!("{prefix}{}", a.key);
    html! {
        label {
            (a.label.get(ctx.lang())) @if a.required { " *" }
            @match a.kind {
                AttributeKind::Boolean => { input type="checkbox" name=(name) value="true"; }
                AttributeKind::Integer => { input type="number" name=(name) required[a.required] min=[a.min] max=[a.max]; }
                AttributeKind::Email => { input type="email" name=(name) required[a.required]; }
                AttributeKind::Choice => {
                    select name=(name) required[a.required] {
                        @if !a.required { option value="" {} }
                        @for o in &a.options { option value=(o) { (o) } }
                    }
                }
                AttributeKind::Text => { input type="text" name=(name) required[a.required] maxlength=[a.max_length]; }
            }
        }
    }
}

/// One quantity input: a slider where the rate's display type says so (its value shown
/// beside it), else a spinner.
pub fn quantity_input(
    _ctx: &Ctx,
    name: &str,
    label: &str,
    r: &cascade_domain::catalog::plan::Rate,
    value: i64,
) -> Markup {
    let out_id = format!("out-{name}").replace('.', "-");
    html! {
        label {
            (label)
            @match r.display {
                DisplayType::Slider { min, max, step } => {
                    span class="qty" {
                        input type="range" name=(name) min=(min) max=(max) step=(step) value=(value)
                            oninput=(PreEscaped(format!("document.getElementById('{out_id}').value=this.value")));
                        output id=(out_id) for=(name) { (value) }
                    }
                }
                DisplayType::Spinner => {
                    input type="number" name=(name) min=(r.min) max=[(r.max != UNLIMITED).then_some(r.max)] value=(value);
                }
            }
        }
    }
}

/// A period's unit in the user's language.
pub fn unit<'a>(ctx: &'a Ctx, per: &cascade_domain::catalog::plan::Period) -> &'a str {
    use cascade_domain::catalog::plan::PeriodUnit;
    match per.unit {
        PeriodUnit::Day => ctx.t("unit.day"),
        PeriodUnit::Month => ctx.t("unit.month"),
        PeriodUnit::Year => ctx.t("unit.year"),
    }
}

/// The order form's fields for a plan: period, quantities, then order attributes and
/// service parameters, each section only when the plan has some.
pub fn order_fields(ctx: &Ctx, p: &Plan, names: &BTreeMap<String, String>) -> Markup {
    let c = &p.content;
    let mut periods: Vec<_> = c.periods.iter().filter(|x| x.active).collect();
    periods.sort_by_key(|x| x.sort);
    let rates: Vec<_> = c
        .rates
        .iter()
        .filter(|r| r.show_in_store || r.show_in_panel)
        .filter(|r| r.max != r.min)
        .collect();
    html! {
        fieldset {
            legend { (ctx.t("market.period")) }
            select name="period" {
                @for per in &periods {
                    option value=(per.uid) {
                        (per.duration) " " (unit(ctx, per))
                        @if ctx.show_prices() { " — " (price(per.recurring.amount, &p.currency)) @if per.setup.amount.0 > 0 { " + " (ctx.t("market.setup")) " " (price(per.setup.amount, &p.currency)) } }
                    }
                }
            }
        }
        @if !rates.is_empty() {
            fieldset {
                legend { (ctx.t("market.quantities")) }
                @for r in &rates {
                    @let label = names.get(&r.uid).cloned().unwrap_or_else(|| r.uid.clone());
                    (quantity_input(ctx, &format!("q.{}", r.uid), &label, r, r.included.max(r.min)))
                    @if ctx.show_prices() && r.recurring_fee.0 > 0 {
                        p class="muted" { (price(r.recurring_fee, &p.currency)) " " @if r.per_unit { (ctx.t("market.per_unit")) } }
                    }
                }
            }
        }
        @if !c.order_attributes.is_empty() {
            fieldset class="attributes" {
                legend { (ctx.t("market.order_attributes")) }
                @for a in &c.order_attributes { (attribute_input(ctx, "a.", a)) }
            }
        }
        @if !c.service_parameters.is_empty() {
            fieldset class="parameters" {
                legend { (ctx.t("market.service_parameters")) }
                @for a in &c.service_parameters { (attribute_input(ctx, "s.", a)) }
            }
        }
    }
}

/// Read the order form back into the API's request; the API validates it.
pub fn order_request(p: &Plan, pairs: &super::Pairs) -> PlaceOrderIn {
    let value = |a: &Attribute, v: &str| -> serde_json::Value {
        match a.kind {
            AttributeKind::Boolean => serde_json::Value::Bool(v == "true"),
            AttributeKind::Integer => v
                .trim()
                .parse::<i64>()
                .map(Into::into)
                .unwrap_or_else(|_| v.into()),
            _ => v.into(),
        }
    };
    let mut quantities = BTreeMap::new();
    let mut attributes = BTreeMap::new();
    let mut parameters = BTreeMap::new();
    for (k, v) in pairs {
        if let Some(uid) = k.strip_prefix("q.") {
            if let Ok(n) = v.trim().parse::<i64>() {
                quantities.insert(uid.to_string(), n);
            }
        } else if let Some(key) = k.strip_prefix("a.") {
            if let Some(a) = p.content.order_attributes.iter().find(|a| a.key == key)
                && !v.is_empty()
            {
                attributes.insert(key.to_string(), value(a, v));
            }
        } else if let Some(key) = k.strip_prefix("s.")
            && let Some(a) = p.content.service_parameters.iter().find(|a| a.key == key)
            && !v.is_empty()
        {
            parameters.insert(key.to_string(), value(a, v));
        }
    }
    PlaceOrderIn {
        plan_id: p.id,
        period_uid: super::field(pairs, "period")
            .unwrap_or_default()
            .to_string(),
        quantities,
        attributes,
        parameters,
        auto_renew: None,
        name_servers: Vec::new(),
    }
}

/// A decimal amount typed by a person ("12.50", "12,5") in minor units of `currency`.
pub fn parse_amount(s: &str, currency: &str) -> Option<i64> {
    let c = Currency::parse(currency).ok()?;
    let digits = c.minor_digits() as usize;
    let s = s.trim().replace(',', ".");
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > digits
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let w: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let f: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<digits$}").parse().ok()?
    };
    w.checked_mul(10i64.pow(digits as u32))?.checked_add(f)
}

/// The amount as the top-up field shows it ("12.50").
pub fn amount_text(minor: i64, currency: &str) -> String {
    let digits = Currency::parse(currency)
        .map(|c| c.minor_digits())
        .unwrap_or(2);
    if digits == 0 {
        return minor.to_string();
    }
    let scale = 10i64.pow(digits);
    format!(
        "{}.{:0w$}",
        minor / scale,
        (minor % scale).abs(),
        w = digits as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn amounts_typed_by_people() {
        assert_eq!(parse_amount("12.50", "EUR"), Some(1250));
        assert_eq!(parse_amount("12,5", "EUR"), Some(1250));
        assert_eq!(parse_amount("7", "EUR"), Some(700));
        assert_eq!(parse_amount("1.234", "EUR"), None);
        assert_eq!(parse_amount("-1", "EUR"), None);
        assert_eq!(parse_amount("abc", "EUR"), None);
        assert_eq!(parse_amount("500", "JPY"), Some(500));
        assert_eq!(amount_text(1250, "EUR"), "12.50");
        assert_eq!(amount_text(5, "EUR"), "0.05");
    }
}
