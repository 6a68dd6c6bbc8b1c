//! The `invoices`, `invoice_lines`, `invoice_sequences` and `leases` tables.

use std::ops::RangeInclusive;

use chrono::NaiveDateTime;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Datetime, Nullable, Text, Unsigned, Varchar},
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use super::{
    Conn,
    schema::{invoice_adjustments, invoice_lines, invoices},
};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = invoices, check_for_backend(diesel::mysql::Mysql))]
pub struct InvoiceRow {
    pub id: String,
    pub project_id: String,
    pub customer_id: String,
    pub subscription_id: String,
    pub plan_version_id: String,
    /// `PERIOD` or `THRESHOLD` (`billing::runs::InvoiceReason`).
    pub reason: String,
    pub boundary: NaiveDateTime,
    pub usage_from: Option<NaiveDateTime>,
    pub usage_to: Option<NaiveDateTime>,
    pub status: String,
    pub number: Option<u64>,
    pub currency: String,
    pub subtotal: Decimal,
    pub discount: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub credits: Decimal,
    pub amount_due: Decimal,
    pub computed_at: NaiveDateTime,
    pub cutoff: NaiveDateTime,
    pub conventions_version: u32,
    pub manifest: String,
    pub manifest_hash: String,
    pub invoice_transaction_id: Option<String>,
    pub credits_transaction_id: Option<String>,
    pub finalized_at: Option<NaiveDateTime>,
    pub voided_at: Option<NaiveDateTime>,
    pub void_reason: Option<String>,
    pub void_invoice_transaction_id: Option<String>,
    pub void_credits_transaction_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = invoice_lines, check_for_backend(diesel::mysql::Mysql))]
pub struct LineRow {
    pub invoice_id: String,
    pub position: u16,
    pub project_id: String,
    pub kind: String,
    pub charge_id: Option<String>,
    pub description: String,
    pub quantity: Option<Decimal>,
    pub amount: Decimal,
    pub exact: String,
    pub period_from: Option<NaiveDateTime>,
    pub period_to: Option<NaiveDateTime>,
    pub event_count: Option<u64>,
    pub events_hash: Option<String>,
    pub rating: Option<String>,
}

impl InvoiceRow {
    /// What the period's threshold invoices billed, deducted (zero or negative): the part of the
    /// total that is not subtotal, discount or tax.
    pub fn billed_earlier(&self) -> Decimal {
        self.total - self.subtotal - self.discount - self.tax
    }
}

/// Inserts an invoice unless its (subscription, boundary) already has one: `false` then.
pub async fn insert_ignore(conn: &mut Conn, row: &InvoiceRow, lines: &[LineRow]) -> QueryResult<bool> {
    let inserted = diesel::insert_or_ignore_into(invoices::table)
        .values(row)
        .execute(conn)
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    insert_lines(conn, lines).await?;
    Ok(true)
}

pub async fn insert_lines(conn: &mut Conn, lines: &[LineRow]) -> QueryResult<usize> {
    if lines.is_empty() {
        return Ok(0);
    }
    diesel::insert_into(invoice_lines::table)
        .values(lines)
        .execute(conn)
        .await
}

pub async fn delete_lines(conn: &mut Conn, invoice_id: &str) -> QueryResult<usize> {
    diesel::delete(invoice_lines::table.filter(invoice_lines::invoice_id.eq(invoice_id)))
        .execute(conn)
        .await
}

/// Rewrites a draft: its amounts, inputs and manifest (the lines are replaced by the caller).
pub async fn update_draft(conn: &mut Conn, row: &InvoiceRow) -> QueryResult<usize> {
    diesel::update(
        invoices::table
            .filter(invoices::id.eq(&row.id))
            .filter(invoices::status.eq("DRAFT")),
    )
    .set((
        invoices::plan_version_id.eq(&row.plan_version_id),
        invoices::usage_from.eq(row.usage_from),
        invoices::usage_to.eq(row.usage_to),
        invoices::subtotal.eq(row.subtotal),
        invoices::discount.eq(row.discount),
        invoices::tax.eq(row.tax),
        invoices::total.eq(row.total),
        invoices::credits.eq(row.credits),
        invoices::amount_due.eq(row.amount_due),
        invoices::computed_at.eq(row.computed_at),
        invoices::cutoff.eq(row.cutoff),
        invoices::conventions_version.eq(row.conventions_version),
        invoices::manifest.eq(&row.manifest),
        invoices::manifest_hash.eq(&row.manifest_hash),
        invoices::updated_at.eq(row.updated_at),
    ))
    .execute(conn)
    .await
}

