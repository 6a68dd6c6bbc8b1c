//! Reconciliation: proves the stored ledger obeys its invariants, in SQL aggregates (nothing is
//! loaded row by row), and reports every difference with the accounts involved.
//!
//! 1. Every transaction balances: it has postings, and they sum to zero per unit.
//! 2. Every wallet's `balance` equals the sum of the postings on its accounts, and the running
//!    balance of its last posting.
//! 3. Every lot's `remaining` equals its account's balance, which is between zero and the lot's
//!    original amount (no lot is over-consumed or overfilled).
//! 4. No wallet is overdrawn past its credit limit (the overdraft account is never positive).
//! 5. Every posting agrees with its account and its transaction: same project and unit, the
//!    account's wallet (none for system accounts), the transaction's cause. Without this, a
//!    posting filed under the wrong wallet would pass check 2, which sums by the posting's wallet.
//! 6. Every row can be read back: no stored time is a zero date (`0000-00-00`, which MariaDB
//!    stores for a year past 9999 and which fails every read of its wallet; it sorts before any
//!    real date). Reported as `UNREADABLE_ROW` rather than calling such a ledger consistent.
//! 7. Every invoice agrees with its ledger transactions: what its invoice transaction (and its
//!    reversal, once void) put on the customer's RECEIVABLE is minus its total while it stands
//!    (zero for drafts and void invoices), and what its credits transaction (and its reversal)
//!    took off it is the prepaid credits it shows. Both must be the invoice's (`cause_id`).
//!    What its payments posted there (cause PAYMENT, and REFUND for a refund) is its amount due
//!    while it is PAID, and zero otherwise.
//!    Each transaction is looked up by equality (`IN (a, b)` over an outer row's columns kept
//!    MariaDB off the postings' index: a scan per invoice).
//! 8. Every credit hold agrees with the postings whose cause id it is on its wallet's HOLD
//!    account: what it still holds is their sum, all of it while ACTIVE and nothing once
//!    settled, released or expired; and every wallet's `held` is both its HOLD account's balance
//!    and the sum of what its active holds hold.

use diesel::{
    QueryableByName,
    sql_types::{Nullable, Numeric, Text},
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::{error::Result, store::Conn};

crate::text_enum::text_enum! {
    /// Which invariant a break breaks (the module's list says what each checks).
    ReconciliationCheck {
        /// 1. A transaction's postings do not sum to zero, or it has fewer than two.
        TransactionUnbalanced = "TRANSACTION_UNBALANCED",
        /// 2. A wallet's balance is not the sum of its postings.
        WalletBalanceMismatch = "WALLET_BALANCE_MISMATCH",
        /// 2. A wallet's last posting's running balance is not the wallet's balance.
        RunningBalanceMismatch = "RUNNING_BALANCE_MISMATCH",
        /// 3. A lot's remaining amount is not its account's balance, or is out of range.
        LotMismatch = "LOT_MISMATCH",
        /// 4. A wallet is overdrawn past its credit limit.
        OverdraftExceeded = "OVERDRAFT_EXCEEDED",
        /// 5. A posting disagrees with its account or transaction.
        PostingMismatch = "POSTING_MISMATCH",
        /// 6. A row cannot be read back (a zero date).
        UnreadableRow = "UNREADABLE_ROW",
        /// 7. An invoice disagrees with its ledger transactions.
        InvoiceMismatch = "INVOICE_MISMATCH",
        /// 8. A credit hold, or a wallet's `held`, disagrees with the HOLD account's postings.
        HoldMismatch = "HOLD_MISMATCH",
    }
}

impl Serialize for ReconciliationCheck {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Break {
    pub check: ReconciliationCheck,
    pub project_id: String,
    /// The transaction, wallet or lot that breaks it.
    pub subject: String,
    /// The accounts involved.
    pub account_ids: Vec<String>,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub transactions: u64,
    pub wallets: u64,
    pub lots: u64,
    pub breaks: Vec<Break>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.breaks.is_empty()
    }
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = Text)]
    project_id: String,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Nullable<Text>)]
    accounts: Option<String>,
    #[diesel(sql_type = Nullable<Numeric>)]
    expected: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    actual: Option<Decimal>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

