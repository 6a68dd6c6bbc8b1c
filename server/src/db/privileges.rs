//! The database user `neruba serve` runs as: the privileges it needs on each table (the source of
//! `neruba grants` and `scripts/grant-app-user.sql`), and whether the ledger is append-only for the
//! user a connection runs as (`neruba doctor`). docs/operations.md, "Database user and privileges".

use diesel::{QueryableByName, sql_types::Text};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use super::DbError;

/// Every table the server reads, with what serving needs beyond `SELECT`: the server only inserts
/// into most, updates the projections and settings named here, and deletes only outbox rows past
/// their day, a draft's lines (rewritten with it), a customer's tax-rate list (replaced whole)
/// and a released lease. `INSERT … ON DUPLICATE KEY UPDATE` (counters, leases) needs `UPDATE`.
/// A new table needs a line here (`server/tests/app_user.rs` fails until it has one).
pub const APP_TABLES: &[(&str, &[&str])] = &[
    // Readiness compares the applied migrations with the binary's.
    ("__diesel_schema_migrations", &[]),
    ("projects", &["INSERT"]),
    // Revocation, last use.
    ("api_keys", &["INSERT", "UPDATE"]),
    // An implicit customer completed by createCustomer.
    ("customers", &["INSERT", "UPDATE"]),
    ("billable_metrics", &["INSERT"]),
    ("usage_events", &["INSERT"]),
    ("credit_units", &["INSERT"]),
    // Balance, threshold state, event counter, settings.
    ("wallets", &["INSERT", "UPDATE"]),
    ("ledger_accounts", &["INSERT"]),
    ("ledger_transactions", &["INSERT"]),
    ("ledger_postings", &["INSERT"]),
    // Remainder, expiry.
    ("credit_lots", &["INSERT", "UPDATE"]),
    // Rows older than a day are trimmed.
    ("ledger_outbox", &["INSERT", "DELETE"]),
    ("customer_event_seqs", &["INSERT", "UPDATE"]),
    // The latest version.
    ("plans", &["INSERT", "UPDATE"]),
    ("plan_versions", &["INSERT"]),
    ("plan_charges", &["INSERT"]),
    // Cancellation.
    ("subscriptions", &["INSERT", "UPDATE"]),
    ("subscription_changes", &["INSERT"]),
    // Drafts rewritten, finalized, voided.
    ("invoices", &["INSERT", "UPDATE"]),
    ("invoice_lines", &["INSERT", "DELETE"]),
    ("invoice_sequences", &["INSERT", "UPDATE"]),
    ("invoice_adjustments", &["INSERT"]),
    ("leases", &["INSERT", "UPDATE", "DELETE"]),
    ("coupons", &["INSERT"]),
    ("coupon_redemptions", &["INSERT"]),
    // The project's default list.
    ("tax_rates", &["INSERT", "UPDATE"]),
    ("customer_tax_rates", &["INSERT", "DELETE"]),
    // Status, remainder, settlement when a hold ends.
    ("credit_holds", &["INSERT", "UPDATE"]),
    // Top-up limits, written with REPLACE (a delete and an insert).
    ("payment_settings", &["INSERT", "DELETE"]),
    ("payment_secrets", &["INSERT"]),
    // The provider's session, status.
    ("checkout_sessions", &["INSERT", "UPDATE"]),
    // Status, refunds.
    ("payments", &["INSERT", "UPDATE"]),
    // Outcome, processing time.
    ("webhook_events", &["INSERT", "UPDATE"]),
    ("stripe_customers", &["INSERT"]),
    // Exchanged once, revoked.
    ("portal_sessions", &["INSERT", "UPDATE"]),
    // The logo, written with REPLACE (a delete and an insert).
    ("portal_settings", &["INSERT", "DELETE"]),
];

/// Posted ledger rows: the serving user may read and insert them, never change or remove them.
pub const APPEND_ONLY_TABLES: &[&str] = &["ledger_postings", "ledger_transactions"];

/// The CHECK constraints of migration `2026-12-04-000015_ledger_constraints` (docs/ledger.md),
/// by table.
pub const LEDGER_CHECKS: &[(&str, &str)] = &[
    ("ledger_postings", "ck_ledger_postings_amount"),
    ("ledger_postings", "ck_ledger_postings_wallet"),
    ("ledger_postings", "ck_ledger_postings_lot"),
    ("ledger_transactions", "ck_ledger_transactions_amount"),
    ("ledger_transactions", "ck_ledger_transactions_wallet"),
    ("ledger_transactions", "ck_ledger_transactions_idempotency"),
    ("credit_lots", "ck_credit_lots_original"),
    ("credit_lots", "ck_credit_lots_remaining"),
    ("wallets", "ck_wallets_policy"),
    ("wallets", "ck_wallets_credit_limit"),
    ("wallets", "ck_wallets_balance"),
    ("invoices", "ck_invoices_discount"),
    ("invoices", "ck_invoices_credits"),
    ("invoices", "ck_invoices_amount_due"),
    ("invoice_adjustments", "ck_invoice_adjustments_total"),
];

