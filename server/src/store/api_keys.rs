//! The `api_keys` table.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Conn, schema::api_keys};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::mysql::Mysql))]
pub struct ApiKeyRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_hash: &'a [u8],
    pub scopes: &'a str,
    pub created_by: &'a str,
    pub created_at: NaiveDateTime,
}

pub async fn insert(conn: &mut Conn, row: &NewApiKey<'_>) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values(row)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find_by_hash(conn: &mut Conn, hash: &[u8]) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::secret_hash.eq(hash))
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A key by id, but only inside `project_id`: another project's key is indistinguishable from none.
pub async fn find_in_project(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::id.eq(id))
        .filter(api_keys::project_id.eq(project_id))
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &mut Conn, id: &str) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .find(id)
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Keyset page of a project's keys, oldest first (ids are time-ordered).
pub async fn list_for_project(
    conn: &mut Conn,
    project_id: &str,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<ApiKeyRow>> {
    let mut query = api_keys::table
        .filter(api_keys::project_id.eq(project_id))
        .order(api_keys::id.asc())
        .select(ApiKeyRow::as_select())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(api_keys::id.gt(after.to_string()));
    }
    query.load(conn).await
}

/// Sets `revoked_at` once; revoking again keeps the first time. Returns rows changed.
pub async fn revoke(conn: &mut Conn, id: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(api_keys::table.find(id).filter(api_keys::revoked_at.is_null()))
        .set(api_keys::revoked_at.eq(at))
        .execute(conn)
        .await
}

/// Records use, at most once per `min_interval` per key so authentication stays read-mostly.
pub async fn touch_last_used(
    conn: &mut Conn,
    id: &str,
    now: NaiveDateTime,
    not_since: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        api_keys::table.find(id).filter(
            api_keys::last_used_at
                .is_null()
                .or(api_keys::last_used_at.lt(not_since)),
        ),
    )
    .set(api_keys::last_used_at.eq(now))
    .execute(conn)
    .await
}
