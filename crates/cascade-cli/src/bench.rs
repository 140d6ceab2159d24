//! `cascade bench …`: benchmarks that print their figures. Speed targets are checked
//! here, never by timed assertions in tests.

use cascade_domain::account::AccountKind;
use cascade_domain::clock::{Clock, SystemClock};
use cascade_domain::ids::AccountId;
use cascade_store::Db;
use cascade_store::accounts::{AccountFilter, BulkAccount, bulk_load};
use cascade_store::db::PoolSettings;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// A database to benchmark on: a temporary SQLite file or a fresh PostgreSQL schema,
/// removed afterwards.
pub struct BenchDb {
    pub db: Db,
    pub label: &'static str,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl BenchDb {
    pub async fn sqlite() -> anyhow::Result<BenchDb> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let db = Db::connect_and_migrate(&url, &PoolSettings::default()).await?;
        Ok(BenchDb {
            db,
            label: "sqlite",
            _dir: Some(dir),
            pg: None,
        })
    }

    pub async fn postgres(url: &str) -> anyhow::Result<BenchDb> {
        let schema = format!("bench_{}", std::process::id());
        let admin = sqlx::PgPool::connect(url).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&admin)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let db = Db::connect_and_migrate(
            url,
            &PoolSettings {
                max_connections: 16,
                pg_schema: Some(schema.clone()),
            },
        )
        .await?;
        Ok(BenchDb {
            db,
            label: "postgres",
            _dir: None,
            pg: Some((url.to_string(), schema)),
        })
    }

    /// A second handle on the same database with its own pool of at most `max`
    /// connections (PostgreSQL), for background work that must not take the pool the
    /// measured requests use. On SQLite the handle is shared: writes already have
    /// their own connection and reads never wait for them (WAL).
    pub async fn own_pool(&self, max: u32) -> anyhow::Result<Db> {
        Ok(match &self.pg {
            Some((url, schema)) => {
                Db::connect(
                    url,
                    &PoolSettings {
                        max_connections: max,
                        pg_schema: Some(schema.clone()),
                    },
                )
                .await?
            }
            None => self.db.clone(),
        })
    }

    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.db.close().await;
        if let Some((url, schema)) = self.pg {
            let admin = sqlx::PgPool::connect(&url).await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&admin)
                .await?;
        }
        Ok(())
    }
}

/// The backends to run on: SQLite always, PostgreSQL when a URL is known.
pub async fn backends(pg_url: Option<&str>, which: &str) -> anyhow::Result<Vec<BenchDb>> {
    let mut out = Vec::new();
    if matches!(which, "sqlite" | "both") {
        out.push(BenchDb::sqlite().await?);
    }
    if matches!(which, "postgres" | "both") {
        match pg_url {
            Some(u) => out.push(BenchDb::postgres(u).await?),
            None if which == "postgres" => {
                anyhow::bail!("--pg-url (or CASCADE_BENCH_PG_URL) is needed for PostgreSQL")
            }
            None => eprintln!("note: no --pg-url / CASCADE_BENCH_PG_URL given: PostgreSQL skipped"),
        }
    }
    Ok(out)
}

/// On PostgreSQL, `VACUUM (ANALYZE)` freshly bulk-loaded tables before measuring:
/// autovacuum would otherwise process them soon after the load, in the middle of the
/// measurement (an idle baseline, or a run's first minutes), and a database that has been
/// running has had them vacuumed. Nothing on SQLite.
pub async fn settle(db: &cascade_store::Db, tables: &[&str]) -> anyhow::Result<()> {
    if let cascade_store::Db::Postgres(p) = db {
        for t in tables {
            sqlx::query(&format!("VACUUM (ANALYZE) {t}"))
                .execute(p)
                .await?;
        }
    }
    Ok(())
}

/// Peak resident memory of this process (VmHWM), in MiB, where the OS tells it.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn progress(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