/// A user or host name for a `GRANT`: letters, digits and `_ . - %` (`%` is MariaDB's wildcard
/// host) — nothing that needs quoting inside `'…'`.
fn check_account_part(what: &str, value: &str) -> Result<(), DbError> {
    let ok = !value.is_empty()
        && value.len() <= 80
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'%'));
    if ok {
        Ok(())
    } else {
        Err(DbError::Connect(format!(
            "invalid {what} `{value}`: use letters, digits, `_`, `.`, `-` or `%`"
        )))
    }
}

/// The `GRANT` statements for the serving user `'user'@'host'` on `database`, one per table.
pub fn grant_statements(database: &str, user: &str, host: &str) -> Result<Vec<String>, DbError> {
    super::check_database_name(database)?;
    check_account_part("user", user)?;
    check_account_part("host", host)?;
    Ok(APP_TABLES
        .iter()
        .map(|(table, more)| {
            let privileges: Vec<&str> = std::iter::once("SELECT").chain(more.iter().copied()).collect();
            format!(
                "GRANT {} ON `{database}`.`{table}` TO '{user}'@'{host}';",
                privileges.join(", ")
            )
        })
        .collect())
}

/// The script `neruba grants` prints (`scripts/grant-app-user.sql` is its default output).
pub fn grant_script(database: &str, user: &str, host: &str) -> Result<String, DbError> {
    let statements = grant_statements(database, user, host)?;
    Ok(format!(
        "-- The privileges of the database user `neruba serve` runs as (docs/operations.md, \"Database\n\
         -- user and privileges\"). Generated by `neruba grants --database {database} --user {user} --host '{host}'`.\n\
         -- Run it as an administrator after `neruba migrate` (a user with all privileges on the\n\
         -- database applies migrations; tables must exist to be granted) and after\n\
         --   CREATE USER '{user}'@'{host}' IDENTIFIED BY '<password>';\n\
         -- then serve with that user in DATABASE_URL and NERUBA_MIGRATE_ON_START=false.\n\
         -- Posted ledger rows are never changed: ledger_postings and ledger_transactions get SELECT\n\
         -- and INSERT only, and no table gets ALTER, DROP or any global privilege.\n\
         {}\n",
        statements.join("\n")
    ))
}

/// One way the user can change or remove posted ledger rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// `UPDATE` or `DELETE`.
    pub privilege: &'static str,
    pub table: &'static str,
    /// Where the grant comes from: `global level`, `database level`, `table level`, `column
    /// level`, or `a role or a wildcard grant` when information_schema does not show it.
    pub granted_at: String,
}

/// Whether the ledger is append-only for the user a connection runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOnly {
    pub user: String,
    pub breaches: Vec<Breach>,
}

impl AppendOnly {
    pub fn holds(&self) -> bool {
        self.breaches.is_empty()
    }

