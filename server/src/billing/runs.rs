//! Billing runs: each subscription boundary that passed becomes one invoice.
//!
//! A subscription's **boundaries** are its start, the end of each of its periods, and its end
//! (when canceled). The invoice at boundary `b` bills the fixed fee *in advance* of the period
//! that starts at `b` and the usage (and the fixed fee *in arrears*) of the period that ends at
//! `b`: a first invoice has only the advance fee, a last one only what is in arrears. The unique
//! key (subscription, boundary) makes a boundary billed twice (a retry, a crash, two replicas)
//! one invoice.
//!
//! A run takes its clock as input: `now` (when it runs: what the prepaid credits can pay then)
//! and `cutoff` (events received after it are not in the invoice; they show up as a difference
//! when the invoice is recomputed). A boundary is billed once `cutoff` passed it. The same inputs
//! give the same invoice, byte for byte: its manifest (every input and every line, canonical
//! JSON) is stored with its SHA-256.
//!
//! Each invoice is one database transaction: the subscription row is locked first (two runs of
//! one subscription take turns; on a Galera cluster, where row locks are not cluster-wide, the
//! loser's commit fails and its retry finds the invoice), then the customer's wallet, then the
//! project's invoice number, the hottest row, last. Finalization writes the invoice, its number,
//! its ledger transactions (receivable against revenue, and the prepaid credits drawn) and the
//! wallet's outbox row in that one transaction.
//!
//! A run bills up to [`GROUP_SUBSCRIPTIONS`] subscriptions per transaction (one commit for many
//! invoices), in the same order: all the group's subscription rows first, in id order, with one
//! statement; then each invoice in turn its customer's wallet; at the end the group's invoice
//! numbers, project by project in id order, a block of numbers per project. An operation on one
//! invoice (finalize, void, recompute, a run of one subscription) takes a subscription, then a
//! wallet, then a number, so it and a group take turns: a deadlock needs two wallets locked in
//! opposite orders (a customer's wallets in two units, or two groups over interleaved
//! subscriptions of the same customers), and then InnoDB rolls one back (1213, as a Galera
//! conflict does) and the retry wrapper runs that whole transaction again. A group that fails
//! for another reason is billed again one subscription per transaction, so that a subscription
//! that cannot be billed is reported alone and the others are billed.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use chrono::{Days, NaiveDate, NaiveDateTime, NaiveTime};
use diesel::result::Error as DieselError;
use neruba_pricing::{
    CONVENTIONS_VERSION, PercentageRater, PriceSpec, Rating, Usage,
    invoice::{self, ChargeUsage, Commitment, FixedFee, InvoiceInput, LineKind},
    proration::Period,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    billing::{
        discounts::{self, AppliedTax, UsedCoupon},
        plans::{self, FeeTiming, PlanVersion},
        subscriptions,
    },
    db::{self, TxFailure},
    error::{Error, ErrorCode, Result},
    ids,
    ledger::service::{self as ledger, InvoicePosting},
    store::{
        Conn,
        customers::{self as customer_store, CustomerRow},
        invoices::{self as store, BillingCandidate, InvoiceRow, LineRow},
        subscriptions::{self as subscription_store, SubscriptionRow},
    },
    text_enum::text_enum,
    usage::metrics::{self, BilledUsage, MetricDef},
};

pub const INVOICE_ID_PREFIX: &str = "inv";
pub const ADJUSTMENT_ID_PREFIX: &str = "adj";

text_enum! {
    /// Where an invoice is in its life.
    InvoiceStatus {
        /// Computed, not yet final: a recomputation replaces it.
        Draft = "DRAFT",
        /// Numbered, posted to the ledger, immutable: corrections are new documents.
        Finalized = "FINALIZED",
        /// Paid in full.
        Paid = "PAID",
        /// Canceled after finalization.
        Void = "VOID",
    }
}

text_enum! {
    /// Why an invoice was made.
    InvoiceReason {
        /// A boundary of the subscription's schedule: its start, the end of a period, its end.
        Period = "PERIOD",
        /// Early, inside a period: the period's unbilled usage reached the plan's threshold.
        Threshold = "THRESHOLD",
    }
}

text_enum! {
    /// What an adjustment of a finalized invoice is.
    AdjustmentKind {
        /// The invoice billed too much: the difference is owed to the customer.
        CreditNote = "CREDIT_NOTE",
        /// The invoice billed too little: the difference is owed by the customer.
        AdjustmentInvoice = "ADJUSTMENT_INVOICE",
    }
}

text_enum! {
    /// What an invoice line bills.
    InvoiceLineKind {
        /// A plan's fixed fee for (part of) a period, prorated by days.
        FixedFee = "FIXED_FEE",
        /// A correction of a fixed fee billed earlier: the unused days of a fee billed in advance,
        /// credited (negative) when the subscription ended before its period did.
        FeeAdjustment = "FEE_ADJUSTMENT",
        /// A usage charge: the metric's quantity for the period, rated.
        Usage = "USAGE",
        /// What lifts a charge to its minimum.
        ChargeMinimum = "CHARGE_MINIMUM",
        /// What lifts the period to the plan's minimum commitment.
        MinimumCommitment = "MINIMUM_COMMITMENT",
        /// A discount (negative).
        Coupon = "COUPON",
        /// What the period's threshold invoices already billed, deducted (negative).
        BilledEarlier = "BILLED_EARLIER",
        /// A tax on the discounted subtotal.
        Tax = "TAX",
        /// Prepaid credits drawn to pay the invoice (negative).
        Credits = "CREDITS",
    }
}

fn line_kind(kind: LineKind) -> InvoiceLineKind {
    match kind {
        LineKind::FixedFee => InvoiceLineKind::FixedFee,
        LineKind::FeeAdjustment => InvoiceLineKind::FeeAdjustment,
        LineKind::Usage => InvoiceLineKind::Usage,
        LineKind::ChargeMinimum => InvoiceLineKind::ChargeMinimum,
        LineKind::MinimumCommitment => InvoiceLineKind::MinimumCommitment,
        LineKind::Coupon => InvoiceLineKind::Coupon,
        LineKind::BilledEarlier => InvoiceLineKind::BilledEarlier,
        LineKind::Tax => InvoiceLineKind::Tax,
        LineKind::Credits => InvoiceLineKind::Credits,
    }
}

/// A run's inputs besides the stored state: when it runs, and the last arrival it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: NaiveDateTime,
    pub cutoff: NaiveDateTime,
}

impl Clock {
    /// A clock whose cutoff is `cutoff`, or `now` when not given; a cutoff after `now` would
    /// count events that have not arrived yet.
    pub fn new(now: NaiveDateTime, cutoff: Option<NaiveDateTime>) -> Result<Clock> {
        let cutoff = cutoff.unwrap_or(now);
        if cutoff > now {
            return Err(Error::invalid("cutoff", "must not be after now"));
        }
        Ok(Clock { now, cutoff })
    }
}

fn midnight(day: NaiveDate) -> NaiveDateTime {
    day.and_time(NaiveTime::MIN)
}

/// The first day that `[…, t)` does not reach: a period ending mid-day covers that day.
fn end_day(t: NaiveDateTime) -> NaiveDate {
    if t.time() == NaiveTime::MIN {
        t.date()
    } else {
        t.date().checked_add_days(Days::new(1)).unwrap_or(t.date())
    }
}

/// The boundary after `last` (the subscription's start when nothing was billed yet), or `None`
/// once its end was billed (or past the calendar's end).
pub fn next_boundary(
    sub: &SubscriptionRow,
    version: &PlanVersion,
    last: Option<NaiveDateTime>,
) -> Result<Option<NaiveDateTime>> {
    let Some(last) = last else {
        return Ok(Some(sub.starts_at));
    };
    if sub.ends_at.is_some_and(|end| last >= end) {
        return Ok(None);
    }
    let schedule = subscriptions::schedule(sub, version)?;
    let Some(period) = schedule.period_containing(last.date()) else {
        return Ok(None);
    };
    let next = midnight(period.full.end());
    Ok(Some(match sub.ends_at {
        Some(end) if end < next => end,
        _ => next,
    }))
}

/// The days `[from, to)` as a proration period (`None` when empty).
fn days(from: NaiveDate, to: NaiveDate) -> Option<Period> {
    Period::new(from, to).ok()
}

/// One line of an invoice as computed: what it stores and what its manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestLine {
    /// An [`InvoiceLineKind`].
    pub kind: String,
    pub charge_id: Option<String>,
    pub description: String,
    pub quantity: Option<Decimal>,
    pub amount: Decimal,
    pub exact: Decimal,
    pub period_from: Option<NaiveDateTime>,
    pub period_to: Option<NaiveDateTime>,
    pub event_count: Option<u64>,
    pub events_hash: Option<String>,
    pub rating: Option<Rating>,
}

/// A posting the invoice makes when finalized: an account (by kind) and its amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedPosting {
    pub account: String,
    pub amount: Decimal,
}

/// Everything an invoice was computed from and everything it says: stored with it as canonical
/// JSON, so a recomputation compares byte for byte and an auditor reads the inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub conventions_version: u32,
    pub subscription_id: String,
    pub customer_id: String,
    pub plan_version_id: String,
    pub currency: String,
    pub decimals: u32,
    pub previous_boundary: Option<NaiveDateTime>,
    pub boundary: NaiveDateTime,
    pub usage_from: Option<NaiveDateTime>,
    pub usage_to: Option<NaiveDateTime>,
    pub now: NaiveDateTime,
    pub cutoff: NaiveDateTime,
    pub credits_available: Decimal,
    pub lines: Vec<ManifestLine>,
    pub subtotal: Decimal,
    pub discount: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub credits: Decimal,
    pub amount_due: Decimal,
    pub postings: Vec<PlannedPosting>,
    /// The coupon redemptions this invoice used (each uses one of its periods), in order. Left
    /// out when empty, so invoices without coupons or taxes keep the manifest they had before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coupons: Vec<UsedCoupon>,
    /// The tax rates it applied, as they were defined then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taxes: Vec<AppliedTax>,
    /// The credits the plan includes for the period that starts at the boundary, granted with
    /// the invoice (none when the period had ended by `now`).
    pub included_credits: Option<IncludedCredits>,
    /// A threshold invoice's: the plan's usage threshold, which the period's unbilled usage
    /// reached at `boundary` (its cutoff). Absent on the invoices of the schedule's boundaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Decimal>,
    /// The period's earlier threshold invoices and what each billed before tax, deducted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub billed_earlier: Vec<EarlierInvoice>,
}

