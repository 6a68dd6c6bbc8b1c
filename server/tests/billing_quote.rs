//! `quotePrice` through the real server: each price model rated as docs/billing.md computes it,
//! rounding to the currency's minor units (ISO and declared credit units), the minimum's true-up,
//! typed errors naming the field for bad prices and usage, and the `READ` scope.

mod common;

use common::{declare_credit_unit, gql, project_with_key};
use neruba::testing::TestApp;
use serde_json::{Value, json};

const QUOTE: &str = "query($i: QuotePriceInput!) { quotePrice(input: $i) {
  amount { amount currency } fee { amount formatted } minimumTrueUp { amount } total { amount formatted }
  conventionsVersion
  steps { kind tier from upTo quantity count rate unitAmount { amount } flatAmount { amount } amount { amount } }
} }";

async fn quote(app: &TestApp, key: &str, input: Value) -> Value {
    let r = gql(app, key, QUOTE, json!({ "i": input })).await;
    r.data()["quotePrice"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graduated_quote_explains_each_tier_after_the_free_units() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Quotes").await;
    let q = quote(
        &app,
        &key,
        json!({
            "currency": "usd", "quantity": "1500", "freeUnits": "50",
            "price": { "graduated": { "tiers": [
                { "upTo": "100", "unitAmount": "0.10", "flatAmount": "5" },
                { "upTo": "1000", "unitAmount": "0.05" },
                { "unitAmount": "0.01", "flatAmount": "2" }
            ] } }
        }),
    )
    .await;
    // 50 free; 100 × 0.10 + 5; 900 × 0.05; 450 × 0.01 + 2.
    assert_eq!(q["amount"], json!({ "amount": "66.5", "currency": "USD" }));
    assert_eq!(q["fee"], json!({ "amount": "66.5", "formatted": "66.50 USD" }));
    assert_eq!(q["total"]["formatted"], "66.50 USD");
    assert_eq!(q["minimumTrueUp"], Value::Null);
    assert_eq!(q["conventionsVersion"], 1);
    let steps: Vec<_> = q["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap(),
                s["tier"].clone(),
                s["quantity"].clone(),
                s["amount"]["amount"].clone(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("FREE_UNITS", Value::Null, json!("50"), json!("0")),
            ("TIER", json!(1), json!("100"), json!("15")),
            ("TIER", json!(2), json!("900"), json!("45")),
            ("TIER", json!(3), json!("450"), json!("6.5")),
        ]
    );
    assert_eq!(q["steps"][1]["upTo"], "100");
    assert_eq!(q["steps"][3]["from"], "1000");
    assert_eq!(q["steps"][3]["upTo"], Value::Null);
    assert_eq!(q["steps"][3]["flatAmount"]["amount"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_model_rates_as_the_billing_guide_computes() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Models").await;
    let total = |q: Value| q["total"]["amount"].as_str().unwrap().to_string();
    let tiers = json!([{ "upTo": "100", "unitAmount": "0.10", "flatAmount": "5" }, { "unitAmount": "0.05" }]);
    let cases = [
        // 10 × 0.25
        (
            json!({ "perUnit": { "unitAmount": "0.25" } }),
            json!({ "quantity": "10" }),
            "2.5",
        ),
        // the whole 101 at the second tier
        (
            json!({ "volume": { "tiers": tiers } }),
            json!({ "quantity": "101" }),
            "5.05",
        ),
        // exactly 100 is the first tier
        (
            json!({ "volume": { "tiers": tiers } }),
            json!({ "quantity": "100" }),
            "15",
        ),
        // 0 enters no tier: no flat fee
        (
            json!({ "graduated": { "tiers": tiers } }),
            json!({ "quantity": "0" }),
            "0",
        ),
        // 101 units: 2 started packages of 100 at 2
        (
            json!({ "package": { "packageSize": "100", "packageAmount": "2" } }),
            json!({ "quantity": "101" }),
            "4",
        ),
        // 20: 0.60; 1000: 25.10 cut to 10; 4: 0.20 raised to 0.50 (first two free)
        (
            json!({ "percentage": { "rate": "2.5", "fixedFee": "0.10", "freeEvents": 2, "eventMinimum": "0.50", "eventMaximum": "10" } }),
            json!({ "eventAmounts": ["100", "50", "20", "1000", "4"] }),
            "11.1",
        ),
        // total 11000: 3 % of 1000 + 2 % of 10000
        (
            json!({ "graduatedPercentage": { "tiers": [{ "upTo": "1000", "rate": "3" }, { "rate": "2" }] } }),
            json!({ "eventAmounts": ["500", "700", "9800"] }),
            "230",
        ),
    ];
    for (price, usage, want) in cases {
        let mut input = json!({ "currency": "USD", "price": price });
        input
            .as_object_mut()
            .unwrap()
            .extend(usage.as_object().unwrap().clone());
        let q = quote(&app, &key, input.clone()).await;
        assert_eq!(total(q), want, "{input}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_round_half_away_from_zero_to_the_units_minor_units_and_minimums_true_up() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Rounding").await;
    let per_unit = |amount: &str| json!({ "perUnit": { "unitAmount": amount } });
    // 5 × 0.5 = 2.5 JPY: the exact amount is kept, the line is 3.
    let q = quote(
        &app,
        &key,
        json!({ "currency": "JPY", "quantity": "5", "price": per_unit("0.5") }),
    )
    .await;
    assert_eq!(
        (q["amount"]["amount"].as_str(), q["fee"]["formatted"].as_str()),
        (Some("2.5"), Some("3 JPY"))
    );
    // 4.02 × 0.25 = 1.005 USD → 1.01; a minimum of 5 adds 3.99.
    let q = quote(
        &app,
        &key,
        json!({ "currency": "USD", "quantity": "4.02", "minimum": "5", "price": per_unit("0.25") }),
    )
    .await;
    assert_eq!(q["fee"]["amount"], "1.01");
    assert_eq!(q["minimumTrueUp"]["amount"], "3.99");
    assert_eq!(q["total"]["formatted"], "5.00 USD");
    // No usage still pays the minimum.
    let q = quote(
        &app,
        &key,
        json!({ "currency": "USD", "quantity": "0", "minimum": "5", "price": per_unit("1") }),
    )
    .await;
    assert_eq!(q["total"]["amount"], "5");
    // A declared credit unit rounds to its own decimals: 0.0125 × 3 = 0.0375 → 0.038 at 3 places.
    declare_credit_unit(&app, &project, "TOKENS", 3).await;
    let q = quote(
        &app,
        &key,
        json!({ "currency": "tokens", "quantity": "3", "price": per_unit("0.0125") }),
    )
    .await;
    assert_eq!(q["fee"]["formatted"], "0.038 TOKENS");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_prices_and_usage_name_the_field() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Bad quotes").await;
    let per_unit = json!({ "perUnit": { "unitAmount": "1" } });
    let percent = |terms: Value| json!({ "percentage": terms });
    let cases = [
        (
            json!({ "currency": "USD", "quantity": "1", "price": { "graduated": { "tiers": [
                { "upTo": "10", "unitAmount": "1" }, { "upTo": "5", "unitAmount": "1" }, { "unitAmount": "1" }
            ] } } }),
            "price.graduated.tiers.1.upTo",
        ),
        (
            json!({ "currency": "USD", "quantity": "1", "price": { "volume": { "tiers": [{ "upTo": "10", "unitAmount": "1" }] } } }),
            "price.volume.tiers.0.upTo",
        ),
        (
            json!({ "currency": "USD", "quantity": "1", "price": { "volume": { "tiers": [] } } }),
            "price.volume.tiers",
        ),
        (
            json!({ "currency": "USD", "quantity": "1", "price": { "perUnit": { "unitAmount": "-1" } } }),
            "price.perUnit.unitAmount",
        ),
        (
            json!({ "currency": "USD", "quantity": "1", "price": { "perUnit": { "unitAmount": "abc" } } }),
            "price.perUnit.unitAmount",
        ),
        (
            json!({ "currency": "USD", "eventAmounts": ["1"], "price": percent(json!({ "rate": "100.5" })) }),
            "price.percentage.rate",
        ),
        (
            json!({ "currency": "USD", "eventAmounts": ["1"], "price": percent(json!({ "rate": "1", "freeEvents": -1 })) }),
            "price.percentage.freeEvents",
        ),
        (
            json!({ "currency": "USD", "eventAmounts": ["1"], "price": percent(json!({ "rate": "1", "eventMinimum": "2", "eventMaximum": "1" })) }),
            "price.percentage.eventMaximum",
        ),
        (
            json!({ "currency": "USD", "eventAmounts": ["1"], "freeUnits": "1", "price": percent(json!({ "rate": "1" })) }),
            "freeUnits",
        ),
        (
            json!({ "currency": "USD", "quantity": "1", "price": percent(json!({ "rate": "1" })) }),
            "eventAmounts",
        ),
        (
            json!({ "currency": "USD", "eventAmounts": ["1"], "price": per_unit }),
            "quantity",
        ),
        (json!({ "currency": "USD", "price": per_unit }), "quantity"),
        (
            json!({ "currency": "USD", "quantity": "1", "eventAmounts": ["1"], "price": per_unit }),
            "quantity",
        ),
        (
            json!({ "currency": "USD", "quantity": "-1", "price": per_unit }),
            "quantity",
        ),
        (
            json!({ "currency": "USD", "eventAmounts": ["1", "-1"], "price": percent(json!({ "rate": "1" })) }),
            "eventAmounts.1",
        ),
        (
            json!({ "currency": "USD", "quantity": "1", "minimum": "5.001", "price": per_unit }),
            "minimum",
        ),
        (
            json!({ "currency": "XYZ", "quantity": "1", "price": per_unit }),
            "currency",
        ),
        (
            json!({ "currency": "USD", "quantity": "1", "price": { "package": { "packageSize": "0.5", "packageAmount": "1" } } }),
            "price.package.packageSize",
        ),
    ];
    for (input, want) in cases {
        let r = gql(&app, &key, QUOTE, json!({ "i": input })).await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{input}: {}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], want, "{input}: {}", r.body);
    }
    let too_many: Vec<String> = (0..10_001).map(|_| "1".to_string()).collect();
    let r = gql(
        &app,
        &key,
        QUOTE,
        json!({ "i": { "currency": "USD", "eventAmounts": too_many, "price": percent(json!({ "rate": "1" })) } }),
    )
    .await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "eventAmounts", "{}", r.body);
    // `price` is @oneOf: two models at once is refused before anything runs.
    let r = gql(
        &app,
        &key,
        QUOTE,
        json!({ "i": { "currency": "USD", "quantity": "1", "price": {
            "perUnit": { "unitAmount": "1" }, "package": { "packageSize": "1", "packageAmount": "1" } } } }),
    )
    .await;
    assert!(r.body["data"].is_null(), "{}", r.body);
    assert!(
        r.body["errors"][0]["message"].as_str().unwrap().contains("exactly one"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quoting_needs_read() {
    let app = TestApp::spawn().await;
    let project = app.create_project("Scopes").await;
    let ingest = app.create_api_key(&project, &["ingest"]).await;
    let r = gql(
        &app,
        &ingest,
        QUOTE,
        json!({ "i": { "currency": "USD", "quantity": "1", "price": { "perUnit": { "unitAmount": "1" } } } }),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN", "{}", r.body);
}
