//! Backtests: a proposed plan version rated against a past period's real usage for every
//! customer on the plan, beside what their own versions bill for it. Usage is aggregated in SQL,
//! one query per metric and 500 customers; nothing is written.
//!
//! The period `[from, to)` is rated as one billing period of each version: its fixed fee (whole,
//! not prorated), its usage charges with their free units and minimums, and its minimum
//! commitment. Coupons, taxes and prepaid credits are left out: they do not depend on the price.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use neruba_pricing::{
    PriceSpec, Usage,
    invoice::{self, ChargeUsage, Commitment, FixedFee, InvoiceInput},
    proration::Period,
};
use rust_decimal::Decimal;

use crate::{
    billing::plans::{self, PlanVersion},
    error::{Error, Result},
    store::{
        Conn, billable_metrics, customers as customer_store,
        subscriptions::{self as subscription_store, SubscriptionRow},
    },
    usage::metrics::{self, BilledUsage, MetricDef},
};

/// The most subscriptions one backtest rates.
pub const MAX_SUBSCRIPTIONS: usize = 100_000;

/// One customer's period under its own version and under the proposed one.
#[derive(Debug, Clone)]
pub struct CustomerResult {
    pub subscription: SubscriptionRow,
    pub customer_external_id: String,
    pub current: Decimal,
    pub proposed: Decimal,
}

impl CustomerResult {
    pub fn difference(&self) -> Decimal {
        self.proposed - self.current
    }
}

#[derive(Debug, Clone)]
pub struct Backtest {
    pub proposed: PlanVersion,
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    pub current_total: Decimal,
    pub proposed_total: Decimal,
    /// In subscription id order.
    pub customers: Vec<CustomerResult>,
}

/// Rates `version` over the period for one customer's usage.
fn rate(
    version: &PlanVersion,
    period: Period,
    usage: &HashMap<String, Decimal>,
    ratings: &HashMap<String, neruba_pricing::Rating>,
) -> Result<Decimal> {
    let fee = FixedFee {
        amount: version.row.fixed_fee,
        full: period,
        billed: period,
        trial_until: None,
        counts_toward_commitment: true,
    };
    let charges = version
        .charges
        .iter()
        .map(|c| ChargeUsage {
            charge: &c.charge,
            usage: match ratings.get(&c.id) {
                Some(r) => Usage::Rated(r),
                None => Usage::Quantity(usage.get(&c.metric_id).copied().unwrap_or_default()),
            },
        })
        .collect();
    let computed = invoice::compute(&InvoiceInput {
        decimals: version.currency.decimals(),
        fixed_fees: if version.row.fixed_fee.is_zero() {
            Vec::new()
        } else {
            vec![fee]
        },
        fee_adjustments: Vec::new(),
        charges,
        minimum_commitment: version.row.minimum_commitment.map(|amount| Commitment {
            amount,
            billed_before: Decimal::ZERO,
        }),
        coupons: Vec::new(),
        taxes: Vec::new(),
        credits_available: Decimal::ZERO,
        billed_earlier: Decimal::ZERO,
        closes_period: true,
    })
    .map_err(|e| Error::invalid("planVersionId", format!("the usage cannot be rated: {e}")))?;
    Ok(computed.total)
}