struct Stats {
    median: Duration,
    p95: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        median: at(0.5),
        p95: at(0.95),
        max: *v.last().unwrap_or(&Duration::ZERO),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The shape of the benchmark tree for `n` accounts: a provider; L1 resellers (one per
/// 1,000 accounts, at least 10); ten L2 resellers under each L1; a chain of `chain`
/// nested resellers under the first L1 ending in one customer (the "deep customer");
/// the rest customers, one in ten directly under an L1, the others under L2s.
pub fn tree(n: usize, chain: usize) -> (Vec<BulkAccount>, i64, i64) {
    let n = n.max(100);
    let l1 = (n / 1000).max(10);
    let l2 = l1 * 10;
    let mut v = Vec::with_capacity(n);
    let mut id = 0i64;
    let mut push = |v: &mut Vec<BulkAccount>, kind, vendor: Option<i64>, name: String| {
        id += 1;
        v.push(BulkAccount {
            id,
            kind,
            vendor_id: vendor,
            name,
        });
        id
    };
    let provider = push(&mut v, AccountKind::Provider, None, "Provider".into());
    let l1_ids: Vec<i64> = (0..l1)
        .map(|i| {
            push(
                &mut v,
                AccountKind::Reseller,
                Some(provider),
                format!("L1 reseller {i}"),
            )
        })
        .collect();
    let l2_ids: Vec<i64> = (0..l2)
        .map(|i| {
            push(
                &mut v,
                AccountKind::Reseller,
                Some(l1_ids[i % l1]),
                format!("L2 reseller {i}"),
            )
        })
        .collect();
    let mut vendor = l1_ids[0];
    for i in 0..chain {
        vendor = push(
            &mut v,
            AccountKind::Reseller,
            Some(vendor),
            format!("Chain reseller {i}"),
        );
    }
    let deep = push(
        &mut v,
        AccountKind::Customer,
        Some(vendor),
        "Deep customer".into(),
    );
    let mut i = 0usize;
    while v.len() < n {
        let vendor = if i.is_multiple_of(10) {
            l1_ids[(i / 10) % l1]
        } else {
            l2_ids[i % l2]
        };
        push(
            &mut v,
            AccountKind::Customer,
            Some(vendor),
            format!("Customer {i}"),
        );
        i += 1;
    }
    (v, l1_ids[1 % l1], deep)
}

pub async fn tree_bench(
    accounts: usize,
    chain: usize,
    runs: usize,
    pg_url: Option<&str>,
    which: &str,
) -> anyhow::Result<()> {
    let (rows, l1, deep) = tree(accounts, chain);
    println!(
        "bench tree: {} accounts (L1 measured: id {l1}; deep customer: id {deep}, {} levels below the provider), {runs} runs each",
        rows.len(),
        chain + 2
    );
    for b in backends(pg_url, which).await? {
        let started = Instant::now();
        let pb = progress(rows.len() as u64, b.label);
        bulk_load(&b.db, &rows, "DE", "en", "EUR", SystemClock.now(), |n| {
            pb.set_position(n as u64)
        })
        .await?;
        pb.finish_and_clear();
        let load = started.elapsed();
        let accounts = b.db.accounts();
        let all = AccountFilter::default();
        let expected = accounts.count_descendants(AccountId(l1)).await?;
        // Warm up, then measure.
        let _ = accounts
            .descendants(AccountId(l1), &all, None, expected + 1)
            .await?;
        let _ = accounts.vendor_chain(AccountId(deep)).await?;
        let (mut desc, mut page, mut chain_t) = (vec![], vec![], vec![]);
        let mut got = 0;
        let mut chain_len = 0;
        for _ in 0..runs {
            let t = Instant::now();
            got = accounts
                .descendants(AccountId(l1), &all, None, expected + 1)
                .await?
                .items
                .len();
            desc.push(t.elapsed());
            let t = Instant::now();
            accounts.descendants(AccountId(l1), &all, None, 200).await?;
            page.push(t.elapsed());
            let t = Instant::now();
            chain_len = accounts.vendor_chain(AccountId(deep)).await?.len();
            chain_t.push(t.elapsed());
        }
        anyhow::ensure!(
            got as i64 == expected,
            "descendant listing returned {got}, expected {expected}"
        );
        let (d, p, c) = (stats(desc), stats(page), stats(chain_t));
        println!(
            "[{}] loaded {} accounts in {:.1} s",
            b.label,
            rows.len(),
            load.as_secs_f64()
        );
        println!(
            "[{}] all {got} descendants of an L1:   median {}  p95 {}  max {}",
            b.label,
            ms(d.median),
            ms(d.p95),
            ms(d.max)
        );
        println!(
            "[{}] first page (200) of descendants:  median {}  p95 {}  max {}",
            b.label,
            ms(p.median),
            ms(p.p95),
            ms(p.max)
        );
        println!(
            "[{}] vendor chain ({chain_len} vendors) of the deep customer: median {}  p95 {}  max {}",
            b.label,
            ms(c.median),
            ms(c.p95),
            ms(c.max)
        );
        b.cleanup().await?;
    }
    if let Some(m) = peak_rss_mib() {
        println!("peak memory: {m:.0} MiB");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_shape() {
        let (rows, l1, deep) = tree(10_000, 6);
        assert_eq!(rows.len(), 10_000);
        assert_eq!(
            rows.iter()
                .filter(|a| a.kind == AccountKind::Provider)
                .count(),
            1
        );
        // Vendors always come first.
        let mut seen = std::collections::HashSet::new();
        for a in &rows {
            if let Some(v) = a.vendor_id {
                assert!(seen.contains(&v));
            }
            seen.insert(a.id);
        }
        assert!(l1 > 1 && deep > l1);
    }
}
