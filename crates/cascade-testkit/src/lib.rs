//! Test support: a fresh, migrated database per test on either backend.
//!
//! SQLite tests get a file in a temporary directory (WAL needs a file). PostgreSQL
//! tests get their own schema in the database named by `CASCADE_TEST_PG_URL`, which
//! the project's test command (`scripts/test`) provides after making sure a server is
//! running. Without that variable a PostgreSQL test fails with instructions: a test
//! that silently skips its second backend would prove nothing.

pub use cascade_store::Db;
use cascade_store::db::PoolSettings;

pub struct TestDb {
    pub db: Db,
    _dir: Option<tempfile::TempDir>,
}

pub const PG_URL_VAR: &str = "CASCADE_TEST_PG_URL";

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let db = Db::connect_and_migrate(
            &url,
            &PoolSettings {
                max_connections: 4,
                pg_schema: None,
            },
        )
        .await
        .expect("sqlite test db");
        db.roles()
            .sync_builtin(cascade_domain_now())
            .await
            .expect("builtin roles");
        TestDb {
            db,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> TestDb {
        let (url, schema) = Self::postgres_schema().await;
        let db = Db::connect_and_migrate(
            &url,
            &PoolSettings {
                max_connections: 4,
                pg_schema: Some(schema),
            },
        )
        .await
        .expect("postgres test db");
        db.roles()
            .sync_builtin(cascade_domain_now())
            .await
            .expect("builtin roles");
        TestDb { db, _dir: None }
    }

    /// A new empty schema in the test database: (url, schema name).
    pub async fn postgres_schema() -> (String, String) {
        let url = std::env::var(PG_URL_VAR).unwrap_or_else(|_| {
            panic!("{PG_URL_VAR} is not set: run the suite with `scripts/test`, which starts PostgreSQL and sets it")
        });
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&url)
            .await
            .expect("connect to the PostgreSQL test database");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create test schema");
        admin.close().await;
        (url, schema)
    }

    pub async fn for_backend(backend: &str) -> TestDb {
        match backend {
            "sqlite" => Self::sqlite().await,
            "postgres" => Self::postgres().await,
            other => panic!("unknown backend {other}"),
        }
    }
}

fn cascade_domain_now() -> cascade_domain::clock::Timestamp {
    use cascade_domain::clock::Clock;
    cascade_domain::clock::SystemClock.now()
}

/// Define storage tests that run once on SQLite and once on PostgreSQL:
///
/// ```ignore
/// cascade_testkit::both_backends! {
///     async fn creates_things(db) { /* use db: Db */ }
/// }
/// ```
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($db:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($db: $crate::Db) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = $crate::TestDb::sqlite().await;
                run(t.db.clone()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let t = $crate::TestDb::postgres().await;
                run(t.db.clone()).await;
            }
        }
    )*};
}

/// A real SMTP sink process (the `smtp-sink` binary of this crate) for tests of mail
/// delivery: started per test, killed on drop, received messages read back as JSON.
pub mod smtp {
    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// One message the sink received.
    #[derive(Debug, Clone, serde::Deserialize)]
    pub struct ReceivedMail {
        pub from: String,
        pub to: Vec<String>,
        pub subject: Option<String>,
        pub text: Option<String>,
        pub html: Option<String>,
        pub raw: String,
    }

    pub struct SmtpSink {
        child: Child,
        dir: tempfile::TempDir,
        pub port: u16,
    }

    /// The sink binary next to the running test's directory (`target/<profile>/`),
    /// built first if it is missing.
    fn binary() -> PathBuf {
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(|d| {
                if d.ends_with("deps") {
                    d.parent()
                } else {
                    Some(d)
                }
            })
            .expect("target directory")
            .to_path_buf();
        let bin = profile_dir.join(format!("smtp-sink{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "cascade-testkit", "--bin", "smtp-sink"])
                .status()
                .expect("run cargo to build smtp-sink");
            assert!(
                status.success() && bin.exists(),
                "could not build {}; run `cargo build -p cascade-testkit --bin smtp-sink`",
                bin.display()
            );
        }
        bin
    }

    /// A port nobody listens on right now (for "the SMTP server is down" tests).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    }

    impl SmtpSink {
        /// Start a sink on a free port.
        pub fn start() -> SmtpSink {
            Self::start_on(0)
        }

        /// Start a sink on `port` (0: any free port) and wait until it listens.
        pub fn start_on(port: u16) -> SmtpSink {
            let dir = tempfile::tempdir().expect("sink dir");
            let mut child = Command::new(binary())
                .args(["--listen", &format!("127.0.0.1:{port}"), "--dir"])
                .arg(dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start smtp-sink");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("sink stdout"))
                .read_line(&mut line)
                .expect("read the sink's first line");
            let port = line
                .trim()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("smtp-sink did not start: {line:?}"));
            SmtpSink { child, dir, port }
        }

        /// Every message received so far, in arrival order.
        pub fn messages(&self) -> Vec<ReceivedMail> {
            let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
                .expect("read sink dir")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            files
                .iter()
                .map(|f| {
                    serde_json::from_slice(&std::fs::read(f).expect("read message"))
                        .expect("parse message")
                })
                .collect()
        }

        /// Wait (bounded) until at least `n` messages arrived; returns them all.
        pub fn wait_for(&self, n: usize) -> Vec<ReceivedMail> {
            let start = Instant::now();
            loop {
                let m = self.messages();
                if m.len() >= n || start.elapsed() > Duration::from_secs(10) {
                    return m;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        /// Stop the sink (the SMTP server goes away).
        pub fn stop(mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for SmtpSink {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
