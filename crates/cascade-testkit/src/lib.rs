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
