//! The `customers` table.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Conn, schema::customers};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = customers, check_for_backend(diesel::mysql::Mysql))]
pub struct CustomerRow {
    pub id: String,
    pub project_id: String,
    pub external_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub currency: Option<String>,
    pub metadata: Option<String>,
    pub implicit: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = customers)]
pub struct NewCustomer<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub external_id: &'a str,
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub currency: Option<&'a str>,
    pub metadata: Option<&'a str>,
    pub implicit: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Inserts the rows whose external id the project does not have yet; returns how many were new.
pub async fn insert_missing(conn: &mut Conn, rows: &[NewCustomer<'_>]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    diesel::insert_or_ignore_into(customers::table)
        .values(rows)
        .execute(conn)
        .await
}

/// Fills in the details of a customer that an event created implicitly, making it explicit.
pub async fn fill_implicit(conn: &mut Conn, id: &str, row: &NewCustomer<'_>) -> QueryResult<usize> {
    diesel::update(customers::table.find(id).filter(customers::implicit.eq(true)))
        .set((
            customers::name.eq(row.name),
            customers::email.eq(row.email),
            customers::currency.eq(row.currency),
            customers::metadata.eq(row.metadata),
            customers::implicit.eq(false),
            customers::updated_at.eq(row.updated_at),
        ))
        .execute(conn)
        .await
}

/// Which of these external ids the project has (plain read, no locks).
pub async fn existing_external_ids(
    conn: &mut Conn,
    project_id: &str,
    external_ids: &[&str],
) -> QueryResult<Vec<String>> {
    if external_ids.is_empty() {
        return Ok(Vec::new());
    }
    customers::table
        .filter(customers::project_id.eq(project_id))
        .filter(customers::external_id.eq_any(external_ids))
        .select(customers::external_id)
        .load(conn)
        .await
}

pub async fn find_by_id(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<CustomerRow>> {
    customers::table
        .filter(customers::project_id.eq(project_id))
        .filter(customers::id.eq(id))
        .select(CustomerRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The customers of `project_id` among `ids` (any order; absent ones are left out).
pub async fn find_by_ids(conn: &mut Conn, project_id: &str, ids: &[&str]) -> QueryResult<Vec<CustomerRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    customers::table
        .filter(customers::project_id.eq(project_id))
        .filter(customers::id.eq_any(ids))
        .select(CustomerRow::as_select())
        .load(conn)
        .await
}

pub async fn find_by_external_id(
    conn: &mut Conn,
    project_id: &str,
    external_id: &str,
) -> QueryResult<Option<CustomerRow>> {
    customers::table
        .filter(customers::project_id.eq(project_id))
        .filter(customers::external_id.eq(external_id))
        .select(CustomerRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the customer row by id for the rest of the transaction (`SELECT … FOR UPDATE`).
pub async fn lock_by_id(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<CustomerRow>> {
    customers::table
        .filter(customers::project_id.eq(project_id))
        .filter(customers::id.eq(id))
        .select(CustomerRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Locks the customer row for the rest of the transaction (`SELECT … FOR UPDATE`).
pub async fn lock_by_external_id(
    conn: &mut Conn,
    project_id: &str,
    external_id: &str,
) -> QueryResult<Option<CustomerRow>> {
    customers::table
        .filter(customers::project_id.eq(project_id))
        .filter(customers::external_id.eq(external_id))
        .select(CustomerRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Keyset page of a project's customers, oldest first.
pub async fn list(conn: &mut Conn, project_id: &str, after: Option<&str>, limit: i64) -> QueryResult<Vec<CustomerRow>> {
    let mut query = customers::table
        .filter(customers::project_id.eq(project_id))
        .select(CustomerRow::as_select())
        .order(customers::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(customers::id.gt(after.to_string()));
    }
    query.load(conn).await
}
