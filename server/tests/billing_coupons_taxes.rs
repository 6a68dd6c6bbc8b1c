//! Coupons and tax rates through the real server and a real MariaDB: billing runs apply them in
//! the documented order (fees → true-ups → coupons → taxes → credits; amounts worked out by hand
//! below), a redemption uses its periods only on final invoices with something to discount, a
//! customer's own tax rates replace the project's default, creates and applications are
//! replay-safe, and bad input is refused by field with nothing written.

mod common;

use common::{amounts, count_rows, gql, pairs, project_with_key};
use neruba::testing::TestApp;
use serde_json::{Value, json};

const RUN: &str = "mutation($i: RunBillingInput!) { runBilling(input: $i) { hasMore
  failures { subscriptionId code message }
  invoices { id boundary subtotal { amount } discount { amount } tax { amount } total { amount }
    amountDue { amount } manifest lines { kind description amount { amount } } } } }";

const CREATE_COUPON: &str = "mutation($i: CreateCouponInput!) { createCoupon(input: $i) {
  created coupon { id code name kind percentage amount { amount currency } duration periods } } }";

const APPLY: &str = "mutation($i: ApplyCouponInput!) { applyCoupon(input: $i) {
  replayed redemption { id periods periodsUsed coupon { code } subscription { id } } } }";

const CREATE_TAX: &str = "mutation($i: CreateTaxRateInput!) { createTaxRate(input: $i) {
  created taxRate { id code name percentage defaultPosition } } }";

const SET_DEFAULT: &str = "mutation($i: SetDefaultTaxRatesInput!) { setDefaultTaxRates(input: $i) {
  taxRates { code defaultPosition } } }";

const SET_CUSTOMER: &str = "mutation($i: SetCustomerTaxRatesInput!) { setCustomerTaxRates(input: $i) {
  customer { externalId } taxRates { code } } }";

async fn ok(app: &TestApp, key: &str, query: &str, variables: Value) -> Value {
    let r = gql(app, key, query, variables).await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
    r.body["data"].clone()
}

async fn customer(app: &TestApp, key: &str, external_id: &str, currency: &str) -> String {
    let d = ok(
        app,
        key,
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
        json!({ "i": { "externalId": external_id, "currency": currency } }),
    )
    .await;
    d["createCustomer"]["customer"]["id"].as_str().unwrap().to_string()
}

