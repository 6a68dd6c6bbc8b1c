//! The server runs as a database user with only the privileges `neruba grants` prints
//! (docs/operations.md, "Database user and privileges"): top-ups, charges, usage, a billing run
//! drawing prepaid credits, a void, outbox trimming and the scheduler's lease all work, while
//! posted ledger rows cannot be changed or removed through that user.

mod common;

use common::{gql, post_json, project_with_key};
use diesel::QueryableByName;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use neruba::{
    db::{self, privileges},
    testing::{TestApp, TestDb},
};
use reqwest::StatusCode;
use serde_json::json;

async fn ok(app: &TestApp, key: &str, query: &str, variables: serde_json::Value) -> serde_json::Value {
    let r = gql(app, key, query, variables).await;
    r.data().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_serves_as_a_user_that_cannot_change_posted_ledger_rows() {
    let db = TestDb::create().await;
    let user = db.app_user().await;
    let app = TestApp::spawn_on(&user.url, |_| {}).await;
    let (_, key) = project_with_key(&app, "Restricted").await;

    ok(
        &app,
        &key,
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
        json!({ "i": { "externalId": "acme", "currency": "USD" } }),
    )
    .await;
    let wallet = ok(
        &app,
        &key,
        "mutation { createWallet(input: { customerExternalId: \"acme\", currency: \"USD\" }) { wallet { id } } }",
        json!({}),
    )
    .await["createWallet"]["wallet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let top_up = ok(
        &app,
        &key,
        "mutation($w: ID!) { topUpWallet(input: { walletId: $w, amount: \"100\", idempotencyKey: \"t1\" }) { wallet { balance { amount } } } }",
        json!({ "w": wallet }),
    )
    .await;
    assert_eq!(top_up["topUpWallet"]["wallet"]["balance"]["amount"], "100");
    let (status, body) = post_json(
        &app,
        &key,
        "/ingest/charge",
        &json!({ "walletId": wallet, "amount": "10", "idempotencyKey": "c1" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = post_json(
        &app,
        &key,
        "/ingest/usage",
        &json!({ "idempotencyKey": "u1", "customerExternalId": "acme", "metric": "api_calls", "quantity": "3" }),
    )
    .await;
    assert!(status.is_success(), "{body}");

    // A billing run: two monthly invoices of 30, paid by the wallet's credits; then a void.
    let plan = ok(
        &app,
        &key,
        "mutation($i: CreatePlanInput!) { createPlan(input: $i) { planVersion { plan { id } } } }",
        json!({ "i": { "code": "basic", "definition": { "name": "Basic", "currency": "USD",
            "interval": { "unit": "MONTH" }, "fixedFee": "30", "fixedFeeTiming": "ADVANCE", "charges": [] } } }),
    )
    .await["createPlan"]["planVersion"]["plan"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sub = ok(
        &app,
        &key,
        "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id } } }",
        json!({ "i": { "customerExternalId": "acme", "planId": plan, "startsAt": "2025-01-01T00:00:00Z",
            "idempotencyKey": "s1" } }),
    )
    .await["createSubscription"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = ok(
        &app,
        &key,
        "mutation($i: RunBillingInput!) { runBilling(input: $i) { failures { code message }
           invoices { id number status credits { amount } amountDue { amount } } } }",
        json!({ "i": { "subscriptionId": sub, "maxInvoices": 2, "cutoff": chrono::Utc::now().to_rfc3339() } }),
    )
    .await;
    let invoices = run["runBilling"]["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 2, "{run}");
    for invoice in invoices {
        assert_eq!(invoice["status"], "FINALIZED", "{run}");
        assert_eq!(invoice["credits"]["amount"], "-30", "{run}");
        assert_eq!(invoice["amountDue"]["amount"], "0", "{run}");
    }
    let void = ok(
        &app,
        &key,
        "mutation($i: VoidInvoiceInput!) { voidInvoice(input: $i) { invoice { status } } }",
        json!({ "i": { "invoiceId": invoices[1]["id"], "reason": "test" } }),
    )
    .await;
    assert_eq!(void["voidInvoice"]["invoice"]["status"], "VOID");
    let balance = ok(
        &app,
        &key,
        "query($w: ID!) { node(id: $w) { ... on Wallet { balance { amount } } } }",
        json!({ "w": wallet }),
    )
    .await;
    assert_eq!(balance["node"]["balance"]["amount"], "60");
    let reconciliation = ok(
        &app,
        &key,
        "query { reconciliation { clean breaks { check subject } } }",
        json!({}),
    )
    .await;
    assert_eq!(reconciliation["reconciliation"]["clean"], true, "{reconciliation}");

    // Background work the server does with the same user: the outbox trim and the lease.
    {
        let mut conn = db::get(&app.pool).await.unwrap();
        let later = chrono::Utc::now().naive_utc() + chrono::Duration::days(2);
        let trimmed = neruba::store::ledger::delete_outbox_before(&mut conn, later, 1000)
            .await
            .unwrap();
        assert!(trimmed > 0);
        let now = chrono::Utc::now().naive_utc();
        let until = now + chrono::Duration::minutes(1);
        assert!(
            neruba::store::invoices::acquire_lease(&mut conn, "billing", "me", now, until)
                .await
                .unwrap()
        );
        assert!(
            neruba::store::invoices::acquire_lease(&mut conn, "billing", "me", now, until)
                .await
                .unwrap()
        );
        assert_eq!(
            neruba::store::invoices::release_lease(&mut conn, "billing", "me")
                .await
                .unwrap(),
            1
        );
    }

    // Posted rows cannot be changed or removed through this user, whatever the statement.
    let mut conn = db::connect(&user.url).await.unwrap();
    for statement in [
        "UPDATE ledger_postings SET amount = amount * 2",
        "UPDATE ledger_transactions SET description = 'edited'",
        "DELETE FROM ledger_transactions",
        "DELETE FROM ledger_postings",
        "TRUNCATE TABLE ledger_postings",
        "DROP TABLE ledger_postings",
        "ALTER TABLE ledger_postings DROP CONSTRAINT ck_ledger_postings_amount",
        "REPLACE INTO ledger_transactions SELECT * FROM ledger_transactions",
    ] {
        let error = conn.batch_execute(statement).await.expect_err(statement).to_string();
        assert!(error.contains("command denied"), "{statement}: {error}");
    }
    let report = privileges::append_only(&mut conn).await.unwrap();
    assert!(report.holds(), "{report:?}");
    assert!(
        report
            .describe()
            .starts_with("yes (no UPDATE/DELETE on ledger_postings, ledger_transactions")
    );
    assert_eq!(privileges::missing_checks(&mut conn).await.unwrap(), Vec::<&str>::new());

    // The administrator (root here, as with the embedded default) can: not append-only.
    let mut root = db::connect(&db.url).await.unwrap();
    let report = privileges::append_only(&mut root).await.unwrap();
    assert!(!report.holds());
    assert_eq!(report.breaches.len(), 4, "{report:?}");
    assert!(
        report.breaches.iter().all(|b| b.granted_at == "global level"),
        "{report:?}"
    );
    assert!(
        report
            .describe()
            .contains("can UPDATE ledger_postings (granted at global level)"),
        "{}",
        report.describe()
    );
    // The probes changed nothing.
    let rows = count(&mut root, "ledger_postings").await;
    assert!(rows >= 10, "{rows}");
}

async fn count(conn: &mut diesel_async::AsyncMysqlConnection, table: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
        .get_result::<N>(conn)
        .await
        .unwrap()
        .n
}

/// A grant at the table, the database or a column level is found and named.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_where_an_update_on_the_ledger_was_granted() {
    let db = TestDb::create().await;
    let user = db.app_user().await;
    let mut root = db::connect(&db.url).await.unwrap();
    let mut conn = db::connect(&user.url).await.unwrap();
    assert!(privileges::append_only(&mut conn).await.unwrap().holds());

    let grants = [
        (
            format!("GRANT DELETE ON `{}`.`ledger_transactions`", db.name),
            "DELETE ledger_transactions (granted at table level)",
        ),
        (
            format!("GRANT UPDATE (description) ON `{}`.`ledger_transactions`", db.name),
            "UPDATE ledger_transactions (granted at column level)",
        ),
        (
            format!("GRANT UPDATE ON `{}`.*", db.name),
            "UPDATE ledger_postings (granted at database level)",
        ),
    ];
    for (grant, named) in grants {
        root.batch_execute(&format!("{grant} TO '{}'@'%'", user.user))
            .await
            .unwrap();
        // Privileges are read at connect time for database and table grants in some versions.
        let mut conn = db::connect(&user.url).await.unwrap();
        let report = privileges::append_only(&mut conn).await.unwrap();
        assert!(!report.holds(), "{grant}");
        assert!(report.describe().contains(named), "{grant}: {}", report.describe());
    }
}

/// Every table the migrations create has a grant decision in `db::privileges::APP_TABLES`.
#[tokio::test(flavor = "multi_thread")]
async fn every_table_has_a_grant_decision() {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let db = TestDb::create().await;
    let mut conn = db::connect(&db.url).await.unwrap();
    let tables: Vec<Name> = diesel::sql_query(format!(
        "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = '{}' ORDER BY table_name",
        db.name
    ))
    .load(&mut conn)
    .await
    .unwrap();
    let mut tables: Vec<String> = tables.into_iter().map(|t| t.name).collect();
    let mut granted: Vec<String> = privileges::APP_TABLES.iter().map(|(t, _)| t.to_string()).collect();
    tables.sort();
    granted.sort();
    assert_eq!(
        tables, granted,
        "add each new table to db::privileges::APP_TABLES with what serving needs"
    );
}
