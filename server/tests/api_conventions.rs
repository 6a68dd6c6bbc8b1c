//! The API's conventions (docs/api.md, "Conventions"): `Node` and `node(id:)`/`nodes(ids:)`,
//! lookups that answer null, one input and a payload per mutation.

mod common;

use common::{gql, project_with_key};
use neruba::testing::TestApp;
use serde_json::{Value, json};

const NODE: &str = "query($id: ID!) { node(id: $id) { __typename id } }";

async fn node(app: &TestApp, key: &str, id: &Value) -> Value {
    let r = gql(app, key, NODE, json!({ "id": id })).await;
    r.data()["node"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_object_with_an_id_is_a_node_its_project_can_find() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "A").await;
    let r = gql(
        &app,
        &key,
        "mutation {
            unit: createCreditUnit(input: { code: \"TOKENS\", name: \"Tokens\", decimals: 0 }) { creditUnit { id } }
            metric: createBillableMetric(input: { code: \"calls\", name: \"Calls\", aggregation: COUNT }) { billableMetric { id } }
            customer: createCustomer(input: { externalId: \"acme\" }) { customer { id } }
            wallet: createWallet(input: { customerExternalId: \"acme\", currency: \"USD\" }) { wallet { id } }
            event: ingestUsage(input: { event: { idempotencyKey: \"e1\", customerExternalId: \"acme\", metric: \"calls\" } }) { event { id } }
        }",
        json!({}),
    )
    .await;
    let created = r.data().clone();
    let wallet = created["wallet"]["wallet"]["id"].clone();
    let r = gql(
        &app,
        &key,
        "mutation($w: ID) { topUpWallet(input: { walletId: $w, amount: \"10\", idempotencyKey: \"t\" }) {
            transaction { id entries { nodes { id account { id } lotId } } } } }",
        json!({ "w": wallet }),
    )
    .await;
    let txn = r.data()["topUpWallet"]["transaction"].clone();
    let lot_entry = txn["entries"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["lotId"].is_string())
        .cloned()
        .expect("a top-up posts to a lot");
    let key_id =
        gql(&app, &key, "{ viewer { apiKey { id } } }", json!({})).await.data()["viewer"]["apiKey"]["id"].clone();
    let cases = [
        (json!(project), "Project"),
        (key_id.clone(), "ApiKey"),
        (created["customer"]["customer"]["id"].clone(), "Customer"),
        (created["metric"]["billableMetric"]["id"].clone(), "BillableMetric"),
        (created["event"]["event"]["id"].clone(), "UsageEvent"),
        (created["unit"]["creditUnit"]["id"].clone(), "CreditUnit"),
        (wallet.clone(), "Wallet"),
        (lot_entry["lotId"].clone(), "CreditLot"),
        (lot_entry["account"]["id"].clone(), "LedgerAccount"),
        (txn["id"].clone(), "LedgerTransaction"),
        (lot_entry["id"].clone(), "LedgerEntry"),
    ];
    for (id, typename) in &cases {
        assert!(id.is_string(), "{typename}: no id in {created} {txn}");
        let found = node(&app, &key, id).await;
        assert_eq!(found, json!({ "__typename": typename, "id": id }), "{typename}");
    }
    // `nodes` answers in the order asked, null where nothing is found.
    let ids: Vec<Value> = vec![
        wallet.clone(),
        json!("wal_01ZZZZZZZZZZZZZZZZZZZZZZZZ"),
        txn["id"].clone(),
    ];
    let r = gql(
        &app,
        &key,
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        json!({ "ids": ids }),
    )
    .await;
    assert_eq!(r.data()["nodes"], json!([{ "id": wallet }, null, { "id": txn["id"] }]));
    let many: Vec<String> = (0..101).map(|i| format!("wal_{i}")).collect();
    let r = gql(
        &app,
        &key,
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        json!({ "ids": many }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");

    // Another project's key, a key without READ, and odd ids: null, never an error.
    let (_, other) = project_with_key(&app, "B").await;
    let ingest = app.create_api_key(&project, &["ingest"]).await;
    let reader = app.create_api_key(&project, &["read"]).await;
    for (id, typename) in &cases {
        assert!(node(&app, &other, id).await.is_null(), "B sees A's {typename}");
        assert!(
            node(&app, &ingest, id).await.is_null(),
            "an ingest key reads A's {typename}"
        );
    }
    // Keys are ADMIN data: a READ key does not find them.
    assert!(node(&app, &reader, &key_id).await.is_null());
    assert_eq!(node(&app, &reader, &wallet).await["id"], wallet);
    for odd in [
        "",
        "wal_",
        "nothing",
        "xyz_123",
        "wal_'; DROP TABLE wallets; --",
        "evt_",
        "evt_01ZZZZZZZZZZZZZZZZZZZZZZZZ",
        "evt_'; DROP TABLE usage_events; --",
        "prj_\u{0}",
    ] {
        assert!(node(&app, &key, &json!(odd)).await.is_null(), "{odd:?}");
    }
    // The operator finds anything.
    assert_eq!(node(&app, &app.admin_token, &wallet).await["id"], wallet);
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_link_to_each_other() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "A").await;
    let r = gql(
        &app,
        &key,
        "mutation { createWallet(input: { customerExternalId: \"acme\", currency: \"USD\" }) { wallet { id } } }",
        json!({}),
    )
    .await;
    let wallet = r.data()["createWallet"]["wallet"]["id"].clone();
    let r = gql(
        &app,
        &key,
        "mutation($w: ID) { topUpWallet(input: { walletId: $w, amount: \"10\", idempotencyKey: \"t\" }) {
            wallet { customer { externalId } lots(first: 5) { nodes { wallet { id } } } }
            transaction { entries(first: 10) { nodes { wallet { id } transaction { cause } lotId } } } } }",
        json!({ "w": wallet }),
    )
    .await;
    let posted = r.data()["topUpWallet"].clone();
    assert_eq!(posted["wallet"]["customer"]["externalId"], "acme");
    assert_eq!(posted["wallet"]["lots"]["nodes"][0]["wallet"]["id"], wallet);
    let entries = posted["transaction"]["entries"]["nodes"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2, "{posted}");
    for e in &entries {
        assert_eq!(e["transaction"]["cause"], "TOP_UP");
        // The wallet side links to the wallet; the system side has none.
        if e["lotId"].is_string() {
            assert_eq!(e["wallet"]["id"], wallet);
        } else {
            assert!(e["wallet"].is_null());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_usage_event_is_found_by_its_id_in_its_own_project_only() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "A").await;
    let (_, other) = project_with_key(&app, "B").await;
    let ingest = "mutation($k: String!) { ingestUsage(input: { event: {
        idempotencyKey: $k, customerExternalId: \"acme\", metric: \"calls\", quantity: \"2.5\",
        occurredAt: \"2026-11-10T12:00:00Z\", properties: { region: \"eu\" } } }) { event { id } } }";
    let mine = gql(&app, &key, ingest, json!({ "k": "same-key" })).await.data()["ingestUsage"]["event"]["id"].clone();
    // The same idempotency key in another project is another event, with its own id.
    let theirs =
        gql(&app, &other, ingest, json!({ "k": "same-key" })).await.data()["ingestUsage"]["event"]["id"].clone();
    assert_ne!(mine, theirs);

    let r = gql(
        &app,
        &key,
        "query($id: ID!) {
            node(id: $id) { id ... on UsageEvent { idempotencyKey customerExternalId metric quantity occurredAt properties } }
            customer(externalId: \"acme\") { events(first: 1) { nodes { id } } } }",
        json!({ "id": mine }),
    )
    .await;
    assert_eq!(
        r.data()["node"],
        json!({ "id": mine, "idempotencyKey": "same-key", "customerExternalId": "acme", "metric": "calls",
                "quantity": "2.5", "occurredAt": "2026-11-10T12:00:00+00:00", "properties": { "region": "eu" } })
    );
    // The id `node` finds is the one the customer's event list shows.
    assert_eq!(r.data()["customer"]["events"]["nodes"][0]["id"], mine);
    // Each project sees its own event and not the other's: null, as for an unknown id.
    assert_eq!(node(&app, &other, &theirs).await["id"], theirs);
    assert!(node(&app, &other, &mine).await.is_null());
    assert!(node(&app, &key, &theirs).await.is_null());
    // `nodes` mixes them in the order asked; the operator sees both.
    let r = gql(
        &app,
        &key,
        "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }",
        json!({ "ids": [theirs, mine] }),
    )
    .await;
    assert_eq!(
        r.data()["nodes"],
        json!([null, { "__typename": "UsageEvent", "id": mine }])
    );
    assert_eq!(node(&app, &app.admin_token, &theirs).await["id"], theirs);
    // An events-only key (INGEST) does not read events back.
    let ingest_only = app.create_api_key(&project, &["ingest"]).await;
    assert!(node(&app, &ingest_only, &mine).await.is_null());
}
