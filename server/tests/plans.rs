//! Plans through the real server: versions (a replay answers the stored version, a new definition
//! is a new version, old versions stay as they were), prices stored and answered per model, typed
//! errors naming the field with nothing written, scopes and tenancy.

mod common;

use common::{count_rows, gql, project_with_key};
use neruba::testing::TestApp;
use serde_json::{Value, json};

const CREATE: &str =
    "mutation($i: CreatePlanInput!) { createPlan(input: $i) { created planVersion { id version isLatest } } }";
const CREATE_VERSION: &str =
    "mutation($i: CreatePlanVersionInput!) { createPlanVersion(input: $i) { created planVersion { id version } } }";
const PLAN: &str = "query($c: String!) { plan(code: $c) {
  id code
  latestVersion { version name currency interval { unit count } fixedFee { amount formatted } fixedFeeTiming
    minimumCommitment { amount } includedCredits { amount currency } trialDays
    charges { metric { code } freeUnits minimum { amount }
      price {
        __typename
        ... on PerUnitPrice { unitAmount { amount } }
        ... on GraduatedPrice { tiers { upTo unitAmount { amount } flatAmount { amount } } }
        ... on PackagePrice { packageSize packageAmount { amount } }
        ... on PercentagePrice { rate fixedFee { amount } freeEvents eventMaximum { amount } }
      } } }
  versions(first: 10) { edges { node { version fixedFee { amount } } } }
  v1: version(number: 1) { fixedFee { amount } }
  v9: version(number: 9) { version }
} }";

async fn metric(app: &TestApp, key: &str, code: &str, aggregation: &str) {
    let r = gql(
        app,
        key,
        "mutation($i: CreateBillableMetricInput!) { createBillableMetric(input: $i) { billableMetric { code } } }",
        json!({ "i": { "code": code, "name": code, "aggregation": aggregation } }),
    )
    .await;
    assert_eq!(r.data()["createBillableMetric"]["billableMetric"]["code"], code);
}

fn definition(fixed_fee: &str) -> Value {
    json!({
        "name": "Pro", "currency": "usd", "interval": { "unit": "MONTH" },
        "fixedFee": fixed_fee, "minimumCommitment": "100", "trialDays": 14,
        "charges": [
            { "metric": "api_calls", "freeUnits": "1000", "price": { "graduated": { "tiers": [
                { "upTo": "10000", "unitAmount": "0.002", "flatAmount": "1" }, { "unitAmount": "0.001" } ] } } },
            { "metric": "storage_gb", "minimum": "5", "price": { "package": { "packageSize": "10", "packageAmount": "2.5" } } },
            { "metric": "payments", "price": { "percentage": { "rate": "2.9", "fixedFee": "0.30", "eventMaximum": "25" } } }
        ]
    })
}