/// An earlier invoice of the same period, and what it billed before tax (adjustments included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EarlierInvoice {
    pub invoice_id: String,
    pub amount: Decimal,
}

impl EarlierInvoice {
    /// What `earlier` billed in all.
    fn total(earlier: &[EarlierInvoice]) -> Decimal {
        earlier.iter().map(|e| e.amount).sum()
    }
}

/// A plan's included credits for one period: granted through the ledger, expiring at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncludedCredits {
    pub amount: Decimal,
    pub currency: String,
    pub expires_at: NaiveDateTime,
}

impl Manifest {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Internal(format!("manifest: {e}")))
    }

    pub fn hash(json: &str) -> String {
        hex::encode(Sha256::digest(json.as_bytes()))
    }

    /// Why the invoice was made.
    pub fn reason(&self) -> InvoiceReason {
        match self.threshold {
            Some(_) => InvoiceReason::Threshold,
            None => InvoiceReason::Period,
        }
    }

    /// What earlier invoices of the period billed (zero or positive), deducted from this one.
    pub fn billed_earlier_total(&self) -> Decimal {
        EarlierInvoice::total(&self.billed_earlier)
    }

    /// What the invoice earns: fees and true-ups net of coupons and of what earlier invoices of
    /// the period billed.
    fn revenue(&self) -> Decimal {
        self.subtotal + self.discount - self.billed_earlier_total()
    }
}

/// The invoice's id: derived from its subscription, boundary and reason, so the same inputs
/// give the same id (and a second writer collides with the first on the primary key as well).
/// Shaped like every other id (a ULID): the boundary's milliseconds, then 80 bits of SHA-256 of
/// the key, so invoices sort by boundary.
pub fn invoice_id(subscription_id: &str, boundary: NaiveDateTime, reason: InvoiceReason) -> String {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let at = boundary.format("%Y-%m-%dT%H:%M:%S%.6f");
    // A period invoice's key is the pair alone, as it was before threshold invoices.
    let digest = match reason {
        InvoiceReason::Period => Sha256::digest(format!("{subscription_id}|{at}")),
        InvoiceReason::Threshold => Sha256::digest(format!("{subscription_id}|{at}|THRESHOLD")),
    };
    let millis = u128::try_from(boundary.and_utc().timestamp_millis().max(0)).unwrap_or(0) & ((1 << 48) - 1);
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let mut bits = (millis << 80) | u128::from_be_bytes(random);
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = CROCKFORD[(bits & 31) as usize];
        bits >>= 5;
    }
    format!("{INVOICE_ID_PREFIX}_{}", String::from_utf8_lossy(&out))
}

/// What an invoice is computed from, read inside its transaction.
struct Context<'a> {
    project_id: &'a str,
    sub: &'a SubscriptionRow,
    customer: &'a CustomerRow,
    version: &'a PlanVersion,
    metrics: &'a HashMap<String, MetricDef>,
    previous: Option<NaiveDateTime>,
    boundary: NaiveDateTime,
    /// A preview's usage ends here (now), before the boundary.
    usage_until: Option<NaiveDateTime>,
    clock: Clock,
    credits_available: Decimal,
    /// The usage of `[previous, boundary)` by charge id when the run read it ahead (see
    /// [`ReadAhead`]); `compute` reads what is missing itself.
    usage: Option<&'a HashMap<String, BilledUsage>>,
    /// A threshold invoice's: the plan's threshold. Such an invoice, at `boundary` inside the
    /// period that starts at `previous`, bills that period's usage so far and nothing else (no
    /// fees, minimums, coupons or included credits: those belong to the period's last invoice).
    threshold: Option<Decimal>,
}

impl Context<'_> {
    /// Where the usage this invoice bills ends.
    fn usage_to(&self) -> NaiveDateTime {
        self.usage_until.map_or(self.boundary, |until| until.min(self.boundary))
    }
}

/// The fixed fee for the days of `period` the subscription covers up to `until`.
fn fee_for(
    version: &PlanVersion,
    sub: &SubscriptionRow,
    period: neruba_pricing::periods::BillingPeriod,
    until: NaiveDate,
    counts_toward_commitment: bool,
) -> Option<FixedFee> {
    let billed = days(period.billed.start(), until.min(period.billed.end()))?;
    Some(FixedFee {
        amount: version.row.fixed_fee,
        full: period.full,
        billed,
        trial_until: sub.trial_ends_at.map(|t| t.date()),
        counts_toward_commitment,
    })
}

fn describe_period(p: &Period) -> String {
    let last = p.end().pred_opt().unwrap_or(p.end());
    format!("{} to {}", p.start(), last)
}

/// What the previous invoice billed as fixed fee for `period` (the fee in advance): its
/// FIXED_FEE lines over the period. Zero when there is no previous invoice.
async fn billed_in_advance(
    conn: &mut Conn,
    ctx: &Context<'_>,
    period: neruba_pricing::periods::BillingPeriod,
) -> Result<Decimal> {
    let Some(previous) = ctx.previous else {
        return Ok(Decimal::ZERO);
    };
    let Some(invoice) = store::find_at(conn, &ctx.sub.id, previous, InvoiceReason::Period.as_str()).await? else {
        return Ok(Decimal::ZERO);
    };
    let from = midnight(period.billed.start());
    Ok(stored_manifest(&invoice)?
        .lines
        .iter()
        .filter(|l| l.kind == InvoiceLineKind::FixedFee.as_str() && l.period_from.is_some_and(|f| f >= from))
        .map(|l| l.amount)
        .sum())
}

/// Rates a percentage charge by streaming the customer's events through the rater page by page.
async fn rate_events(
    conn: &mut Conn,
    ctx: &Context<'_>,
    def: &MetricDef,
    terms: &neruba_pricing::PercentageSpec,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Result<Rating> {
    rate_event_amounts(
        conn,
        ctx.project_id,
        def,
        &ctx.customer.external_id,
        terms,
        from,
        to,
        ctx.clock.cutoff,
    )
    .await
}

/// Rates a percentage price over a customer's events of `def` in `[from, to)` received by
/// `cutoff`, streamed through the rater a page at a time: memory stays bounded.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn rate_event_amounts(
    conn: &mut Conn,
    project_id: &str,
    def: &MetricDef,
    customer: &str,
    terms: &neruba_pricing::PercentageSpec,
    from: NaiveDateTime,
    to: NaiveDateTime,
    cutoff: NaiveDateTime,
) -> Result<Rating> {
    let mut rater = PercentageRater::new(terms);
    let mut after = None;
    loop {
        let page = metrics::event_amounts_page(conn, project_id, def, customer, from, to, cutoff, after).await?;
        for (_, _, amount) in &page {
            rater
                .push(*amount)
                .map_err(|e| Error::invalid("charges", format!("an event cannot be rated: {e}")))?;
        }
        match page.last() {
            Some((at, seq, _)) if page.len() as i64 == metrics::AMOUNTS_PAGE => after = Some((*at, *seq)),
            _ => break,
        }
    }
    rater
        .finish()
        .map_err(|e| Error::invalid("charges", format!("the usage cannot be rated: {e}")))
}

