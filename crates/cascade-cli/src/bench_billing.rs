//! `cascade bench billing`: one daily billing run over a large, realistic book.
//!
//! A channel of resellers over two levels under the provider, customers under every
//! reseller with about four subscriptions each, on plans delegated down the channel:
//! 70 % prepaid monthly with two resource rates, 10 % annual (every 12 months, charged
//! before the billing period), 10 % 12-month terms charged before the subscription
//! period, 10 % pay-as-you-go with usage records. Everything is due on the run date.
//! Seeding uses bulk loads (multi-row inserts; `COPY` on PostgreSQL) so that the run, not
//! the set-up, dominates. Then ONE run is timed; the books of a sample of issuers are
//! checked and a second run for the same date must write nothing. Optionally, the p99
//! latency of **order placement** is measured idle and while the run is in progress:
//! real SOs (`POST /api/v1/accounts/{id}/orders` through the in-process router, a
//! customer of a level-2 reseller buying its copy of the monthly plan with two seats,
//! so each order writes the subscription, its invoice, the order and two wholesale
//! rows up the chain).

use crate::bench::{BenchDb, backends, peak_rss_mib, progress};
use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use cascade_domain::account::AccountKind;
use cascade_domain::billing::lifecycle::AutoRenew;
use cascade_domain::catalog::plan::{
    BillingModel, BillingPeriodType, DisplayType, Fee, Period, PeriodUnit, PlanContent, Price,
    Rate, RecurringBasis, RefundRules,
};
use cascade_domain::catalog::text::Localized;
use cascade_domain::clock::{Clock, SystemClock, Timestamp};
use cascade_domain::ids::AccountId;
use cascade_domain::privilege::BuiltinRole;
use cascade_store::accounts::{BulkAccount, bulk_load};
use cascade_store::plans::Plans;
use cascade_store::{Db, on_tx};
use cascade_worker::billing_run::{RunOptions, default_parallel, run_with};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// The run date: every seeded subscription is due on it.
pub(crate) const RUN_DATE: &str = "2025-03-01";

/// Subscription kinds, by position in a cycle of ten: 0–6 monthly, 7 annual, 8 term, 9 PAYG.
const MONTHLY: usize = 0;
const ANNUAL: usize = 1;
const TERM: usize = 2;
const PAYG: usize = 3;

fn kind_of(sub: usize) -> usize {
    match sub % 10 {
        7 => ANNUAL,
        8 => TERM,
        9 => PAYG,
        _ => MONTHLY,
    }
}

/// The accounts: provider (id 1), `resellers` resellers (about √n at level 1, the rest at
/// level 2 under them), then customers spread over all resellers. Returns the rows, the
/// reseller ids (level 1 first) and the id of the first customer.
pub(crate) fn channel(resellers: usize, customers: usize) -> (Vec<BulkAccount>, Vec<i64>, usize) {
    let resellers = resellers.max(1);
    let l1 = ((resellers as f64).sqrt().round() as usize).clamp(1, resellers);
    let mut rows = Vec::with_capacity(1 + resellers + customers);
    rows.push(BulkAccount {
        id: 1,
        kind: AccountKind::Provider,
        vendor_id: None,
        name: "Provider".into(),
    });
    let mut ids = Vec::with_capacity(resellers);
    for i in 0..resellers {
        let id = 2 + i as i64;
        let vendor = if i < l1 {
            1
        } else {
            2 + ((i - l1) % l1) as i64
        };
        rows.push(BulkAccount {
            id,
            kind: AccountKind::Reseller,
            vendor_id: Some(vendor),
            name: format!("Reseller {i}"),
        });
        ids.push(id);
    }
    let first_customer = 2 + resellers;
    for c in 0..customers {
        let id = (first_customer + c) as i64;
        rows.push(BulkAccount {
            id,
            kind: AccountKind::Customer,
            vendor_id: Some(ids[c % resellers]),
            name: format!("Customer {c}"),
        });
    }
    (rows, ids, first_customer)
}

fn rate(
    uid: &str,
    rt: i64,
    included: i64,
    recurring: Price,
    overuse: Price,
    measurable: bool,
) -> Rate {
    Rate {
        uid: uid.into(),
        resource_type_id: rt,
        resource_category_id: None,
        included,
        min: 0,
        max: 100_000,
        setup_fee: Price(0),
        recurring_fee: recurring,
        overuse_fee: overuse,
        per_unit: true,
        measurable,
        show_in_store: true,
        show_in_panel: true,
        display: DisplayType::Spinner,
        unconfirmed: false,
    }
}