/// Marks a draft finalized with its number and ledger transactions.
pub async fn finalize(conn: &mut Conn, row: &InvoiceRow) -> QueryResult<usize> {
    diesel::update(
        invoices::table
            .filter(invoices::id.eq(&row.id))
            .filter(invoices::status.eq("DRAFT")),
    )
    .set((
        invoices::status.eq(&row.status),
        invoices::number.eq(row.number),
        invoices::invoice_transaction_id.eq(&row.invoice_transaction_id),
        invoices::credits_transaction_id.eq(&row.credits_transaction_id),
        invoices::finalized_at.eq(row.finalized_at),
        invoices::updated_at.eq(row.updated_at),
    ))
    .execute(conn)
    .await
}

/// [`finalize`] for many drafts in one statement (a billing run's group): each row's status,
/// number, ledger transactions and times, matched by id. Answers the rows changed.
pub async fn finalize_many(conn: &mut Conn, rows: &[&InvoiceRow]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let case = |column: &str| {
        let whens = " WHEN ? THEN ?".repeat(rows.len());
        format!("{column} = CASE id{whens} END")
    };
    let sql = format!(
        "UPDATE invoices SET {}, {}, {}, {}, {}, {} WHERE status = 'DRAFT' AND id IN ({})",
        case("status"),
        case("number"),
        case("invoice_transaction_id"),
        case("credits_transaction_id"),
        case("finalized_at"),
        case("updated_at"),
        vec!["?"; rows.len()].join(", ")
    );
    let mut query = diesel::sql_query(sql).into_boxed::<diesel::mysql::Mysql>();
    for r in rows {
        query = query.bind::<Varchar, _>(&r.id).bind::<Varchar, _>(&r.status);
    }
    for r in rows {
        query = query
            .bind::<Varchar, _>(&r.id)
            .bind::<Nullable<Unsigned<BigInt>>, _>(r.number);
    }
    for r in rows {
        query = query
            .bind::<Varchar, _>(&r.id)
            .bind::<Nullable<Varchar>, _>(&r.invoice_transaction_id);
    }
    for r in rows {
        query = query
            .bind::<Varchar, _>(&r.id)
            .bind::<Nullable<Varchar>, _>(&r.credits_transaction_id);
    }
    for r in rows {
        query = query
            .bind::<Varchar, _>(&r.id)
            .bind::<Nullable<Datetime>, _>(r.finalized_at);
    }
    for r in rows {
        query = query.bind::<Varchar, _>(&r.id).bind::<Datetime, _>(r.updated_at);
    }
    for r in rows {
        query = query.bind::<Varchar, _>(&r.id);
    }
    query.execute(conn).await
}

/// Marks an invoice void (from a draft or a finalized invoice), with its reversals.
pub async fn void(conn: &mut Conn, row: &InvoiceRow) -> QueryResult<usize> {
    diesel::update(
        invoices::table
            .filter(invoices::id.eq(&row.id))
            .filter(invoices::status.eq_any(["DRAFT", "FINALIZED"])),
    )
    .set((
        invoices::status.eq(&row.status),
        invoices::voided_at.eq(row.voided_at),
        invoices::void_reason.eq(&row.void_reason),
        invoices::void_invoice_transaction_id.eq(&row.void_invoice_transaction_id),
        invoices::void_credits_transaction_id.eq(&row.void_credits_transaction_id),
        invoices::updated_at.eq(row.updated_at),
    ))
    .execute(conn)
    .await
}

