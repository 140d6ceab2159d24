//! `cascade bench usage`: collect usage from many local reference connectors at once.
//!
//! Starts `--instances` reference mail connectors in-process, each serving HTTPS on its
//! own loopback port with its own self-signed certificate (pinned), registers one
//! instance per connector (each its own service, resource types and plan), seeds
//! `--resources` subscriptions spread over them (bulk insert) and the matching
//! resources in the connectors, then times ONE collection of a day: every instance in
//! parallel, each reading `GET /usage` (three readings per resource: two levels and a
//! counter) and recording them as usage records. Prints readings/s recorded, the total
//! wall time against the slowest instance and the sum of all instances, and checks that
//! a second collection of the same day records nothing.
//!
//! The connectors run on their own runtime (threads named `connector`), so the CPU a
//! reading costs is printed split into the connectors' share, SQLite's worker threads
//! and Cascade's (tokio workers), plus PostgreSQL's server processes (`bench_cpu`).

use crate::bench::backends;
use crate::bench_cpu::CpuMeter;
use cascade_domain::account::AccountKind;
use cascade_domain::catalog::text::Localized;
use cascade_domain::clock::{Clock, SystemClock};
use cascade_domain::ids::AccountId;
use cascade_mail_connector::{Config, Running, start};
use cascade_store::accounts::{BulkAccount, bulk_load};
use cascade_store::connectors::{ConnectorInstances, NewInstance};
use cascade_store::plans::Plans;
use cascade_store::{Db, on_tx};
use cascade_worker::usage_collect::collect_all;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret-bench-secret";
const CUSTOMERS: usize = 1000;

/// The connectors' runtime, shut down without blocking when dropped (a runtime may
/// not be dropped the ordinary way inside another one).
struct ConnectorRuntime(Option<tokio::runtime::Runtime>);

impl ConnectorRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for ConnectorRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub async fn usage_bench(
    instances: usize,
    resources: usize,
    backend: &str,
    pg_url: Option<&str>,
) -> anyhow::Result<()> {
    let instances = instances.max(1);
    println!(
        "bench usage: {instances} reference connectors (HTTPS on loopback, in-process), {resources} resources, 3 readings each"
    );
    for b in backends(pg_url, backend).await? {
        run_one(&b.db, b.label, instances, resources).await?;
        b.cleanup().await?;
    }
    Ok(())
}