async fn project_with_metrics(app: &TestApp, name: &str) -> (String, String) {
    let (project, key) = project_with_key(app, name).await;
    metric(app, &key, "api_calls", "COUNT").await;
    metric(app, &key, "storage_gb", "MAX").await;
    metric(app, &key, "payments", "SUM").await;
    (project, key)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_is_stored_as_given_and_answered_per_model() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_metrics(&app, "Plans").await;
    let r = gql(
        &app,
        &key,
        CREATE,
        json!({ "i": { "code": "pro", "definition": definition("49") } }),
    )
    .await;
    let created = &r.data()["createPlan"];
    assert_eq!(created["created"], true);
    assert_eq!(created["planVersion"]["version"], 1);
    assert_eq!(created["planVersion"]["isLatest"], true);

    let plan = gql(&app, &key, PLAN, json!({ "c": "pro" })).await.data()["plan"].clone();
    let v = &plan["latestVersion"];
    assert_eq!(v["currency"], "USD");
    assert_eq!(v["interval"], json!({ "unit": "MONTH", "count": 1 }));
    assert_eq!(v["fixedFee"], json!({ "amount": "49", "formatted": "49.00 USD" }));
    assert_eq!(v["fixedFeeTiming"], "ADVANCE");
    assert_eq!(v["minimumCommitment"]["amount"], "100");
    assert_eq!(v["trialDays"], 14);
    assert_eq!(v["includedCredits"], Value::Null);
    let charges = v["charges"].as_array().unwrap();
    assert_eq!(charges.len(), 3);
    assert_eq!(charges[0]["metric"]["code"], "api_calls");
    assert_eq!(charges[0]["freeUnits"], "1000");
    assert_eq!(
        charges[0]["price"],
        json!({ "__typename": "GraduatedPrice", "tiers": [
            { "upTo": "10000", "unitAmount": { "amount": "0.002" }, "flatAmount": { "amount": "1" } },
            { "upTo": null, "unitAmount": { "amount": "0.001" }, "flatAmount": { "amount": "0" } }
        ] })
    );
    assert_eq!(
        charges[1]["price"],
        json!({ "__typename": "PackagePrice", "packageSize": "10", "packageAmount": { "amount": "2.5" } })
    );
    assert_eq!(charges[1]["minimum"]["amount"], "5");
    assert_eq!(
        charges[2]["price"],
        json!({ "__typename": "PercentagePrice", "rate": "2.9", "fixedFee": { "amount": "0.3" }, "freeEvents": null, "eventMaximum": { "amount": "25" } })
    );
    assert_eq!(plan["v9"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_definition_is_a_new_version_and_replays_write_nothing() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_metrics(&app, "Versions").await;
    let first = gql(
        &app,
        &key,
        CREATE,
        json!({ "i": { "code": "pro", "definition": definition("49") } }),
    )
    .await;
    let v1 = first.data()["createPlan"]["planVersion"]["id"].clone();
    // The same definition, written differently: a replay.
    let again = gql(
        &app,
        &key,
        CREATE,
        json!({ "i": { "code": "pro", "definition": definition("49.00") } }),
    )
    .await;
    assert_eq!(again.data()["createPlan"]["created"], false);
    assert_eq!(again.data()["createPlan"]["planVersion"]["id"], v1);
    // Another definition under the code is a conflict, not a silent new version.
    let other = gql(
        &app,
        &key,
        CREATE,
        json!({ "i": { "code": "pro", "definition": definition("59") } }),
    )
    .await;
    assert_eq!(other.error_code(), "PLAN_EXISTS", "{}", other.body);
    assert_eq!(count_rows(&app, "plan_versions", Some(&project)).await, 1);

    let plan_id = gql(&app, &key, PLAN, json!({ "c": "pro" })).await.data()["plan"]["id"].clone();
    let input = json!({ "i": { "planId": plan_id, "definition": definition("59") } });
    let v2 = gql(&app, &key, CREATE_VERSION, input.clone()).await;
    assert_eq!(v2.data()["createPlanVersion"]["created"], true);
    assert_eq!(v2.data()["createPlanVersion"]["planVersion"]["version"], 2);
    let replay = gql(&app, &key, CREATE_VERSION, input).await;
    assert_eq!(replay.data()["createPlanVersion"]["created"], false);
    assert_eq!(replay.data()["createPlanVersion"]["planVersion"]["version"], 2);
    assert_eq!(count_rows(&app, "plan_versions", Some(&project)).await, 2);

    let plan = gql(&app, &key, PLAN, json!({ "c": "pro" })).await.data()["plan"].clone();
    assert_eq!(plan["latestVersion"]["version"], 2);
    assert_eq!(plan["latestVersion"]["fixedFee"]["amount"], "59");
    assert_eq!(
        plan["v1"]["fixedFee"]["amount"], "49",
        "an old version is never changed"
    );
    let versions: Vec<_> = plan["versions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["version"].clone())
        .collect();
    assert_eq!(versions, vec![json!(2), json!(1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_plans_name_the_field_and_write_nothing() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_metrics(&app, "Bad plans").await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut def = definition("49");
        change(&mut def);
        json!({ "code": "pro", "definition": def })
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&|d| d["charges"][0]["metric"] = json!("nope")), "charges.0.metric"),
        (
            with(&|d| d["charges"][1]["metric"] = json!("api_calls")),
            "charges.1.metric",
        ),
        (
            with(&|d| d["charges"][0] = json!({ "metric": "api_calls", "price": { "percentage": { "rate": "1" } } })),
            "charges.0.price",
        ),
        (
            with(&|d| {
                d["charges"][0]["price"] = json!({ "graduated": { "tiers": [
                    { "upTo": "10", "unitAmount": "1" }, { "upTo": "5", "unitAmount": "1" }, { "unitAmount": "1" } ] } })
            }),
            "charges.0.price.graduated.tiers.1.upTo",
        ),
        (
            with(&|d| d["charges"][2]["price"]["percentage"]["rate"] = json!("101")),
            "charges.2.price.percentage.rate",
        ),
        (
            with(&|d| d["charges"][1]["minimum"] = json!("5.001")),
            "charges.1.minimum",
        ),
        (
            with(&|d| d["charges"][0]["freeUnits"] = json!("-1")),
            "charges.0.freeUnits",
        ),
        (with(&|d| d["fixedFee"] = json!("49.001")), "fixedFee"),
        (with(&|d| d["fixedFee"] = json!("-1")), "fixedFee"),
        (with(&|d| d["currency"] = json!("XYZ")), "currency"),
        (
            with(&|d| d["interval"] = json!({ "unit": "MONTH", "count": 13 })),
            "interval.count",
        ),
        (
            with(&|d| d["interval"] = json!({ "unit": "DAY", "count": 0 })),
            "interval.count",
        ),
        (with(&|d| d["trialDays"] = json!(-1)), "trialDays"),
        (with(&|d| d["usageThreshold"] = json!("0")), "usageThreshold"),
        (with(&|d| d["usageThreshold"] = json!("-5")), "usageThreshold"),
        (with(&|d| d["usageThreshold"] = json!("10.001")), "usageThreshold"),
        (
            with(&|d| {
                d["usageThreshold"] = json!("10");
                d["charges"] = json!([]);
            }),
            "usageThreshold",
        ),
        (
            with(&|d| d["includedCredits"] = json!({ "amount": "0", "currency": "USD" })),
            "includedCredits",
        ),
        (with(&|d| d["name"] = json!("")), "name"),
        (json!({ "code": "no spaces", "definition": definition("1") }), "code"),
    ];
    for (input, want) in cases {
        let r = gql(&app, &key, CREATE, json!({ "i": input })).await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{input}: {}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], want, "{input}: {}", r.body);
    }
    assert_eq!(count_rows(&app, "plans", Some(&project)).await, 0);
    assert_eq!(count_rows(&app, "plan_versions", Some(&project)).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_need_billing_to_write_and_stay_in_their_project() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_metrics(&app, "Owner").await;
    let read_only = app.create_api_key(&project, &["read"]).await;
    let r = gql(
        &app,
        &read_only,
        CREATE,
        json!({ "i": { "code": "pro", "definition": definition("1") } }),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN", "{}", r.body);
    let r = gql(
        &app,
        &key,
        CREATE,
        json!({ "i": { "code": "pro", "definition": definition("1") } }),
    )
    .await;
    assert_eq!(r.data()["createPlan"]["created"], true);
    let plan_id = gql(&app, &read_only, PLAN, json!({ "c": "pro" })).await.data()["plan"]["id"].clone();

    let (_, other) = project_with_metrics(&app, "Other").await;
    assert_eq!(
        gql(&app, &other, PLAN, json!({ "c": "pro" })).await.data()["plan"],
        Value::Null
    );
    let by_id = gql(
        &app,
        &other,
        "query($id: ID) { plan(id: $id) { code } }",
        json!({ "id": plan_id }),
    )
    .await;
    assert_eq!(by_id.data()["plan"], Value::Null);
    let version = gql(
        &app,
        &other,
        CREATE_VERSION,
        json!({ "i": { "planId": plan_id, "definition": definition("2") } }),
    )
    .await;
    assert_eq!(version.error_code(), "NOT_FOUND", "{}", version.body);
    let listed = gql(&app, &other, "{ plans { edges { node { code } } } }", json!({})).await;
    assert_eq!(listed.data()["plans"]["edges"], json!([]));

    // Plans, their versions and charges are Nodes; another project's answer null.
    let ids = gql(
        &app,
        &key,
        "{ plan(code: \"pro\") { latestVersion { id charges { id } } } }",
        json!({}),
    )
    .await;
    let version_id = ids.data()["plan"]["latestVersion"]["id"].clone();
    let charge_id = ids.data()["plan"]["latestVersion"]["charges"][0]["id"].clone();
    const NODES: &str = "query($ids: [ID!]!) { nodes(ids: $ids) { id __typename
        ... on Plan { code } ... on PlanVersion { version } ... on UsageCharge { metric { code } } } }";
    let found = gql(
        &app,
        &read_only,
        NODES,
        json!({ "ids": [plan_id, version_id, charge_id] }),
    )
    .await;
    let nodes = &found.data()["nodes"];
    assert_eq!(nodes[0]["code"], "pro", "{nodes}");
    assert_eq!(nodes[1]["version"], 1);
    assert_eq!(nodes[2]["metric"]["code"], "api_calls");
    let hidden = gql(&app, &other, NODES, json!({ "ids": [plan_id, version_id, charge_id] })).await;
    assert_eq!(hidden.data()["nodes"], json!([null, null, null]));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_new_versions_are_numbered_without_gaps_or_errors() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_metrics(&app, "Concurrent").await;
    let r = gql(
        &app,
        &key,
        CREATE,
        json!({ "i": { "code": "pro", "definition": definition("1") } }),
    )
    .await;
    assert_eq!(r.data()["createPlan"]["created"], true);
    let plan_id = gql(&app, &key, PLAN, json!({ "c": "pro" })).await.data()["plan"]["id"].clone();
    let tasks: Vec<_> = (2..10)
        .map(|fee| {
            let (app, key) = (&app, key.clone());
            let input = json!({ "i": { "planId": plan_id, "definition": definition(&fee.to_string()) } });
            async move { gql(app, &key, CREATE_VERSION, input).await }
        })
        .collect();
    let answers = futures_util::future::join_all(tasks).await;
    let mut versions: Vec<i64> = answers
        .iter()
        .map(|r| {
            r.data()["createPlanVersion"]["planVersion"]["version"]
                .as_i64()
                .unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, (2..10).collect::<Vec<_>>());
    assert_eq!(count_rows(&app, "plan_versions", Some(&project)).await, 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_of_one_plan_make_one_version() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_metrics(&app, "Racing").await;
    let input = json!({ "i": { "code": "pro", "definition": definition("49") } });
    let answers = futures_util::future::join_all((0..6).map(|_| gql(&app, &key, CREATE, input.clone()))).await;
    let created = answers
        .iter()
        .filter(|r| r.data()["createPlan"]["created"] == true)
        .count();
    assert_eq!(created, 1);
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|r| {
            r.data()["createPlan"]["planVersion"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the one version");
    assert_eq!(count_rows(&app, "plan_versions", Some(&project)).await, 1);
}