/// Computes the invoice at `ctx.boundary`: reads usage (aggregated in SQL), rates it and applies
/// the documented order. Writes nothing.
async fn compute(conn: &mut Conn, ctx: &Context<'_>) -> Result<Manifest> {
    let version = ctx.version;
    let schedule = subscriptions::schedule(ctx.sub, version)?;
    let decimals = version.currency.decimals();
    let timing: FeeTiming = version.row.fixed_fee_timing.parse()?;
    // A threshold invoice bills usage so far, nothing that belongs to the whole period.
    let early = ctx.threshold.is_some();
    let has_fee = !version.row.fixed_fee.is_zero() && !early;
    let ends_at = ctx.sub.ends_at;

    let mut fixed_fees = Vec::new();
    let mut fee_lines: Vec<(Option<NaiveDateTime>, Option<NaiveDateTime>)> = Vec::new();
    let mut fee_adjustments = Vec::new();
    let mut adjustment_spans = Vec::new();
    let mut commitment_billed_before = Decimal::ZERO;
    // The period that ends at this boundary: its usage, and its fee when in arrears.
    let usage_period = match ctx.previous {
        Some(previous) => schedule.period_containing(previous.date()),
        None => None,
    };
    if let Some(period) = usage_period {
        let until = end_day(ctx.boundary);
        if has_fee && let Some(fee) = fee_for(version, ctx.sub, period, until, true) {
            match timing {
                FeeTiming::Arrears => {
                    fee_lines.push((Some(midnight(fee.billed.start())), Some(midnight(fee.billed.end()))));
                    fixed_fees.push(fee);
                }
                FeeTiming::Advance => {
                    // Billed on the previous invoice (its fixed fee lines for this period).
                    let billed_then = billed_in_advance(conn, ctx, period).await?;
                    commitment_billed_before = billed_then;
                    // Ended before the period did: the unused days come back.
                    if ctx.sub.ends_at == Some(ctx.boundary) && until < period.billed.end() {
                        let used = invoice::fixed_fee_amount(&fee, decimals)
                            .map_err(|e| Error::Internal(format!("fixed fee: {e}")))?;
                        if used != billed_then {
                            fee_adjustments.push(used - billed_then);
                            adjustment_spans.push((midnight(until), midnight(period.billed.end())));
                        }
                    }
                }
            }
        }
    }
    // The period that starts at this boundary: its fee when in advance.
    if has_fee
        && timing == FeeTiming::Advance
        && ends_at.is_none_or(|end| ctx.boundary < end)
        && let Some(period) = schedule.period_containing(ctx.boundary.date())
        && let Some(fee) = fee_for(
            version,
            ctx.sub,
            period,
            ends_at.map_or(period.billed.end(), end_day),
            false,
        )
    {
        fee_lines.push((Some(midnight(fee.billed.start())), Some(midnight(fee.billed.end()))));
        fixed_fees.push(fee);
    }

    // Usage over [previous, boundary), as received by the cutoff.
    let mut usages = Vec::new();
    let mut ratings = Vec::new();
    if let (Some(from), Some(_)) = (ctx.previous, usage_period) {
        let to = ctx.usage_to();
        for charge in &version.charges {
            let def = ctx
                .metrics
                .get(&charge.metric_id)
                .ok_or_else(|| Error::Internal(format!("charge {} has no metric", charge.id)))?;
            let billed = match ctx.usage.and_then(|u| u.get(&charge.id)) {
                Some(billed) => billed.clone(),
                None => metrics::aggregate_for_billing(
                    conn,
                    ctx.project_id,
                    def,
                    &[ctx.customer.external_id.as_str()],
                    from,
                    to,
                    ctx.clock.cutoff,
                )
                .await?
                .remove(&ctx.customer.external_id)
                .unwrap_or_default(),
            };
            let rating = match charge.charge.price().spec() {
                PriceSpec::Percentage(terms) => Some(rate_events(conn, ctx, def, terms, from, to).await?),
                _ => None,
            };
            usages.push((charge, def, billed));
            ratings.push(rating);
        }
    }
    let charges: Vec<ChargeUsage<'_>> = usages
        .iter()
        .zip(&ratings)
        .map(|((charge, _, billed), rating)| ChargeUsage {
            charge: &charge.charge,
            usage: match rating {
                Some(r) => Usage::Rated(r),
                None => Usage::Quantity(billed.value),
            },
        })
        .collect();
    let minimum_commitment = match (usage_period, version.row.minimum_commitment) {
        (Some(_), Some(amount)) if !early => Some(Commitment {
            amount,
            billed_before: commitment_billed_before,
        }),
        _ => None,
    };
    // Coupons and taxes: plain reads (a run holds the subscription's lock, which `applyCoupon`
    // takes too; a preview reads without it).
    let mut discounts = discounts::for_invoice(
        conn,
        ctx.project_id,
        &ctx.sub.id,
        &ctx.customer.id,
        &version.row.currency,
        ctx.boundary,
    )
    .await?;
    if early {
        // The period's coupons apply once, on its last invoice, to the whole period.
        discounts.coupons.clear();
    }
    // What the period's threshold invoices before this boundary billed.
    let billed_earlier = match (ctx.previous, usage_period) {
        // A period's invoice deducts those up to its boundary (a threshold invoice at the very
        // instant the subscription ended is before its end invoice); a threshold invoice, those
        // before its own.
        (Some(from), Some(_)) => {
            store::threshold_billed(conn, &ctx.sub.id, &version.row.currency, from, ctx.boundary, !early)
                .await?
                .into_iter()
                .map(|t| EarlierInvoice {
                    invoice_id: t.id,
                    amount: t.billed,
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let computed = invoice::compute(&InvoiceInput {
        decimals,
        fixed_fees: fixed_fees.clone(),
        fee_adjustments,
        charges,
        minimum_commitment,
        coupons: discounts.pricing_coupons(),
        taxes: discounts.percentages(),
        credits_available: ctx.credits_available,
        billed_earlier: EarlierInvoice::total(&billed_earlier),
        closes_period: !early,
    })
    .map_err(|e| Error::invalid("charges", format!("the usage cannot be rated: {e}")))?;

    let usage_span = ctx.previous.map(|from| (from, ctx.usage_to()));
    let lines = computed
        .lines
        .iter()
        .map(|l| {
            let mut line = ManifestLine {
                kind: line_kind(l.kind).as_str().into(),
                charge_id: None,
                description: String::new(),
                quantity: None,
                amount: l.amount,
                exact: l.exact,
                period_from: None,
                period_to: None,
                event_count: None,
                events_hash: None,
                rating: l.rating.clone(),
            };
            match l.kind {
                LineKind::FixedFee => {
                    let fee = &fixed_fees[l.index];
                    line.description = format!("{} fixed fee, {}", version.code, describe_period(&fee.billed));
                    (line.period_from, line.period_to) = fee_lines[l.index];
                }
                LineKind::FeeAdjustment => {
                    line.description = format!("{} fixed fee, unused days credited", version.code);
                    let (from, to) = adjustment_spans[l.index];
                    (line.period_from, line.period_to) = (Some(from), Some(to));
                }
                LineKind::Usage | LineKind::ChargeMinimum => {
                    let (charge, def, billed) = &usages[l.index];
                    line.charge_id = Some(charge.id.clone());
                    (line.period_from, line.period_to) = (usage_span.map(|s| s.0), usage_span.map(|s| s.1));
                    if l.kind == LineKind::Usage {
                        line.description = def.name.clone();
                        line.quantity = Some(billed.value);
                        line.event_count = Some(billed.events);
                        line.events_hash = Some(billed.events_hash.clone());
                    } else {
                        line.description = format!("{} minimum", def.name);
                    }
                }
                LineKind::MinimumCommitment => {
                    line.description = format!("{} minimum commitment", version.code);
                    (line.period_from, line.period_to) = (usage_span.map(|s| s.0), usage_span.map(|s| s.1));
                }
                LineKind::Coupon => line.description = discounts.coupons[l.index].description(),
                LineKind::BilledEarlier => {
                    line.description = match billed_earlier.len() {
                        1 => "Billed earlier in the period, on a threshold invoice".into(),
                        n => format!("Billed earlier in the period, on {n} threshold invoices"),
                    };
                    (line.period_from, line.period_to) = (usage_span.map(|s| s.0), usage_span.map(|s| s.1));
                }
                LineKind::Tax => line.description = discounts.taxes[l.index].description(),
                LineKind::Credits => line.description = "Prepaid credits applied".into(),
            }
            line
        })
        .collect();

    let (coupons_used, taxes_applied) = discounts.manifest(&computed);
    let credits_drawn = -computed.credits;
    let revenue = computed.subtotal + computed.discount + computed.billed_earlier;
    let mut postings = Vec::new();
    if !computed.total.is_zero() {
        postings.push(PlannedPosting {
            account: "RECEIVABLE".into(),
            amount: -computed.total,
        });
        if !revenue.is_zero() {
            postings.push(PlannedPosting {
                account: "REVENUE".into(),
                amount: revenue,
            });
        }
        if !computed.tax.is_zero() {
            postings.push(PlannedPosting {
                account: "TAX_PAYABLE".into(),
                amount: computed.tax,
            });
        }
    }
    if !credits_drawn.is_zero() {
        postings.push(PlannedPosting {
            account: "WALLET_LOTS".into(),
            amount: -credits_drawn,
        });
        postings.push(PlannedPosting {
            account: "RECEIVABLE".into(),
            amount: credits_drawn,
        });
    }

    // The plan's included credits for the period starting here, unless it is over already.
    let included_credits = match (version.row.included_credits, &version.row.included_credits_currency) {
        (Some(amount), Some(currency)) if !early && ends_at.is_none_or(|end| ctx.boundary < end) => schedule
            .period_containing(ctx.boundary.date())
            .map(|period| {
                let end = midnight(period.full.end());
                IncludedCredits {
                    amount,
                    currency: currency.clone(),
                    expires_at: ends_at.map_or(end, |e| e.min(end)),
                }
            })
            .filter(|c| c.expires_at > ctx.clock.now),
        _ => None,
    };

    Ok(Manifest {
        conventions_version: CONVENTIONS_VERSION,
        subscription_id: ctx.sub.id.clone(),
        customer_id: ctx.customer.id.clone(),
        plan_version_id: version.row.id.clone(),
        currency: version.row.currency.clone(),
        decimals,
        previous_boundary: ctx.previous,
        boundary: ctx.boundary,
        usage_from: usage_span.map(|s| s.0),
        usage_to: usage_span.map(|s| s.1),
        now: ctx.clock.now,
        cutoff: ctx.clock.cutoff,
        credits_available: ctx.credits_available,
        lines,
        subtotal: computed.subtotal,
        discount: computed.discount,
        tax: computed.tax,
        total: computed.total,
        credits: computed.credits,
        amount_due: computed.amount_due,
        postings,
        coupons: coupons_used,
        taxes: taxes_applied,
        included_credits,
        threshold: ctx.threshold,
        billed_earlier,
    })
}

/// The rows an invoice is stored as.
fn rows(
    project_id: &str,
    m: &Manifest,
    status: InvoiceStatus,
    at: NaiveDateTime,
) -> Result<(InvoiceRow, Vec<LineRow>)> {
    let json = m.to_json()?;
    let id = invoice_id(&m.subscription_id, m.boundary, m.reason());
    let lines = m
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Ok(LineRow {
                invoice_id: id.clone(),
                position: u16::try_from(i).map_err(|_| Error::Internal("too many invoice lines".into()))?,
                project_id: project_id.to_string(),
                kind: l.kind.clone(),
                charge_id: l.charge_id.clone(),
                description: l.description.chars().take(300).collect(),
                quantity: l.quantity,
                amount: l.amount,
                exact: l.exact.normalize().to_string(),
                period_from: l.period_from,
                period_to: l.period_to,
                event_count: l.event_count,
                events_hash: l.events_hash.clone(),
                rating: l
                    .rating
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| Error::Internal(format!("rating: {e}")))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let row = InvoiceRow {
        id,
        project_id: project_id.to_string(),
        customer_id: m.customer_id.clone(),
        subscription_id: m.subscription_id.clone(),
        plan_version_id: m.plan_version_id.clone(),
        reason: m.reason().as_str().into(),
        boundary: m.boundary,
        usage_from: m.usage_from,
        usage_to: m.usage_to,
        status: status.as_str().into(),
        number: None,
        currency: m.currency.clone(),
        subtotal: m.subtotal,
        discount: m.discount,
        tax: m.tax,
        total: m.total,
        credits: m.credits,
        amount_due: m.amount_due,
        computed_at: m.now,
        cutoff: m.cutoff,
        conventions_version: m.conventions_version,
        manifest_hash: Manifest::hash(&json),
        manifest: json,
        invoice_transaction_id: None,
        credits_transaction_id: None,
        finalized_at: None,
        voided_at: None,
        void_reason: None,
        void_invoice_transaction_id: None,
        void_credits_transaction_id: None,
        created_at: at,
        updated_at: at,
    };
    Ok((row, lines))
}

/// The metric definitions a plan version's charges bill.
pub(crate) async fn metric_defs(
    conn: &mut Conn,
    project_id: &str,
    version: &PlanVersion,
) -> Result<HashMap<String, MetricDef>> {
    let ids: Vec<&str> = version.charges.iter().map(|c| c.metric_id.as_str()).collect();
    crate::store::billable_metrics::find_by_ids(conn, project_id, &ids)
        .await?
        .iter()
        .map(|row| Ok((row.id.clone(), MetricDef::from_row(row)?)))
        .collect()
}

/// What billing one boundary did.
#[derive(Debug, Clone)]
pub struct Billed {
    pub invoice: InvoiceRow,
    /// `false` when the invoice existed already (another run made it).
    pub created: bool,
}

/// A failure that running the transaction again can settle: a lost race for the invoice's key,
/// a ledger key, or a transient database error (retried by the wrapper itself).
fn retryable(e: &DieselError) -> bool {
    db::is_unique_violation(e, "uq_invoices_period") || db::is_unique_violation(e, "PRIMARY") || ledger::retryable(e)
}

/// Bills one subscription at the boundary after the last one billed, if it is due at `clock`:
/// one transaction (see the module's lock order). `finalize: false` leaves a draft (no number,
/// no ledger postings). Answers `None` when nothing is due.
pub async fn bill_next(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    clock: Clock,
    finalize: bool,
) -> Result<Option<Billed>> {
    bill_next_with(
        conn,
        project_id,
        subscription_id,
        clock,
        finalize,
        &HashMap::new(),
        None,
    )
    .await
}

/// [`bill_next`] with what a run read ahead: plans by version id, and this subscription's usage.
async fn bill_next_with(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    clock: Clock,
    finalize: bool,
    plans: &Plans,
    usage: Option<&AheadUsage>,
) -> Result<Option<Billed>> {
    let project_id = project_id.to_string();
    let subscription_id = subscription_id.to_string();
    db::transaction_with_retry!(conn, retryable, |c| {
        bill_next_once(
            c,
            &project_id,
            &subscription_id,
            clock,
            finalize,
            Numbering::Own,
            plans,
            usage,
        )
        .await
    })
}

/// When a finalized invoice takes its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbering {
    /// In its own transaction, right after its postings: the project's sequence row last.
    Own,
    /// With the other invoices of its run's group, at the end of the group's transaction
    /// ([`number_group`]): until then the stored row is a draft without a number.
    Group,
}

#[allow(clippy::too_many_arguments)]
async fn bill_next_once(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    clock: Clock,
    finalize: bool,
    numbering: Numbering,
    plans: &Plans,
    usage: Option<&AheadUsage>,
) -> std::result::Result<Option<Billed>, TxFailure> {
    // The subscription's lock first: the reads below then see every invoice committed before.
    let Some(sub) = subscription_store::lock(conn, project_id, subscription_id).await? else {
        return Err(Error::NotFound("subscription").into());
    };
    let last = store::last_boundary(conn, &sub.id).await?;
    let plan = Plan::of(conn, plans, project_id, &sub).await?;
    let (version, metrics) = (&plan.version, &plan.metrics);
    let Some(boundary) = next_boundary(&sub, version, last)? else {
        return Ok(None);
    };
    if boundary > clock.cutoff {
        return Ok(None);
    }
    let customer = customer_store::find_by_id(conn, project_id, &sub.customer_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("subscription {} has no customer", sub.id)))?;
    // Read ahead for exactly this invoice, or not used: see `ReadAhead`.
    let usage = usage
        .filter(|u| {
            u.plan_version_id == sub.plan_version_id
                && u.customer_external_id == customer.external_id
                && last == Some(u.from)
                && boundary == u.to
        })
        .map(|u| &u.by_charge);
    let mut outbox = Vec::new();
    let mut wallet = ledger::lock_invoice_wallet(
        conn,
        project_id,
        &customer.external_id,
        &version.row.currency,
        clock.now,
        &mut outbox,
    )
    .await?;
    let ctx = Context {
        project_id,
        sub: &sub,
        customer: &customer,
        version,
        metrics,
        previous: last,
        boundary,
        usage_until: None,
        clock,
        credits_available: wallet.as_ref().map_or(Decimal::ZERO, |w| w.available),
        usage,
        threshold: None,
    };
    let manifest = compute(conn, &ctx).await?;
    let billed = store_invoice(
        conn,
        project_id,
        &manifest,
        finalize.then_some(numbering),
        wallet.as_mut(),
        clock.now,
        &mut outbox,
    )
    .await?;
    crate::ledger::outbox::write(conn, outbox).await?;
    if !billed.created {
        return Ok(Some(billed));
    }
    // After the invoice drew its credits: the period's included credits are for its own usage,
    // not for what the invoice bills (the previous period's usage, this period's fee).
    if let Some(included) = &manifest.included_credits {
        ledger::grant_included_credits(
            conn,
            project_id,
            &customer.external_id,
            &included.currency,
            included.amount,
            included.expires_at,
            &format!(
                "{}included-credits:{}",
                crate::ids::RESERVED_KEY_PREFIX,
                billed.invoice.id
            ),
            &format!("{} included credits", version.code),
            clock.now,
        )
        .await?;
    }
    Ok(Some(billed))
}

/// Stores a computed invoice inside the caller's transaction, finalized when `finalize` says how
/// it is numbered (its ledger transactions, and its number unless its group numbers it), a
/// draft otherwise, unless its subscription has one at that boundary for that
/// reason already: that one is answered (`created: false`). Another run made it since this
/// transaction took the subscription's lock: impossible on one server (the lock orders them),
/// a lost race on a cluster, whose retry answers it.
async fn store_invoice(
    conn: &mut Conn,
    project_id: &str,
    manifest: &Manifest,
    finalize: Option<Numbering>,
    wallet: Option<&mut ledger::InvoiceWallet>,
    now: NaiveDateTime,
    outbox: &mut Vec<crate::store::ledger::NewOutbox>,
) -> std::result::Result<Billed, TxFailure> {
    let (mut row, lines) = rows(project_id, manifest, InvoiceStatus::Draft, now)?;
    if !store::insert_ignore(conn, &row, &lines).await? {
        let existing = store::lock_at(conn, &row.subscription_id, row.boundary, &row.reason)
            .await?
            .ok_or_else(|| Error::Internal("invoice vanished after a duplicate key".into()))?;
        return Ok(Billed {
            invoice: existing,
            created: false,
        });
    }
    if let Some(numbering) = finalize {
        post_row(conn, project_id, &mut row, manifest, wallet, now, outbox).await?;
        if numbering == Numbering::Own {
            number_row(conn, project_id, &mut row).await?;
        }
    }
    Ok(Billed {
        invoice: row,
        created: true,
    })
}

// ---- threshold (progressive) billing

/// Bills a threshold invoice of a subscription at `clock.cutoff` (its boundary) when its plan
/// has a usage threshold and its current period's usage so far, rated and net of what the
/// period's earlier threshold invoices billed, reached it: one transaction, like a period's
/// invoice. Answers `None` when not, or when a boundary of its schedule is due first (a run
/// bills those first). A first look reads without locks; only a crossing opens the transaction,
/// which looks again under the subscription's lock: two runs at one cutoff make one invoice
/// (the key is the boundary), and a run at a later cutoff finds the usage billed.
///
/// A threshold invoice is always finalized (a run with `finalize: false` makes none): later
/// invoices of the period deduct it, so it must stand as posted.
pub async fn bill_threshold(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    clock: Clock,
) -> Result<Option<Billed>> {
    bill_threshold_with(conn, project_id, subscription_id, clock, &Plans::new()).await
}

async fn bill_threshold_with(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    clock: Clock,
    plans: &Plans,
) -> Result<Option<Billed>> {
    let Some(sub) = subscription_store::find(conn, project_id, subscription_id).await? else {
        return Err(Error::NotFound("subscription"));
    };
    let plan = Plan::of(conn, plans, project_id, &sub).await?;
    if plan.version.row.usage_threshold.is_none() {
        return Ok(None);
    }
    let customer = customer_store::find_by_id(conn, project_id, &sub.customer_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("subscription {} has no customer", sub.id)))?;
    if threshold_due(conn, project_id, &sub, &customer, &plan, clock, Decimal::ZERO)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let project_id = project_id.to_string();
    let subscription_id = subscription_id.to_string();
    db::transaction_with_retry!(conn, retryable, |c| {
        bill_threshold_once(c, &project_id, &subscription_id, clock, plans).await
    })
}

async fn bill_threshold_once(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    clock: Clock,
    plans: &Plans,
) -> std::result::Result<Option<Billed>, TxFailure> {
    let Some(sub) = subscription_store::lock(conn, project_id, subscription_id).await? else {
        return Err(Error::NotFound("subscription").into());
    };
    let plan = Plan::of(conn, plans, project_id, &sub).await?;
    let customer = customer_store::find_by_id(conn, project_id, &sub.customer_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("subscription {} has no customer", sub.id)))?;
    let mut outbox = Vec::new();
    let mut wallet = ledger::lock_invoice_wallet(
        conn,
        project_id,
        &customer.external_id,
        &plan.version.row.currency,
        clock.now,
        &mut outbox,
    )
    .await?;
    let available = wallet.as_ref().map_or(Decimal::ZERO, |w| w.available);
    let billed = match threshold_due(conn, project_id, &sub, &customer, &plan, clock, available).await? {
        Some(manifest) => Some(
            store_invoice(
                conn,
                project_id,
                &manifest,
                Some(Numbering::Own),
                wallet.as_mut(),
                clock.now,
                &mut outbox,
            )
            .await?,
        ),
        None => None,
    };
    // The wallet's lots that expired on the way are announced either way.
    crate::ledger::outbox::write(conn, outbox).await?;
    Ok(billed)
}

/// The threshold invoice a subscription is due at `clock.cutoff`, computed (not stored): when
/// its plan has a threshold, its schedule's last boundary was billed and the next is after the
/// cutoff (the period is open), and the period's usage so far, rated, less what its earlier
/// threshold invoices billed, is at least the threshold.
async fn threshold_due(
    conn: &mut Conn,
    project_id: &str,
    sub: &SubscriptionRow,
    customer: &CustomerRow,
    plan: &Plan,
    clock: Clock,
    credits_available: Decimal,
) -> Result<Option<Manifest>> {
    let Some(threshold) = plan.version.row.usage_threshold else {
        return Ok(None);
    };
    let Some(from) = store::last_boundary(conn, &sub.id).await? else {
        return Ok(None);
    };
    let open = matches!(next_boundary(sub, &plan.version, Some(from))?, Some(next) if next > clock.cutoff);
    if !open || clock.cutoff <= from {
        return Ok(None);
    }
    // Threshold invoices of a period follow each other: one at this cutoff or a later one (a
    // run again with the same clock, or a run with a later clock that got the lock first) has
    // billed the usage this one would, and this one would not see it (it deducts only the
    // invoices before its boundary).
    if store::last_threshold_boundary(conn, &sub.id, from)
        .await?
        .is_some_and(|last| last >= clock.cutoff)
    {
        return Ok(None);
    }
    let ctx = Context {
        project_id,
        sub,
        customer,
        version: &plan.version,
        metrics: &plan.metrics,
        previous: Some(from),
        boundary: clock.cutoff,
        usage_until: None,
        clock,
        credits_available,
        usage: None,
        threshold: Some(threshold),
    };
    let manifest = compute(conn, &ctx).await?;
    let unbilled = manifest.subtotal - manifest.billed_earlier_total();
    Ok((unbilled >= threshold).then_some(manifest))
}

/// Finalizes a stored draft inside the caller's transaction: its ledger transactions, then its
/// number (the project's sequence row is locked last).
async fn finalize_row(
    conn: &mut Conn,
    project_id: &str,
    row: &mut InvoiceRow,
    manifest: &Manifest,
    wallet: Option<&mut ledger::InvoiceWallet>,
    now: NaiveDateTime,
    outbox: &mut Vec<crate::store::ledger::NewOutbox>,
) -> std::result::Result<(), TxFailure> {
    post_row(conn, project_id, row, manifest, wallet, now, outbox).await?;
    number_row(conn, project_id, row).await
}

/// The second half of [`finalize_row`]: numbers a posted invoice and writes it finalized.
async fn number_row(conn: &mut Conn, project_id: &str, row: &mut InvoiceRow) -> std::result::Result<(), TxFailure> {
    row.number = Some(store::next_number(conn, project_id).await?);
    write_finalized(conn, row).await
}

/// The first half of [`finalize_row`]: posts the draft's ledger transactions and marks `row`
/// finalized, in memory only. The stored row stays a draft, without a number, until
/// [`write_finalized`] (a run's group numbers its invoices together: [`number_group`]).
async fn post_row(
    conn: &mut Conn,
    project_id: &str,
    row: &mut InvoiceRow,
    manifest: &Manifest,
    wallet: Option<&mut ledger::InvoiceWallet>,
    now: NaiveDateTime,
    outbox: &mut Vec<crate::store::ledger::NewOutbox>,
) -> std::result::Result<(), TxFailure> {
    let posted = ledger::post_invoice(
        conn,
        project_id,
        wallet,
        &InvoicePosting {
            invoice_id: &row.id,
            customer_id: &row.customer_id,
            currency: &row.currency,
            revenue: manifest.revenue(),
            tax: manifest.tax,
            credits: -manifest.credits,
            description: format!("invoice {}", row.id),
        },
        now,
        outbox,
    )
    .await?;
    row.status = InvoiceStatus::Finalized.as_str().into();
    row.invoice_transaction_id = posted.invoice.map(|t| t.id);
    row.credits_transaction_id = posted.credits.map(|t| t.id);
    row.finalized_at = Some(now);
    row.updated_at = now;
    Ok(())
}

/// Writes a posted and numbered invoice over its stored draft.
async fn write_finalized(conn: &mut Conn, row: &InvoiceRow) -> std::result::Result<(), TxFailure> {
    if store::finalize(conn, row).await? != 1 {
        return Err(Error::Internal(format!("invoice {} was not a draft", row.id)).into());
    }
    Ok(())
}

/// Which subscriptions a run bills.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// One project's (the API's runs), or every project's (the scheduler's).
    pub project_id: Option<String>,
    pub subscription_id: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub invoices: Vec<InvoiceRow>,
    /// Subscriptions that could not be billed, and why (the next run tries them again).
    pub failures: Vec<(String, Error)>,
}

