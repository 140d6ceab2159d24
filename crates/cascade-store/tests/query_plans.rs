//! The indexes hot reads depend on, checked in each backend's query plan: a query that
//! silently falls back to scanning a table is fast in tests and slow at a million rows.

use cascade_store::{Db, Tx};
use cascade_testkit::both_backends;

/// The backend's plan of `sql` as text (PostgreSQL with sequential scans discouraged, so
/// that a usable index shows even on an empty table).
async fn plan_of(db: &Db, sql: &str) -> String {
    let mut tx = db.begin().await.unwrap();
    let text = match &mut tx {
        Tx::Sqlite(t) => {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(&mut **t)
                    .await
                    .unwrap();
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
        }
        Tx::Postgres(t) => {
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut **t)
                .await
                .unwrap();
            let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {sql}"))
                .fetch_all(&mut **t)
                .await
                .unwrap();
            rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
        }
    };
    drop(tx);
    text
}

both_backends! {
    async fn unfinished_orders_of_a_subscription_are_read_through_their_partial_index(db) {
        let plan = plan_of(&db, "SELECT id FROM orders WHERE subscription_id = 7 AND status NOT IN ('completed', 'cancelled') ORDER BY id").await;
        assert!(plan.contains("orders_open_subscription"), "{plan}");
    }

    async fn a_resellers_uninvoiced_wholesale_rows_are_read_through_their_partial_index(db) {
        let plan = plan_of(&db, "SELECT id FROM wholesale_transactions WHERE buyer_account_id = 3 AND document_id IS NULL ORDER BY id").await;
        assert!(plan.contains("wholesale_buyer_open"), "{plan}");
    }
}

/// The columns of every index on `table` (expression indexes count as their expression).
async fn indexed_columns(db: &Db, table: &str) -> Vec<String> {
    let mut tx = db.begin().await.unwrap();
    let cols = match &mut tx {
        Tx::Sqlite(t) => {
            let names: Vec<(String,)> = sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1",
            )
            .bind(table)
            .fetch_all(&mut **t)
            .await
            .unwrap();
            let mut cols = Vec::new();
            for (name,) in names {
                let rows: Vec<(Option<String>,)> =
                    sqlx::query_as("SELECT name FROM pragma_index_info($1)")
                        .bind(&name)
                        .fetch_all(&mut **t)
                        .await
                        .unwrap();
                cols.extend(
                    rows.into_iter()
                        .map(|r| r.0.unwrap_or_else(|| name.clone())),
                );
            }
            cols
        }
        Tx::Postgres(t) => {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT pg_get_indexdef(i.indexrelid, k, true) FROM pg_index i
                 CROSS JOIN LATERAL generate_series(1, i.indnatts) AS k
                 WHERE i.indrelid = $1::regclass",
            )
            .bind(table)
            .fetch_all(&mut **t)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.0).collect()
        }
    };
    drop(tx);
    cols
}

both_backends! {
    async fn a_renewal_changes_no_indexed_column_of_subscriptions(db) {
        // The daily run moves these on every renewal (`billing_batch::move_subscriptions`);
        // indexed, each move would write an entry in every index of the table (no HOT
        // update on PostgreSQL). `status` is set too but keeps its value on a renewal.
        let cols = indexed_columns(&db, "subscriptions").await;
        assert!(cols.iter().any(|c| c == "account_id"), "read the catalog: {cols:?}");
        for moved in ["next_bill_date", "expires_on", "version", "updated_at"] {
            assert!(!cols.iter().any(|c| c.contains(moved)), "{moved} is indexed: {cols:?}");
        }
        if let Db::Postgres(p) = &db {
            let (opts,): (Option<Vec<String>>,) = sqlx::query_as("SELECT reloptions FROM pg_class WHERE oid = 'subscriptions'::regclass")
                .fetch_one(p).await.unwrap();
            assert_eq!(opts, Some(vec!["fillfactor=50".to_string()]), "room on each page for the run's new row versions");
        }
    }

    async fn the_runs_wholesale_upserts_change_no_indexed_column(db) {
        // `wholesale::record_recurring` grows `amount_minor` and `periods` of the run's
        // consolidated rows in every batch: in place (HOT) on PostgreSQL as long as no
        // index contains them and the page has room (migration 23).
        let cols = indexed_columns(&db, "wholesale_transactions").await;
        assert!(cols.iter().any(|c| c == "charge_key"), "read the catalog: {cols:?}");
        for grown in ["amount_minor", "periods"] {
            assert!(!cols.iter().any(|c| c.contains(grown)), "{grown} is indexed: {cols:?}");
        }
        if let Db::Postgres(p) = &db {
            let (opts,): (Option<Vec<String>>,) = sqlx::query_as("SELECT reloptions FROM pg_class WHERE oid = 'wholesale_transactions'::regclass")
                .fetch_one(p).await.unwrap();
            assert_eq!(opts, Some(vec!["fillfactor=50".to_string()]));
        }
    }
}

both_backends! {
    async fn dangling_references_are_found(db) {
        assert!(cascade_store::integrity::dangling_references(&db).await.unwrap().is_empty());
        // A line of a document that does not exist. PostgreSQL accepts it (no foreign key
        // there since migration 22); SQLite's writer checks foreign keys, turned off here
        // for this one insert.
        let insert = "INSERT INTO document_lines (document_id, line_kind, description, quantity, unit_price_micro, amount_minor)
                      VALUES (987654, 'recurring', 'orphan', 1, 100, 1)";
        match &db {
            Db::Postgres(p) => {
                sqlx::query(insert).execute(p).await.unwrap();
            }
            Db::Sqlite { write, .. } => {
                let mut c = write.acquire().await.unwrap();
                sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut *c).await.unwrap();
                sqlx::query(insert).execute(&mut *c).await.unwrap();
                sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *c).await.unwrap();
            }
        }
        assert_eq!(
            cascade_store::integrity::dangling_references(&db).await.unwrap(),
            vec![("document_lines.document_id", 1)]
        );
    }
}

/// SQLite plans from `sqlite_stat1`, which only `ANALYZE` writes: a database nobody has
/// analysed must still read a billing batch's subscriptions through their accounts, not
/// through `subscriptions_status` (every live subscription, for each batch). PostgreSQL
/// plans from the statistics autovacuum keeps.
#[tokio::test]
async fn a_billing_batch_finds_its_due_subscriptions_through_their_accounts_without_statistics() {
    let t = cascade_testkit::TestDb::sqlite().await;
    let sql = cascade_store::billing_batch::due_subscriptions_sql(t.db.backend())
        .replace("$1", "'[1,2,3]'")
        .replace("$2", "'2025-03-01'");
    let plan = plan_of(&t.db, &sql).await;
    assert!(plan.contains("subscriptions_account"), "{plan}");
    assert!(!plan.contains("subscriptions_status"), "{plan}");
}
