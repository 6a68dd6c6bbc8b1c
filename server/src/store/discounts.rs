//! The `coupons`, `coupon_redemptions`, `tax_rates` and `customer_tax_rates` tables.

use chrono::NaiveDateTime;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Datetime, Nullable, Varchar},
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use super::{
    Conn,
    schema::{coupon_redemptions, coupons, customer_tax_rates, tax_rates},
};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = coupons, check_for_backend(diesel::mysql::Mysql))]
pub struct CouponRow {
    pub id: String,
    pub project_id: String,
    pub code: String,
    pub name: String,
    pub kind: String,
    pub percentage: Option<Decimal>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub duration: String,
    pub periods: Option<u32>,
    pub definition_hash: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = coupon_redemptions, check_for_backend(diesel::mysql::Mysql))]
pub struct RedemptionRow {
    pub id: String,
    pub project_id: String,
    pub subscription_id: String,
    pub coupon_id: String,
    pub applied_at: NaiveDateTime,
    pub periods: Option<u32>,
    pub actor: String,
    pub idempotency_key: String,
    pub request_hash: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = tax_rates, check_for_backend(diesel::mysql::Mysql))]
pub struct TaxRateRow {
    pub id: String,
    pub project_id: String,
    pub code: String,
    pub name: String,
    pub percentage: Decimal,
    pub default_position: Option<u16>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = customer_tax_rates, check_for_backend(diesel::mysql::Mysql))]
pub struct CustomerTaxRateRow {
    pub customer_id: String,
    pub position: u16,
    pub project_id: String,
    pub tax_rate_id: String,
}

// ---- coupons

/// Inserts unless the project has the code already; true when inserted.
pub async fn insert_coupon_ignore(conn: &mut Conn, row: &CouponRow) -> QueryResult<bool> {
    diesel::insert_or_ignore_into(coupons::table)
        .values(row)
        .execute(conn)
        .await
        .map(|n| n == 1)
}