/// How many subscriptions a run reads per page.
const CANDIDATES_PAGE: i64 = 200;

/// A plan version with its charges' metric definitions: what every invoice of the version
/// reads. Versions are immutable and metric definitions are never edited, so a run reads each
/// once ([`Plans`]).
struct Plan {
    version: PlanVersion,
    metrics: HashMap<String, MetricDef>,
}

impl Plan {
    async fn load(conn: &mut Conn, project_id: &str, version_id: &str) -> Result<Plan> {
        let version = plans::load_version(conn, project_id, version_id).await?;
        let metrics = metric_defs(conn, project_id, &version).await?;
        Ok(Plan { version, metrics })
    }

    /// A subscription's plan: from what the run read, or read now.
    async fn of(conn: &mut Conn, plans: &Plans, project_id: &str, sub: &SubscriptionRow) -> Result<Arc<Plan>> {
        Ok(match plans.get(&sub.plan_version_id) {
            Some(plan) if plan.version.row.project_id == project_id => plan.clone(),
            _ => Arc::new(Plan::load(conn, project_id, &sub.plan_version_id).await?),
        })
    }
}

/// The plans a run has read, by version id.
type Plans = HashMap<String, Arc<Plan>>;

/// One invoice's usage read ahead: for the subscription's version, customer and usage window
/// `[from, to)` it was read for, the usage by charge id.
struct AheadUsage {
    plan_version_id: String,
    customer_external_id: String,
    from: NaiveDateTime,
    to: NaiveDateTime,
    by_charge: HashMap<String, BilledUsage>,
}