const CHECKS: &[(ReconciliationCheck, &str)] = &[
    (
        ReconciliationCheck::TransactionUnbalanced,
        "SELECT p.project_id, p.transaction_id AS subject, GROUP_CONCAT(DISTINCT p.account_id ORDER BY p.account_id) AS accounts,
                CAST(0 AS DECIMAL(38, 12)) AS expected, SUM(p.amount) AS actual
           FROM ledger_postings p WHERE (? IS NULL OR p.project_id = ?)
          GROUP BY p.project_id, p.transaction_id, p.currency HAVING SUM(p.amount) <> 0 OR COUNT(*) < 2",
    ),
    (
        ReconciliationCheck::TransactionUnbalanced,
        "SELECT t.project_id, t.id AS subject, NULL AS accounts,
                CAST(0 AS DECIMAL(38, 12)) AS expected, NULL AS actual
           FROM ledger_transactions t LEFT JOIN ledger_postings p ON p.transaction_id = t.id
          WHERE (? IS NULL OR t.project_id = ?) AND p.id IS NULL",
    ),
    (
        ReconciliationCheck::WalletBalanceMismatch,
        "SELECT w.project_id, w.id AS subject, GROUP_CONCAT(DISTINCT p.account_id ORDER BY p.account_id) AS accounts,
                COALESCE(SUM(p.amount), 0) AS expected, w.balance AS actual
           FROM wallets w LEFT JOIN ledger_postings p ON p.wallet_id = w.id
          WHERE (? IS NULL OR w.project_id = ?)
          GROUP BY w.project_id, w.id, w.balance HAVING w.balance <> COALESCE(SUM(p.amount), 0)",
    ),
    (
        ReconciliationCheck::RunningBalanceMismatch,
        "SELECT w.project_id, w.id AS subject, p.account_id AS accounts,
                w.balance AS expected, p.wallet_balance_after AS actual
           FROM wallets w
           JOIN ledger_postings p ON p.id = (SELECT MAX(q.id) FROM ledger_postings q WHERE q.wallet_id = w.id)
          WHERE (? IS NULL OR w.project_id = ?) AND NOT (p.wallet_balance_after <=> w.balance)",
    ),
    (
        ReconciliationCheck::LotMismatch,
        "SELECT l.project_id, l.id AS subject, l.account_id AS accounts,
                COALESCE(SUM(p.amount), 0) AS expected, l.remaining AS actual
           FROM credit_lots l LEFT JOIN ledger_postings p ON p.account_id = l.account_id
          WHERE (? IS NULL OR l.project_id = ?)
          GROUP BY l.project_id, l.id, l.account_id, l.remaining, l.original_amount
         HAVING l.remaining <> COALESCE(SUM(p.amount), 0)
             OR COALESCE(SUM(p.amount), 0) < 0
             OR COALESCE(SUM(p.amount), 0) > l.original_amount",
    ),
    (
        ReconciliationCheck::OverdraftExceeded,
        "SELECT w.project_id, w.id AS subject, w.overdraft_account_id AS accounts,
                -w.credit_limit AS expected, COALESCE(SUM(p.amount), 0) AS actual
           FROM wallets w LEFT JOIN ledger_postings p ON p.account_id = w.overdraft_account_id
          WHERE (? IS NULL OR w.project_id = ?)
          GROUP BY w.project_id, w.id, w.overdraft_account_id, w.credit_limit
         HAVING COALESCE(SUM(p.amount), 0) > 0 OR COALESCE(SUM(p.amount), 0) < -w.credit_limit",
    ),
    (
        ReconciliationCheck::PostingMismatch,
        "SELECT p.project_id, CAST(p.id AS CHAR) AS subject, p.account_id AS accounts,
                NULL AS expected, NULL AS actual
           FROM ledger_postings p
           LEFT JOIN ledger_accounts a ON a.id = p.account_id
           LEFT JOIN ledger_transactions t ON t.id = p.transaction_id
          WHERE (? IS NULL OR p.project_id = ?)
            AND NOT (a.id IS NOT NULL AND t.id IS NOT NULL
                     AND a.project_id = p.project_id AND a.currency = p.currency AND a.wallet_id <=> p.wallet_id
                     AND t.project_id = p.project_id AND t.currency = p.currency AND t.cause = p.cause)",
    ),
    (
        ReconciliationCheck::InvoiceMismatch,
        "SELECT x.project_id, x.id AS subject, x.accounts, x.expected, x.actual FROM (
           SELECT i.project_id, i.id, NULL AS accounts,
                  CASE WHEN i.status IN ('FINALIZED', 'PAID') THEN -i.total ELSE 0 END AS expected,
                  (SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p
                     JOIN ledger_accounts a ON a.id = p.account_id
                     JOIN ledger_transactions t ON t.id = p.transaction_id
                    WHERE p.transaction_id = i.invoice_transaction_id
                      AND a.kind = 'RECEIVABLE' AND t.cause = 'INVOICE' AND t.cause_id = i.id)
                + (SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p
                     JOIN ledger_accounts a ON a.id = p.account_id
                     JOIN ledger_transactions t ON t.id = p.transaction_id
                    WHERE p.transaction_id = i.void_invoice_transaction_id
                      AND a.kind = 'RECEIVABLE' AND t.cause = 'INVOICE' AND t.cause_id = i.id) AS actual
             FROM invoices i WHERE (? IS NULL OR i.project_id = ?)) x
          WHERE x.expected <> x.actual",
    ),
    (
        ReconciliationCheck::InvoiceMismatch,
        "SELECT x.project_id, x.id AS subject, x.accounts, x.expected, x.actual FROM (
           SELECT i.project_id, i.id, NULL AS accounts,
                  CASE WHEN i.status IN ('FINALIZED', 'PAID') THEN -i.credits ELSE 0 END AS expected,
                  (SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p
                     JOIN ledger_accounts a ON a.id = p.account_id
                     JOIN ledger_transactions t ON t.id = p.transaction_id
                    WHERE p.transaction_id = i.credits_transaction_id
                      AND a.kind = 'RECEIVABLE' AND t.cause = 'INVOICE' AND t.cause_id = i.id)
                + (SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p
                     JOIN ledger_accounts a ON a.id = p.account_id
                     JOIN ledger_transactions t ON t.id = p.transaction_id
                    WHERE p.transaction_id = i.void_credits_transaction_id
                      AND a.kind = 'RECEIVABLE' AND t.cause = 'INVOICE' AND t.cause_id = i.id) AS actual
             FROM invoices i WHERE (? IS NULL OR i.project_id = ?)) x
          WHERE x.expected <> x.actual",
    ),
    (
        // What payments put on the customer's RECEIVABLE for an invoice: its amount due while it
        // is PAID, nothing otherwise (unpaid, or paid and refunded). The transactions are the
        // ones its payments name (docs/payments.md), each of cause PAYMENT or REFUND with the
        // invoice as cause id.
        ReconciliationCheck::InvoiceMismatch,
        "SELECT x.project_id, x.id AS subject, x.accounts, x.expected, x.actual FROM (
           SELECT i.project_id, i.id, NULL AS accounts,
                  CASE WHEN i.status = 'PAID' THEN i.amount_due ELSE 0 END AS expected,
                  (SELECT COALESCE(SUM(p.amount), 0) FROM payments y
                     JOIN ledger_postings p ON p.transaction_id = y.transaction_id
                     JOIN ledger_accounts a ON a.id = p.account_id
                     JOIN ledger_transactions t ON t.id = p.transaction_id
                    WHERE y.invoice_id = i.id
                      AND a.kind = 'RECEIVABLE' AND t.cause = 'PAYMENT' AND t.cause_id = i.id)
                + (SELECT COALESCE(SUM(p.amount), 0) FROM payments y
                     JOIN ledger_postings p ON p.transaction_id = y.refund_transaction_id
                     JOIN ledger_accounts a ON a.id = p.account_id
                     JOIN ledger_transactions t ON t.id = p.transaction_id
                    WHERE y.invoice_id = i.id
                      AND a.kind = 'RECEIVABLE' AND t.cause = 'REFUND' AND t.cause_id = i.id) AS actual
             FROM invoices i WHERE (? IS NULL OR i.project_id = ?)) x
          WHERE x.expected <> x.actual",
    ),
    (
        // A credit note or adjustment invoice: its transaction puts minus its total on the
        // customer's RECEIVABLE.
        ReconciliationCheck::InvoiceMismatch,
        "SELECT x.project_id, x.id AS subject, x.accounts, x.expected, x.actual FROM (
           SELECT d.project_id, d.id, NULL AS accounts, -d.total AS expected,
                  (SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p
                     JOIN ledger_accounts a ON a.id = p.account_id
                     JOIN ledger_transactions t ON t.id = p.transaction_id
                    WHERE p.transaction_id = d.transaction_id
                      AND a.kind = 'RECEIVABLE' AND t.cause = 'INVOICE' AND t.cause_id = d.id) AS actual
             FROM invoice_adjustments d WHERE (? IS NULL OR d.project_id = ?)) x
          WHERE x.expected <> x.actual",
    ),
    (
        ReconciliationCheck::HoldMismatch,
        "SELECT h.project_id, h.id AS subject, h.account_id AS accounts,
                COALESCE(s.total, 0) AS expected, h.remaining AS actual
           FROM credit_holds h
           LEFT JOIN (SELECT t.cause_id AS hold_id, SUM(p.amount) AS total
                        FROM ledger_postings p
                        JOIN ledger_accounts a ON a.id = p.account_id
                        JOIN ledger_transactions t ON t.id = p.transaction_id
                       WHERE a.kind = 'HOLD' AND (? IS NULL OR p.project_id = ?)
                       GROUP BY t.cause_id) s ON s.hold_id = h.id
          WHERE (? IS NULL OR h.project_id = ?)
            AND (h.remaining <> COALESCE(s.total, 0)
                 OR (h.status = 'ACTIVE' AND h.remaining <> h.amount)
                 OR (h.status <> 'ACTIVE' AND h.remaining <> 0))",
    ),
    (
        ReconciliationCheck::HoldMismatch,
        "SELECT w.project_id, w.id AS subject, GROUP_CONCAT(DISTINCT a.id ORDER BY a.id) AS accounts,
                COALESCE(SUM(p.amount), 0) AS expected, w.held AS actual
           FROM wallets w
           LEFT JOIN ledger_accounts a ON a.wallet_id = w.id AND a.kind = 'HOLD'
           LEFT JOIN ledger_postings p ON p.account_id = a.id
          WHERE (? IS NULL OR w.project_id = ?)
          GROUP BY w.project_id, w.id, w.held HAVING w.held <> COALESCE(SUM(p.amount), 0)",
    ),
    (
        ReconciliationCheck::HoldMismatch,
        "SELECT w.project_id, w.id AS subject, NULL AS accounts,
                COALESCE(SUM(h.remaining), 0) AS expected, w.held AS actual
           FROM wallets w LEFT JOIN credit_holds h ON h.wallet_id = w.id AND h.status = 'ACTIVE'
          WHERE (? IS NULL OR w.project_id = ?)
          GROUP BY w.project_id, w.id, w.held HAVING w.held <> COALESCE(SUM(h.remaining), 0)",
    ),
    (
        ReconciliationCheck::UnreadableRow,
        "SELECT l.project_id, l.id AS subject, l.account_id AS accounts, NULL AS expected, NULL AS actual
           FROM credit_lots l WHERE (? IS NULL OR l.project_id = ?)
            AND (l.expires_at < '1000-01-01' OR l.expired_at < '1000-01-01' OR l.created_at < '1000-01-01')",
    ),
    (
        ReconciliationCheck::UnreadableRow,
        "SELECT w.project_id, w.id AS subject, NULL AS accounts, NULL AS expected, NULL AS actual
           FROM wallets w WHERE (? IS NULL OR w.project_id = ?)
            AND (w.created_at < '1000-01-01' OR w.updated_at < '1000-01-01')",
    ),
    (
        ReconciliationCheck::UnreadableRow,
        "SELECT t.project_id, t.id AS subject, NULL AS accounts, NULL AS expected, NULL AS actual
           FROM ledger_transactions t WHERE (? IS NULL OR t.project_id = ?) AND t.created_at < '1000-01-01'",
    ),
    (
        ReconciliationCheck::UnreadableRow,
        "SELECT p.project_id, CAST(p.id AS CHAR) AS subject, p.account_id AS accounts, NULL AS expected, NULL AS actual
           FROM ledger_postings p WHERE (? IS NULL OR p.project_id = ?) AND p.created_at < '1000-01-01'",
    ),
];

