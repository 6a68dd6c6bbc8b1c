//! Schema migrations from `migrations/`, embedded in the binary at build time.

use std::collections::HashSet;

use diesel::{QueryableByName, migration::MigrationSource, mysql::Mysql, sql_types::Text};
use diesel_async::{AsyncMigrationHarness, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{DbError, Pool, connect, get};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Applies every pending migration; returns the versions applied. Needs a multi-threaded tokio
/// runtime (diesel's migration harness is synchronous and runs under `block_in_place`).
pub async fn run_migrations(url: &str) -> Result<Vec<String>, DbError> {
    let conn = connect(url).await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(applied.into_iter().map(|v| v.to_string()).collect())
}

#[derive(QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = Text)]
    version: String,
}

/// Migrations embedded in this binary that the database has not applied yet, by name.
pub async fn pending_migrations(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut conn = get(pool).await?;
    let applied: HashSet<String> = match diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load::<AppliedVersion>(&mut *conn)
        .await
    {
        Ok(rows) => rows.into_iter().map(|r| r.version).collect(),
        // No bookkeeping table yet: nothing applied.
        Err(diesel::result::Error::DatabaseError(_, info)) if info.message().contains("doesn't exist") => {
            HashSet::new()
        }
        Err(e) => return Err(e.into()),
    };
    let embedded = MigrationSource::<Mysql>::migrations(&MIGRATIONS).map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(embedded
        .iter()
        .filter(|m| !applied.contains(&m.name().version().to_string()))
        .map(|m| m.name().to_string())
        .collect())
}
