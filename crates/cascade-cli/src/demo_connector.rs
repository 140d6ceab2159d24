//! The demo's mail service: the reference connector, started in-process on a loopback
//! port next to the demo server, and registered (or re-pointed, since the port changes
//! between runs) as the provider's connector instance for the `office` service — so
//! ordering the demo's Office suite plan provisions mailboxes (one per seat) in it, and
//! its usage is collected back. Its certificate, key and store live in the demo's data
//! directory, so the pin and the mailboxes survive restarts.

use cascade_domain::clock::{Clock, SystemClock};
use cascade_mail_connector::{Config, Running, start};
use cascade_store::Db;
use cascade_store::connectors::{ConnectorInstances, NewInstance};
use std::path::Path;
use std::time::Duration;

/// The demo service's shared secret. Demo data only.
const DEMO_SECRET: &str = "cascade-demo-connector-secret";

/// Start the demo connector and make sure the provider's `office` instance points at it.
pub async fn start_demo_connector(db: &Db, data_dir: &Path) -> anyhow::Result<Running> {
    let running = start(Config {
        data_dir: Some(data_dir.join("mail-connector")),
        secret: DEMO_SECRET.into(),
        async_delay: Duration::from_secs(1),
        // The demo catalog sells Office seats; each seat is a mailbox.
        mailbox_code: "seat".into(),
        service: "office".into(),
        ..Config::default()
    })
    .await?;
    let Some(provider) = db.accounts().provider().await? else {
        anyhow::bail!("the demo has no provider");
    };
    let now = SystemClock.now();
    match db
        .connector_instances()
        .for_service(provider.id, "office")
        .await?
    {
        Some(i) => {
            db.connector_instances()
                .update_endpoint(i.id, &running.base_url(), Some(&running.pin), now)
                .await?
        }
        None => {
            let mut tx = db.begin().await?;
            ConnectorInstances::create(
                &mut tx,
                provider.id,
                &NewInstance {
                    service: "office".into(),
                    name: "Demo Mail (reference connector)".into(),
                    endpoint: running.base_url(),
                    secret: DEMO_SECRET.into(),
                    cert_pin: Some(running.pin.clone()),
                    timeout_ms: 10_000,
                },
                now,
            )
            .await?;
            tx.commit().await?;
        }
    }
    println!(
        "  mail connector: {} (pin {})",
        running.base_url(),
        running.pin
    );
    Ok(running)
}
