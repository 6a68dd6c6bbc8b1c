//! The CHECK constraints of `migrations/2026-12-04-000015_ledger_constraints` exist and hold: for
//! each, a valid row inserts, and the same row with one invariant broken is refused by MariaDB,
//! naming the constraint. Foreign keys are off on this connection: the rows stand alone.

use diesel_async::{AsyncMysqlConnection, SimpleAsyncConnection};
use neruba::testing::TestDb;

/// Inserts `valid` with `broken` replacing some of its values (column → SQL literal) in a
/// transaction that is rolled back; answers the error, if any.
async fn insert(
    conn: &mut AsyncMysqlConnection,
    table: &str,
    valid: &[(&str, &str)],
    broken: &[(&str, &str)],
) -> Option<String> {
    let row: Vec<(&str, &str)> = valid
        .iter()
        .map(|(c, v)| (*c, broken.iter().find(|(b, _)| b == c).map_or(*v, |(_, b)| *b)))
        .collect();
    let columns: Vec<&str> = row.iter().map(|(c, _)| *c).collect();
    let values: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
    conn.batch_execute("START TRANSACTION").await.unwrap();
    let result = conn
        .batch_execute(&format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            columns.join(", "),
            values.join(", ")
        ))
        .await;
    conn.batch_execute("ROLLBACK").await.unwrap();
    result.err().map(|e| e.to_string())
}

