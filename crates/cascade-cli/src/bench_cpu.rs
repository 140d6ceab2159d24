//! CPU time of a benchmark phase, for figures that stay comparable on a busy machine.
//!
//! Wall-clock throughput depends on what else the machine runs; the CPU time a unit of
//! work costs (a page, a usage reading) barely does. A [`CpuMeter`] takes, at the start
//! and end of a phase:
//!
//! * this process's user + system time, and per thread group by name (tokio workers,
//!   `sqlx-sqlite-worker-*` threads, the benches' own named runtimes), from
//!   `/proc/self/task/*/stat`;
//! * on PostgreSQL, the user + system time of the server processes serving the
//!   benchmark's database (`pg_stat_activity` of `current_database()`; the benchmark
//!   needs its own database for this to mean anything, and the server on this host);
//! * the number of SQL statements the store executed (`cascade_store::db::statements`).
//!
//! Linux only (elsewhere the CPU figures are absent). Clock ticks are taken as 100 per
//! second (`USER_HZ`, fixed by the Linux ABI).

use cascade_store::Db;
use std::collections::HashMap;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(10);

/// utime + stime of a `/proc/…/stat` file.
fn stat_cpu(path: &str) -> Option<Duration> {
    let s = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields are counted after its closing paren.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(TICK * ticks as u32)
}

/// CPU per thread name group of this process (names cut at their first digit or dash
/// run, so `tokio-runtime-worker` and `sqlx-sqlite-worker-3` group sensibly).
fn threads() -> HashMap<String, Duration> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        let name = std::fs::read_to_string(p.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let group = group_of(&name);
        if let Some(cpu) = stat_cpu(&p.join("stat").to_string_lossy()) {
            *out.entry(group).or_default() += cpu;
        }
    }
    out
}

fn group_of(name: &str) -> String {
    if name.starts_with("sqlx-sqlite") {
        "sqlite".into()
    } else if name.starts_with("tokio-r") {
        "tokio".into()
    } else {
        name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_string()
    }
}

async fn pg_backends(db: &Db) -> HashMap<i32, Duration> {
    let mut out = HashMap::new();
    if let Db::Postgres(p) = db {
        let pids: Vec<(i32,)> = sqlx::query_as(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(p)
        .await
        .unwrap_or_default();
        for (pid,) in pids {
            if let Some(c) = stat_cpu(&format!("/proc/{pid}/stat")) {
                out.insert(pid, c);
            }
        }
    }
    out
}

/// Readings at the start of a phase.
pub struct CpuMeter {
    process: Option<Duration>,
    threads: HashMap<String, Duration>,
    pg: HashMap<i32, Duration>,
    statements: u64,
}

/// What a phase cost.
#[derive(Debug, Clone, Default)]
pub struct CpuUse {
    /// This process (user + system).
    pub process: Duration,
    /// Per thread group of this process.
    pub threads: Vec<(String, Duration)>,
    /// PostgreSQL server processes of the database (zero on SQLite).
    pub pg: Duration,
    /// SQL statements executed by the store.
    pub statements: u64,
}

impl CpuUse {
    pub fn total(&self) -> Duration {
        self.process + self.pg
    }

    /// "X µs CPU per unit (process A + PostgreSQL B), S statements per unit".
    pub fn per_unit(&self, units: usize, unit: &str) -> String {
        let n = units.max(1) as f64;
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
        let mut s = format!(
            "{:.0} µs CPU per {unit} (this process {:.0}",
            us(self.total()),
            us(self.process)
        );
        if !self.pg.is_zero() {
            s.push_str(&format!(" + PostgreSQL {:.0}", us(self.pg)));
        }
        let per = self.statements as f64 / n;
        if per < 0.1 {
            s.push_str(&format!(
                "), {:.2} SQL statements per 1,000 {unit}s",
                per * 1000.0
            ));
        } else {
            s.push_str(&format!("), {per:.2} SQL statements per {unit}"));
        }
        s
    }

    /// "tokio 1.2 s, sqlite 0.4 s, …" (the largest first).
    pub fn threads_line(&self) -> String {
        self.threads
            .iter()
            .map(|(n, d)| format!("{n} {:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl CpuMeter {
    pub async fn start(db: &Db) -> CpuMeter {
        CpuMeter {
            process: stat_cpu("/proc/self/stat"),
            threads: threads(),
            pg: pg_backends(db).await,
            statements: cascade_store::db::statements(),
        }
    }

    pub async fn finish(&self, db: &Db) -> CpuUse {
        let statements = cascade_store::db::statements() - self.statements;
        let process = match (self.process, stat_cpu("/proc/self/stat")) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => Duration::ZERO,
        };
        let mut threads: Vec<(String, Duration)> = threads()
            .into_iter()
            .map(|(n, d)| {
                let before = self.threads.get(&n).copied().unwrap_or_default();
                (n, d.saturating_sub(before))
            })
            .filter(|(_, d)| !d.is_zero())
            .collect();
        threads.sort_by_key(|t| std::cmp::Reverse(t.1));
        // Backends that appeared during the phase count whole.
        let pg = pg_backends(db)
            .await
            .into_iter()
            .map(|(pid, d)| d.saturating_sub(self.pg.get(&pid).copied().unwrap_or_default()))
            .sum();
        CpuUse {
            process,
            threads,
            pg,
            statements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_groups() {
        assert_eq!(group_of("sqlx-sqlite-worker-12"), "sqlite");
        assert_eq!(group_of("tokio-runtime-w"), "tokio");
        assert_eq!(group_of("tokio-rt-worker"), "tokio");
        assert_eq!(group_of("connector-3"), "connector");
    }

    #[test]
    fn own_cpu_is_read() {
        // Burn a little CPU so the reading cannot be zero on Linux.
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        if cfg!(target_os = "linux") {
            assert!(stat_cpu("/proc/self/stat").is_some_and(|d| d >= TICK));
        }
    }
}
