//! Plan subscriptions through the real server: replay-safe creation, one live subscription per
//! customer and plan, derived status and the current period, cancellation at the period's end or
//! at once with its history, and typed errors for bad input.

mod common;

use chrono::{Datelike, Months, NaiveDate, Utc};
use common::{count_rows, gql, project_with_key};
use neruba::testing::TestApp;
use serde_json::{Value, json};

const CREATE: &str = "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { replayed subscription {
  id status billingAnchor startsAt trialEndsAt endsAt
  currentPeriod { from to fullFrom fullTo }
  planVersion { version code } customer { externalId }
} } }";
const CANCEL: &str =
    "mutation($i: CancelSubscriptionInput!) { cancelSubscription(input: $i) { subscription { id status endsAt } } }";
const HISTORY: &str = "query($id: ID!) { subscription(id: $id) { status history { edges { node { kind effectiveAt actor { kind } } } } } }";

async fn setup(app: &TestApp, name: &str, trial_days: i32) -> (String, String, String) {
    let (project, key) = project_with_key(app, name).await;
    let r = gql(
        app,
        &key,
        "mutation { createCustomer(input: { externalId: \"acme\", name: \"Acme\", currency: \"USD\" }) { customer { id } } }",
        json!({}),
    )
    .await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
    let r = gql(
        app,
        &key,
        "mutation($t: Int!) { createPlan(input: { code: \"pro\", definition: { name: \"Pro\", currency: \"USD\", interval: { unit: MONTH }, fixedFee: \"49\", trialDays: $t } }) { planVersion { plan { id } } } }",
        json!({ "t": trial_days }),
    )
    .await;
    let plan = r.data()["createPlan"]["planVersion"]["plan"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (project, key, plan)
}

fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap()
}