/// A monthly plan with only a fixed fee, in `currency`.
async fn flat_plan(app: &TestApp, key: &str, code: &str, currency: &str, fee: &str, timing: &str) -> String {
    let d = ok(
        app,
        key,
        "mutation($i: CreatePlanInput!) { createPlan(input: $i) { planVersion { plan { id } } } }",
        json!({ "i": { "code": code, "definition": { "name": code, "currency": currency,
            "interval": { "unit": "MONTH" }, "fixedFee": fee, "fixedFeeTiming": timing } } }),
    )
    .await;
    d["createPlan"]["planVersion"]["plan"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn subscribe(app: &TestApp, key: &str, customer: &str, plan: &str) -> String {
    let d = ok(
        app,
        key,
        "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id } } }",
        json!({ "i": { "customerExternalId": customer, "planId": plan, "startsAt": "2025-01-01T00:00:00Z",
            "idempotencyKey": format!("sub-{customer}-{plan}") } }),
    )
    .await;
    d["createSubscription"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn coupon(app: &TestApp, key: &str, input: Value) -> String {
    let d = ok(app, key, CREATE_COUPON, json!({ "i": input })).await;
    d["createCoupon"]["coupon"]["id"].as_str().unwrap().to_string()
}

async fn tax_rate(app: &TestApp, key: &str, code: &str, name: &str, percentage: &str) -> String {
    let d = ok(
        app,
        key,
        CREATE_TAX,
        json!({ "i": { "code": code, "name": name, "percentage": percentage } }),
    )
    .await;
    d["createTaxRate"]["taxRate"]["id"].as_str().unwrap().to_string()
}

async fn apply(app: &TestApp, key: &str, subscription: &str, coupon: &str, idempotency_key: &str) -> Value {
    let d = ok(
        app,
        key,
        APPLY,
        json!({ "i": { "subscriptionId": subscription, "couponId": coupon, "idempotencyKey": idempotency_key } }),
    )
    .await;
    d["applyCoupon"].clone()
}

async fn run(app: &TestApp, key: &str, input: Value) -> Vec<Value> {
    let d = ok(app, key, RUN, json!({ "i": input })).await;
    assert_eq!(d["runBilling"]["failures"], json!([]), "{d}");
    d["runBilling"]["invoices"].as_array().unwrap().clone()
}

fn manifest(invoice: &Value) -> Value {
    serde_json::from_str(invoice["manifest"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn coupons_then_taxes_apply_in_order_each_line_rounded_once() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Discounts").await;
    customer(&app, &key, "acme", "USD").await;
    let plan = flat_plan(&app, &key, "pro", "USD", "49.99", "ADVANCE").await;
    let sub = subscribe(&app, &key, "acme", &plan).await;
    let launch = coupon(
        &app,
        &key,
        json!({ "code": "LAUNCH15", "name": "Launch", "discount": { "percentage": "15" }, "duration": "FOREVER" }),
    )
    .await;
    let welcome = coupon(
        &app,
        &key,
        json!({ "code": "WELCOME5", "name": "Welcome", "discount": { "amount": "5" }, "currency": "usd", "duration": "FOREVER" }),
    )
    .await;
    let vat = tax_rate(&app, &key, "VAT19", "VAT", "19").await;
    let city = tax_rate(&app, &key, "CITY", "City tax", "2.5").await;
    let defaults = ok(&app, &key, SET_DEFAULT, json!({ "i": { "taxRateIds": [vat, city] } })).await;
    assert_eq!(
        defaults["setDefaultTaxRates"]["taxRates"],
        json!([{ "code": "VAT19", "defaultPosition": 0 }, { "code": "CITY", "defaultPosition": 1 }])
    );
    // Applied in this order: the percentage first, then the amount.
    let first = apply(&app, &key, &sub, &launch, "apply-launch").await;
    let second = apply(&app, &key, &sub, &welcome, "apply-welcome").await;
    assert_eq!(first["replayed"], false);
    assert_eq!(first["redemption"]["periods"], Value::Null);

    // The invoice at the start bills January's fee in advance.
    let invoices = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "maxInvoices": 1, "now": "2025-01-15T00:00:00Z" }),
    )
    .await;
    let invoice = &invoices[0];
    assert_eq!(
        amounts(invoice),
        pairs(&[
            ("FIXED_FEE", "49.99"),
            // 15 % of 49.99 = 7.4985, rounded once, half away from zero: 7.50; 42.49 left.
            ("COUPON", "-7.5"),
            // 5 off what is left: 37.49 left.
            ("COUPON", "-5"),
            // Taxes on the discounted 37.49: 19 % = 7.1231 → 7.12, 2.5 % = 0.93725 → 0.94.
            ("TAX", "7.12"),
            ("TAX", "0.94"),
        ])
    );
    let descriptions: Vec<&str> = invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|l| l["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        descriptions,
        [
            "Launch (LAUNCH15)",
            "Welcome (WELCOME5)",
            "VAT (VAT19), 19 %",
            "City tax (CITY), 2.5 %"
        ]
    );
    assert_eq!(invoice["subtotal"]["amount"], "49.99");
    assert_eq!(invoice["discount"]["amount"], "-12.5");
    assert_eq!(invoice["tax"]["amount"], "8.06");
    // 37.49 + 8.06.
    assert_eq!(invoice["total"]["amount"], "45.55");
    assert_eq!(invoice["amountDue"]["amount"], "45.55");

    // The manifest names what was applied, as it was defined, so the invoice explains itself.
    let m = manifest(invoice);
    assert_eq!(m["coupons"][0]["redemptionId"], first["redemption"]["id"]);
    assert_eq!(m["coupons"][0]["code"], "LAUNCH15");
    assert_eq!(m["coupons"][0]["value"], "15");
    assert_eq!(m["coupons"][0]["discount"], "-7.50");
    assert_eq!(m["coupons"][1]["redemptionId"], second["redemption"]["id"]);
    assert_eq!(m["coupons"][1]["kind"], "AMOUNT");
    assert_eq!(
        m["taxes"],
        json!([
            { "taxRateId": vat, "code": "VAT19", "name": "VAT", "percentage": "19", "source": "DEFAULT", "amount": "7.12" },
            { "taxRateId": city, "code": "CITY", "name": "City tax", "percentage": "2.5", "source": "DEFAULT", "amount": "0.94" },
        ])
    );
    // Changing the default later changes nothing stored.
    ok(&app, &key, SET_DEFAULT, json!({ "i": { "taxRateIds": [] } })).await;
    let stored = ok(
        &app,
        &key,
        "query($id: ID!) { invoice(id: $id) { manifestHash tax { amount } } }",
        json!({ "id": invoice["id"] }),
    )
    .await;
    assert_eq!(stored["invoice"]["tax"]["amount"], "8.06");

    // The ledger books revenue net of coupons and the tax payable apart, and balances.
    let r = ok(
        &app,
        &key,
        "query { reconciliation { clean breaks { check subject } } }",
        json!({}),
    )
    .await;
    assert_eq!(r["reconciliation"]["clean"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn once_repeating_and_forever_use_their_periods_only_on_invoices_with_something_to_discount() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Durations").await;
    customer(&app, &key, "acme", "USD").await;
    // In arrears: the invoice at the start has nothing to discount and uses no period.
    let plan = flat_plan(&app, &key, "arrears", "USD", "100", "ARREARS").await;
    let sub = subscribe(&app, &key, "acme", &plan).await;
    let mut redemptions = Vec::new();
    for (code, amount, duration, periods) in [
        ("ONCE10", "10", "ONCE", None),
        ("REP5", "5", "REPEATING", Some(2)),
        ("ALWAYS1", "1", "FOREVER", None),
    ] {
        let id = coupon(
            &app,
            &key,
            json!({ "code": code, "name": code, "discount": { "amount": amount }, "currency": "USD",
                "duration": duration, "periods": periods }),
        )
        .await;
        redemptions.push(apply(&app, &key, &sub, &id, &format!("apply-{code}")).await["redemption"]["id"].clone());
    }

    // Boundaries January 1 (nothing), February 1, March 1 and April 1 (January's to March's fees).
    let invoices = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "now": "2025-04-15T00:00:00Z" }),
    )
    .await;
    assert_eq!(invoices.len(), 4);
    assert_eq!(amounts(&invoices[0]), pairs(&[]));
    assert_eq!(manifest(&invoices[0]).get("coupons"), None);
    // The first with something to discount: every coupon.
    assert_eq!(
        amounts(&invoices[1]),
        pairs(&[
            ("FIXED_FEE", "100"),
            ("COUPON", "-10"),
            ("COUPON", "-5"),
            ("COUPON", "-1")
        ])
    );
    assert_eq!(invoices[1]["total"]["amount"], "84");
    // ONCE is used up; REPEATING has one period left.
    assert_eq!(
        amounts(&invoices[2]),
        pairs(&[("FIXED_FEE", "100"), ("COUPON", "-5"), ("COUPON", "-1")])
    );
    assert_eq!(invoices[2]["total"]["amount"], "94");
    // Only FOREVER is left.
    assert_eq!(amounts(&invoices[3]), pairs(&[("FIXED_FEE", "100"), ("COUPON", "-1")]));
    assert_eq!(invoices[3]["total"]["amount"], "99");
    let periods: Vec<(Value, Value)> = manifest(&invoices[2])["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["code"].clone(), c["period"].clone()))
        .collect();
    assert_eq!(periods, [(json!("REP5"), json!(2)), (json!("ALWAYS1"), Value::Null)]);

    // What each redemption used, counted from the final invoices.
    for (id, periods, used) in [
        (&redemptions[0], json!(1), 1),
        (&redemptions[1], json!(2), 2),
        (&redemptions[2], Value::Null, 3),
    ] {
        let d = ok(
            &app,
            &key,
            "query($id: ID!) { node(id: $id) { ... on CouponRedemption { periods periodsUsed } } }",
            json!({ "id": id }),
        )
        .await;
        assert_eq!(d["node"], json!({ "periods": periods, "periodsUsed": used }), "{id}");
    }
    // Running again bills nothing and uses nothing.
    assert_eq!(
        run(
            &app,
            &key,
            json!({ "subscriptionId": sub, "now": "2025-04-15T00:00:00Z" })
        )
        .await,
        Vec::<Value>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drafts_count_too_so_a_once_coupon_is_not_repeated_on_the_next_draft() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Drafts").await;
    customer(&app, &key, "acme", "USD").await;
    let plan = flat_plan(&app, &key, "flat", "USD", "20", "ADVANCE").await;
    let sub = subscribe(&app, &key, "acme", &plan).await;
    let half = coupon(
        &app,
        &key,
        json!({ "code": "HALF", "name": "Half", "discount": { "percentage": "50" }, "duration": "ONCE" }),
    )
    .await;
    apply(&app, &key, &sub, &half, "apply-half").await;
    // Three drafts (January 1, February 1, March 1), none finalized: only the first is discounted.
    let drafts = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "now": "2025-03-15T00:00:00Z", "finalize": false }),
    )
    .await;
    let totals: Vec<&Value> = drafts.iter().map(|i| &i["total"]["amount"]).collect();
    assert_eq!(totals, [&json!("10"), &json!("20"), &json!("20")]);

    // Computing a draft again counts only the invoices before it: the same coupons, byte for byte.
    for draft in &drafts {
        let again = ok(
            &app,
            &key,
            "mutation($id: ID!) { recomputeInvoice(input: { invoiceId: $id }) { identical } }",
            json!({ "id": draft["id"] }),
        )
        .await;
        assert_eq!(again["recomputeInvoice"]["identical"], true, "{}", draft["boundary"]);
    }
    // Finalizing them in order keeps the one discount where it was.
    for (draft, total) in drafts.iter().zip(["10", "20", "20"]) {
        let done = ok(
            &app,
            &key,
            "mutation($id: ID!) { finalizeInvoice(input: { invoiceId: $id }) { invoice { status total { amount } } } }",
            json!({ "id": draft["id"] }),
        )
        .await;
        assert_eq!(
            done["finalizeInvoice"]["invoice"],
            json!({ "status": "FINALIZED", "total": { "amount": total } })
        );
    }
    let r = ok(&app, &key, "query { reconciliation { clean } }", json!({})).await;
    assert_eq!(r["reconciliation"]["clean"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customers_own_tax_rates_replace_the_project_default() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Taxes").await;
    let plan = flat_plan(&app, &key, "flat", "USD", "100", "ADVANCE").await;
    let vat = tax_rate(&app, &key, "VAT20", "VAT", "20").await;
    let reduced = tax_rate(&app, &key, "RED7", "Reduced", "7").await;
    let city = tax_rate(&app, &key, "CITY1", "City", "1.25").await;
    let exempt = tax_rate(&app, &key, "EXEMPT", "Reverse charge", "0").await;
    ok(&app, &key, SET_DEFAULT, json!({ "i": { "taxRateIds": [vat] } })).await;
    let mut subs = Vec::new();
    for c in ["acme", "beta", "gamma", "delta"] {
        let id = customer(&app, &key, c, "USD").await;
        subs.push((c, id, subscribe(&app, &key, c, &plan).await));
    }
    let own = ok(
        &app,
        &key,
        SET_CUSTOMER,
        json!({ "i": { "customerId": subs[1].1, "taxRateIds": [reduced, city] } }),
    )
    .await;
    assert_eq!(
        own["setCustomerTaxRates"],
        json!({ "customer": { "externalId": "beta" }, "taxRates": [{ "code": "RED7" }, { "code": "CITY1" }] })
    );
    ok(
        &app,
        &key,
        SET_CUSTOMER,
        json!({ "i": { "customerId": subs[2].1, "taxRateIds": [exempt] } }),
    )
    .await;
    // delta had its own rates and went back to the default with an empty list.
    ok(
        &app,
        &key,
        SET_CUSTOMER,
        json!({ "i": { "customerId": subs[3].1, "taxRateIds": [exempt] } }),
    )
    .await;
    let back = ok(
        &app,
        &key,
        SET_CUSTOMER,
        json!({ "i": { "customerId": subs[3].1, "taxRateIds": [] } }),
    )
    .await;
    assert_eq!(back["setCustomerTaxRates"]["taxRates"], json!([]));

    let mut billed = Vec::new();
    for (_, _, sub) in &subs {
        let invoices = run(
            &app,
            &key,
            json!({ "subscriptionId": sub, "maxInvoices": 1, "now": "2025-01-15T00:00:00Z" }),
        )
        .await;
        billed.push(invoices[0].clone());
    }
    // acme: the default, 20 % of 100.
    assert_eq!(amounts(&billed[0]), pairs(&[("FIXED_FEE", "100"), ("TAX", "20")]));
    assert_eq!(manifest(&billed[0])["taxes"][0]["source"], "DEFAULT");
    // beta: its own, 7 % and 1.25 %, not the default.
    assert_eq!(
        amounts(&billed[1]),
        pairs(&[("FIXED_FEE", "100"), ("TAX", "7"), ("TAX", "1.25")])
    );
    assert_eq!(billed[1]["total"]["amount"], "108.25");
    assert_eq!(manifest(&billed[1])["taxes"][1]["source"], "CUSTOMER");
    // gamma: exempt. No tax line, and the manifest says which rate made it so.
    assert_eq!(amounts(&billed[2]), pairs(&[("FIXED_FEE", "100")]));
    let gamma = manifest(&billed[2]);
    assert_eq!(gamma["taxes"][0]["code"], "EXEMPT");
    assert_eq!(gamma["taxes"][0]["amount"], "0");
    // delta: the default again.
    assert_eq!(amounts(&billed[3]), pairs(&[("FIXED_FEE", "100"), ("TAX", "20")]));
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_and_applications_replay_and_conflict() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Replays").await;
    customer(&app, &key, "acme", "USD").await;
    let plan = flat_plan(&app, &key, "flat", "USD", "10", "ADVANCE").await;
    let sub = subscribe(&app, &key, "acme", &plan).await;
    let definition = json!({ "code": "SPRING", "name": "Spring", "discount": { "percentage": "12.5" }, "duration": "REPEATING", "periods": 3 });

    // createCoupon: the same definition again (written another way) is answered, not repeated.
    let made = ok(&app, &key, CREATE_COUPON, json!({ "i": definition })).await;
    assert_eq!(made["createCoupon"]["created"], true);
    let id = made["createCoupon"]["coupon"]["id"].clone();
    assert!(id.as_str().unwrap().starts_with("cpn_"));
    let mut same = definition.clone();
    same["discount"]["percentage"] = json!("12.50");
    let again = ok(&app, &key, CREATE_COUPON, json!({ "i": same })).await;
    assert_eq!(again["createCoupon"]["created"], false);
    assert_eq!(again["createCoupon"]["coupon"]["id"], id);
    let mut other = definition.clone();
    other["periods"] = json!(4);
    let r = gql(&app, &key, CREATE_COUPON, json!({ "i": other })).await;
    assert_eq!(r.error_code(), "COUPON_EXISTS", "{}", r.body);
    assert_eq!(count_rows(&app, "coupons", Some(&project)).await, 1);

    // createTaxRate likewise.
    let tax = json!({ "code": "VAT", "name": "VAT", "percentage": "19" });
    let made = ok(&app, &key, CREATE_TAX, json!({ "i": tax })).await;
    let again = ok(&app, &key, CREATE_TAX, json!({ "i": tax })).await;
    assert_eq!(
        (&made["createTaxRate"]["created"], &again["createTaxRate"]["created"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(
        again["createTaxRate"]["taxRate"]["id"],
        made["createTaxRate"]["taxRate"]["id"]
    );
    let r = gql(
        &app,
        &key,
        CREATE_TAX,
        json!({ "i": { "code": "VAT", "name": "VAT", "percentage": "20" } }),
    )
    .await;
    assert_eq!(r.error_code(), "TAX_RATE_EXISTS", "{}", r.body);
    assert_eq!(count_rows(&app, "tax_rates", Some(&project)).await, 1);

    // applyCoupon: by idempotency key.
    let first = apply(&app, &key, &sub, id.as_str().unwrap(), "k1").await;
    assert_eq!(first["replayed"], false);
    assert_eq!(first["redemption"]["periods"], 3);
    assert_eq!(first["redemption"]["periodsUsed"], 0);
    assert_eq!(first["redemption"]["coupon"]["code"], "SPRING");
    let replay = apply(&app, &key, &sub, id.as_str().unwrap(), "k1").await;
    assert_eq!(replay["replayed"], true);
    assert_eq!(replay["redemption"]["id"], first["redemption"]["id"]);
    let other_coupon = coupon(
        &app,
        &key,
        json!({ "code": "OTHER", "name": "Other", "discount": { "percentage": "1" }, "duration": "ONCE" }),
    )
    .await;
    let r = gql(
        &app,
        &key,
        APPLY,
        json!({ "i": { "subscriptionId": sub, "couponId": other_coupon, "idempotencyKey": "k1" } }),
    )
    .await;
    assert_eq!(r.error_code(), "IDEMPOTENCY_CONFLICT", "{}", r.body);
    // The same coupon under another key would discount twice: refused.
    let r = gql(
        &app,
        &key,
        APPLY,
        json!({ "i": { "subscriptionId": sub, "couponId": id, "idempotencyKey": "k2" } }),
    )
    .await;
    assert_eq!(r.error_code(), "COUPON_APPLIED", "{}", r.body);
    assert_eq!(count_rows(&app, "coupon_redemptions", Some(&project)).await, 1);

    // Reads: a page at a time by code, one by id, a node; another project sees none of it.
    let page = ok(
        &app,
        &key,
        "{ coupons(first: 1) { nodes { code } pageInfo { hasNextPage endCursor } } }",
        json!({}),
    )
    .await;
    assert_eq!(page["coupons"]["nodes"], json!([{ "code": "OTHER" }]));
    assert_eq!(page["coupons"]["pageInfo"]["hasNextPage"], true);
    let next = ok(
        &app,
        &key,
        "query($a: String) { coupons(first: 1, after: $a) { nodes { code } pageInfo { hasNextPage } } }",
        json!({ "a": page["coupons"]["pageInfo"]["endCursor"] }),
    )
    .await;
    assert_eq!(next["coupons"]["nodes"], json!([{ "code": "SPRING" }]));
    assert_eq!(next["coupons"]["pageInfo"]["hasNextPage"], false);
    let found = ok(
        &app,
        &key,
        "query($id: ID!) { coupon(id: $id) { code percentage periods } node(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(
        found["coupon"],
        json!({ "code": "SPRING", "percentage": "12.5", "periods": 3 })
    );
    let rates = ok(
        &app,
        &key,
        "{ taxRates { nodes { code percentage defaultPosition } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        rates["taxRates"]["nodes"],
        json!([{ "code": "VAT", "percentage": "19", "defaultPosition": null }])
    );
    let (_, stranger) = project_with_key(&app, "Stranger").await;
    let hidden = ok(
        &app,
        &stranger,
        "query($id: ID!) { coupon(id: $id) { id } node(id: $id) { id } coupons { nodes { id } } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(
        hidden,
        json!({ "coupon": null, "node": null, "coupons": { "nodes": [] } })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_coupon_and_tax_input_is_refused_by_field_with_nothing_written() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Bad").await;
    let (_, other_key) = project_with_key(&app, "Other").await;
    let acme = customer(&app, &key, "acme", "USD").await;
    let plan = flat_plan(&app, &key, "flat", "USD", "10", "ADVANCE").await;
    let sub = subscribe(&app, &key, "acme", &plan).await;
    let euro = coupon(
        &app,
        &key,
        json!({ "code": "EURO", "name": "Euro", "discount": { "amount": "5" }, "currency": "EUR", "duration": "ONCE" }),
    )
    .await;
    let pct = coupon(
        &app,
        &key,
        json!({ "code": "PCT", "name": "Pct", "discount": { "percentage": "5" }, "duration": "ONCE" }),
    )
    .await;
    let vat = tax_rate(&app, &key, "VAT", "VAT", "19").await;
    // The other project's coupon, subscription, customer and tax rate.
    customer(&app, &other_key, "theirs", "USD").await;
    let their_plan = flat_plan(&app, &other_key, "flat", "USD", "10", "ADVANCE").await;
    let their_sub = subscribe(&app, &other_key, "theirs", &their_plan).await;
    let their_coupon = coupon(
        &app,
        &other_key,
        json!({ "code": "THEIRS", "name": "Theirs", "discount": { "percentage": "5" }, "duration": "ONCE" }),
    )
    .await;
    let their_rate = tax_rate(&app, &other_key, "THEIRS", "Theirs", "5").await;

    let base = json!({ "code": "NEW", "name": "New", "discount": { "percentage": "10" }, "duration": "ONCE" });
    let with = |changes: Value| {
        let mut input = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            input[k] = v.clone();
        }
        input
    };
    let mut cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            CREATE_COUPON,
            with(json!({ "discount": { "percentage": "0" } })),
            "BAD_USER_INPUT",
            "discount.percentage",
        ),
        (
            CREATE_COUPON,
            with(json!({ "discount": { "percentage": "100.5" } })),
            "BAD_USER_INPUT",
            "discount.percentage",
        ),
        (
            CREATE_COUPON,
            with(json!({ "discount": { "percentage": "-10" } })),
            "BAD_USER_INPUT",
            "discount.percentage",
        ),
        (
            CREATE_COUPON,
            with(json!({ "discount": { "percentage": "12.34567" } })),
            "BAD_USER_INPUT",
            "discount.percentage",
        ),
        (
            CREATE_COUPON,
            with(json!({ "discount": { "amount": "-5" }, "currency": "USD" })),
            "BAD_USER_INPUT",
            "discount.amount",
        ),
        (
            CREATE_COUPON,
            with(json!({ "discount": { "amount": "0" }, "currency": "USD" })),
            "BAD_USER_INPUT",
            "discount.amount",
        ),
        (
            CREATE_COUPON,
            with(json!({ "discount": { "amount": "5.001" }, "currency": "USD" })),
            "BAD_USER_INPUT",
            "discount.amount",
        ),
        (
            CREATE_COUPON,
            with(json!({ "discount": { "amount": "5" } })),
            "BAD_USER_INPUT",
            "currency",
        ),
        (
            CREATE_COUPON,
            with(json!({ "discount": { "amount": "5" }, "currency": "NOPE" })),
            "BAD_USER_INPUT",
            "currency",
        ),
        (
            CREATE_COUPON,
            with(json!({ "currency": "USD" })),
            "BAD_USER_INPUT",
            "currency",
        ),
        (
            CREATE_COUPON,
            with(json!({ "duration": "REPEATING" })),
            "BAD_USER_INPUT",
            "periods",
        ),
        (
            CREATE_COUPON,
            with(json!({ "duration": "REPEATING", "periods": 0 })),
            "BAD_USER_INPUT",
            "periods",
        ),
        (
            CREATE_COUPON,
            with(json!({ "duration": "ONCE", "periods": 2 })),
            "BAD_USER_INPUT",
            "periods",
        ),
        (
            CREATE_COUPON,
            with(json!({ "code": "no spaces" })),
            "BAD_USER_INPUT",
            "code",
        ),
        (CREATE_COUPON, with(json!({ "name": "" })), "BAD_USER_INPUT", "name"),
        (
            CREATE_TAX,
            json!({ "code": "T", "name": "T", "percentage": "-1" }),
            "BAD_USER_INPUT",
            "percentage",
        ),
        (
            CREATE_TAX,
            json!({ "code": "T", "name": "T", "percentage": "100.01" }),
            "BAD_USER_INPUT",
            "percentage",
        ),
        (
            CREATE_TAX,
            json!({ "code": "T", "name": "T", "percentage": "7.00001" }),
            "BAD_USER_INPUT",
            "percentage",
        ),
        (
            CREATE_TAX,
            json!({ "code": "", "name": "T", "percentage": "7" }),
            "BAD_USER_INPUT",
            "code",
        ),
        // An amount coupon in euros on a subscription billed in dollars.
        (
            APPLY,
            json!({ "subscriptionId": sub, "couponId": euro, "idempotencyKey": "a1" }),
            "BAD_USER_INPUT",
            "couponId",
        ),
        (
            APPLY,
            json!({ "subscriptionId": sub, "couponId": pct, "idempotencyKey": "" }),
            "BAD_USER_INPUT",
            "idempotencyKey",
        ),
        (
            SET_DEFAULT,
            json!({ "taxRateIds": [vat, vat] }),
            "BAD_USER_INPUT",
            "taxRateIds.1",
        ),
        (
            SET_DEFAULT,
            json!({ "taxRateIds": vec![vat.clone(); 11] }),
            "BAD_USER_INPUT",
            "taxRateIds",
        ),
        (
            SET_CUSTOMER,
            json!({ "customerId": acme, "taxRateIds": [vat, vat] }),
            "BAD_USER_INPUT",
            "taxRateIds.1",
        ),
    ];
    // Ids that are unknown, or another project's: NOT_FOUND, the same answer for both.
    let not_found: Vec<(&str, Value, &str, &str)> = vec![
        (
            APPLY,
            json!({ "subscriptionId": sub, "couponId": "cpn_01JX0000000000000000000000", "idempotencyKey": "a2" }),
            "NOT_FOUND",
            "coupon",
        ),
        (
            APPLY,
            json!({ "subscriptionId": sub, "couponId": their_coupon, "idempotencyKey": "a3" }),
            "NOT_FOUND",
            "coupon",
        ),
        (
            APPLY,
            json!({ "subscriptionId": their_sub, "couponId": pct, "idempotencyKey": "a4" }),
            "NOT_FOUND",
            "subscription",
        ),
        (
            SET_DEFAULT,
            json!({ "taxRateIds": [vat, their_rate] }),
            "NOT_FOUND",
            "tax rate",
        ),
        (
            SET_CUSTOMER,
            json!({ "customerId": acme, "taxRateIds": [their_rate] }),
            "NOT_FOUND",
            "tax rate",
        ),
        (
            SET_CUSTOMER,
            json!({ "customerId": "cus_01JX0000000000000000000000", "taxRateIds": [vat] }),
            "NOT_FOUND",
            "customer",
        ),
    ];
    cases.extend(not_found);
    let tables = ["coupons", "coupon_redemptions", "tax_rates", "customer_tax_rates"];
    for (query, input, code, field) in cases {
        let mut before = Vec::new();
        for t in tables {
            before.push(count_rows(&app, t, Some(&project)).await);
        }
        let defaults = ok(&app, &key, "{ taxRates { nodes { code defaultPosition } } }", json!({})).await;
        let r = gql(&app, &key, query, json!({ "i": input })).await;
        assert_eq!(r.error_code(), code, "{input}: {}", r.body);
        if code == "BAD_USER_INPUT" {
            assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{input}: {}", r.body);
        } else {
            let message = r.body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(field), "{input}: {}", r.body);
        }
        let mut after = Vec::new();
        for t in tables {
            after.push(count_rows(&app, t, Some(&project)).await);
        }
        assert_eq!(before, after, "{input}: rows were written");
        let defaults_after = ok(&app, &key, "{ taxRates { nodes { code defaultPosition } } }", json!({})).await;
        assert_eq!(defaults, defaults_after, "{input}: the default list moved");
    }
}
