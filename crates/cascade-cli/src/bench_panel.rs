//! `cascade bench panel`: page throughput and latency of the panels under load.
//!
//! Seeds the same channel and book as `cascade bench billing` (bulk loads; by default
//! 100,000 customers, one subscription each, all due on the billing run date), gives
//! `sessions` customers a login, logs each in through the login form (a real session
//! and CSRF cookie per client), then `sessions` concurrent clients fetch the customer
//! home and marketplace pages in turn for `seconds` through the full router (middleware,
//! session lookup, rendering: the in-process service, no TCP, so the figure is the
//! server's, not a load tool's). Prints requests/s and p50/p99 per backend, idle and
//! again while a daily billing run is in progress, with the CPU time and SQL
//! statements per page (`bench_cpu`: comparable on a busy machine). A page that is not on this build
//! (404) is reported and left out of the mix.

use crate::bench::{BenchDb, backends, progress};
use crate::bench_billing::{RUN_DATE, channel, seed_catalog, seed_subscriptions};
use crate::bench_cpu::{CpuMeter, CpuUse};
use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use cascade_domain::clock::{Clock, SystemClock};
use cascade_domain::ids::AccountId;
use cascade_domain::privilege::BuiltinRole;
use cascade_store::accounts::bulk_load;
use cascade_worker::billing_run::{RunOptions, default_parallel, run_with};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

pub struct PanelBenchArgs<'a> {
    pub customers: usize,
    pub resellers: usize,
    pub sessions: usize,
    pub seconds: u64,
    pub backend: &'a str,
    pub pg_url: Option<&'a str>,
    /// Time-to-live of the session and catalog caches, ms (0: caches off).
    pub cache_ttl_ms: u64,
}

const PASSWORD: &str = "bench-password-0123456789";
const PAGES: [&str; 2] = ["/panel", "/panel/marketplace"];

pub async fn panel_bench(a: &PanelBenchArgs<'_>) -> anyhow::Result<()> {
    println!(
        "bench panel: {} customers under {} resellers, {} sessions, {} s per phase, caches {}",
        a.customers,
        a.resellers,
        a.sessions,
        a.seconds,
        if a.cache_ttl_ms == 0 {
            "off".to_string()
        } else {
            format!("{} ms", a.cache_ttl_ms)
        }
    );
    for b in backends(a.pg_url, a.backend).await? {
        run_one(&b, a).await?;
        b.cleanup().await?;
    }
    Ok(())
}

fn request(path: &str, cookie: &str) -> anyhow::Result<Request<Body>> {
    let mut req = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())?;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    Ok(req)
}

fn cookies_of(resp: &axum::response::Response) -> Vec<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
        .collect()
}

/// Log in through the login form: GET it (anonymous cookie + CSRF token), POST it.
async fn login(router: &Router, login: &str) -> anyhow::Result<String> {
    let form = router.clone().oneshot(request("/login", "")?).await?;
    let anon = cookies_of(&form).join("; ");
    let html = axum::body::to_bytes(form.into_body(), 1 << 20).await?;
    let html = String::from_utf8_lossy(&html);
    let i = html
        .find("name=\"_csrf\" value=\"")
        .context("login form without CSRF field")?
        + 20;
    let token = &html[i..i + 64];
    let body = format!("login={login}&password={PASSWORD}&_csrf={token}");
    let mut req = Request::post("/login")
        .header(header::COOKIE, &anon)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))?;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = router.clone().oneshot(req).await?;
    anyhow::ensure!(
        resp.status() == StatusCode::SEE_OTHER,
        "login of {login}: {}",
        resp.status()
    );
    let session = cookies_of(&resp)
        .into_iter()
        .find(|c| c.starts_with(cascade_http::auth::SESSION_COOKIE))
        .context("no session cookie")?;
    Ok(format!("{session}; {anon}"))
}