/// What a run learned about a subscription of its page before billing it.
enum Ahead {
    /// Its next boundary is after the cutoff (or it has none): no transaction to open, unless
    /// its plan bills early (`progressive`: it has a usage threshold) and the period is open.
    NotDue { progressive: bool },
    /// Due: its row and plan as read ahead, and its usage when it has any to bill.
    Due {
        sub: Box<SubscriptionRow>,
        plan: Arc<Plan>,
        usage: Option<AheadUsage>,
    },
}

/// Reads ahead, for a page of subscriptions, what their invoices would otherwise each read
/// inside their own transaction: which are due at all, their plans, and their usage, aggregated
/// in SQL for many customers at once (one query per charge for the subscriptions that share a
/// plan version and a usage window, up to [`metrics::MAX_CUSTOMERS_PER_QUERY`] customers each).
///
/// Why reading outside the invoice's transaction bills the same:
/// - the usage of `[from, to)` counts the events received by the run's cutoff, fixed before the
///   run starts; events are append-only, so the aggregate read a moment earlier is the one the
///   transaction would read. (An event stamped before the cutoff whose ingest commits after the
///   read is missed by both; the scheduler's grace after a boundary keeps that window empty, and
///   the events' fingerprint in the manifest makes any difference visible on recomputation.)
/// - an invoice uses its read-ahead only when what its transaction reads after the subscription's
///   lock agrees: the same plan version, customer, previous boundary and boundary. A subscription
///   billed, migrated or canceled in the meantime is computed from what it reads, as before.
/// - a subscription whose next boundary, from its last boundary as read here, is after the
///   cutoff is skipped: boundaries only grow, so reading it again under the lock could only
///   find a later one.
///
/// A subscription whose read-ahead fails (an unreadable row, an aggregate too large to compute
/// exactly) is left out: it is billed as [`bill_next`] bills, where its error is its own.
async fn read_ahead(
    conn: &mut Conn,
    page: &[BillingCandidate],
    clock: Clock,
    plans: &mut Plans,
) -> Result<HashMap<String, Ahead>> {
    let ids: Vec<&str> = page
        .iter()
        .filter(|c| !c.is_done())
        .map(|c| c.subscription_id.as_str())
        .collect();
    let last: HashMap<&str, Option<NaiveDateTime>> = page
        .iter()
        .map(|c| (c.subscription_id.as_str(), c.last_boundary))
        .collect();
    let mut ahead = HashMap::new();
    // (project, plan version, from, to) → the subscriptions (id, customer id) billing that usage.
    type Window = (String, String, NaiveDateTime, NaiveDateTime);
    let mut windows: BTreeMap<Window, Vec<(String, String)>> = BTreeMap::new();
    for sub in subscription_store::find_by_ids(conn, &ids).await? {
        let plan = match plans.get(&sub.plan_version_id) {
            Some(plan) => plan.clone(),
            None => match Plan::load(conn, &sub.project_id, &sub.plan_version_id).await {
                Ok(plan) => {
                    let plan = Arc::new(plan);
                    plans.insert(sub.plan_version_id.clone(), plan.clone());
                    plan
                }
                Err(e @ Error::Unavailable(_)) => return Err(e),
                Err(_) => continue,
            },
        };
        let previous = last.get(sub.id.as_str()).copied().flatten();
        let boundary = match next_boundary(&sub, &plan.version, previous) {
            Ok(Some(b)) if b <= clock.cutoff => b,
            Ok(next) => {
                let progressive = next.is_some() && plan.version.row.usage_threshold.is_some();
                ahead.insert(sub.id.clone(), Ahead::NotDue { progressive });
                continue;
            }
            Err(_) => continue,
        };
        if let Some(from) = previous
            && !plan.version.charges.is_empty()
        {
            windows
                .entry((sub.project_id.clone(), sub.plan_version_id.clone(), from, boundary))
                .or_default()
                .push((sub.id.clone(), sub.customer_id.clone()));
        }
        ahead.insert(
            sub.id.clone(),
            Ahead::Due {
                sub: Box::new(sub),
                plan,
                usage: None,
            },
        );
    }
    for ((project_id, version_id, from, to), members) in windows {
        let Some(plan) = plans.get(&version_id).cloned() else {
            continue;
        };
        let customer_ids: Vec<&str> = members.iter().map(|(_, c)| c.as_str()).collect();
        let external: HashMap<String, String> = customer_store::find_by_ids(conn, &project_id, &customer_ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c.external_id))
            .collect();
        let customers: Vec<&str> = external.values().map(String::as_str).collect();
        let mut by_charge = Vec::new();
        for charge in &plan.version.charges {
            let Some(def) = plan.metrics.get(&charge.metric_id) else {
                break;
            };
            match metrics::aggregate_for_billing(conn, &project_id, def, &customers, from, to, clock.cutoff).await {
                Ok(values) => by_charge.push((charge.id.clone(), values)),
                Err(e @ Error::Unavailable(_)) => return Err(e),
                Err(_) => break,
            }
        }
        if by_charge.len() < plan.version.charges.len() {
            continue;
        }
        for (subscription_id, customer_id) in members {
            let (Some(external_id), Some(Ahead::Due { usage, .. })) =
                (external.get(&customer_id), ahead.get_mut(&subscription_id))
            else {
                continue;
            };
            let values = by_charge
                .iter()
                .filter_map(|(charge_id, values)| Some((charge_id.clone(), values.get(external_id)?.clone())))
                .collect();
            *usage = Some(AheadUsage {
                plan_version_id: version_id.clone(),
                customer_external_id: external_id.clone(),
                from,
                to,
                by_charge: values,
            });
        }
    }
    Ok(ahead)
}

