//! The hostile suite (issue 11): every root field of the schema, called with another project's ids
//! and with keys that lack the needed scope, is refused and changes nothing.
//!
//! Project A (the victim) has customers, a metric, usage events, a wallet with a top-up, a grant
//! and a charge, and keys of every single scope. Project B (the attacker) has a key of every single
//! scope, an all-scope key and a wallet of its own. [`table`] names, for every root field of
//! `Query`, `Mutation` and `Subscription`, the scope it needs, a document that uses it on A's own
//! data, and the documents B tries with A's ids. The test enumerates the root fields from the
//! schema itself and fails when a field has no entry (a new resolver cannot be forgotten) or an
//! entry names a field that is gone.
//!
//! The rule for what "refused" means across tenants, decided per field in the table:
//! - an object named by id (wallet, transaction, key, project, customer, or `projectId` itself) is
//!   `NOT_FOUND`, the same answer as for an id that does not exist;
//! - a filter over a list (`wallets(customerExternalId:)`, `ledgerEntries(walletId:)`) answers
//!   from B's own project: an empty list, proven meaningful by A seeing rows with the same filter;
//! - fields about the caller (`viewer`, `serverInfo`) answer about B and show nothing of A;
//! - the operator's fields (`projects`, `createProject`) are `FORBIDDEN` to every key;
//! - a key that lacks the scope is `FORBIDDEN`, before any id is looked at.
//!
//! Every refused attempt is bracketed by a checksum of every table of the test database
//! ([`snapshot`]) that must not move, and the `data` of every refusal must not contain any of A's
//! ids. The plain HTTP routes get the same treatment in their own test. The holes found by the
//! review and while writing this suite have their own tests at the end.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use async_graphql::parser::types::{DocumentOperations, Selection, TypeKind, TypeSystemDefinition};
use neruba::testing::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{
    gql,
    ws::{ws_first, ws_next, ws_open, ws_send},
};

// ---------------------------------------------------------------------------------------------
// The world: a victim and an attacker.

const VICTIM_CUSTOMER: &str = "victim-acme";
const SCOPES: [&str; 4] = ["INGEST", "READ", "BILLING", "ADMIN"];

struct Victim {
    /// The plan's version 1.
    plan_version: String,
    /// The invoice of the subscription's first boundary.
    invoice: String,
    /// An invoice corrected by an adjustment invoice.
    adjusted_invoice: String,
    project: String,
    /// The all-scope key.
    all: String,
    /// One key per single scope, by GraphQL scope name.
    single: BTreeMap<&'static str, String>,
    wallet: String,
    /// Two active holds on the wallet: the positive controls settle one and release the other.
    hold: String,
    hold_to_release: String,
    top_up_txn: String,
    charge_txn: String,
    account: String,
    plan: String,
    subscription: String,
    customer: String,
    coupon: String,
    tax_rate: String,
    /// A key of A that the positive control of `revokeApiKey` revokes at the very end.
    spare_key_id: String,
    /// A portal session of the victim customer (the positive control revokes it).
    portal_session: String,
    /// Every id of A's objects: none may appear in what B is answered.
    ids: Vec<String>,
}

struct Attacker {
    all: String,
    single: BTreeMap<&'static str, String>,
    wallet: String,
}

async fn key_id(app: &TestApp, key: &str) -> String {
    let r = gql(app, key, "{ viewer { apiKey { id } } }", json!({})).await;
    r.data()["viewer"]["apiKey"]["id"].as_str().unwrap().to_string()
}

async fn single_scope_keys(app: &TestApp, project: &str) -> BTreeMap<&'static str, String> {
    let mut keys = BTreeMap::new();
    for scope in SCOPES {
        keys.insert(scope, app.create_api_key(project, &[&scope.to_lowercase()]).await);
    }
    keys
}

fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
        .to_string()
}

async fn victim(app: &TestApp) -> Victim {
    let (project, all) = common::project_with_key(app, "Victim").await;
    let single = single_scope_keys(app, &project).await;
    let spare = app.create_api_key(&project, &["read"]).await;
    let ok = |r: &common::Gql| r.data().clone();

    let customer = ok(&gql(
        app,
        &all,
        "mutation($c: String!) { createCustomer(input: { externalId: $c, name: \"Acme\", currency: \"USD\" }) { customer { id } } }",
        json!({ "c": VICTIM_CUSTOMER }),
    )
    .await);
    ok(&gql(
        app,
        &all,
        "mutation { createBillableMetric(input: { code: \"api_calls\", name: \"API calls\", aggregation: SUM }) { billableMetric { id } } }",
        json!({}),
    )
    .await);
    ok(&gql(
        app,
        &all,
        "mutation { createCreditUnit(input: { code: \"VICTIM_CREDITS\", name: \"Credits\", decimals: 2 }) { creditUnit { id } } }",
        json!({}),
    )
    .await);
    let events: Vec<Value> = (0..3)
        .map(|i| json!({ "idempotencyKey": format!("victim-evt-{i}"), "customerExternalId": VICTIM_CUSTOMER, "metric": "api_calls", "quantity": "2.5" }))
        .collect();
    let batch = ok(&gql(
        app,
        &all,
        "mutation($es: [UsageEventInput!]!) { ingestUsageBatch(input: { events: $es }) { accepted results { event { id } } } }",
        json!({ "es": events }),
    )
    .await);
    assert_eq!(batch["ingestUsageBatch"]["accepted"], 3);
    let wallet = ok(&gql(
        app,
        &all,
        "mutation($c: String!) { createWallet(input: { customerExternalId: $c, currency: \"USD\", policy: ALLOW_UNTIL_LIMIT, creditLimit: \"50\", lowBalanceThreshold: \"10\" }) { wallet { id } } }",
        json!({ "c": VICTIM_CUSTOMER }),
    )
    .await);
    let wallet = str_at(&wallet, "/createWallet/wallet/id");
    let posted = "replayed transaction { id entries { nodes { id account { id } lotId } } }";
    let top_up = ok(&gql(
        app,
        &all,
        &format!("mutation($w: ID) {{ topUpWallet(input: {{ walletId: $w, amount: \"100\", idempotencyKey: \"victim-top-up\" }}) {{ {posted} }} }}"),
        json!({ "w": wallet }),
    )
    .await);
    let grant = ok(&gql(
        app,
        &all,
        &format!("mutation($w: ID) {{ grantCredits(input: {{ walletId: $w, amount: \"20\", expiresAt: \"2099-01-01T00:00:00Z\", priority: -1, idempotencyKey: \"victim-grant\" }}) {{ {posted} }} }}"),
        json!({ "w": wallet }),
    )
    .await);
    let charge = ok(&gql(
        app,
        &all,
        &format!("mutation($w: ID) {{ ingestCharge(input: {{ walletId: $w, amount: \"3\", idempotencyKey: \"victim-charge\", description: \"GPU minutes\" }}) {{ {posted} }} }}"),
        json!({ "w": wallet }),
    )
    .await);
    let mut holds = Vec::new();
    for key in ["victim-hold", "victim-hold-2"] {
        let held = ok(&gql(
            app,
            &all,
            "mutation($w: ID!, $k: String!) { reserveCredits(input: { walletId: $w, amount: \"2\", expiresIn: 86400, idempotencyKey: $k, metadata: { job: \"victim\" } }) { hold { id } transaction { id } } }",
            json!({ "w": wallet, "k": key }),
        )
        .await);
        holds.push(held);
    }

    let plan = ok(&gql(
        app,
        &all,
        "mutation { createPlan(input: { code: \"victim_plan\", definition: { name: \"Pro\", currency: \"USD\", interval: { unit: MONTH }, fixedFee: \"49\", charges: [{ metric: \"api_calls\", price: { perUnit: { unitAmount: \"0.01\" } } }] } }) { planVersion { id plan { id } charges { id } } } }",
        json!({}),
    )
    .await);
    let plan_id = str_at(&plan, "/createPlan/planVersion/plan/id");
    let subscription = ok(&gql(
        app,
        &all,
        "mutation($c: String!, $p: ID!) { createSubscription(input: { customerExternalId: $c, planId: $p, idempotencyKey: \"victim-sub\" }) { subscription { id } } }",
        json!({ "c": VICTIM_CUSTOMER, "p": plan_id }),
    )
    .await);
    let subscription_id = str_at(&subscription, "/createSubscription/subscription/id");
    // Its first boundary (its start) is due at once: one invoice.
    let billed = ok(&gql(
        app,
        &all,
        "mutation { runBilling(input: {}) { invoices { id invoiceTransactionId } } }",
        json!({}),
    )
    .await);
    let invoice_id = str_at(&billed, "/runBilling/invoices/0/id");
    // A correction to find: a usage-only subscription since January 2025 (on a metric of its
    // own: two running subscriptions never charge one metric), its February invoice recomputed
    // for real after a late event (an adjustment invoice).
    ok(&gql(
        app,
        &all,
        "mutation { createBillableMetric(input: { code: \"late_calls\", name: \"Late calls\", aggregation: SUM }) { billableMetric { id } } }",
        json!({}),
    )
    .await);
    let usage_plan = ok(&gql(
        app,
        &all,
        "mutation { createPlan(input: { code: \"victim_usage\", definition: { name: \"Usage\", currency: \"USD\", interval: { unit: MONTH }, charges: [{ metric: \"late_calls\", price: { perUnit: { unitAmount: \"1\" } } }] } }) { planVersion { plan { id } } } }",
        json!({}),
    )
    .await);
    let old = ok(&gql(
        app,
        &all,
        "mutation($c: String!, $p: ID!) { createSubscription(input: { customerExternalId: $c, planId: $p, startsAt: \"2025-01-01T00:00:00Z\", idempotencyKey: \"victim-old-sub\" }) { subscription { id } } }",
        json!({ "c": VICTIM_CUSTOMER, "p": str_at(&usage_plan, "/createPlan/planVersion/plan/id") }),
    )
    .await);
    let old = ok(&gql(
        app,
        &all,
        "mutation($s: ID) { runBilling(input: { subscriptionId: $s, maxInvoices: 2 }) { invoices { id } } }",
        json!({ "s": str_at(&old, "/createSubscription/subscription/id") }),
    )
    .await);
    let february = str_at(&old, "/runBilling/invoices/1/id");
    ok(&gql(
        app,
        &all,
        "mutation($c: String!) { ingestUsage(input: { event: { idempotencyKey: \"victim-late\", customerExternalId: $c, metric: \"late_calls\", quantity: \"4\", occurredAt: \"2025-01-15T00:00:00Z\" } }) { event { id } } }",
        json!({ "c": VICTIM_CUSTOMER }),
    )
    .await);
    let adjusted = ok(&gql(
        app,
        &all,
        "mutation($i: ID!, $t: DateTime) { recomputeInvoice(input: { invoiceId: $i, dryRun: false, cutoff: $t }) { adjustment { id } } }",
        json!({ "i": february, "t": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true) }),
    )
    .await);
    let adjustment_id = str_at(&adjusted, "/recomputeInvoice/adjustment/id");
    let coupon = ok(&gql(
        app,
        &all,
        "mutation { createCoupon(input: { code: \"VICTIM10\", name: \"Victim\", discount: { percentage: \"10\" }, duration: FOREVER }) { coupon { id } } }",
        json!({}),
    )
    .await);
    let coupon_id = str_at(&coupon, "/createCoupon/coupon/id");
    let tax_rate = ok(&gql(
        app,
        &all,
        "mutation { createTaxRate(input: { code: \"VICTIM_VAT\", name: \"VAT\", percentage: \"19\" }) { taxRate { id } } }",
        json!({}),
    )
    .await);
    let tax_rate_id = str_at(&tax_rate, "/createTaxRate/taxRate/id");
    let customer_id = str_at(&customer, "/createCustomer/customer/id");
    // A checkout (the sandbox provider, the default in development): a payment to find.
    let checkout = ok(&gql(
        app,
        &all,
        "mutation($w: ID!) { createCheckout(input: { purpose: { topUp: { walletId: $w, amount: \"10\" } }, successUrl: \"https://victim.example/ok\", cancelUrl: \"https://victim.example/no\", idempotencyKey: \"victim-checkout\" }) { checkoutSession { id payment { id } } } }",
        json!({ "w": wallet }),
    )
    .await);

    let mut ids = vec![
        str_at(&checkout, "/createCheckout/checkoutSession/id"),
        str_at(&checkout, "/createCheckout/checkoutSession/payment/id"),
        adjustment_id,
        february.clone(),
        coupon_id.clone(),
        tax_rate_id.clone(),
        invoice_id.clone(),
        project.clone(),
        wallet.clone(),
        plan_id.clone(),
        subscription_id.clone(),
    ];
    ids.push(str_at(&plan, "/createPlan/planVersion/id"));
    ids.push(str_at(&plan, "/createPlan/planVersion/charges/0/id"));
    ids.push(str_at(&customer, "/createCustomer/customer/id"));
    for e in batch["ingestUsageBatch"]["results"].as_array().unwrap() {
        ids.push(str_at(e, "/event/id"));
    }
    for posted in [&top_up["topUpWallet"], &grant["grantCredits"], &charge["ingestCharge"]] {
        ids.push(str_at(posted, "/transaction/id"));
        for entry in posted["transaction"]["entries"]["nodes"].as_array().unwrap() {
            ids.push(str_at(entry, "/id"));
            ids.push(str_at(entry, "/account/id"));
            if let Some(lot) = entry["lotId"].as_str() {
                ids.push(lot.to_string());
            }
        }
    }
    for held in &holds {
        ids.push(str_at(held, "/reserveCredits/hold/id"));
        ids.push(str_at(held, "/reserveCredits/transaction/id"));
    }
    let spare_key_id = key_id(app, &spare).await;
    ids.push(spare_key_id.clone());
    let minted = gql(
        app,
        &all,
        "mutation($c: String!) { createPortalSession(input: { customerExternalId: $c }) { portalSession { id } } }",
        json!({ "c": VICTIM_CUSTOMER }),
    )
    .await;
    let portal_session = str_at(minted.data(), "/createPortalSession/portalSession/id");
    ids.push(portal_session.clone());
    ids.push(key_id(app, &all).await);
    for key in single.values() {
        ids.push(key_id(app, key).await);
    }
    // Posting ids are small numbers (`pst_1`): searching B's answers for them would find B's own
    // `pst_12`. Postings are checked through their transactions, wallets and accounts instead.
    ids.retain(|id| !id.starts_with("pst_") && id.parse::<u64>().is_err());
    ids.sort();
    ids.dedup();

    Victim {
        top_up_txn: str_at(&top_up, "/topUpWallet/transaction/id"),
        charge_txn: str_at(&charge, "/ingestCharge/transaction/id"),
        account: str_at(&charge, "/ingestCharge/transaction/entries/nodes/0/account/id"),
        plan: plan_id,
        subscription: subscription_id,
        customer: customer_id,
        coupon: coupon_id,
        tax_rate: tax_rate_id,
        invoice: invoice_id,
        adjusted_invoice: february,
        plan_version: str_at(&plan, "/createPlan/planVersion/id"),
        project,
        all,
        single,
        wallet,
        hold: str_at(&holds[0], "/reserveCredits/hold/id"),
        hold_to_release: str_at(&holds[1], "/reserveCredits/hold/id"),
        spare_key_id,
        portal_session,
        ids,
    }
}