    /// `doctor`'s line, after `ledger append-only: `.
    pub fn describe(&self) -> String {
        if self.holds() {
            return format!(
                "yes (no UPDATE/DELETE on {}; user {})",
                APPEND_ONLY_TABLES.join(", "),
                self.user
            );
        }
        let found: Vec<String> = self
            .breaches
            .iter()
            .map(|b| format!("{} {} (granted at {})", b.privilege, b.table, b.granted_at))
            .collect();
        format!(
            "no: the user {} can {} — see docs/operations.md, \"Database user and privileges\"",
            self.user,
            found.join(", ")
        )
    }
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Asks the server itself: a statement that would change no row (`… WHERE FALSE`), in a
/// transaction rolled back, is refused with "command denied" unless the user holds the privilege
/// somewhere (globally, on the database, the table or a column, through a role or a wildcard
/// database name). For each one held, information_schema says where it was granted.
pub async fn append_only(conn: &mut AsyncMysqlConnection) -> Result<AppendOnly, DbError> {
    let user = diesel::sql_query("SELECT CURRENT_USER() AS value")
        .get_result::<Value>(conn)
        .await?
        .value;
    let mut breaches = Vec::new();
    for table in APPEND_ONLY_TABLES {
        for privilege in ["UPDATE", "DELETE"] {
            let probe = match privilege {
                "UPDATE" => format!("UPDATE `{table}` SET amount = amount WHERE FALSE"),
                _ => format!("DELETE FROM `{table}` WHERE FALSE"),
            };
            let outcome: Result<(), diesel::result::Error> = conn
                .transaction(async |c| {
                    diesel::sql_query(probe.as_str()).execute(c).await?;
                    Err(diesel::result::Error::RollbackTransaction)
                })
                .await;
            let held = match outcome {
                Err(diesel::result::Error::RollbackTransaction) => true,
                Err(diesel::result::Error::DatabaseError(_, info)) if info.message().contains("command denied") => {
                    false
                }
                Err(e) => return Err(e.into()),
                Ok(()) => unreachable!("the probe always rolls back"),
            };
            // A column-level UPDATE on another column than the probe's changes rows too.
            let levels = granted_at(conn, privilege, table).await?;
            if held || !levels.is_empty() {
                breaches.push(Breach {
                    privilege,
                    table,
                    granted_at: if levels.is_empty() {
                        "a role or a wildcard grant".into()
                    } else {
                        levels.join(" and ")
                    },
                });
            }
        }
    }
    Ok(AppendOnly { user, breaches })
}

/// Where information_schema shows `privilege` on `table` granted to the current user.
async fn granted_at(conn: &mut AsyncMysqlConnection, privilege: &str, table: &str) -> Result<Vec<String>, DbError> {
    // information_schema names a grantee `'user'@'host'`; CURRENT_USER() answers `user@host`.
    let grantee = "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
                   SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')";
    let sql = format!(
        "SELECT 'global level' AS value FROM information_schema.USER_PRIVILEGES
           WHERE GRANTEE = {grantee} AND PRIVILEGE_TYPE = ?
         UNION ALL SELECT 'database level' FROM information_schema.SCHEMA_PRIVILEGES
           WHERE GRANTEE = {grantee} AND PRIVILEGE_TYPE = ? AND DATABASE() LIKE TABLE_SCHEMA
         UNION ALL SELECT 'table level' FROM information_schema.TABLE_PRIVILEGES
           WHERE GRANTEE = {grantee} AND PRIVILEGE_TYPE = ? AND TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?
         UNION ALL SELECT 'column level' FROM information_schema.COLUMN_PRIVILEGES
           WHERE GRANTEE = {grantee} AND PRIVILEGE_TYPE = ? AND TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
    );
    let levels: Vec<Value> = diesel::sql_query(sql)
        .bind::<Text, _>(privilege)
        .bind::<Text, _>(privilege)
        .bind::<Text, _>(privilege)
        .bind::<Text, _>(table)
        .bind::<Text, _>(privilege)
        .bind::<Text, _>(table)
        .load(conn)
        .await?;
    let mut levels: Vec<String> = levels.into_iter().map(|l| l.value).collect();
    levels.dedup();
    Ok(levels)
}

#[derive(QueryableByName)]
struct CreateTable {
    #[diesel(sql_type = Text, column_name = "Create Table")]
    sql: String,
}

/// Which of [`LEDGER_CHECKS`] the connection's database lacks. Read from `SHOW CREATE TABLE`,
/// which needs only `SELECT`: MariaDB shows information_schema.CHECK_CONSTRAINTS to a user with
/// SELECT and INSERT on a table as empty.
pub async fn missing_checks(conn: &mut AsyncMysqlConnection) -> Result<Vec<&'static str>, DbError> {
    let mut missing = Vec::new();
    let mut tables: Vec<&str> = LEDGER_CHECKS.iter().map(|(t, _)| *t).collect();
    tables.dedup();
    for table in tables {
        let created = diesel::sql_query(format!("SHOW CREATE TABLE `{table}`"))
            .get_result::<CreateTable>(conn)
            .await?;
        missing.extend(
            LEDGER_CHECKS
                .iter()
                .filter(|(t, name)| *t == table && !created.sql.contains(&format!("CONSTRAINT `{name}` CHECK")))
                .map(|(_, name)| *name),
        );
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_tables_get_select_and_insert_only() {
        let statements = grant_statements("neruba", "neruba_app", "%").unwrap();
        assert_eq!(statements.len(), APP_TABLES.len());
        for table in APPEND_ONLY_TABLES {
            let line = format!("GRANT SELECT, INSERT ON `neruba`.`{table}` TO 'neruba_app'@'%';");
            assert!(statements.contains(&line), "{statements:#?}");
        }
        assert!(
            statements
                .iter()
                .all(|s| !s.contains("ALL") && !s.contains("ALTER") && !s.contains("DROP") && !s.contains("*"))
        );
    }

    #[test]
    fn names_that_would_need_quoting_are_refused() {
        assert!(grant_statements("neruba", "app'; DROP", "%").is_err());
        assert!(grant_statements("neruba", "app", "h'ost").is_err());
        assert!(grant_statements("ne`ruba", "app", "%").is_err());
        assert!(grant_statements("neruba", "", "%").is_err());
    }

    #[test]
    fn the_checked_in_script_is_the_default_output() {
        let script = include_str!("../../../scripts/grant-app-user.sql");
        assert_eq!(
            script,
            grant_script("neruba", "neruba_app", "%").unwrap(),
            "run `neruba grants > scripts/grant-app-user.sql`"
        );
    }
}