/// Bills every boundary in `scope` that `clock.cutoff` passed, oldest first per subscription,
/// up to `max_invoices` (the rest waits for the next run). A subscription that fails is reported
/// and skipped; the others go on. Each page of subscriptions is read ahead first
/// ([`read_ahead`]): plans once per run, usage in SQL for many customers at once, and no
/// transaction for a subscription that is not due. The due ones are billed in groups of up to
/// [`GROUP_SUBSCRIPTIONS`], each group one transaction ([`Group::bill`]).
pub async fn run(
    conn: &mut Conn,
    scope: &Scope,
    clock: Clock,
    finalize: bool,
    max_invoices: usize,
) -> Result<RunReport> {
    let mut report = RunReport::default();
    let mut plans = Plans::new();
    let mut after = String::new();
    loop {
        let page = store::billing_candidates(
            conn,
            scope.project_id.as_deref(),
            scope.subscription_id.as_deref(),
            clock.cutoff,
            &after,
            CANDIDATES_PAGE,
        )
        .await?;
        let Some(last) = page.last() else { break };
        after = last.subscription_id.clone();
        let ahead = read_ahead(conn, &page, clock, &mut plans).await?;
        let due: Vec<&BillingCandidate> = page
            .iter()
            .filter(|c| !c.is_done() && !matches!(ahead.get(&c.subscription_id), Some(Ahead::NotDue { .. })))
            .collect();
        let group = Group {
            ahead: &ahead,
            plans: &plans,
            clock,
            finalize,
        };
        for members in due.chunks(GROUP_SUBSCRIPTIONS) {
            let budget = max_invoices.saturating_sub(report.invoices.len());
            if budget == 0 {
                return Ok(report);
            }
            group.bill(conn, members, budget, &mut report).await?;
        }
        // Then the page's plans that bill early, once their due boundaries are billed: the open
        // period's usage so far (a threshold invoice is always finalized: none in a draft run).
        if finalize {
            for candidate in page.iter().filter(|c| !c.is_done() && progressive(&ahead, c)) {
                if report.invoices.len() >= max_invoices {
                    return Ok(report);
                }
                if !report.failures.iter().any(|(s, _)| *s == candidate.subscription_id) {
                    bill_early(conn, candidate, clock, &plans, &mut report).await?;
                }
            }
        }
        if (page.len() as i64) < CANDIDATES_PAGE {
            break;
        }
    }
    Ok(report)
}

/// A run's threshold check of one subscription ([`bill_threshold`]), reported like its other
/// invoices: a failure is the subscription's own, an unavailable database stops the run.
async fn bill_early(
    conn: &mut Conn,
    candidate: &BillingCandidate,
    clock: Clock,
    plans: &Plans,
    report: &mut RunReport,
) -> Result<()> {
    match bill_threshold_with(conn, &candidate.project_id, &candidate.subscription_id, clock, plans).await {
        Ok(Some(billed)) => report.invoices.push(billed.invoice),
        Ok(None) => {}
        Err(e @ Error::Unavailable(_)) => return Err(e),
        Err(e) => {
            tracing::warn!(subscription = %candidate.subscription_id, error = %e, "threshold billing failed; the next run retries");
            report.failures.push((candidate.subscription_id.clone(), e));
        }
    }
    Ok(())
}

/// Whether a candidate's plan may bill early (has a usage threshold) and its period is open;
/// unknown without a read-ahead: looked at.
fn progressive(ahead: &HashMap<String, Ahead>, candidate: &BillingCandidate) -> bool {
    match ahead.get(&candidate.subscription_id) {
        Some(Ahead::NotDue { progressive }) => *progressive,
        Some(Ahead::Due { plan, .. }) => plan.version.row.usage_threshold.is_some(),
        None => true,
    }
}

/// How many subscriptions a run bills per transaction. A transaction and its commit (a flush of
/// the redo log) per invoice was most of a run's time; a group shares them, and takes its
/// invoice numbers with one statement. Larger groups hold their subscriptions' and wallets'
/// locks longer and redo more after a conflict or a failure.
const GROUP_SUBSCRIPTIONS: usize = 50;

/// What the groups of one page of a run share: the page as read ahead, and the run's inputs.
struct Group<'a> {
    ahead: &'a HashMap<String, Ahead>,
    plans: &'a Plans,
    clock: Clock,
    finalize: bool,
}

impl Group<'_> {
    /// Bills `members`' due boundaries, up to `budget` invoices, in one transaction. When it
    /// fails for a reason the retry wrapper does not settle (a subscription that cannot be
    /// billed), bills them again one transaction each: each failure is then reported alone, and
    /// the others are billed.
    async fn bill(
        &self,
        conn: &mut Conn,
        members: &[&BillingCandidate],
        budget: usize,
        report: &mut RunReport,
    ) -> Result<()> {
        if members.len() > 1 {
            match db::transaction_with_retry!(conn, retryable, |c| self.bill_once(c, members, budget).await) {
                Ok(invoices) => {
                    report.invoices.extend(invoices);
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(error = %e, subscriptions = members.len(), "a billing group failed; billing its subscriptions one by one");
                }
            }
        }
        let limit = report.invoices.len() + budget;
        for candidate in members {
            self.bill_each(conn, candidate, limit, report).await?;
        }
        Ok(())
    }

    /// The group's transaction: each member's due boundaries in turn (each as [`bill_next`]
    /// bills it, locks in the module's order), then the numbers of all its finalized invoices.
    async fn bill_once(
        &self,
        conn: &mut Conn,
        members: &[&BillingCandidate],
        budget: usize,
    ) -> std::result::Result<Vec<InvoiceRow>, TxFailure> {
        // Every member's lock before any wallet's: see the module's lock order.
        let ids: Vec<&str> = members.iter().map(|c| c.subscription_id.as_str()).collect();
        subscription_store::lock_ids(conn, &ids).await?;
        let mut billed = Vec::new();
        for candidate in members {
            let mut usage = self.usage(candidate);
            while billed.len() < budget {
                let Some(b) = bill_next_once(
                    conn,
                    &candidate.project_id,
                    &candidate.subscription_id,
                    self.clock,
                    self.finalize,
                    Numbering::Group,
                    self.plans,
                    usage.take(),
                )
                .await?
                else {
                    break;
                };
                let boundary = b.invoice.boundary;
                billed.push(b);
                if !self.more_due(candidate, boundary) {
                    break;
                }
            }
        }
        number_group(conn, &mut billed).await?;
        Ok(billed.into_iter().map(|b| b.invoice).collect())
    }

    /// One subscription's due boundaries, each in its own transaction, while the run has fewer
    /// than `limit` invoices; its failure is reported (and ends its turn), as a run did before
    /// groups.
    async fn bill_each(
        &self,
        conn: &mut Conn,
        candidate: &BillingCandidate,
        limit: usize,
        report: &mut RunReport,
    ) -> Result<()> {
        let mut usage = self.usage(candidate);
        while report.invoices.len() < limit {
            let billed = bill_next_with(
                conn,
                &candidate.project_id,
                &candidate.subscription_id,
                self.clock,
                self.finalize,
                self.plans,
                usage.take(),
            )
            .await;
            match billed {
                Ok(Some(billed)) => {
                    let boundary = billed.invoice.boundary;
                    report.invoices.push(billed.invoice);
                    if !self.more_due(candidate, boundary) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e @ Error::Unavailable(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(subscription = %candidate.subscription_id, error = %e, "billing failed; the next run retries");
                    report.failures.push((candidate.subscription_id.clone(), e));
                    break;
                }
            }
        }
        Ok(())
    }

    /// The usage read ahead for the subscription's first due boundary, if any.
    fn usage(&self, candidate: &BillingCandidate) -> Option<&AheadUsage> {
        match self.ahead.get(&candidate.subscription_id) {
            Some(Ahead::Due { usage, .. }) => usage.as_ref(),
            _ => None,
        }
    }

    /// Whether another boundary may be due after `boundary`: `false` when what was read ahead
    /// says it is not (no transaction then), `true` when unknown (the next one finds out).
    fn more_due(&self, candidate: &BillingCandidate, boundary: NaiveDateTime) -> bool {
        match self.ahead.get(&candidate.subscription_id) {
            Some(Ahead::Due { sub, plan, .. }) => next_boundary(sub, &plan.version, Some(boundary))
                .is_ok_and(|next| next.is_some_and(|b| b <= self.clock.cutoff)),
            _ => true,
        }
    }
}

/// Numbers a group's finalized invoices at the end of its transaction and writes them
/// finalized: per project (in id order, so that two groups lock the sequence rows in one order;
/// last, as every invoice takes its number), one statement takes as many numbers as the project
/// has invoices in the group, assigned in the order they were billed, and one more writes them. An invoice another run
/// made ([`Billed::created`] false) has its number already.
async fn number_group(conn: &mut Conn, billed: &mut [Billed]) -> std::result::Result<(), TxFailure> {
    let mut by_project: BTreeMap<String, Vec<&mut InvoiceRow>> = BTreeMap::new();
    for b in billed.iter_mut() {
        if b.created && b.invoice.number.is_none() && b.invoice.status == InvoiceStatus::Finalized.as_str() {
            by_project
                .entry(b.invoice.project_id.clone())
                .or_default()
                .push(&mut b.invoice);
        }
    }
    for (project_id, mut rows) in by_project {
        let numbers = store::next_numbers(conn, &project_id, rows.len() as u64).await?;
        for (row, number) in rows.iter_mut().zip(numbers) {
            row.number = Some(number);
        }
        let rows: Vec<&InvoiceRow> = rows.into_iter().map(|r| &*r).collect();
        if store::finalize_many(conn, &rows).await? != rows.len() {
            return Err(Error::Internal(format!("a group of {project_id}'s invoices were not all drafts")).into());
        }
    }
    Ok(())
}

/// A stored invoice's lines, in order.
pub async fn lines(conn: &mut Conn, invoice_id: &str) -> Result<Vec<LineRow>> {
    Ok(store::lines(conn, &[invoice_id]).await?)
}

/// The project's invoice with this id.
pub async fn find(conn: &mut Conn, project_id: &str, id: &str) -> Result<InvoiceRow> {
    if !ids::looks_like(INVOICE_ID_PREFIX, id) {
        return Err(Error::NotFound("invoice"));
    }
    store::find(conn, project_id, id)
        .await?
        .ok_or(Error::NotFound("invoice"))
}

// ---- recomputation and finalization

/// A stored invoice's manifest, read back.
pub fn stored_manifest(invoice: &InvoiceRow) -> Result<Manifest> {
    serde_json::from_str(&invoice.manifest)
        .map_err(|e| Error::Internal(format!("invoice {}: stored manifest unreadable: {e}", invoice.id)))
}

/// A stored line and its recomputed counterpart (matched by kind, charge and order among
/// those), either of which may be missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDiff {
    pub stored: Option<ManifestLine>,
    pub recomputed: Option<ManifestLine>,
}

impl LineDiff {
    /// `recomputed − stored`.
    pub fn difference(&self) -> Decimal {
        let amount = |l: &Option<ManifestLine>| l.as_ref().map_or(Decimal::ZERO, |l| l.amount);
        amount(&self.recomputed) - amount(&self.stored)
    }

    fn line(&self) -> &ManifestLine {
        self.recomputed
            .as_ref()
            .or(self.stored.as_ref())
            .expect("a diff has at least one side")
    }