async fn attacker(app: &TestApp) -> Attacker {
    let (project, all) = common::project_with_key(app, "Attacker").await;
    let single = single_scope_keys(app, &project).await;
    let wallet = gql(
        app,
        &all,
        "mutation { createWallet(input: { customerExternalId: \"attacker-own\", currency: \"USD\" }) { wallet { id } } }",
        json!({}),
    )
    .await;
    let wallet = str_at(wallet.data(), "/createWallet/wallet/id");
    Attacker { all, single, wallet }
}

// ---------------------------------------------------------------------------------------------
// The checksum of every table.

/// One line per table of the test database: its name, row count and an MD5 over its rows (each
/// row hashed over all its columns, as text, NULL told apart from the empty string), sorted so
/// that row order does not matter. `api_keys.last_used_at` is left out: authenticating writes it
/// (at most once a minute per key), which is a use, not a change.
async fn snapshot(app: &TestApp) -> BTreeMap<String, String> {
    use diesel::{QueryableByName, sql_types::Text};
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Col {
        #[diesel(sql_type = Text)]
        t: String,
        #[diesel(sql_type = Text)]
        c: String,
    }
    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = Text)]
        s: String,
    }
    let mut conn = neruba::db::get(&app.pool).await.expect("db");
    diesel::sql_query("SET SESSION group_concat_max_len = 1073741824")
        .execute(&mut *conn)
        .await
        .expect("set group_concat_max_len");
    let cols: Vec<Col> = diesel::sql_query(
        "SELECT CAST(table_name AS CHAR) AS t, CAST(column_name AS CHAR) AS c FROM information_schema.columns \
         WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position",
    )
    .load(&mut *conn)
    .await
    .expect("columns");
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for col in cols {
        if col.t == "api_keys" && col.c == "last_used_at" {
            continue;
        }
        tables.entry(col.t).or_default().push(col.c);
    }
    assert!(
        tables.len() >= 10,
        "expected the migrated tables, got {:?}",
        tables.keys()
    );
    let mut out = BTreeMap::new();
    for (table, columns) in tables {
        let row = columns
            .iter()
            .map(|c| format!("IFNULL(HEX(CAST(`{c}` AS BINARY)), 'N')"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT CONCAT(COUNT(*), ':', IFNULL(MD5(GROUP_CONCAT(r ORDER BY r SEPARATOR '')), '-')) AS s \
             FROM (SELECT MD5(CONCAT_WS('|', {row})) AS r FROM `{table}`) rows_"
        );
        let sum: Vec<Sum> = diesel::sql_query(sql).load(&mut *conn).await.expect("checksum");
        out.insert(table, sum[0].s.clone());
    }
    out
}

fn assert_unchanged(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>, what: &str) {
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|t| before.get(*t) != after.get(*t))
        .collect();
    assert!(changed.is_empty(), "{what}: tables changed: {changed:?}");
}

// ---------------------------------------------------------------------------------------------
// The table: every root field.

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Root {
    Query,
    Mutation,
    Subscription,
}

/// What a root field needs.
#[derive(Clone, Copy, Debug)]
enum Need {
    /// Any valid credential (it answers about the caller).
    Anyone,
    /// The admin token.
    Operator,
    /// A key with any one of these scopes.
    Scope(&'static [&'static str]),
}

impl Need {
    fn allows(self, scopes: &[&str]) -> bool {
        match self {
            Need::Anyone => true,
            Need::Operator => false,
            Need::Scope(needed) => needed.iter().any(|s| scopes.contains(s)),
        }
    }
}