fn pct(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `sessions` clients fetching `pages` in turn until `until` is set or `secs` pass.
async fn load(
    router: &Router,
    cookies: &[String],
    pages: &[&'static str],
    secs: u64,
    until: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> anyhow::Result<(usize, usize, Duration, Vec<Duration>)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut handles = vec![];
    for (i, cookie) in cookies.iter().enumerate() {
        let router = router.clone();
        let cookie = cookie.clone();
        let pages = pages.to_vec();
        let until = until.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            let mut n = i;
            while Instant::now() < deadline
                && !until
                    .as_ref()
                    .is_some_and(|u| u.load(std::sync::atomic::Ordering::Relaxed))
            {
                let path = pages[n % pages.len()];
                n += 1;
                let t = Instant::now();
                let Ok(req) = request(path, &cookie) else {
                    errors += 1;
                    continue;
                };
                match router.clone().oneshot(req).await {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        let _ = axum::body::to_bytes(resp.into_body(), 1 << 22).await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = vec![];
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok((all.len(), errors, elapsed, all))
}

fn report(
    label: &str,
    phase: &str,
    r: &(usize, usize, Duration, Vec<Duration>),
    cpu: &CpuUse,
) -> Duration {
    let (n, errors, elapsed, lat) = r;
    let p99 = pct(lat, 0.99);
    println!(
        "[{label}] {phase}: {n} pages in {:.1} s = {:.0} pages/s; p50 {}, p99 {}; {errors} errors",
        elapsed.as_secs_f64(),
        *n as f64 / elapsed.as_secs_f64(),
        ms(pct(lat, 0.5)),
        ms(p99),
    );
    println!("[{label}] {phase}: {}", cpu.per_unit(*n, "page"));
    p99
}

async fn run_one(b: &BenchDb, a: &PanelBenchArgs<'_>) -> anyhow::Result<()> {
    let db = &b.db;
    let label = b.label;
    let now = SystemClock.now();
    let t = Instant::now();
    let (rows, resellers, first_customer) = channel(a.resellers, a.customers);
    let pb = progress(rows.len() as u64, "accounts");
    bulk_load(db, &rows, "DE", "en", "EUR", now, |n| {
        pb.set_position(n as u64)
    })
    .await?;
    pb.finish_and_clear();
    let vendor_of: std::collections::HashMap<i64, i64> = rows
        .iter()
        .filter_map(|r| r.vendor_id.map(|v| (r.id, v)))
        .collect();
    let copies = seed_catalog(db, &resellers, &vendor_of, now).await?;
    let pb = progress(a.customers as u64, "subscriptions");
    seed_subscriptions(
        db,
        a.customers,
        first_customer,
        &resellers,
        &copies,
        now,
        &pb,
    )
    .await?;
    pb.finish_and_clear();
    db.roles().sync_builtin(now).await?;
    crate::bench::settle(
        db,
        &[
            "accounts",
            "account_closure",
            "subscriptions",
            "plans",
            "documents",
        ],
    )
    .await?;
    // Logins for `sessions` customers spread over the book.
    let step = (a.customers / a.sessions.max(1)).max(1);
    let mut logins = vec![];
    for i in 0..a.sessions {
        let id = (first_customer + (i * step) % a.customers) as i64;
        let account = db.accounts().get(AccountId(id)).await?;
        let login = format!("bench-customer-{i}");
        let spec = crate::admin::UserSpec {
            login: &login,
            name: "Bench customer",
            email: &format!("{login}@example.com"),
            password: PASSWORD,
            roles: &[BuiltinRole::AccountAdmin],
        };
        crate::admin::create_user(db, &account, &spec, now).await?;
        logins.push(login);
    }
    println!(
        "[{label}] seeded {} accounts and {} subscriptions in {:.1} s",
        rows.len(),
        a.customers,
        t.elapsed().as_secs_f64()
    );
    let state = cascade_http::state::AppState::new(
        db.clone(),
        Arc::new(SystemClock),
        cascade_http::HttpConfig {
            auth_cache_ttl_ms: a.cache_ttl_ms,
            catalog_cache_ttl_ms: a.cache_ttl_ms,
            ..Default::default()
        },
        None,
    );
    let router = cascade_http::router(state);
    let mut cookies = vec![];
    for l in &logins {
        cookies.push(login(&router, l).await?);
    }
    // Pages this build has.
    let mut pages = vec![];
    for p in PAGES {
        let resp = router.clone().oneshot(request(p, &cookies[0])?).await?;
        if resp.status() == StatusCode::OK {
            pages.push(p);
        } else {
            println!("[{label}] {p}: {} on this build, left out", resp.status());
        }
    }
    anyhow::ensure!(!pages.is_empty(), "no customer page answers 200");
    println!("[{label}] pages: {}", pages.join(", "));

    let meter = CpuMeter::start(db).await;
    let idle = load(&router, &cookies, &pages, a.seconds, None).await?;
    let idle_p99 = report(label, "idle", &idle, &meter.finish(db).await);

    // The same load while a daily billing run is in progress (stops with the run).
    let today = chrono::NaiveDate::parse_from_str(RUN_DATE, "%Y-%m-%d")?;
    let parallel = default_parallel(db);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The run gets its own pool (as a worker process would have), so its long write
    // transactions never hold connections the pages wait for.
    let run_db = b.own_pool(parallel as u32 + 2).await?;
    let run_done = done.clone();
    let run = tokio::spawn(async move {
        let t = Instant::now();
        let opts = RunOptions {
            batch: 500,
            ..Default::default()
        };
        let r = run_with(&run_db, &SystemClock, today, &opts, parallel, |_, _| {}).await;
        run_done.store(true, std::sync::atomic::Ordering::Relaxed);
        r.map(|r| (r.subscriptions_billed, t.elapsed()))
    });
    let meter = CpuMeter::start(db).await;
    let busy = load(&router, &cookies, &pages, a.seconds, Some(done.clone())).await?;
    // CPU and statements of this phase include the billing run's.
    let busy_p99 = report(
        label,
        "during the billing run (CPU and statements: pages and run together)",
        &busy,
        &meter.finish(db).await,
    );
    let (billed, took) = run
        .await?
        .map_err(|e| anyhow::anyhow!("billing run: {e}"))?;
    println!(
        "[{label}] billing run: {billed} subscriptions in {:.1} s; p99 during the run / idle = {:.2}",
        took.as_secs_f64(),
        busy_p99.as_secs_f64() / idle_p99.as_secs_f64().max(1e-9)
    );
    Ok(())
}
