//! The `portal_sessions` and `portal_settings` tables.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    Conn,
    schema::{portal_sessions, portal_settings},
};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = portal_sessions, check_for_backend(diesel::mysql::Mysql))]
pub struct PortalSessionRow {
    pub id: String,
    pub project_id: String,
    pub customer_id: String,
    pub link_hash: Vec<u8>,
    pub credential_hash: Option<Vec<u8>>,
    pub return_url: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    pub actor: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub exchanged_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

pub async fn insert(conn: &mut Conn, row: &PortalSessionRow) -> QueryResult<()> {
    diesel::insert_into(portal_sessions::table)
        .values(row)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<PortalSessionRow>> {
    portal_sessions::table
        .filter(portal_sessions::id.eq(id))
        .filter(portal_sessions::project_id.eq(project_id))
        .select(PortalSessionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_key(conn: &mut Conn, project_id: &str, key: &str) -> QueryResult<Option<PortalSessionRow>> {
    portal_sessions::table
        .filter(portal_sessions::project_id.eq(project_id))
        .filter(portal_sessions::idempotency_key.eq(key))
        .select(PortalSessionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_link(conn: &mut Conn, link_hash: &[u8]) -> QueryResult<Option<PortalSessionRow>> {
    portal_sessions::table
        .filter(portal_sessions::link_hash.eq(link_hash))
        .select(PortalSessionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_credential(conn: &mut Conn, credential_hash: &[u8]) -> QueryResult<Option<PortalSessionRow>> {
    portal_sessions::table
        .filter(portal_sessions::credential_hash.eq(credential_hash))
        .select(PortalSessionRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Records the exchange of the link for a credential, when the session is still unused,
/// unrevoked and unexpired at `now`; answers whether it did (a second exchange does not).
pub async fn exchange(conn: &mut Conn, id: &str, credential_hash: &[u8], now: NaiveDateTime) -> QueryResult<bool> {
    let changed = diesel::update(portal_sessions::table)
        .filter(portal_sessions::id.eq(id))
        .filter(portal_sessions::exchanged_at.is_null())
        .filter(portal_sessions::revoked_at.is_null())
        .filter(portal_sessions::expires_at.gt(now))
        .set((
            portal_sessions::credential_hash.eq(credential_hash),
            portal_sessions::exchanged_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(changed == 1)
}

/// Revokes a session; answers whether it was live before.
pub async fn revoke(conn: &mut Conn, id: &str, now: NaiveDateTime) -> QueryResult<bool> {
    let changed = diesel::update(portal_sessions::table)
        .filter(portal_sessions::id.eq(id))
        .filter(portal_sessions::revoked_at.is_null())
        .set(portal_sessions::revoked_at.eq(now))
        .execute(conn)
        .await?;
    Ok(changed == 1)
}

/// A customer's sessions, newest first, `limit` of them after the `after` id (ids are
/// time-ordered).
pub async fn list_for_customer(
    conn: &mut Conn,
    project_id: &str,
    customer_id: &str,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<PortalSessionRow>> {
    let mut query = portal_sessions::table
        .filter(portal_sessions::project_id.eq(project_id))
        .filter(portal_sessions::customer_id.eq(customer_id))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(portal_sessions::id.lt(after));
    }
    query
        .order(portal_sessions::id.desc())
        .limit(limit)
        .select(PortalSessionRow::as_select())
        .load(conn)
        .await
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = portal_settings, check_for_backend(diesel::mysql::Mysql))]
pub struct PortalSettingsRow {
    pub project_id: String,
    pub logo_url: Option<String>,
    pub updated_at: NaiveDateTime,
}

pub async fn settings(conn: &mut Conn, project_id: &str) -> QueryResult<Option<PortalSettingsRow>> {
    portal_settings::table
        .find(project_id)
        .select(PortalSettingsRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn upsert_settings(conn: &mut Conn, row: &PortalSettingsRow) -> QueryResult<()> {
    diesel::replace_into(portal_settings::table)
        .values(row)
        .execute(conn)
        .await
        .map(|_| ())
}
