//! Priced spend per period (`Customer.spendSeries`): what a customer's usage costs under its
//! subscriptions' plans, per hour, day or month of a time zone, for charts.
//!
//! A usage price is not additive: tiers, packages, free units and a percentage price's free
//! events depend on everything used earlier in the billing period. So a bucket's spend is a
//! difference: what the period's usage **so far** costs at the bucket's end, minus what it cost
//! at the bucket's start, each rounded to the currency as an invoice line is. The differences
//! telescope: the buckets covering a billing period add up, to the minor unit, to that period's
//! usage lines, and a bucket that spans two periods holds the end of one and the start of the
//! next. A period's price at zero usage (a flat first tier) lands in the first bucket that
//! period reaches.
//!
//! Only usage lines count. Fixed fees, charge minimums, commitments, coupons, taxes and credits
//! belong to a whole period and stay on its invoice. Usage is counted as received now: an
//! invoice counts what had arrived by its cutoff, and a late event is billed by an adjustment.
//!
//! The work is bounded: at most [`MAX_SUBSCRIPTIONS`] subscriptions and [`MAX_PERIODS`] billing
//! periods in the range, one aggregation query per subscription and charge (a percentage charge
//! streams its events instead, as a billing run does: a page per 5,000 events).

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDateTime, NaiveTime};
use neruba_pricing::{PercentageRater, PercentageSpec, PriceSpec, Rating, Usage, rate, round_line};
use rust_decimal::Decimal;

use crate::{
    billing::{
        plans::{self, PlanCharge, PlanVersion},
        runs, subscriptions,
    },
    currency::Currency,
    error::{Error, Result},
    store::{Conn, subscriptions as subscription_store, subscriptions::SubscriptionRow},
    usage::{
        metrics::{self, Aggregation, MetricDef},
        series,
    },
};

/// At most this many subscriptions of the customer overlap the range.
pub const MAX_SUBSCRIPTIONS: usize = 50;
/// At most this many billing periods, over all subscriptions, overlap the range.
pub const MAX_PERIODS: usize = 1000;

/// One currency's spend per bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendSeries {
    pub currency: Currency,
    /// One amount per bucket of the asked bounds, in order.
    pub amounts: Vec<Decimal>,
}

fn midnight(day: chrono::NaiveDate) -> NaiveDateTime {
    day.and_time(NaiveTime::MIN)
}

/// The usage windows (billing periods as billed: boundary to next boundary) of `sub` that
/// overlap `[from, to)` and began before `now`, counted against `budget`.
fn windows(
    sub: &SubscriptionRow,
    version: &PlanVersion,
    from: NaiveDateTime,
    to: NaiveDateTime,
    now: NaiveDateTime,
    budget: &mut usize,
) -> Result<Vec<(NaiveDateTime, NaiveDateTime)>> {
    let mut start = sub.starts_at;
    if from > start
        && let Some(period) = subscriptions::schedule(sub, version)?.period_containing(from.date())
    {
        start = start.max(midnight(period.full.start()));
    }
    let mut out = Vec::new();
    while start < to.min(now) {
        let Some(end) = runs::next_boundary(sub, version, Some(start))? else {
            break;
        };
        if end <= start {
            break;
        }
        if end > from {
            if *budget == 0 {
                return Err(Error::invalid(
                    "to",
                    format!("the range spans more than {MAX_PERIODS} billing periods: shorten it"),
                ));
            }
            *budget -= 1;
            out.push((start, end));
        }
        start = end;
    }
    Ok(out)
}

/// A running aggregate over a window's intervals, as the window's billing aggregate would be.
#[derive(Default)]
struct Running {
    value: Option<Decimal>,
}

impl Running {
    fn add(&mut self, aggregation: Aggregation, segment: Option<Decimal>) -> Result<()> {
        let Some(v) = segment else {
            return Ok(());
        };
        self.value = Some(match (aggregation, self.value) {
            (_, None) => v,
            (Aggregation::Max, Some(so_far)) => so_far.max(v),
            (Aggregation::Latest, Some(_)) => v,
            (Aggregation::Count | Aggregation::Sum | Aggregation::UniqueCount, Some(so_far)) => add(so_far, v)?,
        });
        Ok(())
    }
}