    pub fn kind(&self) -> &str {
        &self.line().kind
    }

    pub fn charge_id(&self) -> Option<&str> {
        self.line().charge_id.as_deref()
    }

    pub fn description(&self) -> &str {
        &self.line().description
    }
}

/// The lines of two manifests that differ (in amount, quantity or the events behind them).
pub fn diff_lines(stored: &Manifest, recomputed: &Manifest) -> Vec<LineDiff> {
    /// A line's key: its kind, its charge, and its place among the lines with both.
    type Key = (String, Option<String>, usize);
    fn keyed(lines: &[ManifestLine]) -> Vec<(Key, ManifestLine)> {
        let mut seen: HashMap<(String, Option<String>), usize> = HashMap::new();
        lines
            .iter()
            .map(|l| {
                let n = seen.entry((l.kind.clone(), l.charge_id.clone())).or_default();
                *n += 1;
                ((l.kind.clone(), l.charge_id.clone(), *n), l.clone())
            })
            .collect()
    }
    let old = keyed(&stored.lines);
    let new = keyed(&recomputed.lines);
    let mut diffs = Vec::new();
    for (key, line) in &old {
        let other = new.iter().find(|(k, _)| k == key).map(|(_, l)| l.clone());
        let same = other.as_ref().is_some_and(|o| {
            o.amount == line.amount && o.quantity == line.quantity && o.events_hash == line.events_hash
        });
        if !same {
            diffs.push(LineDiff {
                stored: Some(line.clone()),
                recomputed: other,
            });
        }
    }
    for (key, line) in &new {
        if !old.iter().any(|(k, _)| k == key) {
            diffs.push(LineDiff {
                stored: None,
                recomputed: Some(line.clone()),
            });
        }
    }
    diffs
}

/// An invoice computed again from today's stored state.
#[derive(Debug, Clone)]
pub struct Recomputation {
    pub invoice: InvoiceRow,
    pub stored: Manifest,
    pub recomputed: Manifest,
    /// SHA-256 of the stored manifest (before a replacement).
    pub stored_hash: String,
    /// SHA-256 of the recomputed manifest: equal to `stored_hash` when nothing changed.
    pub recomputed_hash: String,
    pub lines: Vec<LineDiff>,
    /// The credit note or adjustment invoice a recomputation for real made.
    pub adjustment: Option<crate::store::invoices::AdjustmentRow>,
}

/// Recomputes `invoice` with its own inputs (plan version, boundaries, clock, the credits that
/// were available) except the cutoff: events received by `cutoff` count. Reads only.
async fn recompute_manifest(
    conn: &mut Conn,
    project_id: &str,
    invoice: &InvoiceRow,
    stored: &Manifest,
    cutoff: NaiveDateTime,
    credits_available: Decimal,
) -> Result<Manifest> {
    let sub = subscription_store::find(conn, project_id, &invoice.subscription_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("invoice {} has no subscription", invoice.id)))?;
    let version = plans::load_version(conn, project_id, &invoice.plan_version_id).await?;
    let customer = customer_store::find_by_id(conn, project_id, &invoice.customer_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("invoice {} has no customer", invoice.id)))?;
    let metrics = metric_defs(conn, project_id, &version).await?;
    let ctx = Context {
        project_id,
        sub: &sub,
        customer: &customer,
        version: &version,
        metrics: &metrics,
        previous: stored.previous_boundary,
        boundary: stored.boundary,
        usage_until: None,
        clock: Clock {
            now: stored.now.max(cutoff),
            cutoff,
        },
        credits_available,
        usage: None,
        threshold: stored.threshold,
    };
    compute(conn, &ctx).await
}

/// Locks an invoice for a change, in the run's order: its subscription first, then the invoice.
async fn lock_invoice(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    invoice_id: &str,
) -> std::result::Result<InvoiceRow, TxFailure> {
    subscription_store::lock(conn, project_id, subscription_id)
        .await?
        .ok_or(Error::NotFound("subscription"))?;
    Ok(store::lock(conn, project_id, invoice_id)
        .await?
        .ok_or(Error::NotFound("invoice"))?)
}

/// The latest document of an invoice: its last adjustment's recomputed manifest, or its own.
async fn latest_document(conn: &mut Conn, invoice: &InvoiceRow) -> Result<(Manifest, String)> {
    let adjustments = store::adjustments(conn, &invoice.project_id, &invoice.id).await?;
    match adjustments.last() {
        Some(a) => Ok((
            serde_json::from_str(&a.manifest)
                .map_err(|e| Error::Internal(format!("adjustment {}: stored manifest unreadable: {e}", a.id)))?,
            a.manifest_hash.clone(),
        )),
        None => Ok((stored_manifest(invoice)?, invoice.manifest_hash.clone())),
    }
}

/// What `invoice` would be if computed again with events received by `cutoff` (its own cutoff
/// when `None`: then the same inputs, and the same bytes unless stored state changed), compared
/// with its latest document (the invoice, or its last adjustment). Writes nothing.
pub async fn recompute_dry_run(
    conn: &mut Conn,
    project_id: &str,
    invoice_id: &str,
    cutoff: Option<NaiveDateTime>,
) -> Result<Recomputation> {
    let invoice = find(conn, project_id, invoice_id).await?;
    let (stored, stored_hash) = latest_document(conn, &invoice).await?;
    let cutoff = cutoff.unwrap_or(stored.cutoff);
    let recomputed = recompute_manifest(conn, project_id, &invoice, &stored, cutoff, stored.credits_available).await?;
    let json = recomputed.to_json()?;
    Ok(Recomputation {
        lines: diff_lines(&stored, &recomputed),
        stored_hash,
        recomputed_hash: Manifest::hash(&json),
        invoice,
        stored,
        recomputed,
        adjustment: None,
    })
}

