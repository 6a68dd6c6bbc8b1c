//! The `plans`, `plan_versions` and `plan_charges` tables. Versions and charges are insert-only;
//! a plan row changes only its `latest_version`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use super::{
    Conn,
    schema::{plan_charges, plan_versions, plans},
};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = plans, check_for_backend(diesel::mysql::Mysql))]
pub struct PlanRow {
    pub id: String,
    pub project_id: String,
    pub code: String,
    pub latest_version: u32,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = plan_versions, check_for_backend(diesel::mysql::Mysql))]
pub struct PlanVersionRow {
    pub id: String,
    pub plan_id: String,
    pub project_id: String,
    pub version: u32,
    pub name: String,
    pub currency: String,
    pub interval_unit: String,
    pub interval_count: u16,
    pub fixed_fee: Decimal,
    pub fixed_fee_timing: String,
    pub minimum_commitment: Option<Decimal>,
    pub included_credits: Option<Decimal>,
    pub included_credits_currency: Option<String>,
    pub usage_threshold: Option<Decimal>,
    pub trial_days: u16,
    pub definition_hash: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = plan_charges, check_for_backend(diesel::mysql::Mysql))]
pub struct PlanChargeRow {
    pub id: String,
    pub plan_version_id: String,
    pub project_id: String,
    pub position: u16,
    pub metric_id: String,
    pub charge: String,
}

/// Inserts a plan unless the project has its code already; true when inserted.
pub async fn insert_plan_ignore(conn: &mut Conn, row: &PlanRow) -> QueryResult<bool> {
    diesel::insert_or_ignore_into(plans::table)
        .values(row)
        .execute(conn)
        .await
        .map(|n| n == 1)
}

/// The plan with this code, locked for update (a new version is numbered under the lock).
pub async fn lock_plan_by_code(conn: &mut Conn, project_id: &str, code: &str) -> QueryResult<Option<PlanRow>> {
    plans::table
        .filter(plans::project_id.eq(project_id))
        .filter(plans::code.eq(code))
        .select(PlanRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The plan with this id, locked for update. Lock before any plain read in the transaction:
/// InnoDB takes its read snapshot at the first plain read, so a version committed by the
/// transaction that held the lock is visible only to reads made after it.
pub async fn lock_plan(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<PlanRow>> {
    plans::table
        .filter(plans::project_id.eq(project_id))
        .filter(plans::id.eq(id))
        .select(PlanRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn find_plan(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<PlanRow>> {
    plans::table
        .filter(plans::project_id.eq(project_id))
        .filter(plans::id.eq(id))
        .select(PlanRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_plan_by_code(conn: &mut Conn, project_id: &str, code: &str) -> QueryResult<Option<PlanRow>> {
    plans::table
        .filter(plans::project_id.eq(project_id))
        .filter(plans::code.eq(code))
        .select(PlanRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn set_latest_version(conn: &mut Conn, plan_id: &str, version: u32) -> QueryResult<usize> {
    diesel::update(plans::table.filter(plans::id.eq(plan_id)))
        .set(plans::latest_version.eq(version))
        .execute(conn)
        .await
}

/// A page of the project's plans by code, after `after_code`.
pub async fn list_plans(
    conn: &mut Conn,
    project_id: &str,
    after_code: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<PlanRow>> {
    let mut query = plans::table
        .filter(plans::project_id.eq(project_id))
        .select(PlanRow::as_select())
        .order(plans::code.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after_code {
        query = query.filter(plans::code.gt(after.to_string()));
    }
    query.load(conn).await
}

pub async fn insert_version(conn: &mut Conn, row: &PlanVersionRow, charges: &[PlanChargeRow]) -> QueryResult<()> {
    diesel::insert_into(plan_versions::table)
        .values(row)
        .execute(conn)
        .await?;
    if !charges.is_empty() {
        diesel::insert_into(plan_charges::table)
            .values(charges)
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub async fn find_version(conn: &mut Conn, plan_id: &str, version: u32) -> QueryResult<Option<PlanVersionRow>> {
    plan_versions::table
        .filter(plan_versions::plan_id.eq(plan_id))
        .filter(plan_versions::version.eq(version))
        .select(PlanVersionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_version_by_id(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<PlanVersionRow>> {
    plan_versions::table
        .filter(plan_versions::project_id.eq(project_id))
        .filter(plan_versions::id.eq(id))
        .select(PlanVersionRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A page of a plan's versions, newest first, below `before_version`.
pub async fn list_versions(
    conn: &mut Conn,
    plan_id: &str,
    before_version: Option<u32>,
    limit: i64,
) -> QueryResult<Vec<PlanVersionRow>> {
    let mut query = plan_versions::table
        .filter(plan_versions::plan_id.eq(plan_id))
        .select(PlanVersionRow::as_select())
        .order(plan_versions::version.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before_version {
        query = query.filter(plan_versions::version.lt(before));
    }
    query.load(conn).await
}

/// A charge by id, in the project.
pub async fn find_charge(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<PlanChargeRow>> {
    plan_charges::table
        .filter(plan_charges::project_id.eq(project_id))
        .filter(plan_charges::id.eq(id))
        .select(PlanChargeRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A version's charges in order.
pub async fn charges(conn: &mut Conn, plan_version_id: &str) -> QueryResult<Vec<PlanChargeRow>> {
    plan_charges::table
        .filter(plan_charges::plan_version_id.eq(plan_version_id))
        .select(PlanChargeRow::as_select())
        .order(plan_charges::position.asc())
        .load(conn)
        .await
}
