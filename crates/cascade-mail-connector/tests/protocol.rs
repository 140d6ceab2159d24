//! Cascade's connector client against the reference connector over HTTPS on loopback:
//! the real binary (spawned) for the protocol and restarts, in-process servers for
//! the faults.

use cascade_connector::{ConnectorClient, ConnectorError, Endpoint, HttpMethod, Secret};
use cascade_domain::clock::SystemClock;
use cascade_domain::connector::{Customer, OperationStatus, ResourceRequest, ResourceState};
use cascade_mail_connector::{Config, Fault, start};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "0123456789abcdef-secret";

struct Proc {
    child: Child,
    url: String,
    pin: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, listen: &str, extra: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cascade-mail-connector"))
        .args([
            "--listen",
            listen,
            "--secret",
            SECRET,
            "--instance-id",
            "7",
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn connector");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let line = line.trim();
    let rest = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let (url, pin) = rest.split_once(" pin=").unwrap();
    Proc {
        child,
        url: url.to_string(),
        pin: pin.to_string(),
    }
}

fn client(url: &str, pin: Option<&str>, secret: &str, timeout: Duration) -> ConnectorClient {
    ConnectorClient::new(
        Endpoint {
            instance_id: 7,
            base_url: url.to_string(),
            secret: Secret(secret.to_string()),
            cert_pin: pin.map(str::to_string),
            timeout,
            skew_secs: 300,
        },
        Arc::new(SystemClock),
    )
    .unwrap()
}

fn request(id: &str, boxes: i64) -> ResourceRequest {
    ResourceRequest {
        resource_id: id.into(),
        customer: Customer {
            id: 1,
            name: "Acme".into(),
        },
        limits: [("mailbox".to_string(), boxes)].into(),
        settings: serde_json::json!({"domain": "acme.test"}),
        state: ResourceState::Active,
    }
}

#[tokio::test]
async fn real_binary_speaks_the_whole_protocol_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn(dir.path(), "127.0.0.1:0", &["--async-delay-secs", "1"]);
    let c = client(&p.url, Some(&p.pin), SECRET, Duration::from_secs(5));
    let d = c.describe().await.unwrap();
    assert_eq!(d.service, "mail");
    assert!(d.resource_types.iter().any(|t| t.code == "mailbox"));
    c.health().await.unwrap();

    // Async path: 202 pending with Retry-After, then polled to done.
    let first = c
        .call(
            HttpMethod::POST,
            "/resources",
            "tx-1",
            Some(&serde_json::to_vec(&request("sub-1", 3)).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(first.status, 202);
    assert_eq!(first.retry_after, Some(1));
    let r = c
        .operate(
            HttpMethod::POST,
            "/resources",
            "tx-1",
            Some(&request("sub-1", 3)),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(r.status, OperationStatus::Done);
    assert_eq!(
        r.resource.unwrap()["mailboxes"].as_array().unwrap().len(),
        3
    );
    // Same transaction again: same effect, not a second resource or a changed one.
    let again = c
        .operate(
            HttpMethod::POST,
            "/resources",
            "tx-1",
            Some(&request("sub-1", 9)),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        again.resource.unwrap()["mailboxes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Configure and suspend.
    let mut req = request("sub-1", 5);
    req.state = ResourceState::Suspended;
    let r = c
        .operate(
            HttpMethod::PUT,
            "/resources/sub-1",
            "tx-2",
            Some(&req),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(r.resource.as_ref().unwrap()["state"], "suspended");
    assert_eq!(
        r.resource.unwrap()["mailboxes"].as_array().unwrap().len(),
        5
    );

    // Usage: levels and a counter.
    let u = c.usage("2030-01-01").await.unwrap();
    assert_eq!(u.readings.len(), 3);
    assert!(
        u.readings
            .iter()
            .any(|r| r.resource_type == "mailbox" && r.value == 5)
    );

    // Restart on the same data dir: same certificate (pin), same store.
    let url = p.url.clone();
    let addr = url.trim_start_matches("https://").to_string();
    let pin = p.pin.clone();
    drop(p);
    let p2 = spawn(dir.path(), &addr, &[]);
    assert_eq!(p2.pin, pin);
    let c = client(&p2.url, Some(&pin), SECRET, Duration::from_secs(5));
    let a = c
        .call(HttpMethod::GET, "/resources/sub-1", "tx-read", None)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["customer"]["name"], "Acme");

    // Idempotent unprovision.
    for tx in ["tx-del-1", "tx-del-2"] {
        let r = c
            .operate::<()>(
                HttpMethod::DELETE,
                "/resources/sub-1",
                tx,
                None,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r.status, OperationStatus::Done);
    }

    // A wrong secret is refused by the connector (and its answer cannot be verified by us either).
    let bad = client(
        &p2.url,
        Some(&pin),
        "another-secret-value",
        Duration::from_secs(5),
    );
    assert!(matches!(
        bad.describe().await,
        Err(ConnectorError::BadSignature(_))
    ));
    // A different pin is refused at the TLS handshake.
    let other_pin = "00".repeat(32);
    let wrong = client(&p2.url, Some(&other_pin), SECRET, Duration::from_secs(5));
    assert!(
        matches!(wrong.describe().await, Err(ConnectorError::Unreachable(m)) if m.contains("pinned")),
        "pin mismatch"
    );
    // No pin: the self-signed certificate is not trusted by the web PKI.
    let unpinned = client(&p2.url, None, SECRET, Duration::from_secs(5));
    assert!(matches!(
        unpinned.describe().await,
        Err(ConnectorError::Unreachable(_))
    ));
}

#[tokio::test]
async fn faults_are_errors_that_say_whether_to_retry() {
    let cfg = |fault| Config {
        secret: SECRET.into(),
        fault,
        async_delay: Duration::ZERO,
        ..Config::default()
    };
    let garbage = start(cfg(Fault::Garbage)).await.unwrap();
    let c = client(
        &garbage.base_url(),
        Some(&garbage.pin),
        SECRET,
        Duration::from_secs(5),
    );
    let e = c.describe().await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::Garbage(_)) && e.is_retryable(),
        "{e:?}"
    );

    let broken = start(cfg(Fault::Error500)).await.unwrap();
    let c = client(
        &broken.base_url(),
        Some(&broken.pin),
        SECRET,
        Duration::from_secs(5),
    );
    let e = c.describe().await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Status { status: 500, message } if message == "the mail service is broken"),
        "{e:?}"
    );
    assert!(e.is_retryable());

    let forged = start(cfg(Fault::BadSignature)).await.unwrap();
    let c = client(
        &forged.base_url(),
        Some(&forged.pin),
        SECRET,
        Duration::from_secs(5),
    );
    let e = c.describe().await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::BadSignature(m) if m.contains("does not match")),
        "{e:?}"
    );

    let hang = start(cfg(Fault::Hang)).await.unwrap();
    let c = client(
        &hang.base_url(),
        Some(&hang.pin),
        SECRET,
        Duration::from_millis(300),
    );
    assert_eq!(c.describe().await.unwrap_err(), ConnectorError::Timeout);

    // A refusal: not a mail domain → failed, not retryable.
    let ok = start(cfg(Fault::None)).await.unwrap();
    let c = client(
        &ok.base_url(),
        Some(&ok.pin),
        SECRET,
        Duration::from_secs(5),
    );
    let mut req = request("sub-2", 1);
    req.settings = serde_json::json!({"domain": "nodots"});
    let e = c
        .operate(
            HttpMethod::POST,
            "/resources",
            "tx-x",
            Some(&req),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Refused(m) if m.contains("not a mail domain"))
            && !e.is_retryable(),
        "{e:?}"
    );
    // The fault can be switched off: the same connector then works.
    broken.shared.set_fault(Fault::None);
    let c = client(
        &broken.base_url(),
        Some(&broken.pin),
        SECRET,
        Duration::from_secs(5),
    );
    assert_eq!(c.describe().await.unwrap().service, "mail");
    for r in [garbage, broken, forged, hang, ok] {
        r.stop().await;
    }
}