/// Recomputes an invoice for real with events received by `cutoff` (its own when `None`): a
/// draft is replaced (with the credits the wallet holds now); a finalized or paid invoice is never
/// edited: the difference becomes an adjustment (a credit note or an adjustment invoice),
/// numbered and posted in one transaction. The same recomputation twice is one adjustment.
pub async fn recompute_for_real(
    conn: &mut Conn,
    project_id: &str,
    invoice_id: &str,
    cutoff: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> Result<Recomputation> {
    let invoice = find(conn, project_id, invoice_id).await?;
    let project_id = project_id.to_string();
    if invoice.status == InvoiceStatus::Draft.as_str() {
        return db::transaction_with_retry!(conn, retryable, |c| {
            rewrite_draft(
                c,
                &project_id,
                &invoice.subscription_id,
                &invoice.id,
                cutoff,
                now,
                false,
            )
            .await
        });
    }
    db::transaction_with_retry!(
        conn,
        |e| retryable(e) || db::is_unique_violation(e, "uq_invoice_adjustments_manifest"),
        |c| adjust_once(c, &project_id, &invoice.subscription_id, &invoice.id, cutoff, now).await
    )
}

async fn adjust_once(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    invoice_id: &str,
    cutoff: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> std::result::Result<Recomputation, TxFailure> {
    let invoice = lock_invoice(conn, project_id, subscription_id, invoice_id).await?;
    let status: InvoiceStatus = invoice.status.parse()?;
    if !matches!(status, InvoiceStatus::Finalized | InvoiceStatus::Paid) {
        return Err(Error::conflict(
            ErrorCode::InvoiceStatusConflict,
            format!("invoice {} is {}: it is not corrected", invoice.id, invoice.status),
        )
        .into());
    }
    // A threshold invoice that a later invoice of its period deducted is corrected there: the
    // later one rates the whole period so far and deducts what this one billed as it stood, so
    // an adjustment here would bill (or credit) the difference a second time.
    if invoice.reason == InvoiceReason::Threshold.as_str()
        && let Some(from) = invoice.usage_from
        && let Some(later) = store::later_in_period(conn, &invoice.subscription_id, from, invoice.boundary).await?
    {
        return Err(Error::conflict(
            ErrorCode::InvoiceStatusConflict,
            format!(
                "invoice {} was deducted by the period's later invoice {later}: recompute that one (the period's latest) instead",
                invoice.id
            ),
        )
        .into());
    }
    let (stored, stored_hash) = latest_document(conn, &invoice).await?;
    let cutoff = cutoff.unwrap_or(stored.cutoff);
    // The same credits as drawn: an adjustment neither draws more nor gives any back; the
    // difference is owed by (or to) the customer on its receivable.
    let drawn = -stored.credits;
    let recomputed = recompute_manifest(conn, project_id, &invoice, &stored, cutoff, drawn).await?;
    let json = recomputed.to_json()?;
    let recomputed_hash = Manifest::hash(&json);
    let mut done = Recomputation {
        lines: diff_lines(&stored, &recomputed),
        stored_hash,
        recomputed_hash: recomputed_hash.clone(),
        invoice: invoice.clone(),
        stored: stored.clone(),
        recomputed: recomputed.clone(),
        adjustment: None,
    };
    let total = recomputed.total - stored.total;
    if total.is_zero() {
        return Ok(done);
    }
    let id = ids::new_id(ADJUSTMENT_ID_PREFIX);
    let subtotal = recomputed.subtotal - stored.subtotal;
    let discount = recomputed.discount - stored.discount;
    let tax = recomputed.tax - stored.tax;
    let mut outbox = Vec::new();
    let posted = ledger::post_invoice(
        conn,
        project_id,
        None,
        &InvoicePosting {
            invoice_id: &id,
            customer_id: &invoice.customer_id,
            currency: &invoice.currency,
            revenue: recomputed.revenue() - stored.revenue(),
            tax,
            credits: Decimal::ZERO,
            description: format!("adjustment {id} of invoice {}", invoice.id),
        },
        now,
        &mut outbox,
    )
    .await?;
    let row = crate::store::invoices::AdjustmentRow {
        id,
        project_id: project_id.to_string(),
        invoice_id: invoice.id.clone(),
        number: store::next_number(conn, project_id).await?,
        kind: if total < Decimal::ZERO {
            AdjustmentKind::CreditNote
        } else {
            AdjustmentKind::AdjustmentInvoice
        }
        .as_str()
        .into(),
        currency: invoice.currency.clone(),
        subtotal,
        discount,
        tax,
        total,
        cutoff,
        manifest: json,
        manifest_hash: recomputed_hash,
        transaction_id: posted.invoice.map(|t| t.id),
        created_at: now,
    };
    store::insert_adjustment(conn, &row).await?;
    done.adjustment = Some(row);
    Ok(done)
}

/// Finalizes a draft: computes it again with its own cutoff and the credits the wallet holds
/// `now`, draws them, numbers it and posts it, in one transaction. Finalizing a finalized
/// invoice answers it as it is.
pub async fn finalize_invoice(
    conn: &mut Conn,
    project_id: &str,
    invoice_id: &str,
    now: NaiveDateTime,
) -> Result<InvoiceRow> {
    let invoice = find(conn, project_id, invoice_id).await?;
    if invoice.status != InvoiceStatus::Draft.as_str() {
        return Ok(invoice);
    }
    let project_id = project_id.to_string();
    let done = db::transaction_with_retry!(conn, retryable, |c| {
        rewrite_draft(c, &project_id, &invoice.subscription_id, &invoice.id, None, now, true).await
    })?;
    Ok(done.invoice)
}

/// The draft's transaction: subscription lock, invoice lock, wallet lock (the run's order),
/// recompute, replace what changed, and finalize when asked.
async fn rewrite_draft(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    invoice_id: &str,
    cutoff: Option<NaiveDateTime>,
    now: NaiveDateTime,
    finalize: bool,
) -> std::result::Result<Recomputation, TxFailure> {
    let invoice = lock_invoice(conn, project_id, subscription_id, invoice_id).await?;
    if invoice.status != InvoiceStatus::Draft.as_str() {
        if finalize {
            let stored = stored_manifest(&invoice)?;
            return Ok(Recomputation {
                stored_hash: invoice.manifest_hash.clone(),
                recomputed_hash: invoice.manifest_hash.clone(),
                recomputed: stored.clone(),
                stored,
                lines: Vec::new(),
                invoice,
                adjustment: None,
            });
        }
        return Err(Error::conflict(
            ErrorCode::InvoiceStatusConflict,
            format!(
                "invoice {} is {}: a finalized invoice is never edited",
                invoice.id, invoice.status
            ),
        )
        .into());
    }
    let stored = stored_manifest(&invoice)?;
    let mut outbox = Vec::new();
    let external_id = customer_external_id(conn, project_id, &invoice).await?;
    let mut wallet =
        ledger::lock_invoice_wallet(conn, project_id, &external_id, &invoice.currency, now, &mut outbox).await?;
    let available = wallet.as_ref().map_or(Decimal::ZERO, |w| w.available);
    let cutoff = cutoff.unwrap_or(stored.cutoff);
    let mut recomputed = recompute_manifest(conn, project_id, &invoice, &stored, cutoff, available).await?;
    recomputed.now = now;
    let (mut row, lines) = rows(project_id, &recomputed, InvoiceStatus::Draft, invoice.created_at)?;
    row.updated_at = now;
    store::update_draft(conn, &row).await?;
    store::delete_lines(conn, &row.id).await?;
    store::insert_lines(conn, &lines).await?;
    if finalize {
        finalize_row(
            conn,
            project_id,
            &mut row,
            &recomputed,
            wallet.as_mut(),
            now,
            &mut outbox,
        )
        .await?;
    }
    crate::ledger::outbox::write(conn, outbox).await?;
    Ok(Recomputation {
        lines: diff_lines(&stored, &recomputed),
        stored_hash: invoice.manifest_hash.clone(),
        recomputed_hash: row.manifest_hash.clone(),
        invoice: row,
        stored,
        recomputed,
        adjustment: None,
    })
}

async fn customer_external_id(conn: &mut Conn, project_id: &str, invoice: &InvoiceRow) -> Result<String> {
    Ok(customer_store::find_by_id(conn, project_id, &invoice.customer_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("invoice {} has no customer", invoice.id)))?
        .external_id)
}

// ---- previews

/// The invoice a subscription would get at its next boundary with the usage so far (`now`):
/// the current period's invoice, or under another plan version of the project (a what-if).
/// Computed like a run's, nothing written: the rows are answered, not stored.
pub async fn preview(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    plan_version_id: Option<&str>,
    now: NaiveDateTime,
) -> Result<(InvoiceRow, Vec<LineRow>)> {
    let sub = subscription_store::find(conn, project_id, subscription_id)
        .await?
        .ok_or(Error::NotFound("subscription"))?;
    let version = match plan_version_id {
        Some(id) => plans::load_version(conn, project_id, id).await?,
        None => plans::load_version(conn, project_id, &sub.plan_version_id).await?,
    };
    let last = store::last_boundary(conn, &sub.id).await?;
    let boundary = next_boundary(&sub, &version, last)?
        .ok_or_else(|| Error::invalid("subscriptionId", "the subscription has ended and was billed to its end"))?;
    let customer = customer_store::find_by_id(conn, project_id, &sub.customer_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("subscription {} has no customer", sub.id)))?;
    let metrics = metric_defs(conn, project_id, &version).await?;
    let credits_available =
        ledger::available_credits(conn, project_id, &customer.external_id, &version.row.currency, now).await?;
    let ctx = Context {
        project_id,
        sub: &sub,
        customer: &customer,
        version: &version,
        metrics: &metrics,
        previous: last,
        boundary,
        usage_until: Some(now),
        usage: None,
        clock: Clock { now, cutoff: now },
        credits_available,
        threshold: None,
    };
    let manifest = compute(conn, &ctx).await?;
    rows(project_id, &manifest, InvoiceStatus::Draft, now)
}

// ---- voiding

/// Voids an invoice: a draft is only marked void; a finalized one also has its postings reversed
/// (the customer no longer owes it; the prepaid credits it drew come back to the wallet), in one
/// transaction. Its boundary stays billed: it is not billed again. A paid invoice is not voided
/// (that is a refund), nor one with credit notes or adjustment invoices (they would stay owed);
/// voiding a void invoice answers it as it is.
pub async fn void_invoice(
    conn: &mut Conn,
    project_id: &str,
    invoice_id: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<InvoiceRow> {
    let reason = crate::ledger::parse_text("reason", Some(reason), true)?.unwrap_or_default();
    let invoice = find(conn, project_id, invoice_id).await?;
    let project_id = project_id.to_string();
    db::transaction_with_retry!(conn, retryable, |c| {
        void_once(c, &project_id, &invoice.subscription_id, &invoice.id, &reason, now).await
    })
}

async fn void_once(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    invoice_id: &str,
    reason: &str,
    now: NaiveDateTime,
) -> std::result::Result<InvoiceRow, TxFailure> {
    let mut invoice = lock_invoice(conn, project_id, subscription_id, invoice_id).await?;
    let status: InvoiceStatus = invoice.status.parse()?;
    match status {
        InvoiceStatus::Void => return Ok(invoice),
        InvoiceStatus::Paid => {
            return Err(Error::conflict(
                ErrorCode::InvoiceStatusConflict,
                format!("invoice {} is paid: it is refunded, not voided", invoice.id),
            )
            .into());
        }
        InvoiceStatus::Draft | InvoiceStatus::Finalized => {}
    }
    // Its credit notes and adjustment invoices are documents of their own, posted on the
    // customer's receivable: voiding the invoice alone would leave them owed.
    let adjustments = store::adjustments(conn, project_id, &invoice.id).await?;
    if let Some(last) = adjustments.last() {
        return Err(Error::conflict(
            ErrorCode::InvoiceStatusConflict,
            format!(
                "invoice {} has {} adjustment(s) (the last: {}): it is corrected, not voided",
                invoice.id,
                adjustments.len(),
                last.id
            ),
        )
        .into());
    }
    let mut outbox = Vec::new();
    if status == InvoiceStatus::Finalized {
        let manifest = stored_manifest(&invoice)?;
        let find_txn = async |conn: &mut Conn, id: &Option<String>| -> std::result::Result<_, TxFailure> {
            Ok(match id {
                Some(id) => crate::store::ledger::find_transaction(conn, project_id, id).await?,
                None => None,
            })
        };
        let original = ledger::InvoicePosted {
            invoice: find_txn(conn, &invoice.invoice_transaction_id).await?,
            credits: find_txn(conn, &invoice.credits_transaction_id).await?,
        };
        let external_id = customer_external_id(conn, project_id, &invoice).await?;
        let mut wallet = match original.credits {
            Some(_) => {
                ledger::lock_invoice_wallet(conn, project_id, &external_id, &invoice.currency, now, &mut outbox).await?
            }
            None => None,
        };
        let reversed = ledger::reverse_invoice(
            conn,
            project_id,
            wallet.as_mut(),
            &InvoicePosting {
                invoice_id: &invoice.id,
                customer_id: &invoice.customer_id,
                currency: &invoice.currency,
                revenue: manifest.revenue(),
                tax: manifest.tax,
                credits: -manifest.credits,
                description: format!("void of invoice {}: {reason}", invoice.id),
            },
            &original,
            now,
            &mut outbox,
        )
        .await?;
        invoice.void_invoice_transaction_id = reversed.invoice.map(|t| t.id);
        invoice.void_credits_transaction_id = reversed.credits.map(|t| t.id);
    }
    invoice.status = InvoiceStatus::Void.as_str().into();
    invoice.voided_at = Some(now);
    invoice.void_reason = Some(reason.to_string());
    invoice.updated_at = now;
    if store::void(conn, &invoice).await? != 1 {
        return Err(Error::Internal(format!("invoice {} changed under its lock", invoice.id)).into());
    }
    crate::ledger::outbox::write(conn, outbox).await?;
    Ok(invoice)
}

// ---- explanation

/// A page of the events behind a usage line, in the order they occurred: the line's metric (with
/// its filters), customer and usage period, received by the invoice's cutoff. Empty for lines
/// that are not usage.
pub async fn line_events(
    conn: &mut Conn,
    invoice: &InvoiceRow,
    line: &LineRow,
    after: Option<(NaiveDateTime, u64)>,
    limit: i64,
) -> Result<Vec<crate::store::usage_events::EventRow>> {
    let (Some(charge_id), Some(from), Some(to)) = (&line.charge_id, invoice.usage_from, invoice.usage_to) else {
        return Ok(Vec::new());
    };
    if line.kind != InvoiceLineKind::Usage.as_str() {
        return Ok(Vec::new());
    }
    let charge = crate::store::plans::find_charge(conn, &invoice.project_id, charge_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("invoice line's charge {charge_id} is gone")))?;
    let metric = crate::store::billable_metrics::find_by_id(conn, &invoice.project_id, &charge.metric_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("charge {charge_id} has no metric")))?;
    let def = MetricDef::from_row(&metric)?;
    let customer = customer_external_id(conn, &invoice.project_id, invoice).await?;
    metrics::billed_events_page(
        conn,
        &invoice.project_id,
        &def,
        &customer,
        from,
        to,
        invoice.cutoff,
        after,
        limit,
    )
    .await
}
