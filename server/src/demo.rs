//! The demo project `neruba serve --demo` opens with: a few customers, billable metrics, a month
//! of usage (October 2026) and wallets with top-ups, grants and charges, all written through the
//! same domain services as the API. Everything is derived from fixed inputs (a fixed-seed
//! generator, fixed idempotency keys), so seeding again on the next start stores nothing new and
//! does not fail. Only the API key `serve` prints is new each start.

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde_json::json;

use crate::{
    billing::{plans, runs, subscriptions},
    config::IngestLimits,
    credit_units,
    customers::{self, CustomerInput, KnownCustomers},
    db::{self, Pool},
    error::{Error, Result},
    ledger::{
        WalletPolicy,
        service::{self, MoneyRequest, OpKind, Operation, WalletInput},
    },
    projects,
    store::{self, projects::ProjectRow},
    usage::{
        event::RawEvent,
        ingest::{self, Outcome},
        metrics::{self, Aggregation, MetricInput},
    },
};

pub const DEMO_PROJECT: &str = "Demo project";
/// Who the demo's money operations name as their actor.
const ACTOR: &str = "demo";

/// The demo's customers: (external id, name, currency of their wallet, daily API calls at most).
const CUSTOMERS: [(&str, &str, &str, u64); 3] = [
    ("acme", "Acme Corp", "USD", 12),
    ("globex", "Globex", "EUR", 6),
    ("initech", "Initech", "USD", 3),
];

/// The month of usage: October 2026.
pub fn usage_month() -> (NaiveDateTime, NaiveDateTime) {
    let day = |m, d| {
        NaiveDate::from_ymd_opt(2026, m, d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("a valid date")
    };
    (day(10, 1), day(11, 1))
}

/// What seeding did: how much it stored this time (all zero on a second start).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seeded {
    pub events_stored: usize,
    pub events_replayed: usize,
    pub money_posted: usize,
    pub money_replayed: usize,
    /// Invoices of the first start's billing run (acme's subscription).
    pub invoices: usize,
}