fn unrated(e: impl std::fmt::Display) -> Error {
    Error::invalid("charges", format!("the usage cannot be rated: {e}"))
}

/// `total + amount`, refused past the 28 digits a decimal holds (as an invoice refuses them).
pub fn add(total: Decimal, amount: Decimal) -> Result<Decimal> {
    total
        .checked_add(amount)
        .ok_or_else(|| unrated("the spend passes 28 digits"))
}

/// A percentage charge's running rating over the intervals of its windows.
struct Rated<'a> {
    terms: &'a PercentageSpec,
    rater: PercentageRater<'a>,
    /// What the rating so far was priced at when the current interval began.
    priced: Decimal,
    /// The current interval.
    k: usize,
}

impl<'a> Rated<'a> {
    fn new(terms: &'a PercentageSpec) -> Self {
        Rated {
            terms,
            rater: PercentageRater::new(terms),
            priced: Decimal::ZERO,
            k: 0,
        }
    }

    /// Ends the current interval: what the rater holds so far, rounded, less what was priced at
    /// its start, goes to `spend`; the next interval starts afresh when a window starts there.
    fn close(&mut self, spend: &mut [Decimal], starts: &[usize], decimals: u32) -> Result<()> {
        let rating: Rating = self.rater.clone().finish().map_err(unrated)?;
        let amount = round_line(rating.amount, decimals);
        spend[self.k] = add(spend[self.k], amount - self.priced)?;
        self.priced = amount;
        self.k += 1;
        if starts.binary_search(&self.k).is_ok() {
            self.rater = PercentageRater::new(self.terms);
            self.priced = Decimal::ZERO;
        }
        Ok(())
    }
}

/// The spend of each interval `[edges[k], edges[k + 1])` for one charge of a subscription whose
/// windows start at `starts` (each an index into `edges`; the last edge closes the last window).
#[allow(clippy::too_many_arguments)]
async fn charge_spend(
    conn: &mut Conn,
    project_id: &str,
    customer: &str,
    charge: &PlanCharge,
    def: &MetricDef,
    decimals: u32,
    edges: &[NaiveDateTime],
    starts: &[usize],
    now: NaiveDateTime,
) -> Result<Vec<Decimal>> {
    let mut spend = vec![Decimal::ZERO; edges.len() - 1];
    let window_of = |k: usize| starts.partition_point(|s| *s <= k) - 1;
    if let PriceSpec::Percentage(terms) = charge.charge.price().spec() {
        // One stream of the events over every window (a page per 5,000 events, however many
        // windows), through a rater that starts afresh with each window, pricing what is rated
        // so far at each edge.
        let last = edges.len() - 1;
        let mut rated = Rated::new(terms);
        let mut after = None;
        loop {
            let page =
                metrics::event_amounts_page(conn, project_id, def, customer, edges[0], edges[last], now, after).await?;
            for (at, _, amount) in &page {
                while *at >= edges[rated.k + 1] {
                    rated.close(&mut spend, starts, decimals)?;
                }
                rated.rater.push(*amount).map_err(unrated)?;
            }
            match page.last() {
                Some((at, seq, _)) if page.len() as i64 == metrics::AMOUNTS_PAGE => after = Some((*at, *seq)),
                _ => break,
            }
        }
        while rated.k < last {
            rated.close(&mut spend, starts, decimals)?;
        }
        return Ok(spend);
    }
    let segments: Vec<Option<Decimal>> = if def.aggregation == Aggregation::UniqueCount {
        let window_edges: Vec<NaiveDateTime> = starts.iter().map(|&i| edges[i]).chain(edges.last().copied()).collect();
        series::first_occurrences(conn, project_id, def, customer, edges, &window_edges)
            .await?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        series::segment_values(conn, project_id, def, customer, edges).await?
    };
    let mut running = Running::default();
    let mut priced = Decimal::ZERO;
    for (k, segment) in segments.into_iter().enumerate() {
        if starts[window_of(k)] == k {
            running = Running::default();
            priced = Decimal::ZERO;
        }
        running.add(def.aggregation, segment)?;
        let quantity = running.value.unwrap_or_default();
        let amount = round_line(
            rate(&charge.charge, Usage::Quantity(quantity)).map_err(unrated)?.amount,
            decimals,
        );
        spend[k] = add(spend[k], amount - priced)?;
        priced = amount;
    }
    Ok(spend)
}

