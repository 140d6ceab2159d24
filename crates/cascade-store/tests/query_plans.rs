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