/// SplitMix64: a few lines, and the same numbers on every machine and every run.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The month's usage events, the same on every call.
pub fn usage_events() -> Vec<RawEvent> {
    const ENDPOINTS: [&str; 3] = ["search", "export", "login"];
    const REGIONS: [&str; 2] = ["eu", "us"];
    let mut numbers = Numbers(0x6E65_7275_6261);
    let (from, to) = usage_month();
    let days = (to - from).num_days();
    let mut events = Vec::new();
    for (customer, _, _, max_calls) in CUSTOMERS {
        let mut storage_centi_gb = 100 + numbers.below(400);
        for day in 0..days {
            let midnight = from + Duration::days(day);
            let at = |seconds: u64| {
                (midnight + Duration::seconds(seconds as i64))
                    .and_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            let date = midnight.format("%Y-%m-%d");
            let region = REGIONS[numbers.below(2) as usize];
            for call in 0..1 + numbers.below(max_calls) {
                events.push(RawEvent {
                    idempotency_key: Some(format!("demo-{customer}-{date}-api-{call}")),
                    customer_external_id: Some(customer.into()),
                    metric: Some("api_calls".into()),
                    quantity: None,
                    timestamp: Some(at(numbers.below(86_400))),
                    properties: Some(json!({
                        "endpoint": ENDPOINTS[numbers.below(3) as usize],
                        "region": region,
                    })),
                });
            }
            events.push(RawEvent {
                idempotency_key: Some(format!("demo-{customer}-{date}-compute")),
                customer_external_id: Some(customer.into()),
                metric: Some("compute_seconds".into()),
                quantity: Some(format!("{}.{:02}", 30 + numbers.below(600), numbers.below(100))),
                timestamp: Some(at(82_800)),
                properties: Some(json!({ "region": region })),
            });
            // Storage grows most days and sometimes shrinks: MAX is the month's peak.
            storage_centi_gb = (storage_centi_gb + numbers.below(40)).saturating_sub(numbers.below(25));
            events.push(RawEvent {
                idempotency_key: Some(format!("demo-{customer}-{date}-storage")),
                customer_external_id: Some(customer.into()),
                metric: Some("storage_gb".into()),
                quantity: Some(format!("{}.{:02}", storage_centi_gb / 100, storage_centi_gb % 100)),
                timestamp: Some(at(86_399)),
                properties: None,
            });
        }
    }
    events
}

/// Finds or creates the demo project and fills it. Safe to run on every start.
pub async fn seed(pool: &Pool, known: &KnownCustomers, limits: &IngestLimits) -> Result<(ProjectRow, Seeded)> {
    let mut conn = db::get(pool).await?;
    let existing = store::projects::list(&mut conn, None, 1000)
        .await?
        .into_iter()
        .find(|p| p.name == DEMO_PROJECT);
    let project = match existing {
        Some(p) => p,
        None => projects::create_project(&mut conn, DEMO_PROJECT).await?,
    };
    let p = project.id.as_str();
    let mut seeded = Seeded::default();

    for (external_id, name, currency, _) in CUSTOMERS {
        let input = CustomerInput {
            external_id: external_id.into(),
            name: Some(name.into()),
            email: Some(format!("billing@{external_id}.test")),
            currency: Some(currency.into()),
            metadata: Some(json!({ "plan": if external_id == "acme" { "pro" } else { "starter" } })),
        };
        customers::create_customer(&mut conn, p, &input).await?;
    }

    for (code, name, aggregation, group_by) in [
        ("api_calls", "API calls", Aggregation::Count, Some("endpoint")),
        ("compute_seconds", "Compute seconds", Aggregation::Sum, None),
        ("storage_gb", "Storage (GB, monthly peak)", Aggregation::Max, None),
    ] {
        let input = MetricInput {
            code: code.into(),
            name: name.into(),
            aggregation: Some(aggregation),
            property: None,
            filters: Vec::new(),
            group_by: group_by.map(str::to_string),
        };
        metrics::create_metric(&mut conn, p, &input).await?;
    }

    let received_at = store::now();
    for chunk in usage_events().chunks(500) {
        let items = chunk.iter().map(|e| e.validate(limits, received_at)).collect();
        for outcome in ingest::ingest(pool, known, p, items, received_at).await? {
            match outcome {
                Outcome::Accepted(_) => seeded.events_stored += 1,
                Outcome::Replayed(_) => seeded.events_replayed += 1,
                Outcome::Rejected(e) => return Err(e),
            }
        }
    }

    // The credit unit Globex's wallet counts in: whole credits, each worth 0.01 EUR.
    credit_units::create(
        &mut conn,
        p,
        &credit_units::CreditUnitInput {
            code: "CREDITS".into(),
            name: "Credits".into(),
            decimals: 0,
            rate_to_money: Some("0.01".into()),
            money_currency: Some("EUR".into()),
        },
    )
    .await?;

    // Wallets: Acme prepays in USD and may go 50 below zero; Globex holds credits worth 0.01 EUR
    // each; Initech prepays in USD and is refused past zero.
    let wallets = [
        (
            "acme",
            "USD",
            None,
            Some(WalletPolicy::AllowUntilLimit),
            Some("50"),
            Some("25"),
        ),
        ("globex", "CREDITS", Some(("0.01", "EUR")), None, None, Some("500")),
        ("initech", "USD", None, None, None, None),
    ];
    for (customer, currency, rate, policy, limit, threshold) in wallets {
        let input = WalletInput {
            customer_external_id: customer.into(),
            currency: currency.into(),
            rate_to_money: rate.map(|(r, _)| r.to_string()),
            money_currency: rate.map(|(_, c)| c.to_string()),
            policy,
            credit_limit: limit.map(str::to_string),
            low_balance_threshold: threshold.map(str::to_string),
        };
        service::create_wallet(&mut conn, p, &input).await?;
    }

    let expiry = NaiveDate::from_ymd_opt(2030, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| Error::Internal("demo expiry".into()))?;
    let money = [
        (
            OpKind::TopUp,
            "acme",
            "USD",
            "200",
            "demo-acme-topup-1",
            "Card payment",
            None,
        ),
        (
            OpKind::Grant,
            "acme",
            "USD",
            "25",
            "demo-acme-welcome",
            "Welcome credit",
            Some(expiry),
        ),
        (
            OpKind::Charge,
            "acme",
            "USD",
            "42.50",
            "demo-acme-charge-oct",
            "October API usage",
            None,
        ),
        (
            OpKind::Charge,
            "acme",
            "USD",
            "12.75",
            "demo-acme-charge-gpu",
            "GPU minutes",
            None,
        ),
        (
            OpKind::TopUp,
            "globex",
            "CREDITS",
            "5000",
            "demo-globex-topup-1",
            "Credit pack",
            None,
        ),
        (
            OpKind::Grant,
            "globex",
            "CREDITS",
            "1000",
            "demo-globex-promo",
            "Promotion",
            Some(expiry),
        ),
        (
            OpKind::Charge,
            "globex",
            "CREDITS",
            "1830",
            "demo-globex-charge-oct",
            "October exports",
            None,
        ),
        (
            OpKind::TopUp,
            "initech",
            "USD",
            "50",
            "demo-initech-topup-1",
            "Card payment",
            None,
        ),
        (
            OpKind::Charge,
            "initech",
            "USD",
            "8.20",
            "demo-initech-charge-oct",
            "October API usage",
            None,
        ),
    ];
    for (kind, customer, currency, amount, key, description, expires_at) in money {
        let request = MoneyRequest {
            customer_external_id: Some(customer.into()),
            currency: Some(currency.into()),
            amount: amount.into(),
            idempotency_key: key.into(),
            description: Some(description.into()),
            expires_at,
            ..MoneyRequest::default()
        };
        let posted = service::execute(&mut conn, p, &Operation::parse(kind, &request, ACTOR)?).await?;
        if posted.replayed {
            seeded.money_replayed += 1;
        } else {
            seeded.money_posted += 1;
        }
    }

    // Acme's subscription since October 2026, billed to November 2nd (a fixed cutoff, so the
    // demo is the same every day): two invoices for the portal, the first paid from Acme's
    // prepaid credits, the second partly, the rest due.
    let plan_input = plans::PlanInput {
        name: "Pro".into(),
        currency: "USD".into(),
        interval_unit: plans::IntervalUnit::Month,
        interval_count: 1,
        fixed_fee: Some("149".into()),
        fixed_fee_timing: plans::FeeTiming::Advance,
        minimum_commitment: None,
        included_credits: None,
        included_credits_currency: None,
        usage_threshold: None,
        trial_days: 0,
        charges: Vec::new(),
    };
    let (version, _) = plans::create(&mut conn, p, "pro", &plan_input).await?;
    let (_, created) = subscriptions::create(
        &mut conn,
        p,
        &subscriptions::CreateInput {
            customer_id: None,
            customer_external_id: Some("acme".into()),
            plan_id: version.row.plan_id.clone(),
            plan_version: None,
            starts_at: NaiveDate::from_ymd_opt(2026, 10, 1).and_then(|d| d.and_hms_opt(0, 0, 0)),
            billing_anchor: subscriptions::BillingAnchor::Calendar,
            idempotency_key: "demo-acme-pro".into(),
        },
        ACTOR,
    )
    .await?;
    if created {
        let now = store::now();
        let report = runs::run(
            &mut conn,
            &runs::Scope {
                project_id: Some(p.to_string()),
                subscription_id: None,
            },
            runs::Clock::new(
                now,
                NaiveDate::from_ymd_opt(2026, 11, 2).and_then(|d| d.and_hms_opt(0, 0, 0)),
            )?,
            true,
            100,
        )
        .await?;
        seeded.invoices = report.invoices.len();
    }
    Ok((project, seeded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_is_the_same_every_time_and_a_few_hundred_events() {
        let (a, b) = (usage_events(), usage_events());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!((300..=700).contains(&a.len()), "{}", a.len());
        let keys: std::collections::HashSet<_> = a.iter().map(|e| e.idempotency_key.clone()).collect();
        assert_eq!(keys.len(), a.len(), "every event has its own key");
        let limits = IngestLimits::default();
        let now = store::now();
        for e in &a {
            e.validate(&limits, now).expect("every demo event is valid");
        }
    }
}