/// The customer's spend per bucket of `bounds` (UTC instants, the first `from` and the last
/// `to`), one series per currency its plans bill in over the range, by currency code. Usage
/// up to `now`.
pub async fn series(
    conn: &mut Conn,
    project_id: &str,
    customer_id: &str,
    customer_external_id: &str,
    bounds: &[NaiveDateTime],
    now: NaiveDateTime,
) -> Result<Vec<SpendSeries>> {
    let (Some(&from), Some(&to)) = (bounds.first(), bounds.last()) else {
        return Ok(Vec::new());
    };
    let subs =
        subscription_store::overlapping(conn, project_id, customer_id, from, to, MAX_SUBSCRIPTIONS as i64 + 1).await?;
    if subs.len() > MAX_SUBSCRIPTIONS {
        return Err(Error::invalid(
            "from",
            format!("the range covers more than {MAX_SUBSCRIPTIONS} subscriptions: shorten it"),
        ));
    }
    let mut out: BTreeMap<String, SpendSeries> = BTreeMap::new();
    let mut versions: HashMap<String, (PlanVersion, HashMap<String, MetricDef>)> = HashMap::new();
    let mut budget = MAX_PERIODS;
    for sub in &subs {
        if !versions.contains_key(&sub.plan_version_id) {
            let version = plans::load_version(conn, project_id, &sub.plan_version_id).await?;
            let defs = runs::metric_defs(conn, project_id, &version).await?;
            versions.insert(sub.plan_version_id.clone(), (version, defs));
        }
        let (version, defs) = &versions[&sub.plan_version_id];
        let spans = windows(sub, version, from, to, now, &mut budget)?;
        if spans.is_empty() || version.charges.is_empty() {
            continue;
        }
        // Every window's start, the buckets' edges inside the windows, and where the last
        // window (or the range) ends: consecutive windows share their boundary.
        let end = spans.last().map_or(to, |s| s.1.min(to));
        let mut edges = Vec::new();
        let mut starts = Vec::new();
        for &(ws, we) in &spans {
            starts.push(edges.len());
            edges.push(ws);
            edges.extend(bounds.iter().copied().filter(|b| *b > ws && *b < we.min(to)));
        }
        edges.push(end);
        let decimals = version.currency.decimals();
        let series = out
            .entry(version.currency.code().to_string())
            .or_insert_with(|| SpendSeries {
                currency: version.currency.clone(),
                amounts: vec![Decimal::ZERO; bounds.len() - 1],
            });
        for charge in &version.charges {
            let def = defs
                .get(&charge.metric_id)
                .ok_or_else(|| Error::Internal(format!("charge {} has no metric", charge.id)))?;
            let spend = charge_spend(
                conn,
                project_id,
                customer_external_id,
                charge,
                def,
                decimals,
                &edges,
                &starts,
                now,
            )
            .await?;
            for (k, amount) in spend.into_iter().enumerate() {
                // Intervals before `from` only lead up to it.
                if edges[k] < from || amount.is_zero() {
                    continue;
                }
                let bucket = bounds.partition_point(|b| *b <= edges[k]) - 1;
                if let Some(slot) = series.amounts.get_mut(bucket) {
                    *slot = add(*slot, amount)?;
                }
            }
        }
    }
    Ok(out.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_aggregates_fold_as_the_period_aggregate_would() {
        let d = |s: &str| Some(s.parse::<Decimal>().unwrap());
        let mut sum = Running::default();
        for v in [d("1.5"), None, d("2")] {
            sum.add(Aggregation::Sum, v).unwrap();
        }
        assert_eq!(sum.value, d("3.5"));
        let mut max = Running::default();
        for v in [d("-3"), None, d("-5")] {
            max.add(Aggregation::Max, v).unwrap();
        }
        assert_eq!(max.value, d("-3"), "an empty interval is not a zero");
        let mut latest = Running::default();
        for v in [d("7"), d("0"), None] {
            latest.add(Aggregation::Latest, v).unwrap();
        }
        assert_eq!(latest.value, d("0"));
        let mut huge = Running::default();
        huge.add(Aggregation::Sum, Some(Decimal::MAX)).unwrap();
        assert!(huge.add(Aggregation::Sum, d("1")).is_err(), "refused, not a panic");
    }
}