async fn run_one(db: &Db, label: &str, instances: usize, resources: usize) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let seed_started = Instant::now();
    // Provider 1 and its customers.
    let mut accounts = vec![BulkAccount {
        id: 1,
        kind: AccountKind::Provider,
        vendor_id: None,
        name: "Provider".into(),
    }];
    for i in 0..CUSTOMERS {
        accounts.push(BulkAccount {
            id: 2 + i as i64,
            kind: AccountKind::Customer,
            vendor_id: Some(1),
            name: format!("Customer {i}"),
        });
    }
    bulk_load(db, &accounts, "DE", "en", "EUR", now, |_| {}).await?;

    // Per connector: its service's three resource types, a template, a plan whose three
    // rates are measurable, and the running connector with its share of resources.
    let per = resources.div_ceil(instances);
    let connectors_rt = ConnectorRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("connector")
            .enable_all()
            .build()?,
    ));
    let mut plans = Vec::with_capacity(instances);
    let mut running: Vec<Running> = Vec::with_capacity(instances);
    for k in 0..instances {
        let service = format!("mail{k}");
        let mut tx = db.begin().await?;
        let mut types = [0i64; 3];
        for (i, code) in ["mailbox", "storage_mb", "messages_sent"]
            .iter()
            .enumerate()
        {
            let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
                "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES (1, $1, $2, 'unit', $3, 0, 0) RETURNING id")
                .bind(format!("{service}-{code}")).bind(&service).bind(serde_json::to_string(&Localized::new("en", code))?).fetch_one(c).await)?;
            types[i] = id;
        }
        let (template,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES (1, 'Bench', '[]', '{}', 0, 0) RETURNING id")
            .fetch_one(c).await)?;
        let mut content = crate::bench_billing::plans(&types)[0].clone();
        // One measurable rate per resource type of the connector.
        let template_rate = content.rates[0].clone();
        content.rates = ["mailbox", "storage_mb", "messages_sent"]
            .iter()
            .zip(types)
            .map(|(uid, rt)| cascade_domain::catalog::plan::Rate {
                uid: (*uid).into(),
                resource_type_id: rt,
                measurable: true,
                ..template_rate.clone()
            })
            .collect();
        let plan = Plans::create(&mut tx, AccountId(1), template, "EUR", &content, now)
            .await?
            .id;
        plans.push(plan);
        let first = (k * per) as i64 + 1;
        let count = per.min(resources.saturating_sub(k * per));
        let c = connectors_rt
            .handle()
            .spawn(start(Config {
                secret: SECRET.into(),
                async_delay: Duration::ZERO,
                seed_resources: count,
                seed_first: first,
                ..Config::default()
            }))
            .await??;
        ConnectorInstances::create(
            &mut tx,
            AccountId(1),
            &NewInstance {
                service,
                name: format!("Bench mail {k}"),
                endpoint: c.base_url(),
                secret: SECRET.into(),
                cert_pin: Some(c.pin.clone()),
                timeout_ms: 60_000,
            },
            now,
        )
        .await?;
        tx.commit().await?;
        running.push(c);
    }

    // Subscriptions 1..=resources, in the plan of the connector holding them.
    let mut tx = db.begin().await?;
    const COLUMNS: &str = "id, account_id, vendor_id, plan_id, period_uid, status, start_date, expires_on, next_bill_date, auto_renew, quantities, attributes, suspension_deadline, data_removed, version, created_at, updated_at";
    let ids: Vec<i64> = (1..=resources as i64).collect();
    for part in ids.chunks(1500) {
        on_tx!(&mut tx, c => {
            let mut qb = sqlx::QueryBuilder::new(format!("INSERT INTO subscriptions ({COLUMNS}) "));
            qb.push_values(part, |mut b, id| {
                let k = ((*id - 1) as usize) / per;
                b.push_bind(*id)
                    .push_bind(2 + (*id % CUSTOMERS as i64))
                    .push_bind(1i64)
                    .push_bind(plans[k])
                    .push_bind("m12")
                    .push_bind("active")
                    .push_bind("2030-01-01")
                    .push_bind("2031-01-01")
                    .push_bind("2030-02-01")
                    .push_bind("\"on_expiry\"")
                    .push_bind("{}")
                    .push_bind("{}")
                    .push_bind(None::<String>)
                    .push_bind(false)
                    .push_bind(1i64)
                    .push_bind(now.0)
                    .push_bind(now.0);
            });
            qb.build().execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    tx.commit().await?;
    if let Db::Postgres(p) = db {
        sqlx::query("SELECT setval(pg_get_serial_sequence('subscriptions', 'id'), (SELECT MAX(id) FROM subscriptions))")
            .execute(p)
            .await?;
    }
    println!(
        "[{label}] seeded in {:.1} s",
        seed_started.elapsed().as_secs_f64()
    );

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let date = "2030-01-15";
    let meter = CpuMeter::start(db).await;
    let started = Instant::now();
    let out = collect_all(db, clock.clone(), date, Duration::from_secs(600), 300, None).await?;
    let wall = started.elapsed();
    let cpu = meter.finish(db).await;
    let failed: Vec<_> = out.iter().filter(|o| o.error.is_some()).collect();
    let readings: usize = out.iter().map(|o| o.readings).sum();
    let recorded: usize = out.iter().map(|o| o.recorded).sum();
    let slowest = out.iter().map(|o| o.elapsed).max().unwrap_or_default();
    let sum: Duration = out.iter().map(|o| o.elapsed).sum();
    println!(
        "[{label}] collected {readings} readings from {} instances, recorded {recorded} usage records in {:.2} s: {:.0} readings/s recorded",
        out.len(),
        wall.as_secs_f64(),
        recorded as f64 / wall.as_secs_f64()
    );
    println!(
        "[{label}] total {:.2} s vs slowest instance {:.2} s vs sum of instances {:.2} s; {} failed",
        wall.as_secs_f64(),
        slowest.as_secs_f64(),
        sum.as_secs_f64(),
        failed.len()
    );
    println!("[{label}] {}", cpu.per_unit(recorded, "reading"));
    println!("[{label}] CPU by threads: {}", cpu.threads_line());
    for f in failed.iter().take(3) {
        println!(
            "[{label}]   instance {}: {}",
            f.instance_id,
            f.error.as_deref().unwrap_or_default()
        );
    }
    let again = collect_all(db, clock, date, Duration::from_secs(600), 300, None).await?;
    let twice: usize = again.iter().map(|o| o.recorded).sum();
    println!("[{label}] same day again: {twice} new records (must be 0)");
    for c in running {
        c.stop().await;
    }
    drop(connectors_rt);
    anyhow::ensure!(
        twice == 0,
        "a second collection of the same day recorded {twice} records"
    );
    anyhow::ensure!(
        recorded == 3 * resources,
        "recorded {recorded}, expected {}",
        3 * resources
    );
    Ok(())
}
