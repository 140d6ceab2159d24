//! The `cascade` binary: one program, many subcommands (`serve`, `worker`, `migrate`,
//! `demo`, `admin`, `maintenance`, `bench`).

mod admin;
mod bench;
mod bench_billing;
mod bench_cpu;
mod bench_panel;
mod bench_sync;
mod bench_usage;
mod config;
mod demo;
mod demo_catalog;
mod demo_connector;
mod demo_holds;
mod demo_notify;
mod demo_tierbill;

use anyhow::Context;
use cascade_domain::clock::{Clock, SystemClock};
use cascade_http::state::AppState;
use cascade_store::Db;
use cascade_store::db::{PoolSettings, redact_url};
use cascade_worker::{Worker, WorkerConfig};
use clap::{Parser, Subcommand};
use config::Config;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "cascade",
    version,
    about = "Cascade: a multi-tier cloud marketplace platform"
)]
struct Cli {
    /// Configuration file (TOML). Default: ./cascade.toml when present.
    #[arg(long, global = true, env = "CASCADE_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://path or postgres://user:password@host/db (overrides the configuration).
    #[arg(
        long,
        global = true,
        env = "CASCADE_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (with the task worker in-process unless disabled).
    Serve {
        #[arg(long)]
        listen: Option<String>,
        /// Do not run the task worker in this process.
        #[arg(long)]
        no_worker: bool,
    },
    /// Run only the task worker (several may share a PostgreSQL database).
    Worker,
    /// Bring the database schema up to date.
    Migrate,
    /// Run an embedded demo on SQLite, seeded with a demo channel on first run.
    Demo {
        /// Where the demo database lives (created on first run).
        #[arg(long, default_value = "cascade-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Seed and print the logins, then exit without serving.
        #[arg(long)]
        seed_only: bool,
    },
    /// Installation administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Maintenance jobs.
    Maintenance {
        #[command(subcommand)]
        command: MaintenanceCommand,
    },
    /// Billing.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create the provider and its first administrator on an empty database.
    CreateProvider {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// ISO 3166-1 alpha-2.
        #[arg(long)]
        country: String,
        /// ISO 4217: what the provider sells in.
        #[arg(long)]
        currency: String,
        #[arg(long, default_value = "en")]
        language: String,
        #[arg(long)]
        admin_login: String,
        #[arg(long)]
        admin_name: String,
        #[arg(long)]
        admin_email: String,
        /// The administrator's password; read from the environment so it stays out of shell history.
        #[arg(long, env = "CASCADE_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: SecretString,
    },
}

#[derive(Subcommand)]
enum BillingCommand {
    /// Run the daily billing for a date (default: today, UTC). Safe to re-run: nothing is charged twice.
    Run {
        /// YYYY-MM-DD
        #[arg(long)]
        date: Option<String>,
        /// Accounts fetched per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// Delete finished events and tasks older than the retention, in batches.
    CleanupEvents {
        #[arg(long)]
        retention_days: Option<i64>,
        #[arg(long)]
        batch: Option<i64>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Build an account tree and time descendant listing and vendor-chain queries.
    Tree {
        #[arg(long, default_value_t = 100_000)]
        accounts: usize,
        /// Depth of the extra reseller chain above the "deep customer".
        #[arg(long, default_value_t = 8)]
        chain: usize,
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// sqlite, postgres or both.
        #[arg(long, default_value = "both")]
        backend: String,
        /// PostgreSQL database to benchmark in (a temporary schema is created and dropped).
        #[arg(long, env = "CASCADE_BENCH_PG_URL", hide_env_values = true)]
        pg_url: Option<String>,
    },
    /// Delegate a plan to many resellers over several levels, change it, and time one sync.
    Sync {
        #[arg(long, default_value_t = 10_000)]
        resellers: usize,
        #[arg(long, default_value_t = 3)]
        depth: usize,
        /// Share of resellers (percent) whose prices are locked against synchronization.
        #[arg(long, default_value_t = 10)]
        locked_percent: usize,
        #[arg(long, default_value = "both")]
        backend: String,
        #[arg(long, env = "CASCADE_BENCH_PG_URL", hide_env_values = true)]
        pg_url: Option<String>,
    },
    /// Start local reference connectors and time one usage collection of all of them.
    Usage {
        #[arg(long, default_value_t = 50)]
        instances: usize,
        #[arg(long, default_value_t = 200_000)]
        resources: usize,
        /// sqlite, postgres or both.
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, env = "CASCADE_BENCH_PG_URL", hide_env_values = true)]
        pg_url: Option<String>,
    },
    /// Load the customer panel pages with concurrent sessions, idle and during a billing run.
    Panel {
        #[arg(long, default_value_t = 100_000)]
        customers: usize,
        #[arg(long, default_value_t = 100)]
        resellers: usize,
        #[arg(long, default_value_t = 64)]
        sessions: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// sqlite, postgres or both.
        #[arg(long, default_value = "both")]
        backend: String,
        #[arg(long, env = "CASCADE_BENCH_PG_URL", hide_env_values = true)]
        pg_url: Option<String>,
        /// Time-to-live of the session and catalog caches, ms (0: caches off).
        #[arg(long, default_value_t = 5_000)]
        cache_ttl_ms: u64,
    },
    /// Seed a large book of subscriptions, all due, and time one daily billing run.
    Billing {
        #[arg(long, default_value_t = 1_000_000)]
        subscriptions: usize,
        #[arg(long, default_value_t = 1_000)]
        resellers: usize,
        /// sqlite, postgres or both.
        #[arg(long, default_value = "both")]
        backend: String,
        #[arg(long, env = "CASCADE_BENCH_PG_URL", hide_env_values = true)]
        pg_url: Option<String>,
        /// Accounts per batch transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
        /// Batches in flight (default: 2 on SQLite, 4 on PostgreSQL).
        #[arg(long)]
        parallel: Option<usize>,
        /// Skip the order-placement latency probe.
        #[arg(long)]
        no_api_probe: bool,
    },
}

fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn", cfg.log_level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn connect(cfg: &Config) -> anyhow::Result<Db> {
    let url = cfg.database_url();
    if let Some(path) = url.strip_prefix("sqlite://")
        && let Some(parent) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let db = Db::connect_and_migrate(url, &PoolSettings::default())
        .await
        .with_context(|| format!("opening {}", redact_url(url)))?;
    db.roles().sync_builtin(SystemClock.now()).await?;
    Ok(db)
}

fn worker_config(cfg: &Config) -> WorkerConfig {
    WorkerConfig {
        batch: cfg.worker.batch,
        poll_interval: Duration::from_millis(cfg.worker.poll_interval_ms),
        cleanup_retention_days: cfg.worker.cleanup_retention_days,
        cleanup_batch: cfg.worker.cleanup_batch,
        daily_billing: cfg.worker.daily_billing,
        // Usage feeds the daily billing: collected where billing runs.
        usage_collection: cfg.worker.daily_billing,
        ..WorkerConfig::default()
    }
}

/// Today's date in UTC from a clock.
fn today_utc(clock: &dyn Clock) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp_micros(clock.now().0)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; finishing in-flight work");
}

async fn serve(
    cfg: &Config,
    db: Db,
    listen: &str,
    with_worker: bool,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(
        db.clone(),
        clock.clone(),
        cfg.http(),
        cascade_http::metrics_handle(),
    )
    .with_panels(cfg.panels());
    let app = cascade_http::router(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let registry = cfg.smtp.registry()?;
    let worker = with_worker.then(|| {
        let w = Worker::new(
            db.clone(),
            clock.clone(),
            registry.clone(),
            worker_config(cfg),
        )
        .with_gateway(cascade_http::state::card_gateway(&cfg.http.card_gateway));
        tokio::spawn(w.run(stop_rx.clone()))
    });
    tracing::info!(%addr, backend = db.backend().as_str(), worker = with_worker, "serving");
    ready(addr);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    let _ = stop_tx.send(true);
    if let Some(w) = worker {
        let _ = w.await;
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(url) = &cli.database_url {
        cfg.database_url = SecretString::from(url.clone());
    }
    // Benches print their own figures; their logs only when asked for (RUST_LOG).
    if !matches!(cli.command, Command::Bench { .. }) || std::env::var_os("RUST_LOG").is_some() {
        init_tracing(&cfg);
    }
    match cli.command {
        Command::Serve { listen, no_worker } => {
            let db = connect(&cfg).await?;
            let listen = listen.unwrap_or_else(|| cfg.listen.clone());
            serve(
                &cfg,
                db,
                &listen,
                cfg.worker.in_process && !no_worker,
                |_| {},
            )
            .await
        }
        Command::Worker => {
            let db = connect(&cfg).await?;
            let (tx, rx) = watch::channel(false);
            let w = Worker::new(
                db.clone(),
                Arc::new(SystemClock),
                cfg.smtp.registry()?,
                worker_config(&cfg),
            )
            .with_gateway(cascade_http::state::card_gateway(&cfg.http.card_gateway));
            let handle = tokio::spawn(w.run(rx));
            shutdown_signal().await;
            let _ = tx.send(true);
            let _ = handle.await;
            db.close().await;
            Ok(())
        }
        Command::Migrate => {
            let db = Db::connect(cfg.database_url(), &PoolSettings::default()).await?;
            let applied = cascade_store::migrate::run(&db).await?;
            db.roles().sync_builtin(SystemClock.now()).await?;
            println!(
                "{} migration(s) applied on {}; schema is current",
                applied.len(),
                db.backend().as_str()
            );
            Ok(())
        }
        Command::Demo {
            data_dir,
            listen,
            seed_only,
        } => {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let db_path = data_dir.join("cascade.db");
            // The demo takes card payments through the deterministic test gateway.
            cfg.http.card_gateway = "test".into();
            // The demo's help menu points somewhere (configurable like any setting).
            let help = &mut cfg.panels;
            for (v, demo) in [
                (
                    &mut help.help_tickets_url,
                    "mailto:support@cascade.example?subject=Ticket",
                ),
                (&mut help.help_qa_url, "https://cascade.example/faq"),
                (&mut help.help_docs_url, "/api/v1/openapi.json"),
                (
                    &mut help.support_contact,
                    "support@cascade.example · +49 30 1234567",
                ),
            ] {
                if v.is_empty() {
                    *v = demo.into();
                }
            }
            if cli.database_url.is_none() {
                cfg.database_url = SecretString::from(format!("sqlite://{}", db_path.display()));
            }
            let db = connect(&cfg).await?;
            let (fresh, logins) = demo::seed(&db, SystemClock.now()).await?;
            let banner = move |addr: SocketAddr| {
                println!();
                println!(
                    "Cascade demo {}",
                    if fresh {
                        "(seeded just now)"
                    } else {
                        "(existing data)"
                    }
                );
                println!("  data:     {}", db_path.display());
                println!(
                    "  API:      http://{addr}/api/v1   (OpenAPI: http://{addr}/api/v1/openapi.json)"
                );
                println!("  panel:    http://{addr}/panel   (log in with any login below)");
                println!(
                    "  stores:   http://{addr}/store/1 (provider), http://{addr}/store/2 (Northwind), http://{addr}/store/3 (Bluebird)"
                );
                println!("  password for every login below: {}", demo::DEMO_PASSWORD);
                for l in &logins {
                    println!("  {:<18} {} — {}", l.login, l.account, l.role);
                }
                println!();
                println!(
                    "  try: curl -s -c /tmp/cascade.cookies -H 'content-type: application/json' \\"
                );
                println!(
                    "         -d '{{\"login\":\"provider-admin\",\"password\":\"{}\"}}' http://{addr}/api/v1/session",
                    demo::DEMO_PASSWORD
                );
                println!(
                    "       curl -s -b /tmp/cascade.cookies http://{addr}/api/v1/accounts/1/descendants"
                );
                println!();
            };
            if seed_only {
                banner(
                    listen
                        .parse()
                        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
                );
                return Ok(());
            }
            // The reference mail connector provisions the demo's Office suite plan.
            let _connector = demo_connector::start_demo_connector(&db, &data_dir).await?;
            serve(&cfg, db, &listen, true, banner).await
        }
        Command::Admin {
            command:
                AdminCommand::CreateProvider {
                    name,
                    email,
                    country,
                    currency,
                    language,
                    admin_login,
                    admin_name,
                    admin_email,
                    admin_password,
                },
        } => {
            use secrecy::ExposeSecret;
            let db = connect(&cfg).await?;
            let spec = admin::ProviderSpec {
                name,
                email,
                country,
                language,
                currency,
                admin_login,
                admin_name,
                admin_email,
                admin_password: admin_password.expose_secret().to_string(),
            };
            let (p, u) = admin::create_provider(&db, &spec, SystemClock.now()).await?;
            println!(
                "created provider {} (account id {}) and administrator {} (user id {})",
                p.name,
                p.id,
                u.login.as_str(),
                u.id
            );
            Ok(())
        }
        Command::Billing {
            command: BillingCommand::Run { date, batch },
        } => {
            let db = connect(&cfg).await?;
            let today = match date {
                Some(d) => chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                    .with_context(|| format!("--date {d}: expected YYYY-MM-DD"))?,
                None => today_utc(&SystemClock),
            };
            let due = db
                .subscriptions()
                .accounts_due(&today.to_string(), 0, i64::MAX)
                .await?
                .len() as u64;
            let pb = bench::progress(due, "billing");
            let started = std::time::Instant::now();
            let opts = cascade_worker::billing_run::RunOptions {
                batch,
                crash: None,
                gateway: cascade_http::state::card_gateway(&cfg.http.card_gateway),
                ..Default::default()
            };
            let r = cascade_worker::billing_run::run(
                &db,
                &SystemClock,
                today,
                &opts,
                |done, failed| pb.set_position(done + failed),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            pb.finish_and_clear();
            println!(
                "billing run {} for {today}: {} accounts billed, {} failed (retried next run), {} subscriptions, {} invoices, {} lines in {:.1} s",
                r.run_id,
                r.accounts_done,
                r.accounts_failed,
                r.subscriptions_billed,
                r.documents_written,
                r.lines_written,
                started.elapsed().as_secs_f64()
            );
            println!(
                "{} BO orders, {} invoice.issued and {} subscription.expiring events",
                r.orders_written, r.invoice_events, r.expiring_notices
            );
            println!(
                "wholesale: {} rows for the BO orders; {} tier invoices to resellers covering {} rows ({} chunks failed)",
                r.wholesale_rows, r.tiers.invoices, r.tiers.rows, r.tiers.chunks_failed
            );
            let c = &r.collections;
            println!(
                "collections: {} automatic charges approved, {} declined, {} pending; {} accounts put on credit hold, {} released; PAYG: {} notices, {} cleared, {} held; {} failed",
                c.charges_approved,
                c.charges_declined,
                c.charges_pending,
                c.accounts_held,
                c.accounts_released,
                c.payg_notices,
                c.payg_cleared,
                c.payg_held,
                c.failures
            );
            db.close().await;
            Ok(())
        }
        Command::Maintenance {
            command:
                MaintenanceCommand::CleanupEvents {
                    retention_days,
                    batch,
                },
        } => {
            let db = connect(&cfg).await?;
            let s = cascade_worker::events_cleanup(
                &db,
                SystemClock.now(),
                retention_days.unwrap_or(cfg.worker.cleanup_retention_days),
                batch.unwrap_or(cfg.worker.cleanup_batch),
            )
            .await?;
            println!(
                "events cleanup: {} tasks and {} events removed in {} batches",
                s.tasks_removed, s.events_removed, s.batches
            );
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Usage {
                    instances,
                    resources,
                    backend,
                    pg_url,
                },
        } => bench_usage::usage_bench(instances, resources, &backend, pg_url.as_deref()).await,
        Command::Bench {
            command:
                BenchCommand::Billing {
                    subscriptions,
                    resellers,
                    backend,
                    pg_url,
                    batch,
                    parallel,
                    no_api_probe,
                },
        } => {
            let args = bench_billing::BillingBenchArgs {
                subscriptions,
                resellers,
                backend: &backend,
                pg_url: pg_url.as_deref(),
                batch,
                parallel,
                api_latency: !no_api_probe,
            };
            bench_billing::billing_bench(&args).await
        }
        Command::Bench {
            command:
                BenchCommand::Panel {
                    customers,
                    resellers,
                    sessions,
                    seconds,
                    backend,
                    pg_url,
                    cache_ttl_ms,
                },
        } => {
            bench_panel::panel_bench(&bench_panel::PanelBenchArgs {
                customers,
                resellers,
                sessions: sessions.max(1),
                seconds,
                backend: &backend,
                pg_url: pg_url.as_deref(),
                cache_ttl_ms,
            })
            .await
        }
        Command::Bench {
            command:
                BenchCommand::Tree {
                    accounts,
                    chain,
                    runs,
                    backend,
                    pg_url,
                },
        } => bench::tree_bench(accounts, chain, runs.max(1), pg_url.as_deref(), &backend).await,
        Command::Bench {
            command:
                BenchCommand::Sync {
                    resellers,
                    depth,
                    locked_percent,
                    backend,
                    pg_url,
                },
        } => {
            bench_sync::sync_bench(
                resellers,
                depth,
                locked_percent,
                pg_url.as_deref(),
                &backend,
            )
            .await
        }
    }
}