/// Runs every check over one project, or all of them.
pub async fn reconcile(conn: &mut Conn, project_id: Option<&str>) -> Result<Report> {
    let mut report = Report {
        transactions: count(
            conn,
            "SELECT COUNT(*) AS n FROM ledger_transactions WHERE (? IS NULL OR project_id = ?)",
            project_id,
        )
        .await?,
        wallets: count(
            conn,
            "SELECT COUNT(*) AS n FROM wallets WHERE (? IS NULL OR project_id = ?)",
            project_id,
        )
        .await?,
        lots: count(
            conn,
            "SELECT COUNT(*) AS n FROM credit_lots WHERE (? IS NULL OR project_id = ?)",
            project_id,
        )
        .await?,
        breaks: Vec::new(),
    };
    for (check, sql) in CHECKS {
        // Every placeholder of a check is the project filter (no check has a literal `?`).
        let mut query = diesel::sql_query(*sql).into_boxed::<diesel::mysql::Mysql>();
        for _ in 0..sql.matches('?').count() {
            query = query.bind::<Nullable<Text>, _>(project_id);
        }
        let found: Vec<Found> = query.load(conn).await?;
        report.breaks.extend(found.into_iter().map(|f| {
            Break {
                check: *check,
                project_id: f.project_id,
                subject: f.subject,
                account_ids: f
                    .accounts
                    .map(|a| a.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                expected: text(f.expected),
                actual: text(f.actual),
            }
        }));
    }
    Ok(report)
}

fn text(value: Option<Decimal>) -> String {
    value
        .map(|d| d.normalize().to_string())
        .unwrap_or_else(|| "null".into())
}

async fn count(conn: &mut Conn, sql: &str, project_id: Option<&str>) -> Result<u64> {
    let row: Count = diesel::sql_query(sql)
        .bind::<Nullable<Text>, _>(project_id)
        .bind::<Nullable<Text>, _>(project_id)
        .get_result(conn)
        .await?;
    Ok(row.n as u64)
}