/// The provider's four plans, by kind.
pub(crate) fn plans(types: &[i64; 3]) -> [PlanContent; 4] {
    let period = |uid: &str, recurring: Price, renewal: Price| Period {
        uid: uid.into(),
        duration: 12,
        unit: PeriodUnit::Month,
        trial: false,
        active: true,
        setup: Fee::of(Price(0)),
        recurring: Fee::of(recurring),
        renewal: Fee::of(renewal),
        transfer: Fee::of(Price(0)),
        cancellation: Fee::of(Price(0)),
        refund: RefundRules::default(),
        sort: 0,
        unconfirmed: false,
    };
    let base = |name: &str, model, period_type, p: Period, rates: Vec<Rate>| PlanContent {
        name: Localized::new("en", name),
        short_description: None,
        long_description: None,
        terms: None,
        plan_category: Some("bench".into()),
        sales_categories: vec![],
        unique_group: None,
        published: true,
        visible: true,
        listing_priority: 0,
        billing_model: model,
        period_type,
        recurring_basis: RecurringBasis::BillingPeriod,
        periods: vec![p],
        rates,
        order_attributes: vec![],
        service_parameters: vec![],
    };
    let two_rates = || {
        vec![
            rate("seats", types[0], 1, Price::units(4), Price(0), false),
            rate("storage_gb", types[1], 10, Price(125_000), Price(0), false),
        ]
    };
    [
        base(
            "Cloud Office monthly",
            BillingModel::ChargeBeforeBillingPeriod,
            BillingPeriodType::MonthlyOnStatementDay,
            period("m12", Price::units(12), Price::units(12)),
            two_rates(),
        ),
        base(
            "Cloud Office annual",
            BillingModel::ChargeBeforeBillingPeriod,
            BillingPeriodType::EveryNMonths { months: 12 },
            period("y1", Price::units(120), Price::units(120)),
            two_rates(),
        ),
        base(
            "Backup term",
            BillingModel::ChargeBeforeSubscriptionPeriod,
            BillingPeriodType::EveryNMonths { months: 12 },
            period("y1", Price(0), Price::units(99)),
            vec![],
        ),
        base(
            "Compute PAYG",
            BillingModel::ExternalRating,
            BillingPeriodType::MonthlyOnStatementDay,
            period("m12", Price(0), Price(0)),
            vec![rate(
                "cpu_hours",
                types[2],
                0,
                Price(0),
                Price(12_500),
                true,
            )],
        ),
    ]
}

/// Catalog and delegation: returns, per reseller (in `resellers` order), its plan copy
/// of each kind.
pub(crate) async fn seed_catalog(
    db: &Db,
    resellers: &[i64],
    vendor_of: &std::collections::HashMap<i64, i64>,
    now: Timestamp,
) -> anyhow::Result<Vec<[i64; 4]>> {
    let mut tx = db.begin().await?;
    let mut types = [0i64; 3];
    for (i, code) in ["seats", "storage_gb", "cpu_hours"].iter().enumerate() {
        let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES (1, $1, 'bench', 'unit', $2, 0, 0) RETURNING id")
            .bind(*code).bind(serde_json::to_string(&Localized::new("en", code))?).fetch_one(c).await)?;
        types[i] = id;
    }
    let (template,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES (1, 'Bench', '[]', '{}', 0, 0) RETURNING id")
        .fetch_one(c).await)?;
    let mut originals = [0i64; 4];
    for (k, content) in plans(&types).iter().enumerate() {
        originals[k] = Plans::create(&mut tx, AccountId(1), template, "EUR", content, now)
            .await?
            .id;
    }
    tx.commit().await?;
    // Level by level: a reseller's copy is made from its vendor's copy.
    let mut copies: std::collections::HashMap<i64, [i64; 4]> =
        std::collections::HashMap::from([(1, originals)]);
    let levels: [Vec<i64>; 2] = [
        resellers
            .iter()
            .copied()
            .filter(|r| vendor_of[r] == 1)
            .collect(),
        resellers
            .iter()
            .copied()
            .filter(|r| vendor_of[r] != 1)
            .collect(),
    ];
    for level in levels {
        let pairs: Vec<(i64, AccountId)> = level
            .iter()
            .flat_map(|r| (0..4).map(|k| (copies[&vendor_of[r]][k], AccountId(*r))))
            .collect();
        let ids = db.plans().bulk_delegate(&pairs, now).await?;
        for (i, r) in level.iter().enumerate() {
            copies.insert(
                *r,
                [ids[4 * i], ids[4 * i + 1], ids[4 * i + 2], ids[4 * i + 3]],
            );
        }
    }
    Ok(resellers.iter().map(|r| copies[r]).collect())
}

/// One subscription row: (id, account, vendor, plan, period, start, expires, quantities).
struct SubRow {
    id: i64,
    account: i64,
    vendor: i64,
    plan: i64,
    period: &'static str,
    start: &'static str,
    expires: &'static str,
    quantities: String,
}

