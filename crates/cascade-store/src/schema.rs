//! The logical schema as each backend reports it, normalised so the two can be compared:
//! a test proves that SQLite and PostgreSQL end at the same tables, columns, types,
//! nullability and indexes after all migrations.

use crate::{Db, StoreResult};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    pub table: String,
    pub name: String,
    /// `integer`, `text` or `boolean`.
    pub kind: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogicalSchema {
    pub columns: BTreeSet<Column>,
    /// (table, index name); primary-key indexes excluded.
    pub indexes: BTreeSet<(String, String)>,
}

fn normalise_type(t: &str) -> String {
    let t = t.to_ascii_lowercase();
    if t.contains("int") {
        "integer".into()
    } else if t.contains("bool") {
        "boolean".into()
    } else if t.contains("text") || t.contains("char") {
        "text".into()
    } else {
        t
    }
}

pub async fn logical_schema(db: &Db) -> StoreResult<LogicalSchema> {
    let mut s = LogicalSchema::default();
    match db {
        Db::Sqlite { read, .. } => {
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'cascade_migrations' ORDER BY name",
            )
            .fetch_all(read)
            .await?;
            for (table,) in tables {
                let cols: Vec<(String, String, i64, i64)> =
                    sqlx::query_as("SELECT name, type, \"notnull\", pk FROM pragma_table_info($1)")
                        .bind(&table)
                        .fetch_all(read)
                        .await?;
                for (name, ty, notnull, pk) in cols {
                    s.columns.insert(Column {
                        table: table.clone(),
                        name,
                        kind: normalise_type(&ty),
                        nullable: notnull == 0 && pk == 0,
                    });
                }
                let idx: Vec<(String, String)> =
                    sqlx::query_as("SELECT name, origin FROM pragma_index_list($1)")
                        .bind(&table)
                        .fetch_all(read)
                        .await?;
                for (name, origin) in idx {
                    if origin == "c" {
                        s.indexes.insert((table.clone(), name));
                    }
                }
            }
        }
        Db::Postgres(p) => {
            let cols: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name <> 'cascade_migrations'",
            )
            .fetch_all(p)
            .await?;
            for (table, name, ty, nullable) in cols {
                s.columns.insert(Column {
                    table,
                    name,
                    kind: normalise_type(&ty),
                    nullable: nullable == "YES",
                });
            }
            let idx: Vec<(String, String)> = sqlx::query_as(
                "SELECT i.tablename::text, i.indexname::text FROM pg_indexes i
                 WHERE i.schemaname = current_schema() AND i.tablename <> 'cascade_migrations' AND i.indexname NOT LIKE '%_pkey'",
            )
            .fetch_all(p)
            .await?;
            s.indexes.extend(idx);
        }
    }
    Ok(s)
}
