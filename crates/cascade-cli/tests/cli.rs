//! The binary end to end: bootstrap on an empty database (both backends), the demo seed,
//! and `serve` answering with a demo login.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn cascade() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cascade"));
    c.env_remove("CASCADE_DATABASE_URL")
        .env_remove("CASCADE_CONFIG")
        .env("RUST_LOG", "warn");
    c
}

fn create_provider(url: &str) -> std::process::Output {
    cascade()
        .args([
            "--database-url",
            url,
            "admin",
            "create-provider",
            "--name",
            "Acme Distribution",
            "--email",
            "ops@acme.example",
            "--country",
            "DE",
            "--currency",
            "EUR",
            "--admin-login",
            "root-admin",
            "--admin-name",
            "Root",
            "--admin-email",
            "root@acme.example",
        ])
        .env("CASCADE_ADMIN_PASSWORD", "a long enough password")
        .output()
        .unwrap()
}

fn bootstrap_twice(url: &str) {
    let first = create_provider(url);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("created provider Acme Distribution"));
    let second = create_provider(url);
    assert!(
        !second.status.success(),
        "a second provider must be refused"
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("already has its provider"));
}

#[test]
fn admin_bootstrap_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap_twice(&format!("sqlite://{}", dir.path().join("x.db").display()));
}

#[test]
fn admin_bootstrap_on_postgres() {
    let url = std::env::var("CASCADE_TEST_PG_URL").expect("CASCADE_TEST_PG_URL: run scripts/test");
    let schema = format!("cli_{}", std::process::id());
    let out = Command::new("psql")
        .arg(&url)
        .args(["-q", "-c", &format!("CREATE SCHEMA {schema}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bootstrap_twice(&format!("{url}?options=-csearch_path%3D{schema}"));
}

#[test]
fn migrate_reports_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let a = cascade()
        .args(["--database-url", &url, "migrate"])
        .output()
        .unwrap();
    assert!(a.status.success());
    let all = cascade_store::migrate::MIGRATIONS.len();
    assert!(String::from_utf8_lossy(&a.stdout).starts_with(&format!("{all} migration(s) applied")));
    let b = cascade()
        .args(["--database-url", &url, "migrate"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&b.stdout).starts_with("0 migration(s) applied"));
}

#[test]
fn demo_seeds_once_and_serves_working_logins() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let seed = cascade()
        .args(["demo", "--seed-only", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    let text = String::from_utf8_lossy(&seed.stdout);
    assert!(
        text.contains("(seeded just now)")
            && text.contains("northwind-admin")
            && text.contains("alpine-admin")
    );
    let again = cascade()
        .args(["demo", "--seed-only", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("(existing data)"));

    // Serve on a free port and log in with a printed login.
    let mut child = cascade()
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Keep draining the child's output after the address shows up: a closed pipe would
    // make its next print fail.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("API:") {
                let _ = tx.send(
                    rest.trim()
                        .strip_prefix("http://")
                        .and_then(|s| s.split('/').next())
                        .map(str::to_string),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .ok()
        .flatten();
    let addr = addr.expect("the demo prints its address");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(&addr).await?;
        let body = r#"{"login":"northwind-admin","password":"cascade-demo"}"#;
        let req = format!("POST /api/v1/session HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        stream.write_all(req.as_bytes()).await?;
        let mut resp = String::new();
        stream.read_to_string(&mut resp).await?;
        Ok::<_, std::io::Error>(resp)
    });
    let _ = child.kill();
    let _ = child.wait();
    let resp = result.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_lowercase().contains("set-cookie: cascade_session="),
        "{resp}"
    );
    assert!(resp.contains("Northwind Resellers"), "{resp}");
}

/// The demo with SMTP pointed at a real sink process: the provisioned office-suite order
/// of Contoso (a Northwind customer; Northwind inherits the provider's template, signed
/// with Northwind's name as the seller) sends
/// the order-completed mail, which the sink receives.
#[test]
fn demo_order_completed_mail_reaches_the_smtp_sink() {
    let sink = cascade_testkit::smtp::SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let mut child = cascade()
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("demo"))
        .env("CASCADE_SMTP__HOST", "127.0.0.1")
        .env("CASCADE_SMTP__PORT", sink.port.to_string())
        .env(
            "CASCADE_SMTP__FROM",
            "Cascade Demo <noreply@cascade.example>",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim().starts_with("API:") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("the demo serves");
    // The worker provisions the paid order, then mails; bounded wait.
    let start = std::time::Instant::now();
    let found = loop {
        let got = sink.messages();
        if let Some(m) = got.iter().find(|m| {
            m.to == ["carl@contoso.example"]
                && m.subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with("Your order "))
        }) {
            break Some(m.clone());
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let m = found.unwrap_or_else(|| {
        panic!(
            "no order-completed mail for Contoso; sink got {:?}",
            sink.messages()
                .iter()
                .map(|m| (&m.to, &m.subject))
                .collect::<Vec<_>>()
        )
    });
    assert!(
        m.subject.as_deref().unwrap().ends_with(" is complete"),
        "{m:?}"
    );
    let text = m.text.unwrap();
    assert!(
        text.contains("Contoso Ltd") && text.contains("Northwind Resellers"),
        "{text}"
    );
    assert_eq!(m.from, "noreply@cascade.example");
}