/// How B's attempt with A's ids must be refused.
#[derive(Clone, Copy, Debug)]
enum Expect {
    NotFound,
    Forbidden,
    /// Answered from B's own project: the list at this JSON pointer (under `data`) is empty,
    /// while A, with the same document, sees rows.
    Empty(&'static str),
    /// Answers about the caller; only the "no A ids in data" check applies.
    OwnOnly,
    /// Refused with this code (a cross-tenant reference inside B's own request).
    Code(&'static str),
    /// A single-object lookup: `null` at this JSON pointer (under `data`), no error, exactly as
    /// for an id that does not exist.
    Null(&'static str),
}

struct Doc {
    query: String,
    variables: Value,
    expect: Expect,
}

struct Case {
    root: Root,
    field: &'static str,
    need: Need,
    /// Uses A's data as A would: sent with A's keys that lack the scope (each must be
    /// `FORBIDDEN`), and at the very end with A's all-scope key as the positive control.
    own: Doc,
    /// B's attempts with A's ids, sent with B's all-scope key and B's single-scope keys.
    cross: Vec<Doc>,
}

fn doc(query: &str, variables: Value, expect: Expect) -> Doc {
    Doc {
        query: query.to_string(),
        variables,
        expect,
    }
}

const READ: Need = Need::Scope(&["READ"]);
const INGEST: Need = Need::Scope(&["INGEST"]);
const BILLING: Need = Need::Scope(&["BILLING"]);
const ADMIN: Need = Need::Scope(&["ADMIN"]);
const CHARGE: Need = Need::Scope(&["INGEST", "BILLING"]);

/// Money data selected under every wallet and transaction, so a refusal that leaks through a
/// nested field is caught by the "no A ids in data" check. Nested pages are small: each is
/// costed at its size, and the victim has a few rows of each.
const WALLET: &str = "id customerExternalId currency balance { amount currency formatted } balanceInMoney { amount currency } unitValue { amount } policy creditLimit { amount } lowBalanceThreshold { amount } belowThreshold lots(first: 5) { nodes { id accountId originalAmount { amount } remaining { amount } } } createdAt updatedAt";
/// A wallet's holds, selected where a wallet is (not in [`WALLET`]: nested under customers it
/// would take those pages past the complexity limit).
const WALLET_HOLDS: &str = "held { amount } available { amount } holds(first: 5) { nodes { id status transactionId } }";
const HOLD: &str = "id status walletId amount { amount currency } held { amount } settledAmount { amount } metadata expiresAt transactionId closingTransactionId createdAt closedAt";
const TXN: &str = "id walletId cause causeId amount { amount currency } idempotencyKey description actor { kind apiKeyId apiKey { id name } } balanceAfter { amount } entries(first: 10) { nodes { id amount { amount } balanceAfter { amount } walletId lotId account { id kind code } } }";

fn table(a: &Victim, b: &Attacker) -> Vec<Case> {
    use Expect::*;
    use Root::*;
    let posted = format!("replayed wallet {{ {WALLET} }} transaction {{ {TXN} }}");
    let p = json!({ "p": a.project });
    let w = json!({ "w": a.wallet });
    let c = json!({ "c": VICTIM_CUSTOMER });
    let event = |key: &str| json!({ "idempotencyKey": key, "customerExternalId": VICTIM_CUSTOMER, "metric": "api_calls", "quantity": "1" });
    let customer_sel = format!(
        "id externalId name metadata wallets(first: 10) {{ nodes {{ {WALLET} }} }} events(first: 10) {{ edges {{ node {{ id quantity properties }} }} }} usage(metric: \"api_calls\", from: \"2000-01-01T00:00:00Z\", to: \"2100-01-01T00:00:00Z\") {{ value }}"
    );
    let entries = format!(
        "edges {{ node {{ id amount {{ amount }} balanceAfter {{ amount }} account {{ id code }} transaction {{ {TXN} }} }} }}"
    );
    vec![
        // ---- Query
        Case {
            root: Query,
            field: "viewer",
            need: Need::Anyone,
            own: doc(
                "{ viewer { kind scopes project { id name } apiKey { id prefix } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "{ viewer { kind scopes project { id name } apiKey { id prefix } } }",
                json!({}),
                OwnOnly,
            )],
        },
        Case {
            root: Query,
            field: "serverInfo",
            need: Need::Anyone,
            own: doc("{ serverInfo { version environment } }", json!({}), OwnOnly),
            cross: vec![doc("{ serverInfo { version environment } }", json!({}), OwnOnly)],
        },
        Case {
            root: Query,
            field: "project",
            need: READ,
            own: doc("{ project { id name createdAt } }", json!({}), OwnOnly),
            cross: vec![doc(
                "query($p: ID) { project(id: $p) { id name apiKeys { nodes { id prefix scopes } } } }",
                p.clone(),
                Null("/project"),
            )],
        },
        Case {
            root: Query,
            field: "projects",
            need: Need::Operator,
            own: doc(
                "{ projects(first: 100) { edges { node { id name } } } }",
                json!({}),
                Forbidden,
            ),
            cross: vec![doc(
                "{ projects(first: 100) { edges { node { id name apiKeys(first: 1) { nodes { id } } } } } }",
                json!({}),
                Forbidden,
            )],
        },
        Case {
            root: Query,
            field: "customer",
            need: READ,
            own: doc(
                &format!("query($c: String!) {{ customer(externalId: $c) {{ {customer_sel} }} }}"),
                c.clone(),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!("query($c: String!) {{ customer(externalId: $c) {{ {customer_sel} }} }}"),
                    c.clone(),
                    Null("/customer"),
                ),
                doc(
                    &format!(
                        "query($p: ID, $c: String!) {{ customer(projectId: $p, externalId: $c) {{ {customer_sel} }} }}"
                    ),
                    json!({ "p": a.project, "c": VICTIM_CUSTOMER }),
                    Null("/customer"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "customers",
            need: READ,
            own: doc(
                &format!("{{ customers(first: 10) {{ edges {{ node {{ {customer_sel} }} }} }} }}"),
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                &format!(
                    "query($p: ID) {{ customers(projectId: $p, first: 10) {{ edges {{ node {{ {customer_sel} }} }} }} }}"
                ),
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Query,
            field: "billableMetrics",
            need: READ,
            own: doc("{ billableMetrics { id code aggregation } }", json!({}), OwnOnly),
            cross: vec![doc(
                "query($p: ID) { billableMetrics(projectId: $p) { id code } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Query,
            field: "creditUnits",
            need: READ,
            own: doc("{ creditUnits { id code decimals } }", json!({}), OwnOnly),
            cross: vec![doc(
                "query($p: ID) { creditUnits(projectId: $p) { id code } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Query,
            field: "quotePrice",
            need: READ,
            own: doc(
                "{ quotePrice(input: { currency: \"USD\", quantity: \"2\", price: { perUnit: { unitAmount: \"1\" } } }) { total { amount } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "query($p: ID) { quotePrice(input: { projectId: $p, currency: \"USD\", quantity: \"2\", price: { perUnit: { unitAmount: \"1\" } } }) { total { amount } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Query,
            field: "plans",
            need: READ,
            own: doc(
                "{ plans { edges { node { id code latestVersion { id charges { id } } } } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "{ plans { edges { node { id code } } } }",
                    json!({}),
                    Empty("/plans/edges"),
                ),
                doc(
                    "query($p: ID) { plans(projectId: $p) { edges { node { id } } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "plan",
            need: READ,
            own: doc(
                "{ plan(code: \"victim_plan\") { id latestVersion { id } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![
                doc("{ plan(code: \"victim_plan\") { id } }", json!({}), Null("/plan")),
                doc(
                    "query($id: ID) { plan(id: $id) { id } }",
                    json!({ "id": a.plan }),
                    Null("/plan"),
                ),
                doc(
                    "query($p: ID) { plan(projectId: $p, code: \"victim_plan\") { id } }",
                    p.clone(),
                    Null("/plan"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "subscriptions",
            need: READ,
            own: doc("{ subscriptions { edges { node { id status } } } }", json!({}), OwnOnly),
            cross: vec![
                doc(
                    "{ subscriptions { edges { node { id } } } }",
                    json!({}),
                    Empty("/subscriptions/edges"),
                ),
                doc(
                    "query($p: ID) { subscriptions(projectId: $p) { edges { node { id } } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "invoices",
            need: READ,
            own: doc("{ invoices { edges { node { id number } } } }", json!({}), OwnOnly),
            cross: vec![
                doc(
                    "{ invoices { edges { node { id } } } }",
                    json!({}),
                    Empty("/invoices/edges"),
                ),
                doc(
                    "query($s: ID) { invoices(subscriptionId: $s) { edges { node { id } } } }",
                    json!({ "s": a.subscription }),
                    Empty("/invoices/edges"),
                ),
                doc(
                    "query($p: ID) { invoices(projectId: $p) { edges { node { id } } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "creditNotes",
            need: READ,
            own: doc("{ creditNotes { edges { node { id number } } } }", json!({}), OwnOnly),
            cross: vec![
                doc(
                    "query($i: ID) { creditNotes(invoiceId: $i) { edges { node { id } } } }",
                    json!({ "i": a.adjusted_invoice }),
                    Empty("/creditNotes/edges"),
                ),
                doc(
                    "query($p: ID) { creditNotes(projectId: $p) { edges { node { id } } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "invoice",
            need: READ,
            own: doc(
                "query($id: ID!) { invoice(id: $id) { id number lines { kind amount { amount } } } }",
                json!({ "id": a.invoice }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "query($id: ID!) { invoice(id: $id) { id } }",
                    json!({ "id": a.invoice }),
                    Null("/invoice"),
                ),
                doc(
                    "query($id: ID!, $p: ID) { invoice(id: $id, projectId: $p) { id } }",
                    json!({ "id": a.invoice, "p": a.project }),
                    Null("/invoice"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "coupons",
            need: READ,
            own: doc("{ coupons { nodes { id code percentage } } }", json!({}), OwnOnly),
            cross: vec![
                doc(
                    "{ coupons { edges { node { id } } } }",
                    json!({}),
                    Empty("/coupons/edges"),
                ),
                doc(
                    "query($p: ID) { coupons(projectId: $p) { edges { node { id } } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "coupon",
            need: READ,
            own: doc(
                "query($id: ID!) { coupon(id: $id) { id code duration } }",
                json!({ "id": a.coupon }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "query($id: ID!) { coupon(id: $id) { id code } }",
                    json!({ "id": a.coupon }),
                    Null("/coupon"),
                ),
                doc(
                    "query($id: ID!, $p: ID) { coupon(id: $id, projectId: $p) { id } }",
                    json!({ "id": a.coupon, "p": a.project }),
                    Null("/coupon"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "taxRates",
            need: READ,
            own: doc("{ taxRates { nodes { id code percentage } } }", json!({}), OwnOnly),
            cross: vec![
                doc(
                    "{ taxRates { edges { node { id } } } }",
                    json!({}),
                    Empty("/taxRates/edges"),
                ),
                doc(
                    "query($p: ID) { taxRates(projectId: $p) { edges { node { id } } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "recomputeInvoice",
            need: BILLING,
            own: doc(
                "mutation($id: ID!) { recomputeInvoice(input: { invoiceId: $id }) { identical lines { kind } } }",
                json!({ "id": a.invoice }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($id: ID!) { recomputeInvoice(input: { invoiceId: $id, dryRun: false }) { identical } }",
                    json!({ "id": a.invoice }),
                    NotFound,
                ),
                doc(
                    "mutation($id: ID!, $p: ID) { recomputeInvoice(input: { invoiceId: $id, projectId: $p }) { identical } }",
                    json!({ "id": a.invoice, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "finalizeInvoice",
            need: BILLING,
            own: doc(
                "mutation($id: ID!) { finalizeInvoice(input: { invoiceId: $id }) { invoice { id status } } }",
                json!({ "id": a.invoice }),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($id: ID!) { finalizeInvoice(input: { invoiceId: $id }) { invoice { id } } }",
                json!({ "id": a.invoice }),
                NotFound,
            )],
        },
        Case {
            root: Query,
            field: "payments",
            need: READ,
            own: doc(
                "{ payments(first: 10) { nodes { id status amount { amount } checkoutSession { id url } } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "{ payments(first: 10) { nodes { id } } }",
                    json!({}),
                    Empty("/payments/nodes"),
                ),
                doc(
                    "query($c: ID) { payments(customerId: $c, first: 10) { nodes { id } } }",
                    json!({ "c": a.customer }),
                    Empty("/payments/nodes"),
                ),
                doc(
                    "query($p: ID) { payments(projectId: $p) { nodes { id } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "createCheckout",
            need: BILLING,
            own: doc(
                "mutation($w: ID!) { createCheckout(input: { purpose: { topUp: { walletId: $w, amount: \"20\" } }, successUrl: \"https://victim.example/ok\", cancelUrl: \"https://victim.example/no\", idempotencyKey: \"hostile-own-checkout\" }) { url checkoutSession { id } } }",
                w.clone(),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($w: ID!) { createCheckout(input: { purpose: { topUp: { walletId: $w, amount: \"20\" } }, successUrl: \"https://evil.example/ok\", cancelUrl: \"https://evil.example/no\", idempotencyKey: \"hostile-cross-checkout\" }) { url checkoutSession { id } } }",
                    w.clone(),
                    NotFound,
                ),
                doc(
                    "mutation($i: ID!) { createCheckout(input: { purpose: { invoice: { invoiceId: $i } }, successUrl: \"https://evil.example/ok\", cancelUrl: \"https://evil.example/no\", idempotencyKey: \"hostile-cross-invoice\" }) { url checkoutSession { id } } }",
                    json!({ "i": a.invoice }),
                    NotFound,
                ),
                doc(
                    "mutation($p: ID, $w: ID!) { createCheckout(input: { projectId: $p, purpose: { topUp: { walletId: $w, amount: \"20\" } }, successUrl: \"https://evil.example/ok\", cancelUrl: \"https://evil.example/no\", idempotencyKey: \"victim-checkout\" }) { url checkoutSession { id } } }",
                    json!({ "p": a.project, "w": a.wallet }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "createPortalSession",
            need: BILLING,
            own: doc(
                "mutation($c: String!) { createPortalSession(input: { customerExternalId: $c, returnUrl: \"https://victim.example/account\" }) { url portalSession { id customerId } } }",
                c.clone(),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($c: String!) { createPortalSession(input: { customerExternalId: $c }) { url token portalSession { id customerId } } }",
                    c.clone(),
                    NotFound,
                ),
                doc(
                    "mutation($p: ID, $c: String!) { createPortalSession(input: { projectId: $p, customerExternalId: $c }) { url token } }",
                    json!({ "p": a.project, "c": VICTIM_CUSTOMER }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "revokePortalSession",
            need: BILLING,
            own: doc(
                "mutation($id: ID!) { revokePortalSession(input: { id: $id }) { portalSession { id status customer { id } } } }",
                json!({ "id": a.portal_session }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($id: ID!) { revokePortalSession(input: { id: $id }) { portalSession { id status } } }",
                    json!({ "id": a.portal_session }),
                    NotFound,
                ),
                doc(
                    "mutation($p: ID, $id: ID!) { revokePortalSession(input: { projectId: $p, id: $id }) { portalSession { id } } }",
                    json!({ "p": a.project, "id": a.portal_session }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "setPortalSettings",
            need: Need::Scope(&["BILLING", "ADMIN"]),
            own: doc(
                "mutation { setPortalSettings(input: { logoUrl: \"https://victim.example/logo.png\" }) { project { id logoUrl } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($p: ID) { setPortalSettings(input: { projectId: $p, logoUrl: \"https://evil.example/x.png\" }) { project { id } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "setTopUpLimits",
            need: Need::Scope(&["BILLING", "ADMIN"]),
            own: doc(
                "mutation { setTopUpLimits(input: { minimum: \"2\", maximum: \"900\" }) { topUpLimits { minimum maximum presets } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($p: ID) { setTopUpLimits(input: { projectId: $p, minimum: \"2\", maximum: \"900\" }) { topUpLimits { minimum } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "voidInvoice",
            need: BILLING,
            own: doc(
                "mutation($id: ID!) { voidInvoice(input: { invoiceId: $id, reason: \"control\" }) { invoice { id status } } }",
                json!({ "id": a.invoice }),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($id: ID!) { voidInvoice(input: { invoiceId: $id, reason: \"hostile\" }) { invoice { id status } } }",
                json!({ "id": a.invoice }),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "runBilling",
            need: BILLING,
            own: doc(
                "mutation { runBilling(input: {}) { invoices { id } failures { subscriptionId } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($s: ID) { runBilling(input: { subscriptionId: $s }) { invoices { id } failures { subscriptionId } } }",
                    json!({ "s": a.subscription }),
                    OwnOnly,
                ),
                doc(
                    "mutation($p: ID) { runBilling(input: { projectId: $p }) { invoices { id } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "upcomingInvoice",
            need: READ,
            own: doc(
                "query($s: ID!) { upcomingInvoice(subscriptionId: $s) { boundary total { amount } } }",
                json!({ "s": a.subscription }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "query($s: ID!) { upcomingInvoice(subscriptionId: $s) { boundary } }",
                    json!({ "s": a.subscription }),
                    Null("/upcomingInvoice"),
                ),
                doc(
                    "query($s: ID!, $p: ID) { upcomingInvoice(subscriptionId: $s, projectId: $p) { boundary } }",
                    json!({ "s": a.subscription, "p": a.project }),
                    Null("/upcomingInvoice"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "backtestPlan",
            need: READ,
            own: doc(
                "query($v: ID!) { backtestPlan(planVersionId: $v, from: \"2025-01-01T00:00:00Z\", to: \"2025-02-01T00:00:00Z\") { subscriptionCount difference { amount } } }",
                json!({ "v": a.plan_version }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "query($v: ID!) { backtestPlan(planVersionId: $v, from: \"2025-01-01T00:00:00Z\", to: \"2025-02-01T00:00:00Z\") { subscriptionCount } }",
                    json!({ "v": a.plan_version }),
                    Code("BAD_USER_INPUT"),
                ),
                doc(
                    "query($v: ID!, $p: ID) { backtestPlan(projectId: $p, planVersionId: $v, from: \"2025-01-01T00:00:00Z\", to: \"2025-02-01T00:00:00Z\") { subscriptionCount } }",
                    json!({ "v": a.plan_version, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "billingExport",
            need: READ,
            own: doc(
                "{ billingExport(from: \"2020-01-01T00:00:00Z\", to: \"2099-01-01T00:00:00Z\") { tiesOut rows { customerExternalId } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "{ billingExport(from: \"2020-01-01T00:00:00Z\", to: \"2099-01-01T00:00:00Z\") { rows { customerExternalId } } }",
                    json!({}),
                    Empty("/billingExport/rows"),
                ),
                doc(
                    "query($p: ID) { billingExport(projectId: $p, from: \"2020-01-01T00:00:00Z\", to: \"2099-01-01T00:00:00Z\") { tiesOut } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "subscription",
            need: READ,
            own: doc(
                "query($id: ID!) { subscription(id: $id) { id status history { edges { node { kind } } } } }",
                json!({ "id": a.subscription }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "query($id: ID!) { subscription(id: $id) { id } }",
                    json!({ "id": a.subscription }),
                    Null("/subscription"),
                ),
                doc(
                    "query($id: ID!, $p: ID) { subscription(id: $id, projectId: $p) { id } }",
                    json!({ "id": a.subscription, "p": a.project }),
                    Null("/subscription"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "wallet",
            need: READ,
            own: doc(
                &format!("query($w: ID!) {{ wallet(id: $w) {{ {WALLET} }} }}"),
                w.clone(),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!("query($w: ID!) {{ wallet(id: $w) {{ {WALLET} {WALLET_HOLDS} }} }}"),
                    w.clone(),
                    Null("/wallet"),
                ),
                doc(
                    &format!("query($w: ID!, $p: ID) {{ wallet(id: $w, projectId: $p) {{ {WALLET} }} }}"),
                    json!({ "w": a.wallet, "p": a.project }),
                    Null("/wallet"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "creditHold",
            need: READ,
            own: doc(
                &format!("query($h: ID!) {{ creditHold(id: $h) {{ {HOLD} wallet {{ {WALLET} {WALLET_HOLDS} }} }} }}"),
                json!({ "h": a.hold }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!("query($h: ID!) {{ creditHold(id: $h) {{ {HOLD} }} }}"),
                    json!({ "h": a.hold }),
                    Null("/creditHold"),
                ),
                doc(
                    &format!("query($h: ID!, $p: ID) {{ creditHold(id: $h, projectId: $p) {{ {HOLD} }} }}"),
                    json!({ "h": a.hold, "p": a.project }),
                    Null("/creditHold"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "wallets",
            need: READ,
            own: doc(
                &format!("{{ wallets(first: 100) {{ edges {{ node {{ {WALLET} }} }} }} }}"),
                json!({}),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!(
                        "query($c: String) {{ wallets(customerExternalId: $c, first: 100) {{ edges {{ node {{ {WALLET} }} }} }} }}"
                    ),
                    c.clone(),
                    Empty("/wallets/edges"),
                ),
                doc(
                    &format!(
                        "query($p: ID) {{ wallets(projectId: $p, first: 100) {{ edges {{ node {{ {WALLET} }} }} }} }}"
                    ),
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "ledgerEntries",
            need: READ,
            own: doc(
                &format!("{{ ledgerEntries(first: 10) {{ {entries} }} }}"),
                json!({}),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!("query($w: ID) {{ ledgerEntries(walletId: $w, first: 10) {{ {entries} }} }}"),
                    w.clone(),
                    Empty("/ledgerEntries/edges"),
                ),
                doc(
                    &format!("query($t: ID) {{ ledgerEntries(transactionId: $t, first: 10) {{ {entries} }} }}"),
                    json!({ "t": a.charge_txn }),
                    Empty("/ledgerEntries/edges"),
                ),
                doc(
                    &format!("query($a: ID) {{ ledgerEntries(accountId: $a, first: 10) {{ {entries} }} }}"),
                    json!({ "a": a.account }),
                    Empty("/ledgerEntries/edges"),
                ),
                doc(
                    &format!("query($p: ID) {{ ledgerEntries(projectId: $p, first: 10) {{ {entries} }} }}"),
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Query,
            field: "ledgerTransaction",
            need: READ,
            own: doc(
                &format!("query($t: ID!) {{ ledgerTransaction(id: $t) {{ {TXN} }} }}"),
                json!({ "t": a.top_up_txn }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!("query($t: ID!) {{ ledgerTransaction(id: $t) {{ {TXN} }} }}"),
                    json!({ "t": a.top_up_txn }),
                    Null("/ledgerTransaction"),
                ),
                doc(
                    &format!("query($t: ID!, $p: ID) {{ ledgerTransaction(id: $t, projectId: $p) {{ {TXN} }} }}"),
                    json!({ "t": a.charge_txn, "p": a.project }),
                    Null("/ledgerTransaction"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "node",
            need: Need::Anyone,
            own: doc("{ node(id: \"wal_unknown\") { id } }", json!({}), Null("/node")),
            cross: vec![
                doc(
                    "query($w: ID!) { node(id: $w) { id ... on Wallet { balance { amount } } } }",
                    json!({ "w": a.wallet }),
                    Null("/node"),
                ),
                doc(
                    "query($t: ID!) { node(id: $t) { id ... on LedgerTransaction { amount { amount } } } }",
                    json!({ "t": a.charge_txn }),
                    Null("/node"),
                ),
                doc(
                    "query($p: ID!) { node(id: $p) { id ... on Project { name } } }",
                    json!({ "p": a.project }),
                    Null("/node"),
                ),
                doc(
                    "query($a: ID!) { node(id: $a) { id } }",
                    json!({ "a": a.account }),
                    Null("/node"),
                ),
                doc(
                    "query($h: ID!) { node(id: $h) { id ... on CreditHold { status amount { amount } } } }",
                    json!({ "h": a.hold }),
                    Null("/node"),
                ),
                doc(
                    "query($a: ID!) { node(id: $a) { id ... on Plan { code } } }",
                    json!({ "a": a.plan }),
                    Null("/node"),
                ),
                doc(
                    "query($a: ID!) { node(id: $a) { id ... on PlanSubscription { status } } }",
                    json!({ "a": a.subscription }),
                    Null("/node"),
                ),
                doc(
                    "query($a: ID!) { node(id: $a) { id ... on Coupon { code } } }",
                    json!({ "a": a.coupon }),
                    Null("/node"),
                ),
                doc(
                    "query($a: ID!) { node(id: $a) { id ... on TaxRate { code } } }",
                    json!({ "a": a.tax_rate }),
                    Null("/node"),
                ),
            ],
        },
        Case {
            root: Query,
            field: "nodes",
            need: Need::Anyone,
            own: doc("{ nodes(ids: [\"wal_unknown\"]) { id } }", json!({}), OwnOnly),
            cross: vec![doc(
                "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
                json!({ "ids": [a.wallet, a.charge_txn, a.project, a.account, a.top_up_txn, a.plan, a.subscription, a.coupon, a.tax_rate] }),
                OwnOnly,
            )],
        },
        Case {
            root: Query,
            field: "reconciliation",
            need: ADMIN,
            own: doc(
                "{ reconciliation { clean transactions wallets lots breaks { subject accountIds } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "query($p: ID) { reconciliation(projectId: $p) { clean transactions wallets lots breaks { subject accountIds } } }",
                p.clone(),
                NotFound,
            )],
        },
        // ---- Mutation
        Case {
            root: Mutation,
            field: "createProject",
            need: Need::Operator,
            own: doc(
                "mutation { createProject(input: { name: \"hostile\" }) { project { id } } }",
                json!({}),
                Forbidden,
            ),
            cross: vec![doc(
                "mutation { createProject(input: { name: \"hostile\" }) { project { id } } }",
                json!({}),
                Forbidden,
            )],
        },
        Case {
            root: Mutation,
            field: "createApiKey",
            need: ADMIN,
            own: doc(
                "mutation { createApiKey(input: { name: \"hostile\", scopes: [READ] }) { secret apiKey { id } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($p: ID) { createApiKey(input: { projectId: $p, name: \"hostile\", scopes: [INGEST, READ, BILLING, ADMIN] }) { secret apiKey { id projectId } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "revokeApiKey",
            need: ADMIN,
            own: doc(
                "mutation($k: ID!) { revokeApiKey(input: { id: $k }) { apiKey { id revokedAt } } }",
                json!({ "k": a.spare_key_id }),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($k: ID!) { revokeApiKey(input: { id: $k }) { apiKey { id projectId revokedAt } } }",
                json!({ "k": a.spare_key_id }),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "ingestUsage",
            need: INGEST,
            own: doc(
                "mutation($e: UsageEventInput!) { ingestUsage(input: { event: $e }) { replayed event { id quantity } } }",
                json!({ "e": event("hostile-own-1") }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($p: ID, $e: UsageEventInput!) { ingestUsage(input: { projectId: $p, event: $e }) { replayed event { id quantity } } }",
                    json!({ "p": a.project, "e": event("hostile-cross-1") }),
                    NotFound,
                ),
                // A's own idempotency key, into A's project: must not replay A's event to B.
                doc(
                    "mutation($p: ID, $e: UsageEventInput!) { ingestUsage(input: { projectId: $p, event: $e }) { replayed event { id quantity } } }",
                    json!({ "p": a.project, "e": { "idempotencyKey": "victim-evt-0", "customerExternalId": VICTIM_CUSTOMER, "metric": "api_calls", "quantity": "2.5" } }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "ingestUsageBatch",
            need: INGEST,
            own: doc(
                "mutation($es: [UsageEventInput!]!) { ingestUsageBatch(input: { events: $es }) { accepted results { event { id } } } }",
                json!({ "es": [event("hostile-own-2")] }),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($p: ID, $es: [UsageEventInput!]!) { ingestUsageBatch(input: { projectId: $p, events: $es }) { accepted results { event { id } } } }",
                json!({ "p": a.project, "es": [event("hostile-cross-2"), event("victim-evt-1")] }),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "createCustomer",
            need: BILLING,
            own: doc(
                &format!(
                    "mutation {{ createCustomer(input: {{ externalId: \"hostile-new\" }}) {{ customer {{ {customer_sel} }} }} }}"
                ),
                json!({}),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($p: ID) { createCustomer(input: { projectId: $p, externalId: \"hostile-new\" }) { customer { id } } }",
                    p.clone(),
                    NotFound,
                ),
                // The victim's existing customer: neither changed nor returned.
                doc(
                    &format!(
                        "mutation($p: ID, $c: String!) {{ createCustomer(input: {{ projectId: $p, externalId: $c, name: \"Acme\", currency: \"USD\" }}) {{ customer {{ {customer_sel} }} }} }}"
                    ),
                    json!({ "p": a.project, "c": VICTIM_CUSTOMER }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "createBillableMetric",
            need: BILLING,
            own: doc(
                "mutation { createBillableMetric(input: { code: \"hostile_metric\", name: \"h\", aggregation: COUNT }) { billableMetric { id } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($p: ID) { createBillableMetric(input: { projectId: $p, code: \"api_calls\", name: \"API calls\", aggregation: SUM }) { billableMetric { id code } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "createCreditUnit",
            need: BILLING,
            own: doc(
                "mutation { createCreditUnit(input: { code: \"HOSTILE\", name: \"h\", decimals: 0 }) { creditUnit { id } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($p: ID) { createCreditUnit(input: { projectId: $p, code: \"VICTIM_CREDITS\", name: \"Credits\", decimals: 2 }) { creditUnit { id code } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "createPlan",
            need: BILLING,
            own: doc(
                "mutation { createPlan(input: { code: \"hostile\", definition: { name: \"h\", currency: \"USD\", interval: { unit: MONTH } } }) { planVersion { id } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($p: ID) { createPlan(input: { projectId: $p, code: \"victim_plan\", definition: { name: \"h\", currency: \"USD\", interval: { unit: MONTH } } }) { planVersion { id } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "createPlanVersion",
            need: BILLING,
            own: doc(
                "mutation($id: ID!) { createPlanVersion(input: { planId: $id, definition: { name: \"Pro\", currency: \"USD\", interval: { unit: MONTH }, fixedFee: \"49\", charges: [{ metric: \"api_calls\", price: { perUnit: { unitAmount: \"0.01\" } } }] } }) { created planVersion { id } } }",
                json!({ "id": a.plan }),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($id: ID!) { createPlanVersion(input: { planId: $id, definition: { name: \"h\", currency: \"USD\", interval: { unit: MONTH } } }) { planVersion { id } } }",
                json!({ "id": a.plan }),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "createSubscription",
            need: BILLING,
            own: doc(
                "mutation($c: String!, $p: ID!) { createSubscription(input: { customerExternalId: $c, planId: $p, idempotencyKey: \"victim-sub\" }) { replayed subscription { id } } }",
                json!({ "c": VICTIM_CUSTOMER, "p": a.plan }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($c: String!, $p: ID!) { createSubscription(input: { customerExternalId: $c, planId: $p, idempotencyKey: \"x\" }) { subscription { id } } }",
                    json!({ "c": VICTIM_CUSTOMER, "p": a.plan }),
                    NotFound,
                ),
                doc(
                    "mutation($c: String!, $p: ID!, $pr: ID) { createSubscription(input: { projectId: $pr, customerExternalId: $c, planId: $p, idempotencyKey: \"x\" }) { subscription { id } } }",
                    json!({ "c": VICTIM_CUSTOMER, "p": a.plan, "pr": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "changeSubscriptionPlan",
            need: BILLING,
            own: doc(
                "mutation($s: ID!, $v: ID!) { changeSubscriptionPlan(input: { subscriptionId: $s, planVersionId: $v, idempotencyKey: \"victim-change\" }) { replayed } }",
                json!({ "s": a.subscription, "v": a.plan_version }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($s: ID!, $v: ID!) { changeSubscriptionPlan(input: { subscriptionId: $s, planVersionId: $v, idempotencyKey: \"x\" }) { subscription { id } } }",
                    json!({ "s": a.subscription, "v": a.plan_version }),
                    Code("BAD_USER_INPUT"),
                ),
                doc(
                    "mutation($s: ID!, $v: ID!, $p: ID) { changeSubscriptionPlan(input: { projectId: $p, subscriptionId: $s, planVersionId: $v, idempotencyKey: \"x\" }) { subscription { id } } }",
                    json!({ "s": a.subscription, "v": a.plan_version, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "cancelSubscription",
            need: BILLING,
            own: doc(
                "mutation($id: ID!) { cancelSubscription(input: { subscriptionId: $id }) { subscription { id status } } }",
                json!({ "id": a.subscription }),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($id: ID!) { cancelSubscription(input: { subscriptionId: $id }) { subscription { id } } }",
                json!({ "id": a.subscription }),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "createCoupon",
            need: BILLING,
            own: doc(
                "mutation { createCoupon(input: { code: \"VICTIM10\", name: \"Victim\", discount: { percentage: \"10\" }, duration: FOREVER }) { created coupon { id } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($p: ID) { createCoupon(input: { projectId: $p, code: \"VICTIM10\", name: \"Victim\", discount: { percentage: \"10\" }, duration: FOREVER }) { created coupon { id } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "applyCoupon",
            need: BILLING,
            own: doc(
                "mutation($s: ID!, $c: ID!) { applyCoupon(input: { subscriptionId: $s, couponId: $c, idempotencyKey: \"victim-apply\" }) { replayed redemption { id } } }",
                json!({ "s": a.subscription, "c": a.coupon }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($s: ID!, $c: ID!) { applyCoupon(input: { subscriptionId: $s, couponId: $c, idempotencyKey: \"x\" }) { redemption { id } } }",
                    json!({ "s": a.subscription, "c": a.coupon }),
                    NotFound,
                ),
                doc(
                    "mutation($s: ID!, $c: ID!, $p: ID) { applyCoupon(input: { projectId: $p, subscriptionId: $s, couponId: $c, idempotencyKey: \"x\" }) { redemption { id } } }",
                    json!({ "s": a.subscription, "c": a.coupon, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "createTaxRate",
            need: BILLING,
            own: doc(
                "mutation { createTaxRate(input: { code: \"VICTIM_VAT\", name: \"VAT\", percentage: \"19\" }) { created taxRate { id } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "mutation($p: ID) { createTaxRate(input: { projectId: $p, code: \"VICTIM_VAT\", name: \"VAT\", percentage: \"19\" }) { taxRate { id } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "setDefaultTaxRates",
            need: BILLING,
            own: doc(
                "mutation($t: ID!) { setDefaultTaxRates(input: { taxRateIds: [$t] }) { taxRates { id code } } }",
                json!({ "t": a.tax_rate }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($t: ID!) { setDefaultTaxRates(input: { taxRateIds: [$t] }) { taxRates { id } } }",
                    json!({ "t": a.tax_rate }),
                    NotFound,
                ),
                doc(
                    "mutation($p: ID) { setDefaultTaxRates(input: { projectId: $p, taxRateIds: [] }) { taxRates { id } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "setCustomerTaxRates",
            need: BILLING,
            own: doc(
                "mutation($c: ID!, $t: ID!) { setCustomerTaxRates(input: { customerId: $c, taxRateIds: [$t] }) { customer { id } taxRates { id } } }",
                json!({ "c": a.customer, "t": a.tax_rate }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "mutation($c: ID!) { setCustomerTaxRates(input: { customerId: $c, taxRateIds: [] }) { customer { id } taxRates { id } } }",
                    json!({ "c": a.customer }),
                    NotFound,
                ),
                doc(
                    "mutation($c: ID!, $t: ID!, $p: ID) { setCustomerTaxRates(input: { projectId: $p, customerId: $c, taxRateIds: [$t] }) { customer { id } } }",
                    json!({ "c": a.customer, "t": a.tax_rate, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "createWallet",
            need: BILLING,
            own: doc(
                &format!(
                    "mutation($c: String!) {{ createWallet(input: {{ customerExternalId: $c, currency: \"EUR\" }}) {{ wallet {{ {WALLET} }} }} }}"
                ),
                c.clone(),
                OwnOnly,
            ),
            cross: vec![doc(
                &format!(
                    "mutation($p: ID, $c: String!) {{ createWallet(input: {{ projectId: $p, customerExternalId: $c, currency: \"USD\", policy: ALLOW_UNTIL_LIMIT, creditLimit: \"50\", lowBalanceThreshold: \"10\" }}) {{ wallet {{ {WALLET} }} }} }}"
                ),
                json!({ "p": a.project, "c": VICTIM_CUSTOMER }),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "updateWallet",
            need: BILLING,
            own: doc(
                &format!(
                    "mutation($w: ID!) {{ updateWallet(input: {{ walletId: $w, lowBalanceThreshold: \"7\" }}) {{ wallet {{ {WALLET} }} }} }}"
                ),
                w.clone(),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!(
                        "mutation($w: ID!) {{ updateWallet(input: {{ walletId: $w, policy: ALLOW_UNTIL_LIMIT, creditLimit: \"1000000\" }}) {{ wallet {{ {WALLET} }} }} }}"
                    ),
                    w.clone(),
                    NotFound,
                ),
                doc(
                    &format!(
                        "mutation($w: ID!, $p: ID) {{ updateWallet(input: {{ projectId: $p, walletId: $w, lowBalanceThreshold: null }}) {{ wallet {{ {WALLET} }} }} }}"
                    ),
                    json!({ "w": a.wallet, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "ingestCharge",
            need: CHARGE,
            own: doc(
                &format!(
                    "mutation($w: ID) {{ ingestCharge(input: {{ walletId: $w, amount: \"1\", idempotencyKey: \"hostile-own-charge\" }}) {{ {posted} }} }}"
                ),
                w.clone(),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!(
                        "mutation($w: ID) {{ ingestCharge(input: {{ walletId: $w, amount: \"1\", idempotencyKey: \"hostile-cross-charge\" }}) {{ {posted} }} }}"
                    ),
                    w.clone(),
                    NotFound,
                ),
                doc(
                    &format!(
                        "mutation($c: String) {{ ingestCharge(input: {{ customerExternalId: $c, currency: \"USD\", amount: \"1\", idempotencyKey: \"hostile-cross-charge-2\" }}) {{ {posted} }} }}"
                    ),
                    json!({ "c": VICTIM_CUSTOMER }),
                    NotFound,
                ),
                // A's own idempotency key into A's project: must not replay A's charge to B.
                doc(
                    &format!(
                        "mutation($w: ID, $p: ID) {{ ingestCharge(input: {{ projectId: $p, walletId: $w, amount: \"3\", idempotencyKey: \"victim-charge\", description: \"GPU minutes\" }}) {{ {posted} }} }}"
                    ),
                    json!({ "w": a.wallet, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "reserveCredits",
            need: CHARGE,
            own: doc(
                &format!(
                    "mutation($w: ID!) {{ reserveCredits(input: {{ walletId: $w, amount: \"1\", expiresIn: 60, idempotencyKey: \"hostile-own-reserve\" }}) {{ hold {{ {HOLD} }} {posted} }} }}"
                ),
                w.clone(),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!(
                        "mutation($w: ID!) {{ reserveCredits(input: {{ walletId: $w, amount: \"1\", expiresIn: 60, idempotencyKey: \"hostile-cross-reserve\" }}) {{ hold {{ {HOLD} }} {posted} }} }}"
                    ),
                    w.clone(),
                    NotFound,
                ),
                // A's own key and request, replayed from B with A's project named.
                doc(
                    &format!(
                        "mutation($w: ID!, $p: ID) {{ reserveCredits(input: {{ projectId: $p, walletId: $w, amount: \"2\", expiresIn: 86400, idempotencyKey: \"victim-hold\", metadata: {{ job: \"victim\" }} }}) {{ hold {{ {HOLD} }} {posted} }} }}"
                    ),
                    json!({ "w": a.wallet, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "settleHold",
            need: CHARGE,
            own: doc(
                &format!(
                    "mutation($h: ID!) {{ settleHold(input: {{ holdId: $h, amount: \"1\", idempotencyKey: \"hostile-own-settle\" }}) {{ hold {{ {HOLD} }} {posted} }} }}"
                ),
                json!({ "h": a.hold }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!(
                        "mutation($h: ID!) {{ settleHold(input: {{ holdId: $h, amount: \"2\", idempotencyKey: \"hostile-cross-settle\" }}) {{ hold {{ {HOLD} }} {posted} }} }}"
                    ),
                    json!({ "h": a.hold }),
                    NotFound,
                ),
                doc(
                    &format!(
                        "mutation($h: ID!, $p: ID) {{ settleHold(input: {{ projectId: $p, holdId: $h, amount: \"2\", idempotencyKey: \"hostile-cross-settle-2\" }}) {{ hold {{ {HOLD} }} {posted} }} }}"
                    ),
                    json!({ "h": a.hold, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "releaseHold",
            need: CHARGE,
            own: doc(
                &format!(
                    "mutation($h: ID!) {{ releaseHold(input: {{ holdId: $h, idempotencyKey: \"hostile-own-release\" }}) {{ hold {{ {HOLD} }} {posted} }} }}"
                ),
                json!({ "h": a.hold_to_release }),
                OwnOnly,
            ),
            cross: vec![doc(
                &format!(
                    "mutation($h: ID!) {{ releaseHold(input: {{ holdId: $h, idempotencyKey: \"hostile-cross-release\" }}) {{ hold {{ {HOLD} }} {posted} }} }}"
                ),
                json!({ "h": a.hold_to_release }),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "topUpWallet",
            need: BILLING,
            own: doc(
                &format!(
                    "mutation($w: ID) {{ topUpWallet(input: {{ walletId: $w, amount: \"5\", idempotencyKey: \"hostile-own-top-up\" }}) {{ {posted} }} }}"
                ),
                w.clone(),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!(
                        "mutation($w: ID) {{ topUpWallet(input: {{ walletId: $w, amount: \"5\", idempotencyKey: \"hostile-cross-top-up\" }}) {{ {posted} }} }}"
                    ),
                    w.clone(),
                    NotFound,
                ),
                doc(
                    &format!(
                        "mutation($p: ID, $w: ID) {{ topUpWallet(input: {{ projectId: $p, walletId: $w, amount: \"100\", idempotencyKey: \"victim-top-up\" }}) {{ {posted} }} }}"
                    ),
                    json!({ "w": a.wallet, "p": a.project }),
                    NotFound,
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "grantCredits",
            need: BILLING,
            own: doc(
                &format!(
                    "mutation($w: ID) {{ grantCredits(input: {{ walletId: $w, amount: \"5\", idempotencyKey: \"hostile-own-grant\" }}) {{ {posted} }} }}"
                ),
                w.clone(),
                OwnOnly,
            ),
            cross: vec![doc(
                &format!(
                    "mutation($w: ID) {{ grantCredits(input: {{ walletId: $w, amount: \"5\", idempotencyKey: \"hostile-cross-grant\" }}) {{ {posted} }} }}"
                ),
                w.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "adjustWallet",
            need: ADMIN,
            own: doc(
                &format!(
                    "mutation($w: ID, $t: ID) {{ adjustWallet(input: {{ walletId: $w, amount: \"-1\", reason: \"hostile\", correctsTransactionId: $t, idempotencyKey: \"hostile-own-adjust\" }}) {{ {posted} }} }}"
                ),
                json!({ "w": a.wallet, "t": a.charge_txn }),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    &format!(
                        "mutation($w: ID) {{ adjustWallet(input: {{ walletId: $w, amount: \"-50\", reason: \"hostile\", idempotencyKey: \"hostile-cross-adjust\" }}) {{ {posted} }} }}"
                    ),
                    w.clone(),
                    NotFound,
                ),
                // B's own wallet, "correcting" A's transaction: the reference is refused.
                doc(
                    &format!(
                        "mutation($w: ID, $t: ID) {{ adjustWallet(input: {{ walletId: $w, amount: \"5\", reason: \"hostile\", correctsTransactionId: $t, idempotencyKey: \"hostile-cross-adjust-2\" }}) {{ {posted} }} }}"
                    ),
                    json!({ "w": b.wallet, "t": a.charge_txn }),
                    Code("BAD_USER_INPUT"),
                ),
            ],
        },
        Case {
            root: Mutation,
            field: "writeOffDebt",
            need: ADMIN,
            own: doc(
                &format!(
                    "mutation($w: ID) {{ writeOffDebt(input: {{ walletId: $w, amount: \"1\", reason: \"hostile\", idempotencyKey: \"hostile-own-write-off\" }}) {{ {posted} }} }}"
                ),
                w.clone(),
                OwnOnly,
            ),
            cross: vec![doc(
                &format!(
                    "mutation($w: ID) {{ writeOffDebt(input: {{ walletId: $w, amount: \"1\", reason: \"hostile\", idempotencyKey: \"hostile-cross-write-off\" }}) {{ {posted} }} }}"
                ),
                w.clone(),
                NotFound,
            )],
        },
        Case {
            root: Mutation,
            field: "sweepExpiredCredits",
            need: ADMIN,
            own: doc(
                &format!("mutation {{ sweepExpiredCredits(input: {{}}) {{ transactions {{ {TXN} }} }} }}"),
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                &format!(
                    "mutation($p: ID) {{ sweepExpiredCredits(input: {{ projectId: $p }}) {{ transactions {{ {TXN} }} }} }}"
                ),
                p.clone(),
                NotFound,
            )],
        },
        // ---- Subscription
        Case {
            root: Subscription,
            field: "projectEvents",
            need: READ,
            own: doc(
                "subscription { projectEvents { kind projectId apiKey { id } } }",
                json!({}),
                OwnOnly,
            ),
            cross: vec![doc(
                "subscription($p: ID) { projectEvents(projectId: $p) { kind projectId apiKey { id } } }",
                p.clone(),
                NotFound,
            )],
        },
        Case {
            root: Subscription,
            field: "balanceChanged",
            need: READ,
            own: doc(
                "subscription($w: ID) { balanceChanged(walletId: $w) { ... on BalanceChange { walletId balance { amount } } } }",
                w.clone(),
                OwnOnly,
            ),
            cross: vec![
                doc(
                    "subscription($w: ID) { balanceChanged(walletId: $w) { ... on BalanceChange { walletId balance { amount } delta { amount } transactionId } } }",
                    w.clone(),
                    NotFound,
                ),
                doc(
                    "subscription($p: ID) { balanceChanged(projectId: $p, afterSequence: 0) { ... on BalanceChange { walletId balance { amount } delta { amount } transactionId } } }",
                    p.clone(),
                    NotFound,
                ),
            ],
        },
    ]
}

/// The root fields of the schema, from its SDL.
fn schema_root_fields() -> BTreeSet<(Root, String)> {
    let sdl = neruba::graphql::sdl();
    let document = async_graphql::parser::parse_schema(&sdl).expect("the SDL parses");
    let mut roots = BTreeMap::new();
    for def in &document.definitions {
        if let TypeSystemDefinition::Schema(schema) = def {
            let s = &schema.node;
            for (root, name) in [
                (Root::Query, &s.query),
                (Root::Mutation, &s.mutation),
                (Root::Subscription, &s.subscription),
            ] {
                if let Some(name) = name {
                    roots.insert(name.node.to_string(), root);
                }
            }
        }
    }
    assert_eq!(roots.len(), 3, "the schema has query, mutation and subscription roots");
    let mut fields = BTreeSet::new();
    for def in &document.definitions {
        if let TypeSystemDefinition::Type(ty) = def
            && let Some(root) = roots.get(ty.node.name.node.as_str())
            && let TypeKind::Object(object) = &ty.node.kind
        {
            for field in &object.fields {
                fields.insert((*root, field.node.name.node.to_string()));
            }
        }
    }
    fields
}

/// The one root field a document selects (so a table entry cannot test the wrong field).
fn selected_root_field(query: &str) -> String {
    let document = async_graphql::parser::parse_query(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let DocumentOperations::Single(op) = &document.operations else {
        panic!("one anonymous operation per document: {query}");
    };
    let fields: Vec<String> = op
        .node
        .selection_set
        .node
        .items
        .iter()
        .map(|s| match &s.node {
            Selection::Field(f) => f.node.name.node.to_string(),
            _ => panic!("no fragments at the root: {query}"),
        })
        .collect();
    assert_eq!(fields.len(), 1, "one root field per document: {query}");
    fields[0].clone()
}

// ---------------------------------------------------------------------------------------------
// Sending a document over HTTP or a websocket.

/// The answer to one document: the GraphQL response body (`data`, `errors`), however it came.
async fn send(app: &TestApp, root: Root, key: &str, d: &Doc) -> Value {
    match root {
        Root::Subscription => ws_first(app, key, &d.query, &d.variables, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no answer to {}", d.query)),
        _ => {
            let r = gql(app, key, &d.query, d.variables.clone()).await;
            assert_eq!(r.status, StatusCode::OK, "{}: {}", d.query, r.body);
            r.body
        }
    }
}

fn error_codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn assert_refused(body: &Value, expect: Expect, a: &Victim, what: &str) {
    let data = body.get("data").cloned().unwrap_or(Value::Null).to_string();
    for id in &a.ids {
        assert!(!data.contains(id.as_str()), "{what}: the answer shows A's {id}: {body}");
    }
    let codes = error_codes(body);
    match expect {
        Expect::NotFound => assert_eq!(codes.first().map(String::as_str), Some("NOT_FOUND"), "{what}: {body}"),
        Expect::Forbidden => assert_eq!(codes.first().map(String::as_str), Some("FORBIDDEN"), "{what}: {body}"),
        Expect::Code(code) => assert_eq!(codes.first().map(String::as_str), Some(code), "{what}: {body}"),
        Expect::Empty(pointer) => {
            assert!(codes.is_empty(), "{what}: {body}");
            let list = body["data"]
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{what}: no {pointer}: {body}"));
            assert_eq!(list, &json!([]), "{what}: {body}");
        }
        Expect::OwnOnly => assert!(codes.is_empty(), "{what}: {body}"),
        Expect::Null(pointer) => {
            assert!(codes.is_empty(), "{what}: {body}");
            assert_eq!(body["data"].pointer(pointer), Some(&Value::Null), "{what}: {body}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn every_root_field_of_the_schema_has_an_entry_in_the_hostile_table() {
    // The table needs ids, not a database: build it over placeholders.
    let a = Victim {
        project: "prj_a".into(),
        all: String::new(),
        single: BTreeMap::new(),
        wallet: "wal_a".into(),
        hold: "hld_a".into(),
        hold_to_release: "hld_b".into(),
        top_up_txn: "txn_a".into(),
        charge_txn: "txn_b".into(),
        account: "acc_a".into(),
        plan: "pln_a".into(),
        subscription: "sub_a".into(),
        customer: "cus_a".into(),
        coupon: "cpn_a".into(),
        tax_rate: "txr_a".into(),
        invoice: "inv_a".into(),
        adjusted_invoice: "inv_b".into(),
        plan_version: "plv_a".into(),
        spare_key_id: "key_a".into(),
        portal_session: "ps_a".into(),
        ids: vec![],
    };
    let b = Attacker {
        all: String::new(),
        single: BTreeMap::new(),
        wallet: "wal_b".into(),
    };
    let cases = table(&a, &b);
    let listed: BTreeSet<(Root, String)> = cases.iter().map(|c| (c.root, c.field.to_string())).collect();
    assert_eq!(listed.len(), cases.len(), "a root field is listed twice");
    let schema = schema_root_fields();
    let missing: Vec<_> = schema.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&schema).collect();
    assert!(
        missing.is_empty(),
        "root fields without a hostile entry (add them to `table` in server/tests/hostile.rs): {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "hostile entries for fields the schema no longer has: {stale:?}"
    );
    for case in &cases {
        for d in std::iter::once(&case.own).chain(&case.cross) {
            assert_eq!(selected_root_field(&d.query), case.field, "{}", d.query);
        }
        if case.root != Root::Query && !matches!(case.need, Need::Anyone) {
            assert!(!case.cross.is_empty(), "{}: no cross-tenant attempt", case.field);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_projects_ids_and_missing_scopes_are_refused_with_nothing_changed() {
    let app = TestApp::spawn().await;
    let a = victim(&app).await;
    let b = attacker(&app).await;
    let cases = table(&a, &b);
    assert_eq!(
        cases
            .iter()
            .map(|c| (c.root, c.field.to_string()))
            .collect::<BTreeSet<_>>(),
        schema_root_fields()
    );

    let mut attempts = 0;
    for case in &cases {
        // (i) B's keys with A's ids: the all-scope key gets the table's answer; a single-scope
        // key gets it too when its scope suffices, and FORBIDDEN otherwise.
        let mut b_keys: Vec<(String, Vec<&str>)> = vec![(b.all.clone(), SCOPES.to_vec())];
        b_keys.extend(b.single.iter().map(|(s, k)| (k.clone(), vec![*s])));
        for d in &case.cross {
            for (key, scopes) in &b_keys {
                let expect = match (case.need, case.need.allows(scopes)) {
                    (Need::Operator, _) => Expect::Forbidden,
                    (_, true) => d.expect,
                    (_, false) => Expect::Forbidden,
                };
                let what = format!("{} as B {scopes:?}: {}", case.field, d.query);
                let before = snapshot(&app).await;
                let body = send(&app, case.root, key, d).await;
                assert_refused(&body, expect, &a, &what);
                assert_unchanged(&before, &snapshot(&app).await, &what);
                attempts += 1;
            }
            if let Expect::Empty(pointer) = d.expect {
                // The filter is real: A, with the same document, sees rows.
                let body = send(&app, case.root, &a.all, d).await;
                assert!(error_codes(&body).is_empty(), "{}: {body}", case.field);
                let rows = body["data"]
                    .pointer(pointer)
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                assert!(rows > 0, "{}: A sees nothing with {}: {body}", case.field, d.query);
            }
            if let Expect::Null(pointer) = d.expect {
                // The object exists: A, with the same document, sees it.
                let body = send(&app, case.root, &a.all, d).await;
                assert!(error_codes(&body).is_empty(), "{}: {body}", case.field);
                let found = body["data"].pointer(pointer).unwrap_or(&Value::Null);
                assert!(
                    found.is_object(),
                    "{}: A sees nothing with {}: {body}",
                    case.field,
                    d.query
                );
            }
        }
        // (ii) A's own keys that lack the scope: FORBIDDEN, whatever the ids.
        for (scope, key) in &a.single {
            if case.need.allows(&[scope]) {
                continue;
            }
            let what = format!("{} as A [{scope}]: {}", case.field, case.own.query);
            let before = snapshot(&app).await;
            let body = send(&app, case.root, key, &case.own).await;
            let codes = error_codes(&body);
            assert_eq!(codes.first().map(String::as_str), Some("FORBIDDEN"), "{what}: {body}");
            assert!(
                body["data"].is_null(),
                "{what}: a refused root field answers no data: {body}"
            );
            assert_unchanged(&before, &snapshot(&app).await, &what);
            attempts += 1;
        }
    }

    // The positive control, last (it changes A's data): each `own` document, sent with A's
    // all-scope key, gets past authorization, so the refusals above were about scope and tenancy
    // and not about a broken document.
    let before_control = snapshot(&app).await;
    for case in &cases {
        let what = format!("{} as A (all scopes): {}", case.field, case.own.query);
        let body = match case.root {
            Root::Subscription => {
                match ws_first(
                    &app,
                    &a.all,
                    &case.own.query,
                    &case.own.variables,
                    Duration::from_millis(500),
                )
                .await
                {
                    None => continue, // open and waiting for events: accepted
                    Some(body) => body,
                }
            }
            _ => send(&app, case.root, &a.all, &case.own).await,
        };
        let codes = error_codes(&body);
        let refused = [
            "UNAUTHENTICATED",
            "FORBIDDEN",
            "NOT_FOUND",
            "GRAPHQL_VALIDATION_FAILED",
            "BAD_REQUEST",
            "INTERNAL",
        ];
        match case.need {
            Need::Operator => assert_eq!(codes.first().map(String::as_str), Some("FORBIDDEN"), "{what}: {body}"),
            _ => assert!(!codes.iter().any(|c| refused.contains(&c.as_str())), "{what}: {body}"),
        }
    }
    // And the checksum sees the writes they made: "unchanged" above meant something.
    let after_control = snapshot(&app).await;
    for table in [
        "customers",
        "billable_metrics",
        "usage_events",
        "wallets",
        "ledger_transactions",
        "ledger_postings",
        "credit_lots",
        "api_keys",
    ] {
        assert_ne!(
            before_control.get(table),
            after_control.get(table),
            "the checksum missed writes to {table}"
        );
    }
    assert!(attempts > 100, "only {attempts} refused attempts");
}

/// `POST /ingest/usage`, `/ingest/usage/batch` and `/ingest/charge`: B's keys with A's ids are
/// refused (404 for a named object, 422 for a field the route does not take), keys without
/// `INGEST` (or `BILLING`, for charges) are 403, all with nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn http_routes_refuse_another_projects_ids_and_missing_scopes_with_nothing_changed() {
    let app = TestApp::spawn().await;
    let a = victim(&app).await;
    let b = attacker(&app).await;
    let event = json!({ "idempotencyKey": "victim-evt-0", "customerExternalId": VICTIM_CUSTOMER, "metric": "api_calls", "quantity": "2.5", "projectId": a.project });
    let cross: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "/ingest/charge",
            json!({ "walletId": a.wallet, "amount": "1", "idempotencyKey": "http-cross-1" }),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            "/ingest/charge",
            json!({ "projectId": a.project, "customerExternalId": VICTIM_CUSTOMER, "currency": "USD", "amount": "1", "idempotencyKey": "http-cross-2" }),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            "/ingest/charge",
            json!({ "customerExternalId": VICTIM_CUSTOMER, "currency": "USD", "amount": "1", "idempotencyKey": "http-cross-3" }),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        // A's own idempotency key, into A's project: neither replayed nor posted.
        (
            "/ingest/charge",
            json!({ "projectId": a.project, "walletId": a.wallet, "amount": "3", "idempotencyKey": "victim-charge", "description": "GPU minutes" }),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            "/ingest/usage",
            event.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "BAD_USER_INPUT",
        ),
        (
            "/ingest/usage/batch",
            json!({ "events": [event], "projectId": a.project }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "BAD_USER_INPUT",
        ),
    ];
    for (path, body, status, code) in &cross {
        let before = snapshot(&app).await;
        let (got, answer) = common::post_json(&app, &b.all, path, body).await;
        let what = format!("{path} as B with {body}");
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{what}: {answer}"
        );
        let shown = answer.to_string();
        for id in &a.ids {
            assert!(!shown.contains(id.as_str()), "{what}: shows A's {id}: {answer}");
        }
        assert_unchanged(&before, &snapshot(&app).await, &what);
    }
    // Without the scope, with a valid body, in either project: 403.
    let own_charge = json!({ "walletId": a.wallet, "amount": "1", "idempotencyKey": "http-own" });
    let own_event =
        json!({ "idempotencyKey": "http-own", "customerExternalId": VICTIM_CUSTOMER, "metric": "api_calls" });
    let routes = [
        ("/ingest/charge", own_charge, &["INGEST", "BILLING"][..]),
        ("/ingest/usage", own_event.clone(), &["INGEST"][..]),
        ("/ingest/usage/batch", json!({ "events": [own_event] }), &["INGEST"][..]),
    ];
    for (path, body, needs) in &routes {
        for (who, keys) in [("A", &a.single), ("B", &b.single)] {
            for (scope, key) in keys.iter().filter(|(s, _)| !needs.contains(*s)) {
                let before = snapshot(&app).await;
                let (got, answer) = common::post_json(&app, key, path, body).await;
                let what = format!("{path} as {who} [{scope}]");
                assert_eq!(got, StatusCode::FORBIDDEN, "{what}: {answer}");
                assert_eq!(answer["error"]["code"], "FORBIDDEN", "{what}: {answer}");
                assert_unchanged(&before, &snapshot(&app).await, &what);
            }
        }
        // The same body with A's all-scope key goes through: the refusals were about scope.
        let (got, answer) = common::post_json(&app, &a.all, path, body).await;
        assert!(got.is_success(), "{path} as A: {got} {answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_keys_get_401_everywhere_and_change_nothing() {
    let app = TestApp::spawn().await;
    let a = victim(&app).await;
    let revoked = app
        .create_api_key(&a.project, &["ingest", "read", "billing", "admin"])
        .await;
    app.revoke_api_key_by_secret(&revoked).await;

    let before = snapshot(&app).await;
    let graphql = [
        json!({ "query": "{ viewer { kind } }" }),
        json!({ "query": format!("query($w: ID!) {{ wallet(id: $w) {{ {WALLET} }} }}"), "variables": { "w": a.wallet } }),
        json!({ "query": "mutation($w: ID) { topUpWallet(input: { walletId: $w, amount: \"5\", idempotencyKey: \"revoked-top-up\" }) { replayed } }", "variables": { "w": a.wallet } }),
        json!({ "query": "mutation { createApiKey(input: { name: \"revived\", scopes: [ADMIN] }) { secret } }" }),
    ];
    let mut requests: Vec<(&str, Value)> = graphql.into_iter().map(|b| ("/graphql", b)).collect();
    requests.push((
        "/ingest/usage",
        json!({ "idempotencyKey": "revoked-1", "customerExternalId": VICTIM_CUSTOMER, "metric": "api_calls" }),
    ));
    requests.push((
        "/ingest/usage/batch",
        json!({ "events": [{ "idempotencyKey": "revoked-2", "customerExternalId": VICTIM_CUSTOMER, "metric": "api_calls" }] }),
    ));
    requests.push((
        "/ingest/charge",
        json!({ "walletId": a.wallet, "amount": "1", "idempotencyKey": "revoked-charge" }),
    ));
    for (path, body) in &requests {
        let (status, answer) = common::post_json(&app, &revoked, path, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {body}: {answer}");
        // `/graphql` answers in the GraphQL shape, the ingest routes in their own.
        let code = if *path == "/graphql" {
            &answer["errors"][0]["extensions"]["code"]
        } else {
            &answer["error"]["code"]
        };
        assert_eq!(code, "UNAUTHENTICATED", "{path}: {answer}");
    }
    // A websocket with the revoked key is closed at `connection_init`.
    let mut socket = ws_open(&app).await;
    ws_send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {revoked}") } }),
    )
    .await;
    match ws_next(&mut socket, Duration::from_secs(10)).await {
        Err((_, reason)) => assert!(reason.contains("invalid or revoked"), "{reason}"),
        other => panic!("expected the socket to close, got {other:?}"),
    }
    assert_unchanged(&before, &snapshot(&app).await, "revoked key");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_in_another_project_hears_nothing_of_the_victims_wallet() {
    let app = TestApp::spawn().await;
    let a = victim(&app).await;
    let b = attacker(&app).await;
    // B watches its own customer with A's customer's external id, and all of its own wallets.
    gql(
        &app,
        &b.all,
        "mutation($c: String!) { createWallet(input: { customerExternalId: $c, currency: \"USD\" }) { wallet { id } } }",
        json!({ "c": VICTIM_CUSTOMER }),
    )
    .await
    .data();
    let mut sockets = Vec::new();
    for query in [
        "subscription($c: String) { balanceChanged(customerExternalId: $c) { ... on BalanceChange { walletId balance { amount } } } }",
        "subscription { balanceChanged { ... on BalanceChange { walletId balance { amount } } } }",
        "subscription { projectEvents { kind apiKey { id } } }",
    ] {
        let mut socket = ws_open(&app).await;
        ws_send(
            &mut socket,
            json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", b.single["READ"]) } }),
        )
        .await;
        assert!(
            matches!(ws_next(&mut socket, Duration::from_secs(10)).await, Ok(Some(m)) if m["type"] == "connection_ack")
        );
        ws_send(
            &mut socket,
            json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": { "c": VICTIM_CUSTOMER } } }),
        )
        .await;
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A's wallet moves and A's keys change.
    let r = gql(
        &app,
        &a.all,
        "mutation($w: ID) { ingestCharge(input: { walletId: $w, amount: \"1\", idempotencyKey: \"heard-by-no-one\" }) { replayed } }",
        json!({ "w": a.wallet }),
    )
    .await;
    r.data();
    app.create_api_key(&a.project, &["read"]).await;
    let r = gql(
        &app,
        &a.all,
        "mutation { createApiKey(input: { name: \"unheard\", scopes: [READ] }) { secret } }",
        json!({}),
    )
    .await;
    r.data();
    for mut socket in sockets {
        let heard = ws_next(&mut socket, Duration::from_millis(1500)).await;
        assert!(matches!(heard, Ok(None)), "B heard: {heard:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Known holes (issue 11), fixed on the lead's branch: the right assertion, ignored until merged.

/// An `INGEST`-only key may post a charge, but the answer must not show what needs `READ`: the
/// wallet's lots and the transaction's postings.
#[tokio::test(flavor = "multi_thread")]
async fn an_ingest_only_key_cannot_read_lots_or_postings_through_ingest_charge() {
    let app = TestApp::spawn().await;
    let a = victim(&app).await;
    let body = gql(
        &app,
        &a.single["INGEST"],
        "mutation($w: ID) { ingestCharge(input: { walletId: $w, amount: \"1\", idempotencyKey: \"ingest-peek\" }) { replayed wallet { id lots { nodes { id remaining { amount } originalAmount { amount } } } } transaction { id entries { nodes { id amount { amount } account { id code } } } } } }",
        json!({ "w": a.wallet }),
    )
    .await
    .body;
    assert!(
        error_codes(&body).iter().any(|c| c == "FORBIDDEN"),
        "the nested READ fields are refused: {body}"
    );
    let charge = &body["data"]["ingestCharge"];
    for pointer in ["/wallet/lots", "/transaction/entries"] {
        let shown = charge
            .pointer(pointer)
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty());
        assert!(!shown, "{pointer} is shown to an INGEST-only key: {body}");
    }
}

/// A key cannot hand out more than it holds: an `ADMIN`-only key creating a key with `READ` and
/// `BILLING` is `FORBIDDEN`, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_only_key_cannot_create_a_key_with_more_scopes_than_it_holds() {
    let app = TestApp::spawn().await;
    let a = victim(&app).await;
    let admin = &a.single["ADMIN"];
    gql(&app, admin, "{ viewer { kind } }", json!({})).await.data();
    let before = snapshot(&app).await;
    let r = gql(
        &app,
        admin,
        "mutation { createApiKey(input: { name: \"escalated\", scopes: [READ, BILLING] }) { secret apiKey { scopes } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN", "{}", r.body);
    assert!(r.body["data"].is_null(), "{}", r.body);
    assert_unchanged(&before, &snapshot(&app).await, "escalating createApiKey");
    // What it holds, it may hand out.
    let r = gql(
        &app,
        admin,
        "mutation { createApiKey(input: { name: \"peer\", scopes: [ADMIN] }) { apiKey { scopes } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["createApiKey"]["apiKey"]["scopes"], json!(["ADMIN"]));
}

/// `updateWallet` with the values the wallet already has is a no-op: no row changes, `updatedAt`
/// included.
#[tokio::test(flavor = "multi_thread")]
async fn a_no_op_update_wallet_changes_nothing() {
    let app = TestApp::spawn().await;
    let a = victim(&app).await;
    let billing = &a.single["BILLING"];
    let current = gql(
        &app,
        &a.all,
        "query($w: ID!) { wallet(id: $w) { policy creditLimit { amount } lowBalanceThreshold { amount } updatedAt } }",
        json!({ "w": a.wallet }),
    )
    .await;
    let current = current.data()["wallet"].clone();
    gql(&app, billing, "{ viewer { kind } }", json!({})).await.data();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = snapshot(&app).await;
    let r = gql(
        &app,
        billing,
        "mutation($w: ID!, $p: WalletPolicy, $l: Decimal, $t: Decimal) { updateWallet(input: { walletId: $w, policy: $p, creditLimit: $l, lowBalanceThreshold: $t }) { wallet { updatedAt } } }",
        json!({ "w": a.wallet, "p": current["policy"], "l": current["creditLimit"]["amount"], "t": current["lowBalanceThreshold"]["amount"] }),
    )
    .await;
    assert_eq!(
        r.data()["updateWallet"]["wallet"]["updatedAt"],
        current["updatedAt"],
        "{}",
        r.body
    );
    assert_unchanged(&before, &snapshot(&app).await, "no-op updateWallet");
}

/// Per-operation re-authentication on websockets: once a key is revoked, a socket it opened may
/// not start another subscription, and nothing more is delivered to it.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_revoked_while_its_socket_is_open_starts_nothing_more() {
    let app = TestApp::spawn().await;
    let a = victim(&app).await;
    let key = app.create_api_key(&a.project, &["read"]).await;
    let mut socket = ws_open(&app).await;
    ws_send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }),
    )
    .await;
    assert!(
        matches!(ws_next(&mut socket, Duration::from_secs(10)).await, Ok(Some(m)) if m["type"] == "connection_ack")
    );
    app.revoke_api_key_by_secret(&key).await;
    ws_send(
        &mut socket,
        json!({ "id": "2", "type": "subscribe", "payload": { "query": "subscription { balanceChanged { ... on BalanceChange { walletId balance { amount } } } }" } }),
    )
    .await;
    match ws_next(&mut socket, Duration::from_secs(5)).await {
        // Closed, or the operation refused: both are right.
        Err(_) => return,
        Ok(Some(m)) if m["type"] == "error" => {}
        Ok(Some(m)) if m["type"] == "next" && m["payload"]["data"].is_null() => {
            let code = &m["payload"]["errors"][0]["extensions"]["code"];
            assert!(code == "UNAUTHENTICATED" || code == "FORBIDDEN", "{m}");
        }
        other => panic!("a revoked key's new subscription was not refused: {other:?}"),
    }
    // And nothing of A's reaches the socket afterwards.
    gql(
        &app,
        &a.all,
        "mutation($w: ID) { topUpWallet(input: { walletId: $w, amount: \"5\", idempotencyKey: \"after-revoke\" }) { replayed } }",
        json!({ "w": a.wallet }),
    )
    .await
    .data();
    let heard = ws_next(&mut socket, Duration::from_secs(2)).await;
    assert!(
        !matches!(&heard, Ok(Some(m)) if m["type"] == "next" && !m["payload"]["data"].is_null()),
        "delivered after revocation: {heard:?}"
    );
}

/// `Project.apiKeys` needs `ADMIN`; `projectEvents` needs only `READ` but pushes each new key's
/// id, name, prefix, scopes and creator. A `READ` key must not learn through the subscription
/// what it may not query. Not on the lead's list: found while writing this suite.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_key_does_not_learn_api_keys_through_project_events() {
    let app = TestApp::spawn().await;
    let a = victim(&app).await;
    let mut socket = ws_open(&app).await;
    ws_send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", a.single["READ"]) } }),
    )
    .await;
    assert!(
        matches!(ws_next(&mut socket, Duration::from_secs(10)).await, Ok(Some(m)) if m["type"] == "connection_ack")
    );
    ws_send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { projectEvents { kind apiKey { id name prefix scopes createdBy { kind apiKeyId } } } }" } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gql(
        &app,
        &a.all,
        "mutation { createApiKey(input: { name: \"new admin\", scopes: [ADMIN] }) { secret } }",
        json!({}),
    )
    .await
    .data();
    // The event arrives (so the subscription is valid and live), without the key.
    let m = match ws_next(&mut socket, Duration::from_secs(10)).await {
        Ok(Some(m)) => m,
        other => panic!("no projectEvents message: {other:?}"),
    };
    assert_eq!(m["payload"]["data"]["projectEvents"]["kind"], "API_KEY_CREATED", "{m}");
    let key = &m["payload"]["data"]["projectEvents"]["apiKey"];
    assert!(key.is_null(), "a READ key sees a new key: {m}");
}

/// The fields written for a customer's portal session (issue 15). Every other root field refuses
/// it with `FORBIDDEN` before looking at any id.
const CUSTOMER_FIELDS: [&str; 7] = [
    "viewer",
    "serverInfo",
    "node",
    "nodes",
    "createCheckout",
    "upcomingInvoice",
    "balanceChanged",
];

/// A portal credential of another customer of A (mallory) sends every document of the table —
/// A's own and B's, all naming the victim customer's objects — and is refused everything but
/// its own data: the project's fields are `FORBIDDEN`, the customer's fields answer `null` or
/// `NOT_FOUND` for the victim's ids, and no answer shows any of the victim's ids. Nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_customer_credential_gets_nothing_of_another_customer() {
    let app = TestApp::spawn_with(|c| c.payments.sandbox = true).await;
    let a = victim(&app).await;
    let b = attacker(&app).await;
    gql(
        &app,
        &a.all,
        "mutation { createCustomer(input: { externalId: \"mallory\" }) { customer { id } } }",
        json!({}),
    )
    .await
    .data();
    let minted = gql(
        &app,
        &a.all,
        "mutation { createPortalSession(input: { customerExternalId: \"mallory\" }) { token } }",
        json!({}),
    )
    .await;
    let token = str_at(minted.data(), "/createPortalSession/token");
    let response = reqwest::Client::new()
        .post(format!("{}/portal-session/exchange", app.base_url))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let exchanged: Value = response.json().await.unwrap();
    let mallory = exchanged["credential"].as_str().unwrap().to_string();
    // The project's own id is mallory's project too; everything else of A's is the victim's.
    let victim_ids: Vec<&String> = a.ids.iter().filter(|id| **id != a.project).collect();

    let mut attempts = 0;
    for case in table(&a, &b) {
        for d in std::iter::once(&case.own).chain(&case.cross) {
            let what = format!("{} as a customer: {}", case.field, d.query);
            let before = snapshot(&app).await;
            let body = match case.root {
                Root::Subscription => {
                    match ws_first(&app, &mallory, &d.query, &d.variables, Duration::from_secs(2)).await {
                        Some(body) => body,
                        // Open and waiting: only on mallory's own stream, which is empty.
                        None => json!({ "data": null }),
                    }
                }
                _ => gql(&app, &mallory, &d.query, d.variables.clone()).await.body,
            };
            let data = body.get("data").cloned().unwrap_or(Value::Null).to_string();
            for id in &victim_ids {
                assert!(
                    !data.contains(id.as_str()),
                    "{what}: the answer shows the victim's {id}: {body}"
                );
            }
            let codes = error_codes(&body);
            if CUSTOMER_FIELDS.contains(&case.field) {
                assert!(
                    codes.iter().all(|c| c == "NOT_FOUND" || c == "BAD_USER_INPUT"),
                    "{what}: {body}"
                );
            } else {
                assert_eq!(codes.first().map(String::as_str), Some("FORBIDDEN"), "{what}: {body}");
                assert!(body["data"].is_null(), "{what}: {body}");
            }
            assert_unchanged(&before, &snapshot(&app).await, &what);
            attempts += 1;
        }
    }
    assert!(attempts > 100, "only {attempts} attempts");

    // The customer's fields do answer mallory's own data (the refusals above were not a broken
    // credential).
    let own = gql(
        &app,
        &mallory,
        "{ viewer { kind customer { externalId wallets { nodes { id } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(own.data()["viewer"]["kind"], "CUSTOMER");
    assert_eq!(own.data()["viewer"]["customer"]["externalId"], "mallory");
}