/// The valid row inserts; each broken variant fails on its constraint (noted in `seen`).
async fn check(
    seen: &mut Vec<String>,
    conn: &mut AsyncMysqlConnection,
    table: &str,
    valid: &[(&str, &str)],
    cases: &[(&str, &[(&str, &str)])],
) {
    if let Some(e) = insert(conn, table, valid, &[]).await {
        panic!("{table}: the valid row is refused: {e}");
    }
    for (constraint, broken) in cases {
        seen.push(constraint.to_string());
        let error = insert(conn, table, valid, broken)
            .await
            .unwrap_or_else(|| panic!("{table}: {broken:?} was stored; {constraint} should refuse it"));
        assert!(
            error.contains(&format!("CONSTRAINT `{constraint}` failed")),
            "{table}: {broken:?}: expected {constraint} to refuse it, got: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_check_constraint_refuses_a_row_that_breaks_it() {
    let db = TestDb::create().await;
    let mut conn = neruba::db::connect(&db.url).await.unwrap();
    conn.batch_execute("SET SESSION foreign_key_checks = 0").await.unwrap();
    let now = "'2026-12-04 00:00:00'";
    let mut seen = Vec::new();

    let posting: &[(&str, &str)] = &[
        ("transaction_id", "'txn_1'"),
        ("project_id", "'prj_1'"),
        ("account_id", "'acc_1'"),
        ("wallet_id", "'wal_1'"),
        ("lot_id", "'lot_1'"),
        ("currency", "'USD'"),
        ("amount", "-3"),
        ("wallet_balance_after", "7"),
        ("cause", "'CHARGE'"),
        ("created_at", now),
    ];
    check(
        &mut seen,
        &mut conn,
        "ledger_postings",
        posting,
        &[
            ("ck_ledger_postings_amount", &[("amount", "0")]),
            ("ck_ledger_postings_amount", &[("amount", "0.000000000000")]),
            ("ck_ledger_postings_wallet", &[("wallet_balance_after", "NULL")]),
            (
                "ck_ledger_postings_wallet",
                &[("wallet_id", "NULL"), ("lot_id", "NULL")],
            ),
            (
                "ck_ledger_postings_lot",
                &[("wallet_id", "NULL"), ("wallet_balance_after", "NULL")],
            ),
        ],
    )
    .await;

    let transaction: &[(&str, &str)] = &[
        ("id", "'txn_1'"),
        ("project_id", "'prj_1'"),
        ("wallet_id", "'wal_1'"),
        ("cause", "'ADJUSTMENT'"),
        ("currency", "'USD'"),
        ("amount", "-3"),
        ("idempotency_key", "'key-1'"),
        ("request_hash", "REPEAT('h', 32)"),
        ("actor", "'operator'"),
        ("wallet_balance_after", "7"),
        ("created_at", now),
    ];
    check(
        &mut seen,
        &mut conn,
        "ledger_transactions",
        transaction,
        &[
            ("ck_ledger_transactions_amount", &[("amount", "0")]),
            ("ck_ledger_transactions_wallet", &[("wallet_balance_after", "NULL")]),
            ("ck_ledger_transactions_wallet", &[("wallet_id", "NULL")]),
            ("ck_ledger_transactions_idempotency", &[("request_hash", "NULL")]),
            ("ck_ledger_transactions_idempotency", &[("idempotency_key", "NULL")]),
        ],
    )
    .await;

    let lot: &[(&str, &str)] = &[
        ("id", "'lot_1'"),
        ("project_id", "'prj_1'"),
        ("wallet_id", "'wal_1'"),
        ("account_id", "'acc_1'"),
        ("source", "'TOP_UP'"),
        ("original_amount", "10"),
        ("remaining", "4"),
        ("transaction_id", "'txn_1'"),
        ("created_at", now),
    ];
    check(
        &mut seen,
        &mut conn,
        "credit_lots",
        lot,
        &[
            (
                "ck_credit_lots_original",
                &[("original_amount", "0"), ("remaining", "0")],
            ),
            (
                "ck_credit_lots_original",
                &[("original_amount", "-1"), ("remaining", "-1")],
            ),
            ("ck_credit_lots_remaining", &[("remaining", "-0.000000000001")]),
            ("ck_credit_lots_remaining", &[("remaining", "10.000000000001")]),
        ],
    )
    .await;

    let wallet: &[(&str, &str)] = &[
        ("id", "'wal_1'"),
        ("project_id", "'prj_1'"),
        ("customer_id", "'cus_1'"),
        ("customer_external_id", "'acme'"),
        ("currency", "'USD'"),
        ("policy", "'ALLOW_UNTIL_LIMIT'"),
        ("credit_limit", "50"),
        ("balance", "-50"),
        ("overdraft_account_id", "'acc_2'"),
        ("created_at", now),
        ("updated_at", now),
    ];
    check(
        &mut seen,
        &mut conn,
        "wallets",
        wallet,
        &[
            ("ck_wallets_policy", &[("policy", "'MAYBE'")]),
            ("ck_wallets_credit_limit", &[("credit_limit", "-1"), ("balance", "0")]),
            ("ck_wallets_credit_limit", &[("policy", "'REJECT'"), ("balance", "0")]),
            ("ck_wallets_balance", &[("balance", "-50.01")]),
            (
                "ck_wallets_balance",
                &[("policy", "'REJECT'"), ("credit_limit", "0"), ("balance", "-1")],
            ),
        ],
    )
    .await;

    let invoice: &[(&str, &str)] = &[
        ("id", "'inv_1'"),
        ("project_id", "'prj_1'"),
        ("customer_id", "'cus_1'"),
        ("subscription_id", "'sub_1'"),
        ("plan_version_id", "'plv_1'"),
        ("boundary", now),
        ("status", "'FINALIZED'"),
        ("number", "1"),
        ("currency", "'USD'"),
        ("subtotal", "100"),
        ("discount", "-10"),
        ("tax", "18"),
        ("total", "108"),
        ("credits", "-8"),
        ("amount_due", "100"),
        ("computed_at", now),
        ("cutoff", now),
        ("conventions_version", "10"),
        ("manifest", "'{}'"),
        ("manifest_hash", "REPEAT('0', 64)"),
        ("created_at", now),
        ("updated_at", now),
    ];
    check(
        &mut seen,
        &mut conn,
        "invoices",
        invoice,
        &[
            ("ck_invoices_discount", &[("discount", "1"), ("total", "119")]),
            ("ck_invoices_credits", &[("credits", "8"), ("amount_due", "116")]),
            ("ck_invoices_credits", &[("credits", "-109"), ("amount_due", "-1")]),
            (
                "ck_invoices_credits",
                &[("total", "-5"), ("credits", "-1"), ("amount_due", "-6")],
            ),
            ("ck_invoices_amount_due", &[("amount_due", "108")]),
        ],
    )
    .await;
    // A negative total (a credit for unused days) draws no credits: valid.
    let credit = &[
        ("subtotal", "-5"),
        ("discount", "0"),
        ("tax", "0"),
        ("total", "-5"),
        ("credits", "0"),
        ("amount_due", "-5"),
    ];
    assert_eq!(insert(&mut conn, "invoices", invoice, credit).await, None);

    let adjustment: &[(&str, &str)] = &[
        ("id", "'adj_1'"),
        ("project_id", "'prj_1'"),
        ("invoice_id", "'inv_1'"),
        ("number", "2"),
        ("kind", "'CREDIT_NOTE'"),
        ("currency", "'USD'"),
        ("subtotal", "-10"),
        ("discount", "0"),
        ("tax", "-1.9"),
        ("total", "-11.9"),
        ("cutoff", now),
        ("manifest", "'{}'"),
        ("manifest_hash", "REPEAT('0', 64)"),
        ("created_at", now),
    ];
    check(
        &mut seen,
        &mut conn,
        "invoice_adjustments",
        adjustment,
        &[
            ("ck_invoice_adjustments_total", &[("total", "11.9")]),
            ("ck_invoice_adjustments_total", &[("total", "0")]),
            ("ck_invoice_adjustments_total", &[("kind", "'ADJUSTMENT_INVOICE'")]),
        ],
    )
    .await;
    let billed_too_little = &[("kind", "'ADJUSTMENT_INVOICE'"), ("total", "3")];
    assert_eq!(
        insert(&mut conn, "invoice_adjustments", adjustment, billed_too_little).await,
        None
    );

    for (_, constraint) in neruba::db::privileges::LEDGER_CHECKS {
        assert!(seen.iter().any(|s| s == constraint), "{constraint} is not tested here");
    }
}