/// Rates the proposed version against `[from, to)` for every subscription to its plan that ran
/// during part of it, with events received by `now`.
pub async fn backtest(
    conn: &mut Conn,
    project_id: &str,
    proposed_version_id: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<Backtest> {
    if to <= from {
        return Err(Error::invalid("to", "must be after from"));
    }
    if to > now {
        return Err(Error::invalid(
            "to",
            "must not be in the future: a backtest rates usage that happened",
        ));
    }
    let period = Period::new(
        from.date(),
        to.date().max(from.date().succ_opt().unwrap_or(from.date())),
    )
    .map_err(|_| Error::invalid("to", "the period is longer than Neruba rates"))?;
    let proposed = plans::load_version(conn, project_id, proposed_version_id)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::invalid("planVersionId", "no such plan version"),
            other => other,
        })?;
    let subs = subscription_store::on_plan_during(conn, project_id, &proposed.row.plan_id, from, to).await?;
    if subs.len() > MAX_SUBSCRIPTIONS {
        return Err(Error::invalid(
            "planVersionId",
            format!("the plan has more than {MAX_SUBSCRIPTIONS} subscriptions in the period"),
        ));
    }
    // Each version the subscriptions are on, and the proposed one.
    let mut versions: HashMap<String, PlanVersion> = HashMap::new();
    versions.insert(proposed.row.id.clone(), proposed.clone());
    for s in &subs {
        if !versions.contains_key(&s.plan_version_id) {
            let v = plans::load_version(conn, project_id, &s.plan_version_id).await?;
            if v.row.currency != proposed.row.currency {
                return Err(Error::invalid(
                    "planVersionId",
                    format!(
                        "bills in {}, version {} of the plan in {}",
                        proposed.row.currency, v.row.version, v.row.currency
                    ),
                ));
            }
            versions.insert(v.row.id.clone(), v);
        }
    }
    // The customers' external ids, and the metrics any version bills.
    let customer_ids: Vec<&str> = subs.iter().map(|s| s.customer_id.as_str()).collect();
    let mut external: HashMap<String, String> = HashMap::new();
    for chunk in customer_ids.chunks(metrics::MAX_CUSTOMERS_PER_QUERY) {
        for c in customer_store::find_by_ids(conn, project_id, chunk).await? {
            external.insert(c.id, c.external_id);
        }
    }
    let metric_ids: HashSet<&str> = versions
        .values()
        .flat_map(|v| v.charges.iter().map(|c| c.metric_id.as_str()))
        .collect();
    let metric_ids: Vec<&str> = metric_ids.into_iter().collect();
    let defs: HashMap<String, MetricDef> = billable_metrics::find_by_ids(conn, project_id, &metric_ids)
        .await?
        .iter()
        .map(|row| Ok((row.id.clone(), MetricDef::from_row(row)?)))
        .collect::<Result<_>>()?;
    let names: Vec<&str> = external.values().map(String::as_str).collect();
    // usage[metric id][customer external id]
    let mut usage: HashMap<String, HashMap<String, BilledUsage>> = HashMap::new();
    for (id, def) in &defs {
        usage.insert(
            id.clone(),
            metrics::aggregate_for_billing(conn, project_id, def, &names, from, to, now).await?,
        );
    }

    let mut customers = Vec::with_capacity(subs.len());
    let (mut current_total, mut proposed_total) = (Decimal::ZERO, Decimal::ZERO);
    for sub in subs {
        let name = external
            .get(&sub.customer_id)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("subscription {} has no customer", sub.id)))?;
        let quantities: HashMap<String, Decimal> = usage
            .iter()
            .map(|(metric, by_customer)| {
                (
                    metric.clone(),
                    by_customer.get(&name).map_or(Decimal::ZERO, |u| u.value),
                )
            })
            .collect();
        let mut totals = [Decimal::ZERO; 2];
        for (slot, version) in [&versions[&sub.plan_version_id], &proposed].into_iter().enumerate() {
            // Percentage prices rate events one by one: streamed per customer.
            let mut ratings = HashMap::new();
            for c in &version.charges {
                if let PriceSpec::Percentage(terms) = c.charge.price().spec() {
                    let def = &defs[&c.metric_id];
                    ratings.insert(
                        c.id.clone(),
                        super::runs::rate_event_amounts(conn, project_id, def, &name, terms, from, to, now).await?,
                    );
                }
            }
            totals[slot] = rate(version, period, &quantities, &ratings)?;
        }
        current_total += totals[0];
        proposed_total += totals[1];
        customers.push(CustomerResult {
            subscription: sub,
            customer_external_id: name,
            current: totals[0],
            proposed: totals[1],
        });
    }
    Ok(Backtest {
        proposed,
        from,
        to,
        current_total,
        proposed_total,
        customers,
    })
}
