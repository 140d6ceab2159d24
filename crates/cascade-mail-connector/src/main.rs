//! `cascade-mail-connector`: the reference connector as its own process.
//!
//! Prints one line `listening https://ADDR pin=HEX` once it serves (tests and scripts
//! read it), then serves until interrupted.

use cascade_mail_connector::{Config, Fault, start};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "cascade-mail-connector",
    about = "Demo mail service speaking Cascade's connector protocol over HTTPS"
)]
struct Args {
    /// Address to listen on (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: std::net::SocketAddr,
    /// Directory for the certificate, key and store (created if missing).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The instance's shared secret (as registered in Cascade).
    #[arg(long, env = "CASCADE_CONNECTOR_SECRET", hide_env_values = true)]
    secret: String,
    /// The instance id Cascade gave this connector; requests for others are refused.
    #[arg(long)]
    instance_id: Option<i64>,
    /// Tolerated clock skew, seconds.
    #[arg(long, default_value_t = 300)]
    skew_secs: i64,
    /// Seconds a provisioning takes (answered 202 + Retry-After until then).
    #[arg(long, default_value_t = 1)]
    async_delay_secs: u64,
    /// Misbehave, for fault tests.
    #[arg(long, value_enum, default_value_t = Fault::None)]
    fault: Fault,
    /// Synthetic resources to create at start.
    #[arg(long, default_value_t = 0)]
    seed_resources: usize,
    /// Subscription id of the first synthetic resource (`sub-N`).
    #[arg(long, default_value_t = 1)]
    seed_first: i64,
    /// Resource type code whose limit is the number of mailboxes.
    #[arg(long, default_value = "mailbox")]
    mailbox_code: String,
    /// Service name in the self-description (what Cascade's resource types name).
    #[arg(long, default_value = "mail")]
    service: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let running = start(Config {
        listen: a.listen,
        data_dir: a.data_dir,
        secret: a.secret,
        instance_id: a.instance_id,
        skew_secs: a.skew_secs,
        async_delay: Duration::from_secs(a.async_delay_secs),
        fault: a.fault,
        seed_resources: a.seed_resources,
        seed_first: a.seed_first,
        mailbox_code: a.mailbox_code,
        service: a.service,
    })
    .await?;
    println!("listening {} pin={}", running.base_url(), running.pin);
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await?;
    running.stop().await;
    Ok(())
}
