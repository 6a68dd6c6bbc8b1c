//! The billing and reconciliation export of a period: per customer and currency, what its
//! invoices with a boundary in the period billed, what the credit notes and adjustment invoices
//! made in the period corrected, what prepaid credits paid, what payments paid, and what is
//! outstanding, tied out with the ledger: those documents' own postings on the customer's
//! RECEIVABLE must come to minus what is unpaid. One SQL aggregate; CSV or JSON.

use chrono::NaiveDateTime;
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Datetime, Nullable, Numeric, Text},
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::{
    error::{Error, Result},
    store::Conn,
};

/// One customer and currency in a period.
#[derive(Debug, Clone, PartialEq, Serialize, QueryableByName)]
#[serde(rename_all = "camelCase")]
pub struct ExportRow {
    #[diesel(sql_type = Text)]
    pub project_id: String,
    #[diesel(sql_type = Text)]
    pub customer_external_id: String,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = BigInt)]
    pub invoices: i64,
    /// Σ invoice totals (finalized and paid; void invoices are left out).
    #[diesel(sql_type = Numeric)]
    pub invoiced: Decimal,
    /// Credit notes and adjustment invoices made in the period (whatever invoice they correct).
    #[diesel(sql_type = BigInt)]
    pub adjustments: i64,
    /// Σ their totals (negative for credit notes).
    #[diesel(sql_type = Numeric)]
    pub adjusted: Decimal,
    /// Σ prepaid credits drawn.
    #[diesel(sql_type = Numeric)]
    pub credits_applied: Decimal,
    /// Σ amounts due of paid invoices (payments).
    #[diesel(sql_type = Numeric)]
    pub paid: Decimal,
    /// Σ amounts due of invoices not paid yet, and the adjustments' totals.
    #[diesel(sql_type = Numeric)]
    pub outstanding: Decimal,
    /// What the documents' own postings left on the customer's RECEIVABLE (−outstanding when
    /// it ties out, until payments post).
    #[diesel(sql_type = Numeric)]
    pub ledger_receivable: Decimal,
}

impl ExportRow {
    /// Whether the invoices and the ledger agree.
    pub fn ties_out(&self) -> bool {
        self.ledger_receivable == -(self.outstanding + self.paid)
    }
}

/// Exports `[from, to)` (invoices by boundary, adjustments by when they were made) for one
/// project or all.
pub async fn export(
    conn: &mut Conn,
    project_id: Option<&str>,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Result<Vec<ExportRow>> {
    if to <= from {
        return Err(Error::invalid("to", "must be after from"));
    }
    // What the transaction in column `txn` put on the customer's RECEIVABLE.
    let receivable = |txn: &str| {
        format!(
            "(SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p \
              JOIN ledger_accounts a ON a.id = p.account_id WHERE p.transaction_id = {txn} AND a.kind = 'RECEIVABLE')"
        )
    };
    let sql = format!(
        "SELECT d.project_id, c.external_id AS customer_external_id, d.currency,
                CAST(SUM(d.invoice) AS SIGNED) AS invoices, SUM(d.invoiced) AS invoiced,
                CAST(SUM(1 - d.invoice) AS SIGNED) AS adjustments, SUM(d.adjusted) AS adjusted,
                SUM(d.credits_applied) AS credits_applied, SUM(d.paid) AS paid,
                SUM(d.outstanding) AS outstanding, COALESCE(SUM(d.ledger), 0) AS ledger_receivable
           FROM (
             SELECT i.project_id, i.customer_id, i.currency, 1 AS invoice, i.total AS invoiced,
                    0 AS adjusted, -i.credits AS credits_applied,
                    CASE WHEN i.status = 'PAID' THEN i.amount_due ELSE 0 END AS paid,
                    CASE WHEN i.status = 'FINALIZED' THEN i.amount_due ELSE 0 END AS outstanding,
                    {} + {} AS ledger
               FROM invoices i
              WHERE (? IS NULL OR i.project_id = ?) AND i.status IN ('FINALIZED', 'PAID')
                AND i.boundary >= ? AND i.boundary < ?
             UNION ALL
             SELECT j.project_id, i.customer_id, j.currency, 0, 0, j.total, 0, 0, j.total, {}
               FROM invoice_adjustments j JOIN invoices i ON i.id = j.invoice_id
              WHERE (? IS NULL OR j.project_id = ?) AND j.created_at >= ? AND j.created_at < ?
           ) d JOIN customers c ON c.id = d.customer_id
          GROUP BY d.project_id, c.external_id, d.currency
          ORDER BY d.project_id, c.external_id, d.currency",
        receivable("i.invoice_transaction_id"),
        receivable("i.credits_transaction_id"),
        receivable("j.transaction_id"),
    );
    let rows: Vec<ExportRow> = diesel::sql_query(sql)
        .bind::<Nullable<Text>, _>(project_id)
        .bind::<Nullable<Text>, _>(project_id)
        .bind::<Datetime, _>(from)
        .bind::<Datetime, _>(to)
        .bind::<Nullable<Text>, _>(project_id)
        .bind::<Nullable<Text>, _>(project_id)
        .bind::<Datetime, _>(from)
        .bind::<Datetime, _>(to)
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            for d in [
                &mut r.invoiced,
                &mut r.adjusted,
                &mut r.credits_applied,
                &mut r.paid,
                &mut r.outstanding,
                &mut r.ledger_receivable,
            ] {
                *d = d.normalize();
            }
            r
        })
        .collect())
}