fn sub_row(i: usize, first_customer: usize, resellers: &[i64], copies: &[[i64; 4]]) -> SubRow {
    let c = i / 4;
    let r = c % resellers.len();
    let kind = kind_of(i);
    let (period, start, expires) = match kind {
        MONTHLY => ("m12", "2024-10-01", "2025-10-01"),
        ANNUAL | TERM => ("y1", "2024-03-01", RUN_DATE),
        _ => ("m12", "2024-12-01", "2025-12-01"),
    };
    let quantities = match kind {
        MONTHLY | ANNUAL => format!(
            "{{\"seats\":{},\"storage_gb\":{}}}",
            1 + i % 7,
            10 + (i % 5) * 20
        ),
        _ => "{}".into(),
    };
    SubRow {
        id: i as i64 + 1,
        account: (first_customer + c) as i64,
        vendor: resellers[r],
        plan: copies[r][kind],
        period,
        start,
        expires,
        quantities,
    }
}

const SUB_COLUMNS: &str = "id, account_id, vendor_id, plan_id, period_uid, status, start_date, expires_on, next_bill_date, auto_renew, quantities, \
     attributes, suspension_deadline, data_removed, version, created_at, updated_at";

/// Subscriptions and usage, in chunks; returns the number of usage records.
pub(crate) async fn seed_subscriptions(
    db: &Db,
    n: usize,
    first_customer: usize,
    resellers: &[i64],
    copies: &[[i64; 4]],
    now: Timestamp,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<usize> {
    let renew = serde_json::to_string(&AutoRenew::OnExpiry)?;
    let mut usage = 0usize;
    const CHUNK: usize = 20_000;
    for from in (0..n).step_by(CHUNK) {
        let rows: Vec<SubRow> = (from..(from + CHUNK).min(n))
            .map(|i| sub_row(i, first_customer, resellers, copies))
            .collect();
        // Three usage records per PAYG subscription during February.
        let uses: Vec<(i64, String, i64, &str)> = rows
            .iter()
            .filter(|s| kind_of(s.id as usize - 1) == PAYG)
            .flat_map(|s| {
                [(0, "2025-02-03"), (1, "2025-02-14"), (2, "2025-02-27")]
                    .map(|(k, d)| (s.id, format!("u{k}"), 1 + (s.id + k) % 40, d))
            })
            .collect();
        usage += uses.len();
        match db {
            Db::Postgres(pool) => {
                use sqlx::postgres::PgPoolCopyExt;
                let mut text = String::with_capacity(rows.len() * 200);
                for s in &rows {
                    use std::fmt::Write;
                    let _ = writeln!(
                        text,
                        "{}\t{}\t{}\t{}\t{}\tactive\t{}\t{}\t{RUN_DATE}\t{renew}\t{}\t{{}}\t\\N\tf\t1\t{}\t{}",
                        s.id,
                        s.account,
                        s.vendor,
                        s.plan,
                        s.period,
                        s.start,
                        s.expires,
                        s.quantities,
                        now.0,
                        now.0
                    );
                }
                let mut copy = pool
                    .copy_in_raw(&format!("COPY subscriptions ({SUB_COLUMNS}) FROM STDIN"))
                    .await?;
                copy.send(text.into_bytes()).await?;
                copy.finish().await?;
                if !uses.is_empty() {
                    let mut text = String::with_capacity(uses.len() * 60);
                    for (sub, ext, q, d) in &uses {
                        use std::fmt::Write;
                        let _ = writeln!(text, "{sub}\t{ext}\tcpu_hours\t{q}\t{d}\t\\N\t{}", now.0);
                    }
                    let mut copy = pool
                        .copy_in_raw("COPY usage_records (subscription_id, external_id, rate_uid, quantity, usage_date, billed_line_id, created_at) FROM STDIN")
                        .await?;
                    copy.send(text.into_bytes()).await?;
                    copy.finish().await?;
                }
            }
            Db::Sqlite { write, .. } => {
                let mut tx = write.begin().await?;
                for part in rows.chunks(1500) {
                    let mut qb = sqlx::QueryBuilder::new(format!(
                        "INSERT INTO subscriptions ({SUB_COLUMNS}) "
                    ));
                    qb.push_values(part, |mut b, s| {
                        b.push_bind(s.id)
                            .push_bind(s.account)
                            .push_bind(s.vendor)
                            .push_bind(s.plan)
                            .push_bind(s.period)
                            .push_bind("active")
                            .push_bind(s.start)
                            .push_bind(s.expires)
                            .push_bind(RUN_DATE)
                            .push_bind(renew.as_str())
                            .push_bind(s.quantities.as_str())
                            .push_bind("{}")
                            .push_bind(None::<String>)
                            .push_bind(false)
                            .push_bind(1i64)
                            .push_bind(now.0)
                            .push_bind(now.0);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                for part in uses.chunks(4000) {
                    let mut qb = sqlx::QueryBuilder::new(
                        "INSERT INTO usage_records (subscription_id, external_id, rate_uid, quantity, usage_date, created_at) ",
                    );
                    qb.push_values(part, |mut b, (sub, ext, q, d)| {
                        b.push_bind(*sub)
                            .push_bind(ext.as_str())
                            .push_bind("cpu_hours")
                            .push_bind(*q)
                            .push_bind(*d)
                            .push_bind(now.0);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        pb.set_position(((from + CHUNK).min(n)) as u64);
    }
    match db {
        Db::Postgres(p) => {
            sqlx::query("SELECT setval(pg_get_serial_sequence('subscriptions', 'id'), (SELECT MAX(id) FROM subscriptions))").execute(p).await?;
            for t in [
                "subscriptions",
                "usage_records",
                "plans",
                "accounts",
                "account_closure",
            ] {
                sqlx::query(&format!("ANALYZE {t}")).execute(p).await?;
            }
        }
        Db::Sqlite { write, .. } => {
            sqlx::query("ANALYZE").execute(write).await?;
        }
    }
    Ok(usage)
}

/// How long the API probe places orders at the start of the billing run.
const PROBE_SECONDS: Duration = Duration::from_secs(10);

/// An API client on the in-process router, logged in as a provider administrator.
struct ApiProbe {
    router: Router,
    cookie: String,
    /// The customer the probe's orders are placed for, and the plan it buys.
    customer: i64,
    plan: i64,
}

const PROBE_LOGIN: &str = "bench-admin";
const PROBE_PASSWORD: &str = "bench-password-0123456789";

impl ApiProbe {
    /// Log in as a provider administrator and create, through the API, the customer of
    /// `reseller` that will buy `plan` (the reseller's copy of the monthly plan).
    async fn new(db: &Db, reseller: i64, plan: i64) -> anyhow::Result<ApiProbe> {
        let now = SystemClock.now();
        db.roles().sync_builtin(now).await?;
        let provider = db.accounts().get(AccountId(1)).await?;
        let spec = crate::admin::UserSpec {
            login: PROBE_LOGIN,
            name: "Bench admin",
            email: "bench-admin@example.com",
            password: PROBE_PASSWORD,
            roles: &[BuiltinRole::AccountAdmin],
        };
        crate::admin::create_user(db, &provider, &spec, now).await?;
        let state = cascade_http::state::AppState::new(
            db.clone(),
            Arc::new(SystemClock),
            cascade_http::HttpConfig::default(),
            None,
        );
        let router = cascade_http::router(state);
        let mut probe = ApiProbe {
            router,
            cookie: String::new(),
            customer: 0,
            plan,
        };
        let resp = probe
            .send(
                "/api/v1/session",
                serde_json::json!({"login": PROBE_LOGIN, "password": PROBE_PASSWORD}),
            )
            .await?;
        anyhow::ensure!(
            resp.status() == StatusCode::OK,
            "bench login: {}",
            resp.status()
        );
        let prefix = format!("{}=", cascade_http::auth::SESSION_COOKIE);
        probe.cookie = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                c.strip_prefix(&prefix)
                    .map(|rest| rest.split(';').next().unwrap_or_default().to_string())
            })
            .context("bench login set no session cookie")?;
        let body = serde_json::json!({"vendor_id": reseller, "kind": "customer", "name": "Probe customer", "country": "DE", "language": "en"});
        let resp = probe.send("/api/v1/accounts", body).await?;
        anyhow::ensure!(
            resp.status() == StatusCode::CREATED,
            "POST /api/v1/accounts: {}",
            resp.status()
        );
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)?;
        probe.customer = v["id"].as_i64().context("created account without id")?;
        Ok(probe)
    }

    async fn send(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<axum::response::Response> {
        let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if !self.cookie.is_empty() {
            req = req.header(
                header::COOKIE,
                format!("{}={}", cascade_http::auth::SESSION_COOKIE, self.cookie),
            );
        }
        let mut req = req.body(Body::from(body.to_string()))?;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        Ok(self.router.clone().oneshot(req).await?)
    }

    /// One order placed (an SO of the reseller's monthly plan): its latency.
    async fn write_once(&self, _n: u64) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let body = serde_json::json!({"plan_id": self.plan, "period_uid": "m12", "quantities": {"seats": 2, "storage_gb": 10}});
        let resp = self
            .send(&format!("/api/v1/accounts/{}/orders", self.customer), body)
            .await?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "POST /api/v1/accounts/{}/orders: {status} {:?}",
            self.customer,
            bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
        );
        Ok(t.elapsed())
    }
}

/// CPU seconds (user + system) of a process from /proc/<pid>/stat (Linux; 100 ticks/s).
fn cpu_of(stat: &str) -> Option<f64> {
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn cpu_self() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_of(&s))
        .unwrap_or(0.0)
}

/// CPU seconds of every local `postgres` process, by pid (a local server only).
fn cpu_postgres() -> std::collections::HashMap<i32, f64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Default::default();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            Some((
                pid,
                cpu_of(&std::fs::read_to_string(e.path().join("stat")).ok()?)?,
            ))
        })
        .collect()
}

/// Server-wide WAL and buffer counters: (WAL bytes, full-page images, WAL buffers full,
/// buffers written by backends).
async fn wal_stats(db: &Db) -> Option<(i64, i64, i64, i64)> {
    let Db::Postgres(p) = db else { return None };
    sqlx::query_as(
        "SELECT CAST(w.wal_bytes AS BIGINT), w.wal_fpi, w.wal_buffers_full, b.buffers_backend FROM pg_stat_wal w, pg_stat_bgwriter b",
    )
    .fetch_one(p)
    .await
    .ok()
}

/// The name our PostgreSQL sessions carry, to tell their CPU from the server's other work.
const APP_NAME: &str = "cascade_bench_billing";

/// CPU seconds spent between two `cpu_postgres` samples by this bench's sessions and by
/// every other postgres process (autovacuum, checkpointer, WAL writer, other clients).
async fn postgres_cpu_split(
    db: &Db,
    before: &std::collections::HashMap<i32, f64>,
    after: &std::collections::HashMap<i32, f64>,
) -> Option<(f64, f64)> {
    let Db::Postgres(p) = db else { return None };
    let ours: Vec<(i32,)> =
        sqlx::query_as("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
            .bind(APP_NAME)
            .fetch_all(p)
            .await
            .ok()?;
    let ours: std::collections::HashSet<i32> = ours.into_iter().map(|r| r.0).collect();
    let (mut mine, mut other) = (0.0, 0.0);
    for (pid, cpu) in after {
        let d = cpu - before.get(pid).copied().unwrap_or(0.0);
        if ours.contains(pid) {
            mine += d;
        } else {
            other += d;
        }
    }
    Some((mine, other))
}

/// Statements the process ran, counted from sqlx's per-statement `sqlx::query` events
/// (emitted at DEBUG once a subscriber enables them; formatting the summary costs a few
/// µs per statement, negligible next to a batch's). `COPY` does not go through them: the
/// lines a batch copies are counted from the run's report instead.
mod sql_count {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::{Layer, filter::Targets};

    static STATEMENTS: AtomicU64 = AtomicU64::new(0);
    static AFFECTED: AtomicU64 = AtomicU64::new(0);
    static RETURNED: AtomicU64 = AtomicU64::new(0);
    static ACTIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    struct Counter;

    struct Rows(u64, u64);

    impl tracing::field::Visit for Rows {
        fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
            match field.name() {
                "rows_affected" => self.0 = value,
                "rows_returned" => self.1 = value,
                _ => {}
            }
        }
        fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
    }

    impl<S: tracing::Subscriber> Layer<S> for Counter {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut rows = Rows(0, 0);
            event.record(&mut rows);
            STATEMENTS.fetch_add(1, Ordering::Relaxed);
            AFFECTED.fetch_add(rows.0, Ordering::Relaxed);
            RETURNED.fetch_add(rows.1, Ordering::Relaxed);
        }
    }

    /// Install the counter as the process's subscriber (benchmarks install none
    /// otherwise); nothing is counted if another subscriber is installed already.
    pub fn install() {
        let filter = Targets::new().with_target("sqlx::query", tracing::Level::DEBUG);
        let ok = tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(Counter.with_filter(filter)),
        )
        .is_ok();
        ACTIVE.fetch_or(ok, Ordering::Relaxed);
    }

    /// Whether statements are being counted.
    pub fn active() -> bool {
        ACTIVE.load(Ordering::Relaxed)
    }

    /// (statements, rows affected, rows returned) so far.
    pub fn now() -> (u64, u64, u64) {
        (
            STATEMENTS.load(Ordering::Relaxed),
            AFFECTED.load(Ordering::Relaxed),
            RETURNED.load(Ordering::Relaxed),
        )
    }

    pub fn since(before: (u64, u64, u64)) -> (u64, u64, u64) {
        let n = now();
        (n.0 - before.0, n.1 - before.1, n.2 - before.2)
    }
}

