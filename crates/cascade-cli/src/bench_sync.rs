//! `cascade bench sync`: a plan with 20 resource rates and 3 periods delegated to
//! thousands of resellers over several levels; fees and limits change; one sync pushes
//! them down. Prints the time of each phase and peak memory, per backend.

use crate::bench::{BenchDb, backends, peak_rss_mib, progress};
use cascade_domain::account::AccountKind;
use cascade_domain::catalog::plan::{
    BillingModel, BillingPeriodType, DisplayType, Fee, Period, PeriodUnit, PlanContent, Price,
    Rate, RecurringBasis, RefundRules,
};
use cascade_domain::catalog::sync::{Scope, SyncOptions, plan_sync};
use cascade_domain::catalog::text::Localized;
use cascade_domain::clock::{Clock, SystemClock};
use cascade_domain::ids::AccountId;
use cascade_store::accounts::{BulkAccount, bulk_load};
use cascade_store::plans::{Plans, SyncSettings};
use cascade_store::{Db, on_tx};
use std::time::Instant;

/// Resellers spread over `depth` levels below the provider, as evenly as a fan-out allows.
fn channel(resellers: usize, depth: usize) -> (Vec<BulkAccount>, Vec<Vec<i64>>) {
    let depth = depth.max(1);
    let fan = ((resellers as f64).powf(1.0 / depth as f64))
        .ceil()
        .max(1.0) as usize;
    let mut rows = vec![BulkAccount {
        id: 1,
        kind: AccountKind::Provider,
        vendor_id: None,
        name: "Provider".into(),
    }];
    let mut levels: Vec<Vec<i64>> = vec![vec![1]];
    let mut next_id = 2i64;
    let mut left = resellers;
    for level in 1..=depth {
        let parents = levels[level - 1].clone();
        let want = if level == depth {
            left
        } else {
            (parents.len() * fan).min(left)
        };
        let mut ids = Vec::with_capacity(want);
        for i in 0..want {
            rows.push(BulkAccount {
                id: next_id,
                kind: AccountKind::Reseller,
                vendor_id: Some(parents[i % parents.len()]),
                name: format!("Reseller L{level}-{i}"),
            });
            ids.push(next_id);
            next_id += 1;
        }
        left -= want;
        levels.push(ids);
    }
    (rows, levels)
}

fn content(rate_types: &[i64]) -> PlanContent {
    let fee = |u: i64| Fee::of(Price::units(u));
    let period = |uid: &str, months: u32, price: i64| Period {
        uid: uid.into(),
        duration: months,
        unit: PeriodUnit::Month,
        trial: false,
        active: true,
        setup: fee(0),
        recurring: fee(price),
        renewal: fee(price),
        transfer: fee(0),
        cancellation: fee(0),
        refund: RefundRules::default(),
        sort: 0,
        unconfirmed: false,
    };
    PlanContent {
        name: Localized::new("en", "Bench Cloud Suite")
            .with("fr", "Suite cloud")
            .with("ar", "حزمة سحابية"),
        short_description: Some(Localized::new("en", "Twenty resources, three periods")),
        long_description: None,
        terms: None,
        plan_category: Some("bench".into()),
        sales_categories: vec![],
        unique_group: None,
        published: true,
        visible: true,
        listing_priority: 1,
        billing_model: BillingModel::ChargeBeforeBillingPeriod,
        period_type: BillingPeriodType::MonthlyOnStatementDay,
        recurring_basis: RecurringBasis::BillingPeriod,
        periods: vec![
            period("m1", 1, 10),
            period("m12", 12, 100),
            period("m36", 36, 270),
        ],
        rates: rate_types
            .iter()
            .enumerate()
            .map(|(i, rt)| Rate {
                uid: format!("r{i}"),
                resource_type_id: *rt,
                resource_category_id: None,
                included: 1,
                min: 0,
                max: 1000,
                setup_fee: Price(0),
                recurring_fee: Price(1_500_000 + i as i64),
                overuse_fee: Price(0),
                per_unit: true,
                measurable: i % 2 == 0,
                show_in_store: true,
                show_in_panel: true,
                display: DisplayType::Spinner,
                unconfirmed: false,
            })
            .collect(),
        order_attributes: vec![],
        service_parameters: vec![],
    }
}

async fn seed_catalog(db: &Db) -> anyhow::Result<(i64, Vec<i64>)> {
    let mut tx = db.begin().await?;
    let mut types = Vec::new();
    for i in 0..20 {
        let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES (1, $1, 'bench', 'unit', $2, 0, 0) RETURNING id")
            .bind(format!("res{i}")).bind(serde_json::to_string(&Localized::new("en", &format!("Resource {i}")))?).fetch_one(c).await)?;
        types.push(id);
    }
    let (template,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES (1, 'Bench', '[]', '{}', 0, 0) RETURNING id")
        .fetch_one(c).await)?;
    tx.commit().await?;
    Ok((template, types))
}

pub async fn sync_bench(
    resellers: usize,
    depth: usize,
    locked_percent: usize,
    pg_url: Option<&str>,
    which: &str,
) -> anyhow::Result<()> {
    let (rows, levels) = channel(resellers, depth);
    let per_level: Vec<usize> = levels.iter().skip(1).map(Vec::len).collect();
    println!(
        "bench sync: {} resellers over {} levels {:?}; a plan with 20 resource rates and 3 periods delegated to every one; {}% lock their prices",
        rows.len() - 1,
        depth,
        per_level,
        locked_percent
    );
    for b in backends(pg_url, which).await? {
        run_one(&b, &rows, &levels, locked_percent).await?;
        b.cleanup().await?;
    }
    if let Some(m) = peak_rss_mib() {
        println!("peak memory: {m:.0} MiB");
    }
    Ok(())
}