fn midnight(day: NaiveDate) -> String {
    format!("{day}T00:00:00+00:00")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_is_created_once_per_key_and_once_per_customer_and_plan() {
    let app = TestApp::spawn().await;
    let (project, key, plan) = setup(&app, "Subs", 14).await;
    let input = json!({ "customerExternalId": "acme", "planId": plan, "idempotencyKey": "sub-1" });
    let first = gql(&app, &key, CREATE, json!({ "i": input })).await;
    let created = first.data()["createSubscription"].clone();
    assert_eq!(created["replayed"], false);
    let sub = &created["subscription"];
    assert_eq!(sub["status"], "TRIALING", "{sub}");
    assert_eq!(sub["billingAnchor"], "CALENDAR");
    assert_eq!(sub["planVersion"], json!({ "version": 1, "code": "pro" }));
    assert_eq!(sub["customer"]["externalId"], "acme");
    assert!(sub["trialEndsAt"].is_string());
    // Calendar billing: the current period runs from today to the 1st of next month, part of
    // the whole month.
    let today = Utc::now().date_naive();
    let next_month = first_of_month(today).checked_add_months(Months::new(1)).unwrap();
    assert_eq!(sub["currentPeriod"]["to"], midnight(next_month));
    assert_eq!(sub["currentPeriod"]["fullFrom"], midnight(first_of_month(today)));

    let replay = gql(&app, &key, CREATE, json!({ "i": input })).await;
    assert_eq!(replay.data()["createSubscription"]["replayed"], true);
    assert_eq!(replay.data()["createSubscription"]["subscription"]["id"], sub["id"]);
    let changed = json!({ "customerExternalId": "acme", "planId": plan, "idempotencyKey": "sub-1", "billingAnchor": "ANNIVERSARY" });
    let conflict = gql(&app, &key, CREATE, json!({ "i": changed })).await;
    assert_eq!(conflict.error_code(), "IDEMPOTENCY_CONFLICT", "{}", conflict.body);
    let twice = json!({ "customerExternalId": "acme", "planId": plan, "idempotencyKey": "sub-2" });
    let twice = gql(&app, &key, CREATE, json!({ "i": twice })).await;
    assert_eq!(twice.error_code(), "SUBSCRIPTION_EXISTS", "{}", twice.body);
    assert_eq!(count_rows(&app, "subscriptions", Some(&project)).await, 1);

    // A subscription is a Node; another project's key finds nothing.
    let node = "query($id: ID!) { node(id: $id) { id ... on PlanSubscription { status } } }";
    let found = gql(&app, &key, node, json!({ "id": sub["id"] })).await;
    assert_eq!(found.data()["node"]["status"], "TRIALING");
    let (_, other) = project_with_key(&app, "Other").await;
    assert_eq!(
        gql(&app, &other, node, json!({ "id": sub["id"] })).await.data()["node"],
        Value::Null
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anniversary_periods_start_on_the_start_day() {
    let app = TestApp::spawn().await;
    let (_, key, plan) = setup(&app, "Anniversary", 0).await;
    // Started on the 31st of a month some months ago: every period starts on the 31st, or the
    // month's last day when it has no 31st.
    let today = Utc::now().date_naive();
    let start = NaiveDate::from_ymd_opt(today.year() - 1, 1, 31).unwrap();
    let input = json!({ "customerExternalId": "acme", "planId": plan, "idempotencyKey": "a",
        "billingAnchor": "ANNIVERSARY", "startsAt": format!("{start}T10:00:00Z") });
    let r = gql(&app, &key, CREATE, json!({ "i": input })).await;
    let sub = &r.data()["createSubscription"]["subscription"];
    assert_eq!(sub["status"], "ACTIVE");
    let mut n = 0;
    let period = loop {
        let from = start.checked_add_months(Months::new(n)).unwrap();
        let to = start.checked_add_months(Months::new(n + 1)).unwrap();
        if from <= today && today < to {
            break (from, to);
        }
        n += 1;
    };
    assert_eq!(sub["currentPeriod"]["from"], midnight(period.0), "{sub}");
    assert_eq!(sub["currentPeriod"]["to"], midnight(period.1));
    assert_eq!(sub["currentPeriod"]["fullFrom"], sub["currentPeriod"]["from"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn canceling_at_period_end_then_at_once_is_recorded_in_the_history() {
    let app = TestApp::spawn().await;
    let (_, key, plan) = setup(&app, "Cancel", 0).await;
    let r = gql(
        &app,
        &key,
        CREATE,
        json!({ "i": { "customerExternalId": "acme", "planId": plan, "idempotencyKey": "c" } }),
    )
    .await;
    let sub = r.data()["createSubscription"]["subscription"].clone();
    let id = sub["id"].clone();
    let at_end = gql(&app, &key, CANCEL, json!({ "i": { "subscriptionId": id } })).await;
    let canceled = &at_end.data()["cancelSubscription"]["subscription"];
    assert_eq!(canceled["status"], "CANCELING");
    assert_eq!(canceled["endsAt"], sub["currentPeriod"]["to"]);
    // The same cancellation again changes nothing.
    gql(&app, &key, CANCEL, json!({ "i": { "subscriptionId": id } })).await;
    let now = gql(
        &app,
        &key,
        CANCEL,
        json!({ "i": { "subscriptionId": id, "atPeriodEnd": false } }),
    )
    .await;
    assert_eq!(now.data()["cancelSubscription"]["subscription"]["status"], "ENDED");
    let history = gql(&app, &key, HISTORY, json!({ "id": id })).await;
    let kinds: Vec<_> = history.data()["subscription"]["history"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, vec!["CREATED", "CANCEL_SCHEDULED", "CANCELED"]);
    assert_eq!(
        history.data()["subscription"]["history"]["edges"][0]["node"]["actor"]["kind"],
        "API_KEY"
    );
    // Ended, the customer may subscribe to the plan again.
    let again = gql(
        &app,
        &key,
        CREATE,
        json!({ "i": { "customerExternalId": "acme", "planId": plan, "idempotencyKey": "c2" } }),
    )
    .await;
    assert_eq!(again.data()["createSubscription"]["subscription"]["status"], "ACTIVE");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_subscriptions_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let (project, key, plan) = setup(&app, "Bad subs", 0).await;
    gql(
        &app,
        &key,
        "mutation { createCustomer(input: { externalId: \"euro\", currency: \"EUR\" }) { customer { id } } }",
        json!({}),
    )
    .await;
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (
            json!({ "customerExternalId": "euro", "planId": plan, "idempotencyKey": "k" }),
            "BAD_USER_INPUT",
            Some("planId"),
        ),
        (
            json!({ "customerExternalId": "acme", "planId": plan, "planVersion": 0, "idempotencyKey": "k" }),
            "BAD_USER_INPUT",
            Some("planVersion"),
        ),
        (
            json!({ "customerExternalId": "acme", "planId": plan, "idempotencyKey": "" }),
            "BAD_USER_INPUT",
            Some("idempotencyKey"),
        ),
        (
            json!({ "customerExternalId": "acme", "customerId": "cus_x", "planId": plan, "idempotencyKey": "k" }),
            "BAD_USER_INPUT",
            Some("customerId"),
        ),
        (
            json!({ "customerExternalId": "nobody", "planId": plan, "idempotencyKey": "k" }),
            "NOT_FOUND",
            None,
        ),
        (
            json!({ "customerExternalId": "acme", "planId": "pln_nope", "idempotencyKey": "k" }),
            "NOT_FOUND",
            None,
        ),
        (
            json!({ "customerExternalId": "acme", "planId": plan, "planVersion": 7, "idempotencyKey": "k" }),
            "NOT_FOUND",
            None,
        ),
    ];
    for (input, code, field) in cases {
        let r = gql(&app, &key, CREATE, json!({ "i": input })).await;
        assert_eq!(r.error_code(), code, "{input}: {}", r.body);
        if let Some(field) = field {
            assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{input}: {}", r.body);
        }
    }
    assert_eq!(count_rows(&app, "subscriptions", Some(&project)).await, 0);
    let unknown = gql(&app, &key, CANCEL, json!({ "i": { "subscriptionId": "sub_nope" } })).await;
    assert_eq!(unknown.error_code(), "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_retries_of_one_request_make_one_subscription() {
    let app = TestApp::spawn().await;
    let (project, key, plan) = setup(&app, "Racing", 0).await;
    let same = json!({ "i": { "customerExternalId": "acme", "planId": plan, "idempotencyKey": "race" } });
    let answers = futures_util::future::join_all((0..6).map(|_| gql(&app, &key, CREATE, same.clone()))).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|r| {
            r.data()["createSubscription"]["subscription"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let fresh = answers
        .iter()
        .filter(|r| r.data()["createSubscription"]["replayed"] == false)
        .count();
    assert_eq!(fresh, 1);
    // Different keys racing for the same plan: one wins, the others are SUBSCRIPTION_EXISTS.
    let (_, key2, plan2) = setup(&app, "Racing 2", 0).await;
    let answers = futures_util::future::join_all((0..6).map(|i| {
        let input =
            json!({ "i": { "customerExternalId": "acme", "planId": plan2, "idempotencyKey": format!("k{i}") } });
        let key2 = key2.clone();
        let app = &app;
        async move { gql(app, &key2, CREATE, input).await }
    }))
    .await;
    let won = answers.iter().filter(|r| r.body["errors"].is_null()).count();
    assert_eq!(won, 1);
    assert!(
        answers
            .iter()
            .filter(|r| !r.body["errors"].is_null())
            .all(|r| r.error_code() == "SUBSCRIPTION_EXISTS")
    );
    assert_eq!(count_rows(&app, "subscriptions", Some(&project)).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_running_subscriptions_of_a_customer_never_charge_the_same_metric() {
    let app = TestApp::spawn().await;
    let (project, key, _) = setup(&app, "Shared metrics", 0).await;
    for code in ["api_calls", "storage"] {
        let r = gql(
            &app,
            &key,
            "mutation($c: String!) { createBillableMetric(input: { code: $c, name: $c, aggregation: SUM }) { billableMetric { id } } }",
            json!({ "c": code }),
        )
        .await;
        assert!(r.body["errors"].is_null(), "{}", r.body);
    }
    let plan = async |code: &str, metric: &str| {
        let r = gql(
            &app,
            &key,
            "mutation($c: String!, $m: String!) { createPlan(input: { code: $c, definition: { name: $c, currency: \"USD\", interval: { unit: MONTH }, charges: [{ metric: $m, price: { perUnit: { unitAmount: \"1\" } } }] } }) { planVersion { id plan { id } } } }",
            json!({ "c": code, "m": metric }),
        )
        .await;
        let v = &r.data()["createPlan"]["planVersion"];
        (
            v["plan"]["id"].as_str().unwrap().to_string(),
            v["id"].as_str().unwrap().to_string(),
        )
    };
    let (calls, _) = plan("calls", "api_calls").await;
    let (more_calls, more_calls_version) = plan("more_calls", "api_calls").await;
    let (storage, _) = plan("storage", "storage").await;
    let subscribe = async |plan: &str, key_: &str, starts_at: Option<&str>| {
        gql(
            &app,
            &key,
            CREATE,
            json!({ "i": { "customerExternalId": "acme", "planId": plan, "idempotencyKey": key_, "startsAt": starts_at } }),
        )
        .await
    };
    let first = subscribe(&calls, "calls", None).await;
    assert!(first.body["errors"].is_null(), "{}", first.body);
    let first = first.data()["createSubscription"]["subscription"]["id"].clone();

    // Another plan charging api_calls while the first runs: both would bill the same events.
    let twice = subscribe(&more_calls, "more", None).await;
    assert_eq!(twice.error_code(), "SUBSCRIPTION_EXISTS", "{}", twice.body);
    let message = twice.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("'api_calls'") && message.contains(first.as_str().unwrap()),
        "{message}"
    );
    assert_eq!(count_rows(&app, "subscriptions", Some(&project)).await, 1);

    // Another metric is fine; and moving that subscription onto api_calls is refused too.
    let other = subscribe(&storage, "storage", None).await;
    assert!(other.body["errors"].is_null(), "{}", other.body);
    let other = other.data()["createSubscription"]["subscription"]["id"].clone();
    let moved = gql(
        &app,
        &key,
        "mutation($i: ChangeSubscriptionPlanInput!) { changeSubscriptionPlan(input: $i) { subscription { id } } }",
        json!({ "i": { "subscriptionId": other, "planVersionId": more_calls_version, "timing": "NOW", "idempotencyKey": "move" } }),
    )
    .await;
    assert_eq!(moved.error_code(), "SUBSCRIPTION_EXISTS", "{}", moved.body);
    assert_eq!(count_rows(&app, "subscriptions", Some(&project)).await, 2);

    // Once the first ends, the metric is free from then on.
    let canceled = gql(
        &app,
        &key,
        CANCEL,
        json!({ "i": { "subscriptionId": first, "atPeriodEnd": true } }),
    )
    .await;
    let ends_at = canceled.data()["cancelSubscription"]["subscription"]["endsAt"]
        .as_str()
        .unwrap()
        .to_string();
    let early = subscribe(&more_calls, "more-early", None).await;
    assert_eq!(early.error_code(), "SUBSCRIPTION_EXISTS", "{}", early.body);
    let after = subscribe(&more_calls, "more-after", Some(&ends_at)).await;
    assert!(after.body["errors"].is_null(), "{}", after.body);

    // Four plans on one more metric, subscribed at once: one wins.
    let r = gql(
        &app,
        &key,
        "mutation { createBillableMetric(input: { code: \"seats\", name: \"Seats\", aggregation: MAX }) { billableMetric { id } } }",
        json!({}),
    )
    .await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
    let mut seat_plans = Vec::new();
    for i in 0..4 {
        seat_plans.push(plan(&format!("seats_{i}"), "seats").await);
    }
    // Three new subscriptions and a plan change of the storage one, all onto seats.
    let change = async || {
        gql(
            &app,
            &key,
            "mutation($i: ChangeSubscriptionPlanInput!) { changeSubscriptionPlan(input: $i) { subscription { id } } }",
            json!({ "i": { "subscriptionId": other, "planVersionId": seat_plans[0].1, "timing": "NOW", "idempotencyKey": "to-seats" } }),
        )
        .await
    };
    let creates = futures_util::future::join_all(seat_plans[1..].iter().enumerate().map(|(i, (p, _))| {
        let key_ = format!("seats-{i}");
        async move { subscribe(p, &key_, None).await }
    }));
    let (changed, mut answers) = futures_util::future::join(change(), creates).await;
    answers.push(changed);
    let won = answers.iter().filter(|r| r.body["errors"].is_null()).count();
    assert_eq!(won, 1, "{:?}", answers.iter().map(|r| &r.body).collect::<Vec<_>>());
    assert!(
        answers
            .iter()
            .filter(|r| !r.body["errors"].is_null())
            .all(|r| r.error_code() == "SUBSCRIPTION_EXISTS")
    );
}