pub async fn find(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<InvoiceRow>> {
    invoices::table
        .filter(invoices::project_id.eq(project_id))
        .filter(invoices::id.eq(id))
        .select(InvoiceRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn lock(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<InvoiceRow>> {
    invoices::table
        .filter(invoices::project_id.eq(project_id))
        .filter(invoices::id.eq(id))
        .select(InvoiceRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The invoice of a subscription at a boundary, for a reason.
pub async fn find_at(
    conn: &mut Conn,
    subscription_id: &str,
    boundary: NaiveDateTime,
    reason: &str,
) -> QueryResult<Option<InvoiceRow>> {
    invoices::table
        .filter(invoices::subscription_id.eq(subscription_id))
        .filter(invoices::boundary.eq(boundary))
        .filter(invoices::reason.eq(reason))
        .select(InvoiceRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The invoice of a subscription at a boundary for a reason, locked (a locking read sees the
/// latest commit).
pub async fn lock_at(
    conn: &mut Conn,
    subscription_id: &str,
    boundary: NaiveDateTime,
    reason: &str,
) -> QueryResult<Option<InvoiceRow>> {
    invoices::table
        .filter(invoices::subscription_id.eq(subscription_id))
        .filter(invoices::boundary.eq(boundary))
        .filter(invoices::reason.eq(reason))
        .select(InvoiceRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A later invoice (not void) of the same subscription and usage period as the invoice at
/// `boundary` whose usage starts at `usage_from`: one that deducted it, if it is a threshold
/// invoice.
pub async fn later_in_period(
    conn: &mut Conn,
    subscription_id: &str,
    usage_from: NaiveDateTime,
    boundary: NaiveDateTime,
) -> QueryResult<Option<String>> {
    invoices::table
        .filter(invoices::subscription_id.eq(subscription_id))
        .filter(invoices::usage_from.eq(usage_from))
        .filter(invoices::boundary.gt(boundary))
        .filter(invoices::status.ne("VOID"))
        .select(invoices::id)
        .order(invoices::boundary.asc())
        .first(conn)
        .await
        .optional()
}

/// The latest boundary of a subscription's threshold invoices (any status) after `after`.
pub async fn last_threshold_boundary(
    conn: &mut Conn,
    subscription_id: &str,
    after: NaiveDateTime,
) -> QueryResult<Option<NaiveDateTime>> {
    invoices::table
        .filter(invoices::subscription_id.eq(subscription_id))
        .filter(invoices::reason.eq("THRESHOLD"))
        .filter(invoices::boundary.gt(after))
        .select(diesel::dsl::max(invoices::boundary))
        .first(conn)
        .await
}

/// The latest boundary of its schedule a subscription was billed at (threshold invoices, inside
/// periods, are not boundaries of its schedule).
pub async fn last_boundary(conn: &mut Conn, subscription_id: &str) -> QueryResult<Option<NaiveDateTime>> {
    invoices::table
        .filter(invoices::subscription_id.eq(subscription_id))
        .filter(invoices::reason.eq("PERIOD"))
        .select(diesel::dsl::max(invoices::boundary))
        .first(conn)
        .await
}

pub async fn lines(conn: &mut Conn, invoice_ids: &[&str]) -> QueryResult<Vec<LineRow>> {
    if invoice_ids.is_empty() {
        return Ok(Vec::new());
    }
    invoice_lines::table
        .filter(invoice_lines::invoice_id.eq_any(invoice_ids))
        .select(LineRow::as_select())
        .order((invoice_lines::invoice_id.asc(), invoice_lines::position.asc()))
        .load(conn)
        .await
}

/// What `invoices` may be filtered by.
#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    pub status: Option<String>,
    pub reason: Option<String>,
    /// Invoices whose boundary is in `[from, to)`.
    pub boundary_from: Option<NaiveDateTime>,
    pub boundary_to: Option<NaiveDateTime>,
}

/// A page of the project's invoices in id order (by boundary: newest last, or first with
/// `newest_first`), after the cursor `after`.
pub async fn list(
    conn: &mut Conn,
    project_id: &str,
    filter: &InvoiceFilter,
    after: Option<&str>,
    newest_first: bool,
    limit: i64,
) -> QueryResult<Vec<InvoiceRow>> {
    let mut query = invoices::table
        .filter(invoices::project_id.eq(project_id))
        .select(InvoiceRow::as_select())
        .limit(limit)
        .into_boxed();
    query = if newest_first {
        query.order(invoices::id.desc())
    } else {
        query.order(invoices::id.asc())
    };
    if let Some(c) = &filter.customer_id {
        query = query.filter(invoices::customer_id.eq(c.clone()));
    }
    if let Some(s) = &filter.subscription_id {
        query = query.filter(invoices::subscription_id.eq(s.clone()));
    }
    if let Some(s) = &filter.status {
        query = query.filter(invoices::status.eq(s.clone()));
    }
    if let Some(r) = &filter.reason {
        query = query.filter(invoices::reason.eq(r.clone()));
    }
    if let Some(t) = filter.boundary_from {
        query = query.filter(invoices::boundary.ge(t));
    }
    if let Some(t) = filter.boundary_to {
        query = query.filter(invoices::boundary.lt(t));
    }
    if let Some(a) = after {
        query = if newest_first {
            query.filter(invoices::id.lt(a.to_string()))
        } else {
            query.filter(invoices::id.gt(a.to_string()))
        };
    }
    query.load(conn).await
}

/// A threshold invoice of a period and what it billed before tax: its total less its tax, and
/// the same of its adjustments.
#[derive(Debug, Clone, QueryableByName)]
pub struct ThresholdBilled {
    #[diesel(sql_type = Varchar)]
    pub id: String,
    #[diesel(sql_type = diesel::sql_types::Decimal)]
    pub billed: Decimal,
}

/// The subscription's threshold invoices in `currency` (not void) with a boundary in
/// `(from, to)`, or `(from, to]` when `through`, oldest first.
pub async fn threshold_billed(
    conn: &mut Conn,
    subscription_id: &str,
    currency: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    through: bool,
) -> QueryResult<Vec<ThresholdBilled>> {
    diesel::sql_query(
        "SELECT i.id, i.total - i.tax + COALESCE( \
             (SELECT SUM(a.total - a.tax) FROM invoice_adjustments a WHERE a.invoice_id = i.id), 0) AS billed \
         FROM invoices i \
         WHERE i.subscription_id = ? AND i.reason = 'THRESHOLD' AND i.status <> 'VOID' AND i.currency = ? \
           AND i.boundary > ? AND (i.boundary < ? OR (? AND i.boundary = ?)) \
         ORDER BY i.boundary",
    )
    .bind::<Varchar, _>(subscription_id)
    .bind::<Varchar, _>(currency)
    .bind::<Datetime, _>(from)
    .bind::<Datetime, _>(to)
    .bind::<diesel::sql_types::Bool, _>(through)
    .bind::<Datetime, _>(to)
    .load(conn)
    .await
}

#[derive(QueryableByName)]
struct LastNumber {
    #[diesel(sql_type = Unsigned<BigInt>)]
    n: u64,
}

/// The project's next invoice number, taken inside the caller's transaction: the sequence row
/// stays locked until it commits (or gives the number back by rolling back).
pub async fn next_number(conn: &mut Conn, project_id: &str) -> QueryResult<u64> {
    Ok(*next_numbers(conn, project_id, 1).await?.start())
}

/// The project's next `count` invoice numbers (at least one), taken at once inside the caller's
/// transaction, as [`next_number`] takes one: a billing run numbers a group of invoices with one
/// statement. One statement either way: MariaDB's `RETURNING` answers the row as written,
/// inserted or updated (every statement here is prepared afresh, so a second one cost two round
/// trips).
pub async fn next_numbers(conn: &mut Conn, project_id: &str, count: u64) -> QueryResult<RangeInclusive<u64>> {
    let count = count.max(1);
    let rows: Vec<LastNumber> = diesel::sql_query(
        "INSERT INTO invoice_sequences (project_id, last_number) VALUES (?, ?) \
         ON DUPLICATE KEY UPDATE last_number = last_number + VALUES(last_number) RETURNING last_number AS n",
    )
    .bind::<Varchar, _>(project_id)
    .bind::<Unsigned<BigInt>, _>(count)
    .load(conn)
    .await?;
    let last = rows
        .into_iter()
        .next()
        .map(|r| r.n)
        .ok_or(diesel::result::Error::NotFound)?;
    Ok(last + 1 - count..=last)
}

/// A subscription a billing run looks at, with the last boundary it was billed at.
#[derive(Debug, Clone, QueryableByName)]
pub struct BillingCandidate {
    #[diesel(sql_type = Varchar)]
    pub project_id: String,
    #[diesel(sql_type = Varchar)]
    pub subscription_id: String,
    #[diesel(sql_type = Nullable<Datetime>)]
    pub ends_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Datetime>)]
    pub last_boundary: Option<NaiveDateTime>,
}

impl BillingCandidate {
    /// Whether its last invoice (the one at its end) is made.
    pub fn is_done(&self) -> bool {
        matches!((self.ends_at, self.last_boundary), (Some(end), Some(last)) if last >= end)
    }
}

/// Subscriptions (of one project, or all; or one) that started by `at`, in id order after
/// `after`, with the last boundary each was billed at.
pub async fn billing_candidates(
    conn: &mut Conn,
    project_id: Option<&str>,
    subscription_id: Option<&str>,
    at: NaiveDateTime,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<BillingCandidate>> {
    diesel::sql_query(
        "SELECT s.project_id, s.id AS subscription_id, s.ends_at, \
           (SELECT MAX(i.boundary) FROM invoices i WHERE i.subscription_id = s.id AND i.reason = 'PERIOD') \
             AS last_boundary \
         FROM subscriptions s \
         WHERE s.starts_at <= ? AND s.id > ? AND (? IS NULL OR s.project_id = ?) AND (? IS NULL OR s.id = ?) \
         ORDER BY s.id LIMIT ?",
    )
    .bind::<Datetime, _>(at)
    .bind::<Varchar, _>(after)
    .bind::<Nullable<Varchar>, _>(project_id)
    .bind::<Nullable<Varchar>, _>(project_id)
    .bind::<Nullable<Varchar>, _>(subscription_id)
    .bind::<Nullable<Varchar>, _>(subscription_id)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Text)]
    holder: String,
}

/// Takes or renews the lease `name` for `holder` until `until`, unless another holder's lease is
/// still running at `now`. Answers whether `holder` holds it. The assignments run left to right:
/// `holder` is decided first, and `expires_at` moves only when it is now ours.
pub async fn acquire_lease(
    conn: &mut Conn,
    name: &str,
    holder: &str,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<bool> {
    diesel::sql_query(
        "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE holder = IF(expires_at <= ? OR holder = VALUES(holder), VALUES(holder), holder), \
         expires_at = IF(holder = VALUES(holder), VALUES(expires_at), expires_at)",
    )
    .bind::<Varchar, _>(name)
    .bind::<Varchar, _>(holder)
    .bind::<Datetime, _>(until)
    .bind::<Datetime, _>(now)
    .execute(conn)
    .await?;
    let rows: Vec<Holder> = diesel::sql_query("SELECT holder FROM leases WHERE name = ?")
        .bind::<Varchar, _>(name)
        .load(conn)
        .await?;
    Ok(rows.into_iter().next().is_some_and(|r| r.holder == holder))
}

/// Gives the lease up (only when `holder` holds it).
pub async fn release_lease(conn: &mut Conn, name: &str, holder: &str) -> QueryResult<usize> {
    diesel::sql_query("DELETE FROM leases WHERE name = ? AND holder = ?")
        .bind::<Varchar, _>(name)
        .bind::<Varchar, _>(holder)
        .execute(conn)
        .await
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = invoice_adjustments, check_for_backend(diesel::mysql::Mysql))]
pub struct AdjustmentRow {
    pub id: String,
    pub project_id: String,
    pub invoice_id: String,
    pub number: u64,
    pub kind: String,
    pub currency: String,
    pub subtotal: Decimal,
    pub discount: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub cutoff: NaiveDateTime,
    pub manifest: String,
    pub manifest_hash: String,
    pub transaction_id: Option<String>,
    pub created_at: NaiveDateTime,
}

impl AdjustmentRow {
    /// The change in what the period's threshold invoices were deducted for, as
    /// [`InvoiceRow::billed_earlier`].
    pub fn billed_earlier(&self) -> Decimal {
        self.total - self.subtotal - self.discount - self.tax
    }
}

pub async fn insert_adjustment(conn: &mut Conn, row: &AdjustmentRow) -> QueryResult<usize> {
    diesel::insert_into(invoice_adjustments::table)
        .values(row)
        .execute(conn)
        .await
}

/// An invoice's adjustments, oldest first.
pub async fn adjustments(conn: &mut Conn, project_id: &str, invoice_id: &str) -> QueryResult<Vec<AdjustmentRow>> {
    invoice_adjustments::table
        .filter(invoice_adjustments::project_id.eq(project_id))
        .filter(invoice_adjustments::invoice_id.eq(invoice_id))
        .select(AdjustmentRow::as_select())
        .order(invoice_adjustments::id.asc())
        .load(conn)
        .await
}

/// What `creditNotes` may be filtered by.
#[derive(Debug, Clone, Default)]
pub struct AdjustmentFilter {
    pub customer_id: Option<String>,
    pub invoice_id: Option<String>,
    pub kind: Option<String>,
}

/// A page of the project's adjustments in id order (oldest first), after the cursor `after`.
pub async fn list_adjustments(
    conn: &mut Conn,
    project_id: &str,
    filter: &AdjustmentFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<AdjustmentRow>> {
    let mut query = invoice_adjustments::table
        .filter(invoice_adjustments::project_id.eq(project_id))
        .select(AdjustmentRow::as_select())
        .order(invoice_adjustments::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(c) = &filter.customer_id {
        query = query.filter(
            invoice_adjustments::invoice_id.eq_any(
                invoices::table
                    .filter(invoices::project_id.eq(project_id.to_string()))
                    .filter(invoices::customer_id.eq(c.clone()))
                    .select(invoices::id),
            ),
        );
    }
    if let Some(i) = &filter.invoice_id {
        query = query.filter(invoice_adjustments::invoice_id.eq(i.clone()));
    }
    if let Some(k) = &filter.kind {
        query = query.filter(invoice_adjustments::kind.eq(k.clone()));
    }
    if let Some(a) = after {
        query = query.filter(invoice_adjustments::id.gt(a.to_string()));
    }
    query.load(conn).await
}