async fn run_one(
    b: &BenchDb,
    rows: &[BulkAccount],
    levels: &[Vec<i64>],
    locked_percent: usize,
) -> anyhow::Result<()> {
    let db = &b.db;
    let now = SystemClock.now();
    let t = Instant::now();
    bulk_load(db, rows, "DE", "en", "EUR", now, |_| {}).await?;
    let (template, types) = seed_catalog(db).await?;
    let mut tx = db.begin().await?;
    let original = Plans::create(
        &mut tx,
        AccountId(1),
        template,
        "EUR",
        &content(&types),
        now,
    )
    .await?;
    tx.commit().await?;
    // Delegate level by level: each reseller gets a copy of its vendor's copy.
    let mut copy_of: std::collections::HashMap<i64, i64> =
        std::collections::HashMap::from([(1, original.id)]);
    let vendor: std::collections::HashMap<i64, i64> = rows
        .iter()
        .filter_map(|r| r.vendor_id.map(|v| (r.id, v)))
        .collect();
    let total: usize = levels.iter().skip(1).map(Vec::len).sum();
    let pb = progress(total as u64, "delegating");
    for level in levels.iter().skip(1) {
        let pairs: Vec<(i64, AccountId)> = level
            .iter()
            .map(|r| (copy_of[&vendor[r]], AccountId(*r)))
            .collect();
        let ids = db.plans().bulk_delegate(&pairs, now).await?;
        for (r, id) in level.iter().zip(ids) {
            copy_of.insert(*r, id);
        }
        pb.inc(level.len() as u64);
    }
    pb.finish_and_clear();
    // Some resellers lock their prices.
    if locked_percent > 0 {
        let mut tx = db.begin().await?;
        let step = (100 / locked_percent.min(100)).max(1);
        for r in rows.iter().skip(1).step_by(step) {
            let mut s = SyncSettings::default();
            s.restrictions.prices = true;
            Plans::set_sync_settings(&mut tx, AccountId(r.id), &s, now).await?;
        }
        tx.commit().await?;
    }
    let setup = t.elapsed();

    // The provider changes fees and limits.
    let mut changed = original.content.clone();
    for p in &mut changed.periods {
        p.recurring.amount = Price(p.recurring.amount.0 + 500_000);
    }
    for r in &mut changed.rates {
        r.recurring_fee = Price(r.recurring_fee.0 + 250_000);
        r.max = 2000;
    }
    let mut tx = db.begin().await?;
    let original = Plans::update(
        &mut tx,
        original.id,
        original.version,
        &changed,
        false,
        false,
        now,
    )
    .await?;
    tx.commit().await?;

    let options = SyncOptions {
        plan_fees: true,
        resource_prices: true,
        resource_limits: true,
        ..Default::default()
    };
    let t_load = Instant::now();
    let nodes = db.plans().subtree(&original).await?;
    let load = t_load.elapsed();
    let t_compute = Instant::now();
    let outcomes = plan_sync(
        original.id,
        &original.content,
        &nodes,
        Scope::AllResellers,
        &options,
    );
    let compute = t_compute.elapsed();
    drop(nodes);
    let changed_copies = outcomes.iter().filter(|o| !o.changes.is_empty()).count();
    let blocked: usize = outcomes.iter().map(|o| o.blocked.len()).sum();
    let t_apply = Instant::now();
    let pb = progress(outcomes.len() as u64, "syncing");
    let run = db
        .plans()
        .apply_sync(
            original.id,
            AccountId(1),
            None,
            &serde_json::json!(options),
            &serde_json::json!(Scope::AllResellers),
            &outcomes,
            now,
            500,
            |n| pb.set_position(n as u64),
        )
        .await?;
    pb.finish_and_clear();
    let apply = t_apply.elapsed();
    let total = load + compute + apply;
    anyhow::ensure!(
        run.copies_total as usize == outcomes.len() && run.copies_failed == 0,
        "sync reported failures: {run:?}"
    );
    println!(
        "[{}] set-up (tree, catalog, {} copies): {:.1} s",
        b.label,
        outcomes.len(),
        setup.as_secs_f64()
    );
    println!(
        "[{}] sync: {} copies reached, {} changed, {} changes blocked by restrictions",
        b.label,
        outcomes.len(),
        changed_copies,
        blocked
    );
    println!(
        "[{}] sync time: {:.2} s total (load tree {:.2} s, compute {:.2} s, write + audit {:.2} s)",
        b.label,
        total.as_secs_f64(),
        load.as_secs_f64(),
        compute.as_secs_f64(),
        apply.as_secs_f64()
    );
    if let Some(m) = peak_rss_mib() {
        println!("[{}] peak memory so far: {m:.0} MiB", b.label);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn channel_has_the_requested_shape() {
        let (rows, levels) = super::channel(10_000, 3);
        assert_eq!(rows.len(), 10_001);
        assert_eq!(levels.len(), 4);
        assert!(levels[1].len() < levels[2].len() && levels[2].len() < levels[3].len());
    }
}