pub async fn find_coupon(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<CouponRow>> {
    coupons::table
        .filter(coupons::project_id.eq(project_id))
        .filter(coupons::id.eq(id))
        .select(CouponRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_coupon_by_code(conn: &mut Conn, project_id: &str, code: &str) -> QueryResult<Option<CouponRow>> {
    coupons::table
        .filter(coupons::project_id.eq(project_id))
        .filter(coupons::code.eq(code))
        .select(CouponRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A page of the project's coupons by code, after the code `after`.
pub async fn list_coupons(
    conn: &mut Conn,
    project_id: &str,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<CouponRow>> {
    let mut query = coupons::table
        .filter(coupons::project_id.eq(project_id))
        .select(CouponRow::as_select())
        .order(coupons::code.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(coupons::code.gt(after.to_string()));
    }
    query.load(conn).await
}

pub async fn find_coupons(conn: &mut Conn, project_id: &str, ids: &[&str]) -> QueryResult<Vec<CouponRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    coupons::table
        .filter(coupons::project_id.eq(project_id))
        .filter(coupons::id.eq_any(ids))
        .select(CouponRow::as_select())
        .load(conn)
        .await
}

// ---- redemptions

pub async fn insert_redemption(conn: &mut Conn, row: &RedemptionRow) -> QueryResult<usize> {
    diesel::insert_into(coupon_redemptions::table)
        .values(row)
        .execute(conn)
        .await
}

pub async fn find_redemption(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<RedemptionRow>> {
    coupon_redemptions::table
        .filter(coupon_redemptions::project_id.eq(project_id))
        .filter(coupon_redemptions::id.eq(id))
        .select(RedemptionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_redemption_by_key(
    conn: &mut Conn,
    project_id: &str,
    key: &str,
) -> QueryResult<Option<RedemptionRow>> {
    coupon_redemptions::table
        .filter(coupon_redemptions::project_id.eq(project_id))
        .filter(coupon_redemptions::idempotency_key.eq(key))
        .select(RedemptionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_redemption_of(
    conn: &mut Conn,
    subscription_id: &str,
    coupon_id: &str,
) -> QueryResult<Option<RedemptionRow>> {
    coupon_redemptions::table
        .filter(coupon_redemptions::subscription_id.eq(subscription_id))
        .filter(coupon_redemptions::coupon_id.eq(coupon_id))
        .select(RedemptionRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A subscription's redemptions in the order they were applied.
pub async fn redemptions(conn: &mut Conn, subscription_id: &str) -> QueryResult<Vec<RedemptionRow>> {
    coupon_redemptions::table
        .filter(coupon_redemptions::subscription_id.eq(subscription_id))
        .select(RedemptionRow::as_select())
        .order((coupon_redemptions::applied_at.asc(), coupon_redemptions::id.asc()))
        .load(conn)
        .await
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How many invoices of `subscription_id` (drafts, finalized or paid; not void) at a boundary
/// before `before` (all, when `None`) list the redemption among the coupons they used
/// (`manifest.coupons[*].redemptionId`). The subscription's invoices are found by
/// `uq_invoices_period`; their manifests are read by MariaDB's JSON functions, never loaded here.
pub async fn periods_used(
    conn: &mut Conn,
    subscription_id: &str,
    redemption_id: &str,
    before: Option<NaiveDateTime>,
) -> QueryResult<u32> {
    let rows: Vec<Count> = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM invoices \
         WHERE subscription_id = ? AND (? IS NULL OR boundary < ?) AND status <> 'VOID' \
           AND JSON_CONTAINS(JSON_EXTRACT(manifest, '$.coupons[*].redemptionId'), JSON_QUOTE(?))",
    )
    .bind::<Varchar, _>(subscription_id)
    .bind::<Nullable<Datetime>, _>(before)
    .bind::<Nullable<Datetime>, _>(before)
    .bind::<Varchar, _>(redemption_id)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .next()
        .map_or(0, |r| u32::try_from(r.n).unwrap_or(u32::MAX)))
}

// ---- tax rates

/// Inserts unless the project has the code already; true when inserted.
pub async fn insert_tax_rate_ignore(conn: &mut Conn, row: &TaxRateRow) -> QueryResult<bool> {
    diesel::insert_or_ignore_into(tax_rates::table)
        .values(row)
        .execute(conn)
        .await
        .map(|n| n == 1)
}

pub async fn find_tax_rate_by_code(conn: &mut Conn, project_id: &str, code: &str) -> QueryResult<Option<TaxRateRow>> {
    tax_rates::table
        .filter(tax_rates::project_id.eq(project_id))
        .filter(tax_rates::code.eq(code))
        .select(TaxRateRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_tax_rates(conn: &mut Conn, project_id: &str, ids: &[&str]) -> QueryResult<Vec<TaxRateRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    tax_rates::table
        .filter(tax_rates::project_id.eq(project_id))
        .filter(tax_rates::id.eq_any(ids))
        .select(TaxRateRow::as_select())
        .load(conn)
        .await
}

/// A page of the project's tax rates by code, after the code `after`.
pub async fn list_tax_rates(
    conn: &mut Conn,
    project_id: &str,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<TaxRateRow>> {
    let mut query = tax_rates::table
        .filter(tax_rates::project_id.eq(project_id))
        .select(TaxRateRow::as_select())
        .order(tax_rates::code.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(tax_rates::code.gt(after.to_string()));
    }
    query.load(conn).await
}

/// The project's default tax rates, in order.
pub async fn default_tax_rates(conn: &mut Conn, project_id: &str) -> QueryResult<Vec<TaxRateRow>> {
    tax_rates::table
        .filter(tax_rates::project_id.eq(project_id))
        .filter(tax_rates::default_position.is_not_null())
        .select(TaxRateRow::as_select())
        .order(tax_rates::default_position.asc())
        .load(conn)
        .await
}

/// Locks the project's tax rates (all of them, by the `uq_tax_rates_code` prefix), so two
/// `setDefaultTaxRates` take turns.
pub async fn lock_tax_rates(conn: &mut Conn, project_id: &str) -> QueryResult<Vec<String>> {
    tax_rates::table
        .filter(tax_rates::project_id.eq(project_id))
        .select(tax_rates::id)
        .order(tax_rates::code.asc())
        .for_update()
        .load(conn)
        .await
}

/// Makes `ids` (in order) the project's default list, and no other rate.
pub async fn set_default_tax_rates(conn: &mut Conn, project_id: &str, ids: &[&str]) -> QueryResult<()> {
    diesel::update(tax_rates::table.filter(tax_rates::project_id.eq(project_id)))
        .set(tax_rates::default_position.eq(None::<u16>))
        .execute(conn)
        .await?;
    for (position, id) in ids.iter().enumerate() {
        diesel::update(
            tax_rates::table
                .filter(tax_rates::project_id.eq(project_id))
                .filter(tax_rates::id.eq(*id)),
        )
        .set(tax_rates::default_position.eq(Some(position as u16)))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A customer's own tax rates, in order (empty: the project's default applies).
pub async fn customer_tax_rates(conn: &mut Conn, project_id: &str, customer_id: &str) -> QueryResult<Vec<TaxRateRow>> {
    customer_tax_rates::table
        .inner_join(tax_rates::table)
        .filter(customer_tax_rates::customer_id.eq(customer_id))
        .filter(customer_tax_rates::project_id.eq(project_id))
        .filter(tax_rates::project_id.eq(project_id))
        .select(TaxRateRow::as_select())
        .order(customer_tax_rates::position.asc())
        .load(conn)
        .await
}

/// Locks a customer's row, so two replacements of its tax rates take turns.
pub async fn lock_customer(conn: &mut Conn, project_id: &str, customer_id: &str) -> QueryResult<Option<String>> {
    use super::schema::customers;
    customers::table
        .filter(customers::project_id.eq(project_id))
        .filter(customers::id.eq(customer_id))
        .select(customers::id)
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Replaces a customer's own tax rates.
pub async fn set_customer_tax_rates(
    conn: &mut Conn,
    customer_id: &str,
    rows: &[CustomerTaxRateRow],
) -> QueryResult<()> {
    diesel::delete(customer_tax_rates::table.filter(customer_tax_rates::customer_id.eq(customer_id)))
        .execute(conn)
        .await?;
    if !rows.is_empty() {
        diesel::insert_into(customer_tax_rates::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    Ok(())
}