/// The rows as CSV (RFC 4180: a header, comma-separated, fields with a comma, quote or line
/// break quoted), amounts exact.
pub fn to_csv(rows: &[ExportRow]) -> String {
    fn field(out: &mut String, value: &str) {
        if value.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&value.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(value);
        }
    }
    let mut out = String::from(
        "project_id,customer_external_id,currency,invoices,invoiced,adjustments,adjusted,credits_applied,paid,outstanding,ledger_receivable,ties_out\r\n",
    );
    for r in rows {
        let values = [
            r.project_id.clone(),
            r.customer_external_id.clone(),
            r.currency.clone(),
            r.invoices.to_string(),
            r.invoiced.to_string(),
            r.adjustments.to_string(),
            r.adjusted.to_string(),
            r.credits_applied.to_string(),
            r.paid.to_string(),
            r.outstanding.to_string(),
            r.ledger_receivable.to_string(),
            r.ties_out().to_string(),
        ];
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, v);
        }
        out.push_str("\r\n");
    }
    out
}

/// A period named like `2026-11` (a calendar month, UTC) or `2026-11-01..2026-12-01` (days,
/// the end exclusive), as `[from, to)`.
pub fn parse_period(text: &str) -> Result<(NaiveDateTime, NaiveDateTime)> {
    let bad = || Error::invalid("period", "expected YYYY-MM or YYYY-MM-DD..YYYY-MM-DD");
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad());
    let (from, to) = match text.split_once("..") {
        Some((a, b)) => (day(a)?, day(b)?),
        None => {
            let first = day(&format!("{text}-01"))?;
            let next = first.checked_add_months(chrono::Months::new(1)).ok_or_else(bad)?;
            (first, next)
        }
    };
    if to <= from {
        return Err(Error::invalid("period", "its end must be after its start"));
    }
    Ok((
        from.and_time(chrono::NaiveTime::MIN),
        to.and_time(chrono::NaiveTime::MIN),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(external: &str) -> ExportRow {
        ExportRow {
            project_id: "prj_1".into(),
            customer_external_id: external.into(),
            currency: "USD".into(),
            invoices: 2,
            invoiced: Decimal::new(12345, 2),
            adjustments: 0,
            adjusted: Decimal::ZERO,
            credits_applied: Decimal::new(5, 0),
            paid: Decimal::ZERO,
            outstanding: Decimal::new(11845, 2),
            ledger_receivable: Decimal::new(-11845, 2),
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_says_whether_each_row_ties_out() {
        let mut off = row("b");
        off.ledger_receivable = Decimal::new(-1, 0);
        let csv = to_csv(&[row("a,\"1\""), off]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[1],
            "prj_1,\"a,\"\"1\"\"\",USD,2,123.45,0,0,5,0,118.45,-118.45,true"
        );
        assert!(lines[2].ends_with(",-1,false"), "{csv}");
    }

    #[test]
    fn periods_are_months_or_day_ranges() {
        let (from, to) = parse_period("2026-02").unwrap();
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2026-02-01 00:00:00".into(), "2026-03-01 00:00:00".into())
        );
        let (from, to) = parse_period("2026-01-15..2026-02-15").unwrap();
        assert_eq!(
            (from.date().to_string(), to.date().to_string()),
            ("2026-01-15".into(), "2026-02-15".into())
        );
        for bad in ["2026", "2026-13", "2026-02-01..2026-01-01", "x..y"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }
}
