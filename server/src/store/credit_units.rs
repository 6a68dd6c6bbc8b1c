//! The `credit_units` table: the credit units a project declared. Insert-only.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use super::{Conn, schema::credit_units};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = credit_units, check_for_backend(diesel::mysql::Mysql))]
pub struct CreditUnitRow {
    pub id: String,
    pub project_id: String,
    pub code: String,
    pub name: String,
    pub decimals: u8,
    pub rate_to_money: Option<Decimal>,
    pub money_currency: Option<String>,
    pub created_at: NaiveDateTime,
}

/// Inserts unless the project has the code already; true when inserted.
pub async fn insert_ignore(conn: &mut Conn, row: &CreditUnitRow) -> QueryResult<bool> {
    diesel::insert_or_ignore_into(credit_units::table)
        .values(row)
        .execute(conn)
        .await
        .map(|n| n == 1)
}

pub async fn find_by_code(conn: &mut Conn, project_id: &str, code: &str) -> QueryResult<Option<CreditUnitRow>> {
    credit_units::table
        .filter(credit_units::project_id.eq(project_id))
        .filter(credit_units::code.eq(code))
        .select(CreditUnitRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The project's credit units by code.
pub async fn list(conn: &mut Conn, project_id: &str) -> QueryResult<Vec<CreditUnitRow>> {
    credit_units::table
        .filter(credit_units::project_id.eq(project_id))
        .select(CreditUnitRow::as_select())
        .order(credit_units::code.asc())
        .load(conn)
        .await
}