/// The server's WAL position in bytes (PostgreSQL).
async fn wal_lsn(db: &Db) -> Option<i64> {
    let Db::Postgres(p) = db else { return None };
    sqlx::query_as::<_, (i64,)>(
        "SELECT CAST(pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS BIGINT)",
    )
    .fetch_one(p)
    .await
    .ok()
    .map(|r| r.0)
}

fn percentile(v: &mut [Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub struct BillingBenchArgs<'a> {
    pub subscriptions: usize,
    pub resellers: usize,
    pub backend: &'a str,
    pub pg_url: Option<&'a str>,
    pub batch: i64,
    pub parallel: Option<usize>,
    pub api_latency: bool,
}

pub async fn billing_bench(a: &BillingBenchArgs<'_>) -> anyhow::Result<()> {
    let customers = a.subscriptions.div_ceil(4);
    let (rows, resellers, first_customer) = channel(a.resellers, customers);
    let l1 = rows.iter().filter(|r| r.vendor_id == Some(1)).count();
    println!(
        "bench billing: {} subscriptions of {customers} customers under {} resellers ({l1} at level 1, {} at level 2); run date {RUN_DATE}; {} accounts per batch",
        a.subscriptions,
        resellers.len(),
        resellers.len() - l1,
        a.batch
    );
    // Name the PostgreSQL sessions, to tell their CPU from the server's other work.
    let pg_url = a.pg_url.map(|u| {
        format!(
            "{u}{}application_name={APP_NAME}",
            if u.contains('?') { '&' } else { '?' }
        )
    });
    sql_count::install();
    for b in backends(pg_url.as_deref(), a.backend).await? {
        run_one(&b, a, &rows, &resellers, first_customer).await?;
        b.cleanup().await?;
    }
    Ok(())
}

/// `name 1.2 s, name 0.3 s, …`
fn timings(named: &[(&str, Duration)]) -> String {
    named
        .iter()
        .map(|(name, d)| format!("{name} {:.1} s", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn run_one(
    b: &BenchDb,
    a: &BillingBenchArgs<'_>,
    rows: &[BulkAccount],
    resellers: &[i64],
    first_customer: usize,
) -> anyhow::Result<()> {
    let db = &b.db;
    let label = b.label;
    let now = SystemClock.now();
    let t = Instant::now();
    let pb = progress(rows.len() as u64, "accounts");
    bulk_load(db, rows, "DE", "en", "EUR", now, |n| {
        pb.set_position(n as u64)
    })
    .await?;
    pb.finish_and_clear();
    let vendor_of: std::collections::HashMap<i64, i64> = rows
        .iter()
        .filter_map(|r| r.vendor_id.map(|v| (r.id, v)))
        .collect();
    let copies = seed_catalog(db, resellers, &vendor_of, now).await?;
    let pb = progress(a.subscriptions as u64, "subscriptions");
    let usage = seed_subscriptions(
        db,
        a.subscriptions,
        first_customer,
        resellers,
        &copies,
        now,
        &pb,
    )
    .await?;
    pb.finish_and_clear();
    println!(
        "[{label}] seeded {} accounts, {} plans, {} subscriptions, {usage} usage records in {:.1} s",
        rows.len(),
        4 + copies.len() * 4,
        a.subscriptions,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    crate::bench::settle(
        db,
        &[
            "accounts",
            "account_closure",
            "subscriptions",
            "plans",
            "usage_records",
        ],
    )
    .await?;
    if matches!(db, Db::Postgres(_)) {
        println!(
            "[{label}] vacuumed the bulk-loaded tables in {:.1} s (as autovacuum would have on a running database)",
            t.elapsed().as_secs_f64()
        );
    }

    let probe = if a.api_latency {
        // A level-2 reseller (its vendor is not the provider) and its monthly plan copy.
        let k = resellers
            .iter()
            .position(|r| vendor_of.get(r).is_some_and(|v| *v != 1))
            .unwrap_or(0);
        Some(Arc::new(
            ApiProbe::new(db, resellers[k], copies[k][0]).await?,
        ))
    } else {
        None
    };
    let mut idle = vec![];
    let before_idle = sql_count::now();
    if let Some(p) = &probe {
        for i in 0..200 {
            idle.push(p.write_once(i).await?);
        }
    }
    // Statements one order placement runs (to tell the run's own from the probe's).
    let per_order = sql_count::since(before_idle).0 as f64 / idle.len().max(1) as f64;

    let today = chrono::NaiveDate::parse_from_str(RUN_DATE, "%Y-%m-%d")?;
    let parallel = a.parallel.unwrap_or_else(|| default_parallel(db));
    // Knobs for comparing the run's write settings (defaults: the run's own).
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let defaults = RunOptions::default();
    let opts = RunOptions {
        batch: a.batch,
        durable_batches: env("CASCADE_BENCH_DURABLE").is_some_and(|v| v != "0"),
        write_chunk: env("CASCADE_BENCH_WRITE_CHUNK")
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.write_chunk),
        yield_max: env("CASCADE_BENCH_YIELD_MS")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(defaults.yield_max),
        busy_chunk: env("CASCADE_BENCH_BUSY_CHUNK")
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.busy_chunk),
        ..defaults
    };
    println!(
        "[{label}] run options: batch {}, {} batches in flight, durable batch commits {}, write chunk {} accounts (0 = whole batch; {} while API writes are within {} ms), yield to API writes up to {} ms",
        opts.batch,
        parallel,
        opts.durable_batches,
        opts.write_chunk,
        opts.busy_chunk,
        opts.busy_window.as_millis(),
        opts.yield_max.as_millis()
    );
    if let Db::Postgres(p) = db {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, setting || COALESCE(' ' || unit, '') FROM pg_settings WHERE name IN
             ('shared_buffers', 'wal_buffers', 'max_wal_size', 'checkpoint_timeout', 'synchronous_commit', 'wal_compression', 'full_page_writes', 'commit_delay') ORDER BY name",
        )
        .fetch_all(p)
        .await?;
        let settings: Vec<String> = rows.iter().map(|(n, v)| format!("{n}={v}")).collect();
        println!(
            "[{label}] PostgreSQL server settings: {}",
            settings.join(", ")
        );
    }
    let due = cascade_store::billing_batch::due_accounts(db, RUN_DATE)
        .await?
        .len() as u64;
    // The API probe runs alongside the billing run, one write every 10 ms, for the first
    // PROBE_SECONDS of it: the run yields to it (pacing), and the rest of the run shows
    // its throughput on a quiet system.
    let stop = Arc::new(AtomicBool::new(false));
    let busy = probe.clone().map(|p| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut v = vec![];
            let mut n = 1000;
            let t = Instant::now();
            while !stop.load(Ordering::Relaxed) && t.elapsed() < PROBE_SECONDS {
                n += 1;
                match p.write_once(n).await {
                    Ok(d) => v.push(d),
                    Err(e) => eprintln!("order placement failed during the run: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            v
        })
    });
    let pb = progress(due, "billing");
    let cpu0 = (cpu_self(), cpu_postgres());
    let wal0 = wal_stats(db).await;
    let lsn0 = wal_lsn(db).await;
    let sql0 = sql_count::now();
    let started = Instant::now();
    let r = run_with(db, &SystemClock, today, &opts, parallel, |done, failed| {
        pb.set_position(done + failed)
    })
    .await
    .map_err(|e| anyhow::anyhow!("billing run: {e}"))?;
    let elapsed = started.elapsed();
    let cpu1 = (cpu_self(), cpu_postgres());
    let sql1 = sql_count::since(sql0);
    let lsn1 = wal_lsn(db).await;
    let wal1 = wal_stats(db).await;
    pb.finish_and_clear();
    stop.store(true, Ordering::Relaxed);
    let busy = match busy {
        Some(h) => h.await?,
        None => vec![],
    };
    let rate = r.subscriptions_billed as f64 / elapsed.as_secs_f64();
    println!(
        "[{label}] billing run ({parallel} batches in flight): {} subscriptions in {:.1} s = {rate:.0} subscriptions/s; {} accounts ({} failed, {} billed alone), {} documents, {} lines",
        r.subscriptions_billed,
        elapsed.as_secs_f64(),
        r.accounts_done,
        r.accounts_failed,
        r.accounts_billed_alone,
        r.documents_written,
        r.lines_written
    );
    println!("[{label}] phases: {}", timings(&r.phases));
    println!(
        "[{label}] batch steps, summed over batches (in flight together, so they overlap): {}",
        timings(&r.batch_steps.named())
    );
    println!(
        "[{label}] also written: {} BO orders, {} invoice.issued events, {} subscription.expiring events",
        r.orders_written, r.invoice_events, r.expiring_notices
    );
    println!(
        "[{label}] wholesale: {} upserts into the run's consolidated rows (one per plan and reseller); {} tier invoices to resellers covering {} rows",
        r.wholesale_rows, r.tiers.invoices, r.tiers.rows
    );
    let client = cpu1.0 - cpu0.0;
    match postgres_cpu_split(db, &cpu0.1, &cpu1.1).await {
        Some((mine, other)) => println!(
            "[{label}] CPU during the run: cascade {client:.1} s, its PostgreSQL sessions {mine:.1} s, other postgres processes {other:.1} s \
             ({:.0} µs of CPU per subscription)",
            (client + mine) * 1e6 / a.subscriptions as f64
        ),
        None => println!(
            "[{label}] CPU during the run: cascade {client:.1} s ({:.0} µs per subscription)",
            client * 1e6 / a.subscriptions as f64
        ),
    }
    if let (Some(w0), Some(w1)) = (wal0, wal1) {
        println!(
            "[{label}] PostgreSQL server during the run (all sessions): {:.0} MiB of WAL, {} full-page images, {} WAL-buffers-full waits, \
             {} buffers written by backends (small shared_buffers/wal_buffers show here)",
            (w1.0 - w0.0) as f64 / 1048576.0,
            w1.1 - w0.1,
            w1.2 - w0.2,
            w1.3 - w0.3
        );
    }
    let subs = (r.subscriptions_billed as f64).max(1.0);
    if sql_count::active() {
        // The probe's orders ran statements too: take them out at their idle count.
        let statements = (sql1.0 as f64 - per_order * busy.len() as f64).max(0.0);
        println!(
            "[{label}] statements during the run: {:.3} per subscription ({statements:.0} in all, {per_order:.1} per probe order taken out); \
             rows affected {:.2} + lines copied {:.2} per subscription, rows read {:.2} per subscription",
            statements / subs,
            sql1.1 as f64 / subs,
            r.lines_written as f64 / subs,
            sql1.2 as f64 / subs,
        );
    }
    if let (Some(l0), Some(l1)) = (lsn0, lsn1) {
        println!(
            "[{label}] WAL written during the run (pg_current_wal_lsn, whole server): {:.0} MiB = {:.0} bytes per subscription",
            (l1 - l0) as f64 / 1048576.0,
            (l1 - l0) as f64 / subs
        );
    }
    if let Some(m) = peak_rss_mib() {
        println!("[{label}] peak memory so far: {m:.0} MiB");
    }
    if probe.is_some() {
        let (mut idle, mut busy) = (idle, busy);
        let (n_idle, n_busy) = (idle.len(), busy.len());
        let (p99_idle, p99_busy) = (percentile(&mut idle, 0.99), percentile(&mut busy, 0.99));
        println!(
            "[{label}] order placement (POST /api/v1/accounts/{{id}}/orders, in-process): idle p50 {} p99 {} ({n_idle} orders); during the first 10 s of the run p50 {} p99 {} max {} ({n_busy} orders); p99 during / idle = {:.2}",
            ms(percentile(&mut idle, 0.5)),
            ms(p99_idle),
            ms(percentile(&mut busy, 0.5)),
            ms(p99_busy),
            ms(percentile(&mut busy, 1.0)),
            p99_busy.as_secs_f64() / p99_idle.as_secs_f64().max(1e-9),
        );
    }

    // Checks: everything billed, the books balance for a sample of issuers, and a second
    // run for the same date writes nothing.
    anyhow::ensure!(
        r.accounts_failed == 0,
        "{} accounts failed",
        r.accounts_failed
    );
    anyhow::ensure!(
        r.subscriptions_billed as usize == a.subscriptions,
        "billed {} of {} subscriptions",
        r.subscriptions_billed,
        a.subscriptions
    );
    let step = (resellers.len() / 20).max(1);
    let sample: Vec<i64> = resellers.iter().step_by(step).copied().collect();
    for issuer in &sample {
        let bad = db.documents().unbalanced(AccountId(*issuer)).await?;
        anyhow::ensure!(
            bad.is_empty(),
            "the books of issuer {issuer} do not balance: documents {bad:?}"
        );
    }
    let dangling = cascade_store::integrity::dangling_references(db).await?;
    anyhow::ensure!(
        dangling.is_empty(),
        "rows with dangling references: {dangling:?}"
    );
    let again = run_with(db, &SystemClock, today, &opts, parallel, |_, _| {})
        .await
        .map_err(|e| anyhow::anyhow!("second run: {e}"))?;
    anyhow::ensure!(
        again.documents_written == 0 && again.lines_written == 0,
        "the second run wrote {again:?}"
    );
    println!(
        "[{label}] checks: books balance for {} sampled issuers; no order or line references a missing row; a second run for {RUN_DATE} wrote {} documents and {} lines",
        sample.len(),
        again.documents_written,
        again.lines_written
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_and_mix() {
        let (rows, resellers, first) = channel(1000, 2500);
        assert_eq!(rows.len(), 1 + 1000 + 2500);
        assert_eq!(rows.iter().filter(|r| r.vendor_id == Some(1)).count(), 32);
        assert_eq!(first, 1002);
        assert_eq!(resellers.len(), 1000);
        let kinds: Vec<usize> = (0..100).map(kind_of).collect();
        assert_eq!(kinds.iter().filter(|k| **k == MONTHLY).count(), 70);
        assert_eq!(kinds.iter().filter(|k| **k == PAYG).count(), 10);
        // Vendors come before their customers (bulk_load needs it).
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            assert!(r.vendor_id.is_none_or(|v| seen.contains(&v)));
            seen.insert(r.id);
        }
    }
}
