//! The `projects` table.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Conn, schema::projects};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = projects, check_for_backend(diesel::mysql::Mysql))]
pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = projects)]
pub struct NewProject<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub created_at: NaiveDateTime,
}

pub async fn insert(conn: &mut Conn, row: &NewProject<'_>) -> QueryResult<()> {
    diesel::insert_into(projects::table)
        .values(row)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find(conn: &mut Conn, id: &str) -> QueryResult<Option<ProjectRow>> {
    projects::table
        .find(id)
        .select(ProjectRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Keyset page ordered by id (ids are time-ordered), starting after `after`.
pub async fn list(conn: &mut Conn, after: Option<&str>, limit: i64) -> QueryResult<Vec<ProjectRow>> {
    let mut query = projects::table
        .select(ProjectRow::as_select())
        .order(projects::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(projects::id.gt(after.to_string()));
    }
    query.load(conn).await
}
