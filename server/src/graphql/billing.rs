//! Billing: prices as GraphQL input (`PriceInput`, one `@oneOf` variant per model) and
//! `quotePrice`, which rates a price without writing anything. The rating itself is the
//! `neruba-pricing` crate; this module only parses the wire format into its specs and answers
//! its results as `Money`.

use async_graphql::{Context, Enum, ID, InputObject, Object, OneofObject, SimpleObject};
use neruba_pricing::{
    self as pricing, Charge, ChargeSpec, PercentageSpec, PercentageTierSpec, PriceSpec, RateError, StepKind, TierSpec,
    Usage,
};
use rust_decimal::Decimal as Dec;

use super::{Decimal, Money, resolve_project, state};
use crate::{
    auth::Scope,
    credit_units, db,
    error::{Error, GraphqlResult as Result},
    money::{DecimalLimits, parse_decimal},
};

/// A price: exactly one of its fields, the model. Amounts are in the charge's currency and may
/// carry up to 12 decimal places (a price per token); invoice lines are rounded, not prices.
/// The models and their conventions are in docs/billing.md.
#[derive(OneofObject)]
pub enum PriceInput {
    /// `quantity × unitAmount`.
    PerUnit(PerUnitPriceInput),
    /// Each tier prices the units that fall in it, plus its flat fee when it has any.
    Graduated(TieredPriceInput),
    /// The tier the whole quantity falls in prices every unit, plus its flat fee.
    Volume(TieredPriceInput),
    /// `packageAmount` per started package of `packageSize` units.
    Package(PackagePriceInput),
    /// A percentage of each event's amount, with per-event terms.
    Percentage(PercentagePriceInput),
    /// Tiers of percentages over the period's total amount.
    GraduatedPercentage(GraduatedPercentagePriceInput),
}

#[derive(InputObject)]
pub struct PerUnitPriceInput {
    pub unit_amount: Decimal,
}

/// Tiers in increasing order of `upTo`; the last has no `upTo` (unbounded).
#[derive(InputObject)]
pub struct TieredPriceInput {
    pub tiers: Vec<TierInput>,
}

/// The units above the previous tier's `upTo`, up to and including this `upTo`.
#[derive(InputObject)]
pub struct TierInput {
    /// Inclusive upper bound; omitted or null for the last tier only.
    pub up_to: Option<Decimal>,
    pub unit_amount: Decimal,
    /// Billed once when the tier has units (default 0).
    pub flat_amount: Option<Decimal>,
}

#[derive(InputObject)]
pub struct PackagePriceInput {
    /// Units per package: a whole number, at least 1.
    pub package_size: Decimal,
    pub package_amount: Decimal,
}

/// See docs/billing.md for how the free allowance, fixed fee and per-event bounds combine.
#[derive(InputObject)]
pub struct PercentagePriceInput {
    /// Percent of each event's amount: `"2.5"` is 2.5 %; 0 to 100, at most 6 decimal places.
    pub rate: Decimal,
    /// Added to the fee of each event that is not free (default 0).
    pub fixed_fee: Option<Decimal>,
    /// The first this many events are free.
    pub free_events: Option<i32>,
    /// The first this much of the events' amounts is free.
    pub free_amount: Option<Decimal>,
    /// An event's fee is at least this.
    pub event_minimum: Option<Decimal>,
    /// An event's fee is at most this.
    pub event_maximum: Option<Decimal>,
}

#[derive(InputObject)]
pub struct GraduatedPercentagePriceInput {
    pub tiers: Vec<PercentageTierInput>,
}

#[derive(InputObject)]
pub struct PercentageTierInput {
    pub up_to: Option<Decimal>,
    /// Percent of the amount in this tier.
    pub rate: Decimal,
    pub flat_amount: Option<Decimal>,
}

#[derive(InputObject)]
pub struct QuotePriceInput {
    /// The operator names the project; a project key quotes in its own (for its credit units).
    pub project_id: Option<ID>,
    pub price: PriceInput,
    /// An ISO 4217 currency or one of the project's credit units: its minor units round the lines.
    pub currency: String,
    /// The usage to rate, for every model but `percentage`. Give this or `eventAmounts`.
    pub quantity: Option<Decimal>,
    /// The amounts of single events in the order they occurred, for `percentage` (and
    /// `graduatedPercentage`, which sums them). At most 10,000.
    pub event_amounts: Option<Vec<Decimal>>,
    /// Units that are free, subtracted before tiers or packages (not for `percentage`).
    pub free_units: Option<Decimal>,
    /// The least the charge bills: a true-up line tops the fee up to it. In the currency's minor units.
    pub minimum: Option<Decimal>,
}

/// What a step of a rating did; each kind says what its `quantity` and `count` are.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum PriceStepKind {
    /// `quantity` units were free; amount 0.
    FreeUnits,
    /// `quantity × unitAmount`.
    Unit,
    /// Graduated tier `tier`: the `quantity` units in `(from, upTo]` × `unitAmount` + `flatAmount`.
    Tier,
    /// Volume tier `tier`, the one the whole quantity falls in: `quantity × unitAmount + flatAmount`.
    VolumeTier,
    /// `count` started packages for `quantity` units, × `unitAmount` (the package price).
    Package,
    /// `count` events (all of them free) and `quantity` of event amounts were free; amount 0.
    FreeUsage,
    /// `rate` % of `quantity`, the event amounts that were not free.
    Percentage,
    /// A fixed fee of `unitAmount` on each of `count` events that were not free.
    EventFees,
    /// `count` events' fees were raised to the per-event minimum `unitAmount`.
    EventMinimum,
    /// `count` events' fees were cut to the per-event maximum `unitAmount` (a negative amount).
    EventMaximum,
    /// Graduated percentage tier `tier`: `rate` % of the `quantity` of amount in `(from, upTo]`, + `flatAmount`.
    PercentageTier,
}

impl From<StepKind> for PriceStepKind {
    fn from(kind: StepKind) -> Self {
        match kind {
            StepKind::FreeUnits => PriceStepKind::FreeUnits,
            StepKind::Unit => PriceStepKind::Unit,
            StepKind::Tier => PriceStepKind::Tier,
            StepKind::VolumeTier => PriceStepKind::VolumeTier,
            StepKind::Package => PriceStepKind::Package,
            StepKind::FreeUsage => PriceStepKind::FreeUsage,
            StepKind::Percentage => PriceStepKind::Percentage,
            StepKind::EventFees => PriceStepKind::EventFees,
            StepKind::EventMinimum => PriceStepKind::EventMinimum,
            StepKind::EventMaximum => PriceStepKind::EventMaximum,
            StepKind::PercentageTier => PriceStepKind::PercentageTier,
        }
    }
}

/// One step of a rating. Amounts are exact (not rounded); fields that do not apply are null.
#[derive(SimpleObject)]
pub struct PriceStep {
    pub kind: PriceStepKind,
    /// 1-based tier number.
    pub tier: Option<i32>,
    /// The tier's lower bound, exclusive.
    pub from: Option<Decimal>,
    /// The tier's upper bound, inclusive; null for the unbounded last tier.
    pub up_to: Option<Decimal>,
    pub quantity: Decimal,
    pub count: Option<i32>,
    pub unit_amount: Option<Money>,
    pub flat_amount: Option<Money>,
    /// Percent.
    pub rate: Option<Decimal>,
    pub amount: Money,
}

/// A price rated for some usage, as an invoice would bill it.
#[derive(SimpleObject)]
pub struct PriceQuote {
    /// The exact amount of the usage under the price (the steps add up to it).
    pub amount: Money,
    /// The fee line: `amount` rounded once to the currency's minor units, half away from zero.
    pub fee: Money,
    /// The minimum's true-up line, when the fee is below the minimum.
    pub minimum_true_up: Option<Money>,
    /// `fee` plus `minimumTrueUp`: what an invoice would bill for this charge before coupons,
    /// taxes and prepaid credits.
    pub total: Money,
    pub steps: Vec<PriceStep>,
    /// The version of the billing conventions (docs/billing.md) this quote followed.
    pub conventions_version: i32,
}

#[derive(Default)]
pub struct BillingQuery;

#[Object]
impl BillingQuery {
    /// Rates a price for a quantity (or event amounts) without writing anything: for pricing
    /// pages and calculators (scope `READ`). Same engine and conventions as billing runs.
    async fn quote_price(&self, ctx: &Context<'_>, input: QuotePriceInput) -> Result<PriceQuote> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Read).await?;
        let charge = parse_charge("", &input.price, input.free_units.as_ref(), input.minimum.as_ref())?;
        let usage = match (&input.quantity, &input.event_amounts) {
            (Some(quantity), None) => Quantity::One(parse_decimal("quantity", &quantity.0, DecimalLimits::QUANTITY)?),
            (None, Some(amounts)) => {
                if amounts.len() > pricing::MAX_EVENT_AMOUNTS {
                    return Err(Error::invalid(
                        "eventAmounts",
                        format!("at most {} event amounts", pricing::MAX_EVENT_AMOUNTS),
                    )
                    .into());
                }
                let parsed = amounts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| parse_decimal(&format!("eventAmounts.{i}"), &a.0, DecimalLimits::QUANTITY))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Quantity::Events(parsed)
            }
            _ => return Err(Error::invalid("quantity", "give exactly one of quantity and eventAmounts").into()),
        };
        let unit = {
            let mut conn = db::get(&state(ctx).pool).await?;
            credit_units::resolve_unit(&mut conn, &project_id, "currency", &input.currency)
                .await?
                .0
        };
        if let Some(minimum) = charge.minimum() {
            unit.check_precision("minimum", minimum)?;
        }
        let rating = pricing::rate(
            &charge,
            match &usage {
                Quantity::One(q) => Usage::Quantity(*q),
                Quantity::Events(amounts) => Usage::EventAmounts(amounts),
            },
        )
        .map_err(rate_error)?;
        let lines = charge.bill(&rating, unit.decimals());
        let money = |amount: Dec| Money::in_unit(amount, &unit);
        let steps = price_steps(&rating, &unit)?;
        Ok(PriceQuote {
            amount: money(rating.amount),
            fee: money(lines.fee),
            minimum_true_up: lines.true_up.map(money),
            total: money(lines.total()),
            steps,
            conventions_version: pricing::CONVENTIONS_VERSION as i32,
        })
    }
}

/// A rating's steps as GraphQL answers them, amounts in `unit`.
pub(crate) fn price_steps(rating: &pricing::Rating, unit: &crate::currency::Currency) -> Result<Vec<PriceStep>> {
    let money = |amount: Dec| Money::in_unit(amount, unit);
    rating
        .steps
        .iter()
        .map(|step| {
            Ok(PriceStep {
                kind: step.kind.into(),
                tier: step.tier.map(|t| t as i32),
                from: step.from.map(Decimal::from),
                up_to: step.up_to.map(Decimal::from),
                quantity: step.quantity.into(),
                count: step
                    .count
                    .map(i32::try_from)
                    .transpose()
                    .map_err(|_| rate_error(RateError::TooLarge))?,
                unit_amount: step.unit_amount.map(money),
                flat_amount: step.flat_amount.map(money),
                rate: step.rate.map(Decimal::from),
                amount: money(step.amount),
            })
        })
        .collect()
}

enum Quantity {
    One(Dec),
    Events(Vec<Dec>),
}

fn rate_error(e: RateError) -> crate::error::GraphqlError {
    match e {
        RateError::Quantity(message) => Error::invalid("quantity", message),
        RateError::EventAmount { index, message } => Error::invalid(format!("eventAmounts.{index}"), message),
        RateError::NeedsEvents => Error::invalid("eventAmounts", e.to_string()),
        RateError::NeedsQuantity => Error::invalid("quantity", e.to_string()),
        RateError::TooLarge => Error::invalid("quantity", e.to_string()),
    }
    .into()
}

/// Parses a price and a charge's terms into a checked [`Charge`]. Field names in errors are
/// paths in the input under `at` (`price.graduated.tiers.1.upTo`, `charges.0.freeUnits`).
pub(crate) fn parse_charge(
    at: &str,
    price: &PriceInput,
    free_units: Option<&Decimal>,
    minimum: Option<&Decimal>,
) -> std::result::Result<Charge, Error> {
    let (variant, spec) = price_spec(at, price)?;
    let spec = ChargeSpec {
        price: spec,
        free_units: free_units
            .map(|f| parse_decimal(&format!("{at}freeUnits"), &f.0, DecimalLimits::QUANTITY))
            .transpose()?,
        minimum: minimum
            .map(|m| parse_decimal(&format!("{at}minimum"), &m.0, DecimalLimits::MONEY))
            .transpose()?,
    };
    Charge::parse(spec).map_err(|e| {
        let field = match e.field.strip_prefix("price.") {
            Some(inner) => format!("{at}price.{variant}.{inner}"),
            None => format!("{at}{}", e.field),
        };
        Error::invalid(field, e.message)
    })
}

fn price_spec(at: &str, price: &PriceInput) -> std::result::Result<(&'static str, PriceSpec), Error> {
    let amount =
        |field: String, value: &Decimal| parse_decimal(&format!("{at}{field}"), &value.0, DecimalLimits::MONEY);
    let optional = |field: String, value: &Option<Decimal>| -> std::result::Result<Dec, Error> {
        value.as_ref().map_or(Ok(Dec::ZERO), |v| amount(field, v))
    };
    let tiers =
        |variant: &str, tiers: &[TierInput], limits: DecimalLimits| -> std::result::Result<Vec<TierSpec>, Error> {
            check_tier_count(at, variant, tiers.len())?;
            tiers
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let field = |name: &str| format!("price.{variant}.tiers.{i}.{name}");
                    Ok(TierSpec {
                        up_to: t
                            .up_to
                            .as_ref()
                            .map(|u| parse_decimal(&format!("{at}{}", field("upTo")), &u.0, limits))
                            .transpose()?,
                        unit_amount: amount(field("unitAmount"), &t.unit_amount)?,
                        flat_amount: optional(field("flatAmount"), &t.flat_amount)?,
                    })
                })
                .collect()
        };
    Ok(match price {
        PriceInput::PerUnit(p) => (
            "perUnit",
            PriceSpec::PerUnit {
                unit_amount: amount("price.perUnit.unitAmount".into(), &p.unit_amount)?,
            },
        ),
        PriceInput::Graduated(p) => (
            "graduated",
            PriceSpec::Graduated {
                tiers: tiers("graduated", &p.tiers, DecimalLimits::QUANTITY)?,
            },
        ),
        PriceInput::Volume(p) => (
            "volume",
            PriceSpec::Volume {
                tiers: tiers("volume", &p.tiers, DecimalLimits::QUANTITY)?,
            },
        ),
        PriceInput::Package(p) => (
            "package",
            PriceSpec::Package {
                package_size: parse_decimal(
                    &format!("{at}price.package.packageSize"),
                    &p.package_size.0,
                    DecimalLimits::QUANTITY,
                )?,
                package_amount: amount("price.package.packageAmount".into(), &p.package_amount)?,
            },
        ),
        PriceInput::Percentage(p) => {
            let field = |name: &str| format!("price.percentage.{name}");
            let free_events = match p.free_events {
                Some(n) => Some(
                    u64::try_from(n)
                        .map_err(|_| Error::invalid(format!("{at}{}", field("freeEvents")), "must not be negative"))?,
                ),
                None => None,
            };
            let maybe = |name: &str, v: &Option<Decimal>| v.as_ref().map(|v| amount(field(name), v)).transpose();
            (
                "percentage",
                PriceSpec::Percentage(PercentageSpec {
                    rate: amount(field("rate"), &p.rate)?,
                    fixed_fee: optional(field("fixedFee"), &p.fixed_fee)?,
                    free_events,
                    free_amount: maybe("freeAmount", &p.free_amount)?,
                    event_minimum: maybe("eventMinimum", &p.event_minimum)?,
                    event_maximum: maybe("eventMaximum", &p.event_maximum)?,
                }),
            )
        }
        PriceInput::GraduatedPercentage(p) => {
            check_tier_count(at, "graduatedPercentage", p.tiers.len())?;
            let tiers = p
                .tiers
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let field = |name: &str| format!("price.graduatedPercentage.tiers.{i}.{name}");
                    Ok(PercentageTierSpec {
                        up_to: t.up_to.as_ref().map(|u| amount(field("upTo"), u)).transpose()?,
                        rate: amount(field("rate"), &t.rate)?,
                        flat_amount: optional(field("flatAmount"), &t.flat_amount)?,
                    })
                })
                .collect::<std::result::Result<Vec<_>, Error>>()?;
            ("graduatedPercentage", PriceSpec::GraduatedPercentage { tiers })
        }
    })
}

/// Refuses an oversized tier list before parsing its members (the engine would too, after).
fn check_tier_count(at: &str, variant: &str, count: usize) -> std::result::Result<(), Error> {
    if count == 0 || count > pricing::MAX_TIERS {
        return Err(Error::invalid(
            format!("{at}price.{variant}.tiers"),
            format!("must have from 1 to {} tiers", pricing::MAX_TIERS),
        ));
    }
    Ok(())
}

// ---- plans

use async_graphql::{Union, connection::Connection};
use chrono::{DateTime, Utc};

use super::{
    absent_is_null,
    loaders::{CustomerLoader, MetricLoader, load_link},
    pagination::{self, CursorKind},
    require_read_of,
    usage::BillableMetric,
    utc,
};
use crate::{
    billing::plans::{self, ChargeInput, FeeTiming, IntervalUnit, PlanInput},
    store::plans as plan_store,
};

/// A plan's billing interval: `count` × `unit` (`{unit: MONTH, count: 1}` is monthly).
#[derive(InputObject, SimpleObject, Clone)]
#[graphql(input_name = "IntervalInput")]
pub struct Interval {
    pub unit: IntervalUnit,
    /// 1 to 12 months, 1 to 5 years or 1 to 366 days.
    #[graphql(default = 1)]
    pub count: i32,
}

/// Credits granted through the ledger at the start of each period, expiring at its end.
#[derive(InputObject)]
pub struct IncludedCreditsInput {
    pub amount: Decimal,
    /// An ISO 4217 currency or a declared credit unit: the wallet the credits go to.
    pub currency: String,
}

/// A usage charge: a billable metric and a price, with free units and a minimum.
#[derive(InputObject)]
pub struct UsageChargeInput {
    /// The billable metric's code. A percentage price needs a metric that aggregates `SUM`.
    pub metric: String,
    pub price: PriceInput,
    /// Units that are free each period, subtracted before tiers or packages.
    pub free_units: Option<Decimal>,
    /// The least this charge bills each period (a true-up line), in the plan's currency.
    pub minimum: Option<Decimal>,
}

/// What a plan version bills.
#[derive(InputObject)]
pub struct PlanDefinitionInput {
    pub name: String,
    /// An ISO 4217 currency or a declared credit unit; every amount of the plan is in it.
    pub currency: String,
    pub interval: Interval,
    /// Billed each period (default 0), prorated by days on changes.
    pub fixed_fee: Option<Decimal>,
    #[graphql(default_with = "FeeTiming::Advance")]
    pub fixed_fee_timing: FeeTiming,
    /// The least a period bills in all: a true-up line when the period's fees are below it.
    pub minimum_commitment: Option<Decimal>,
    pub included_credits: Option<IncludedCreditsInput>,
    /// Threshold (progressive) billing: once the period's usage charges, net of what earlier
    /// threshold invoices of the period billed, reach this amount, a billing run invoices them
    /// early (`reason: THRESHOLD`); the period's last invoice deducts what they billed. Needs
    /// usage charges; positive.
    pub usage_threshold: Option<Decimal>,
    #[graphql(default = 0)]
    pub trial_days: i32,
    /// At most 50, one per metric.
    #[graphql(default)]
    pub charges: Vec<UsageChargeInput>,
}

#[derive(InputObject)]
pub struct CreatePlanInput {
    pub project_id: Option<ID>,
    /// 1 to 64 of `A-Z a-z 0-9 _ - . :`; unique in the project.
    pub code: String,
    pub definition: PlanDefinitionInput,
}

#[derive(InputObject)]
pub struct CreatePlanVersionInput {
    pub project_id: Option<ID>,
    pub plan_id: ID,
    pub definition: PlanDefinitionInput,
}

#[derive(SimpleObject)]
pub struct CreatePlanPayload {
    pub plan_version: PlanVersion,
    /// False when the same definition was there already (a replay): nothing was written.
    pub created: bool,
}

#[derive(SimpleObject)]
pub struct CreatePlanVersionPayload {
    pub plan_version: PlanVersion,
    /// False when the definition equals the latest version, which is answered: nothing was written.
    pub created: bool,
}

fn plan_input(def: PlanDefinitionInput) -> std::result::Result<PlanInput, Error> {
    let charges = def
        .charges
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("charges.{i}.");
            Ok(ChargeInput {
                field: format!("charges.{i}"),
                metric: c.metric.clone(),
                charge: parse_charge(&at, &c.price, c.free_units.as_ref(), c.minimum.as_ref())?,
            })
        })
        .collect::<std::result::Result<Vec<_>, Error>>()?;
    let (included_credits, included_credits_currency) = match def.included_credits {
        Some(c) => (Some(c.amount.0), Some(c.currency)),
        None => (None, None),
    };
    Ok(PlanInput {
        name: def.name,
        currency: def.currency,
        interval_unit: def.interval.unit,
        interval_count: i64::from(def.interval.count),
        fixed_fee: def.fixed_fee.map(|d| d.0),
        fixed_fee_timing: def.fixed_fee_timing,
        minimum_commitment: def.minimum_commitment.map(|d| d.0),
        included_credits,
        included_credits_currency,
        usage_threshold: def.usage_threshold.map(|d| d.0),
        trial_days: i64::from(def.trial_days),
        charges,
    })
}

/// A plan: a code whose definitions are numbered, immutable versions.
pub struct Plan(pub(crate) plan_store::PlanRow);

#[Object]
impl Plan {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn code(&self) -> &str {
        &self.0.code
    }
    /// The newest version: what new subscriptions get (not for a customer's portal session).
    async fn latest_version(&self, ctx: &Context<'_>) -> Result<PlanVersion> {
        super::not_for_customers(ctx)?;
        self.version(ctx, self.0.latest_version as i32)
            .await?
            .ok_or_else(|| Error::Internal(format!("plan {} has no latest version", self.0.id)).into())
    }
    /// Version `number`, or null when the plan has no such version (not for a customer's portal
    /// session).
    async fn version(&self, ctx: &Context<'_>, number: i32) -> Result<Option<PlanVersion>> {
        super::not_for_customers(ctx)?;
        let Ok(number) = u32::try_from(number) else {
            return Ok(None);
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        absent_is_null(async {
            Ok(PlanVersion(
                plans::find_version(&mut conn, &self.0.project_id, &self.0.id, Some(number)).await?,
            ))
        })
        .await
    }
    /// Every version, newest first (not for a customer's portal session).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, PlanVersion>> {
        super::not_for_customers(ctx)?;
        let size = pagination::page_size(first)?;
        let before = pagination::after_key(CursorKind::PlanVersion, after.as_deref())?
            .map(|k| {
                k.parse::<u32>()
                    .map_err(|_| Error::invalid("after", "is not a cursor from this list"))
            })
            .transpose()?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = plan_store::list_versions(&mut conn, &self.0.id, before, size + 1).await?;
        let mut versions = Vec::with_capacity(rows.len());
        for row in rows {
            versions.push(plans::load_version(&mut conn, &self.0.project_id, &row.id).await?);
        }
        Ok(pagination::connection(
            CursorKind::PlanVersion,
            versions,
            size,
            after.as_deref(),
            |v| v.row.version.to_string(),
            PlanVersion,
        ))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
}

/// One immutable definition of a plan.
pub struct PlanVersion(pub(crate) plans::PlanVersion);

#[Object]
impl PlanVersion {
    pub async fn id(&self) -> ID {
        ID(self.0.row.id.clone())
    }
    /// The plan (not for a customer's portal session, which sees the versions it is billed on,
    /// not the plan's others).
    async fn plan(&self, ctx: &Context<'_>) -> Result<Plan> {
        super::not_for_customers(ctx)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let row = plan_store::find_plan(&mut conn, &self.0.row.project_id, &self.0.row.plan_id)
            .await?
            .ok_or_else(|| Error::Internal("a plan version without its plan".into()))?;
        Ok(Plan(row))
    }
    /// The plan's code (also `plan { code }`).
    async fn code(&self) -> &str {
        &self.0.code
    }
    /// 1, 2, …: numbered in the order they were made.
    async fn version(&self) -> i32 {
        self.0.row.version as i32
    }
    /// Whether this is the plan's newest version.
    async fn is_latest(&self) -> bool {
        self.0.row.version == self.0.latest_version
    }
    async fn name(&self) -> &str {
        &self.0.row.name
    }
    async fn currency(&self) -> &str {
        &self.0.row.currency
    }
    async fn interval(&self) -> Result<Interval> {
        Ok(Interval {
            unit: self.0.row.interval_unit.parse()?,
            count: i32::from(self.0.row.interval_count),
        })
    }
    async fn fixed_fee(&self) -> Money {
        self.money(self.0.row.fixed_fee)
    }
    async fn fixed_fee_timing(&self) -> Result<FeeTiming> {
        Ok(self.0.row.fixed_fee_timing.parse()?)
    }
    async fn minimum_commitment(&self) -> Option<Money> {
        self.0.row.minimum_commitment.map(|m| self.money(m))
    }
    /// Credits granted each period, in their own unit.
    async fn included_credits(&self) -> Option<Money> {
        match (self.0.row.included_credits, &self.0.row.included_credits_currency) {
            (Some(amount), Some(code)) => Some(Money::stored(amount, code, &self.0.row.project_id)),
            _ => None,
        }
    }
    /// Usage that triggers an early (threshold) invoice within a period; `null`: none.
    async fn usage_threshold(&self) -> Option<Money> {
        self.0.row.usage_threshold.map(|m| self.money(m))
    }
    async fn trial_days(&self) -> i32 {
        i32::from(self.0.row.trial_days)
    }
    /// The usage charges, in the order they were given (at most 50).
    async fn charges(&self) -> Vec<UsageCharge> {
        self.0
            .charges
            .iter()
            .map(|c| UsageCharge {
                charge: c.clone(),
                version: self.0.row.clone(),
                currency: self.0.currency.clone(),
            })
            .collect()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.row.created_at)
    }
}

impl PlanVersion {
    fn money(&self, amount: Dec) -> Money {
        Money::in_unit(amount, &self.0.currency)
    }
}

/// A usage charge of a plan version.
pub struct UsageCharge {
    pub(crate) charge: plans::PlanCharge,
    pub(crate) version: plan_store::PlanVersionRow,
    pub(crate) currency: crate::currency::Currency,
}

#[Object]
impl UsageCharge {
    pub async fn id(&self) -> ID {
        ID(self.charge.id.clone())
    }
    /// The billable metric whose aggregate this charge rates (scope `READ`).
    async fn metric(&self, ctx: &Context<'_>) -> Result<Option<BillableMetric>> {
        super::require_read_reached(ctx, &self.version.project_id)?;
        absent_is_null(async {
            let row =
                load_link::<MetricLoader>(ctx, &self.version.project_id, &self.charge.metric_id, "billable metric")
                    .await?;
            Ok(BillableMetric::try_from(row)?)
        })
        .await
    }
    async fn price(&self) -> Price {
        price_output(self.charge.charge.price().spec(), &self.currency)
    }
    async fn free_units(&self) -> Option<Decimal> {
        Some(self.charge.charge.free_units())
            .filter(|f| !f.is_zero())
            .map(Decimal::from)
    }
    async fn minimum(&self) -> Option<Money> {
        self.charge.charge.minimum().map(|m| Money::in_unit(m, &self.currency))
    }
}

/// A price, one type per model (the output twin of `PriceInput`).
#[derive(Union)]
#[allow(clippy::large_enum_variant)] // built per answer and dropped; boxing buys nothing here
pub enum Price {
    PerUnit(PerUnitPrice),
    Graduated(GraduatedPrice),
    Volume(VolumePrice),
    Package(PackagePrice),
    Percentage(PercentagePrice),
    GraduatedPercentage(GraduatedPercentagePrice),
}

#[derive(SimpleObject)]
pub struct PerUnitPrice {
    pub unit_amount: Money,
}

#[derive(SimpleObject)]
pub struct PriceTier {
    /// Inclusive upper bound; null for the unbounded last tier.
    pub up_to: Option<Decimal>,
    pub unit_amount: Money,
    pub flat_amount: Money,
}

#[derive(SimpleObject)]
pub struct GraduatedPrice {
    pub tiers: Vec<PriceTier>,
}

#[derive(SimpleObject)]
pub struct VolumePrice {
    pub tiers: Vec<PriceTier>,
}

#[derive(SimpleObject)]
pub struct PackagePrice {
    pub package_size: Decimal,
    pub package_amount: Money,
}

#[derive(SimpleObject)]
pub struct PercentagePrice {
    /// Percent.
    pub rate: Decimal,
    pub fixed_fee: Money,
    pub free_events: Option<i32>,
    pub free_amount: Option<Money>,
    pub event_minimum: Option<Money>,
    pub event_maximum: Option<Money>,
}

#[derive(SimpleObject)]
pub struct PercentageTier {
    pub up_to: Option<Decimal>,
    /// Percent.
    pub rate: Decimal,
    pub flat_amount: Money,
}

#[derive(SimpleObject)]
pub struct GraduatedPercentagePrice {
    pub tiers: Vec<PercentageTier>,
}

fn price_output(spec: &PriceSpec, unit: &crate::currency::Currency) -> Price {
    let money = |amount: Dec| Money::in_unit(amount, unit);
    let tiers = |tiers: &[TierSpec]| -> Vec<PriceTier> {
        tiers
            .iter()
            .map(|t| PriceTier {
                up_to: t.up_to.map(Decimal::from),
                unit_amount: money(t.unit_amount),
                flat_amount: money(t.flat_amount),
            })
            .collect()
    };
    match spec {
        PriceSpec::PerUnit { unit_amount } => Price::PerUnit(PerUnitPrice {
            unit_amount: money(*unit_amount),
        }),
        PriceSpec::Graduated { tiers: t } => Price::Graduated(GraduatedPrice { tiers: tiers(t) }),
        PriceSpec::Volume { tiers: t } => Price::Volume(VolumePrice { tiers: tiers(t) }),
        PriceSpec::Package {
            package_size,
            package_amount,
        } => Price::Package(PackagePrice {
            package_size: (*package_size).into(),
            package_amount: money(*package_amount),
        }),
        PriceSpec::Percentage(p) => Price::Percentage(PercentagePrice {
            rate: p.rate.into(),
            fixed_fee: money(p.fixed_fee),
            free_events: p.free_events.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            free_amount: p.free_amount.map(money),
            event_minimum: p.event_minimum.map(money),
            event_maximum: p.event_maximum.map(money),
        }),
        PriceSpec::GraduatedPercentage { tiers } => Price::GraduatedPercentage(GraduatedPercentagePrice {
            tiers: tiers
                .iter()
                .map(|t| PercentageTier {
                    up_to: t.up_to.map(Decimal::from),
                    rate: t.rate.into(),
                    flat_amount: money(t.flat_amount),
                })
                .collect(),
        }),
    }
}

#[derive(Default)]
pub struct PlanQuery;

#[Object]
impl PlanQuery {
    /// The project's plans by code, a page at a time (scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn plans(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Plan>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let size = pagination::page_size(first)?;
        let after_key = pagination::after_key(CursorKind::Plan, after.as_deref())?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = plan_store::list_plans(&mut conn, &project_id, after_key.as_deref(), size + 1).await?;
        Ok(pagination::connection(
            CursorKind::Plan,
            rows,
            size,
            after.as_deref(),
            |p| p.code.clone(),
            Plan,
        ))
    }

    /// A plan by id or by code; null when there is none (scope `READ`).
    async fn plan(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        id: Option<ID>,
        code: Option<String>,
    ) -> Result<Option<Plan>> {
        if id.is_some() == code.is_some() {
            return Err(Error::invalid("id", "give exactly one of id and code").into());
        }
        let found = absent_is_null(async {
            let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
            let mut conn = db::get(&state(ctx).pool).await?;
            let row = match (&id, &code) {
                (Some(id), _) => plan_store::find_plan(&mut conn, &project_id, id).await?,
                (_, Some(code)) => plan_store::find_plan_by_code(&mut conn, &project_id, code).await?,
                _ => None,
            };
            Ok(row)
        })
        .await?;
        Ok(found.flatten().map(Plan))
    }
}

#[derive(Default)]
pub struct PlanMutation;

#[Object]
impl PlanMutation {
    /// Creates a plan at version 1 (scope `BILLING`). The same code and definition again answer
    /// the stored version (`created: false`); another definition under the code is `PLAN_EXISTS`.
    async fn create_plan(&self, ctx: &Context<'_>, input: CreatePlanInput) -> Result<CreatePlanPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let plan_input = plan_input(input.definition)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let (version, created) = plans::create(&mut conn, &project_id, &input.code, &plan_input).await?;
        Ok(CreatePlanPayload {
            plan_version: PlanVersion(version),
            created,
        })
    }

    /// Makes the plan's next version (scope `BILLING`); existing subscriptions keep theirs. A
    /// definition equal to the latest version answers it (`created: false`).
    async fn create_plan_version(
        &self,
        ctx: &Context<'_>,
        input: CreatePlanVersionInput,
    ) -> Result<CreatePlanVersionPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let plan_input = plan_input(input.definition)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let (version, created) = plans::create_version(&mut conn, &project_id, &input.plan_id, &plan_input).await?;
        Ok(CreatePlanVersionPayload {
            plan_version: PlanVersion(version),
            created,
        })
    }
}

// ---- subscriptions

use crate::{
    billing::subscriptions::{self, BillingAnchor, SubscriptionChangeKind, SubscriptionStatus},
    store::subscriptions::{self as subscription_store, ChangeRow, SubscriptionRow},
};

use super::{Actor, principal, usage::Customer};

#[derive(InputObject)]
pub struct CreateSubscriptionInput {
    pub project_id: Option<ID>,
    /// The customer, by Neruba id or by external id (exactly one).
    pub customer_id: Option<ID>,
    pub customer_external_id: Option<String>,
    pub plan_id: ID,
    /// A version of the plan; its latest when left out.
    pub plan_version: Option<i32>,
    /// When billing starts (default: now). Periods are whole UTC days from this date.
    pub starts_at: Option<DateTime<Utc>>,
    #[graphql(default_with = "BillingAnchor::Calendar")]
    pub billing_anchor: BillingAnchor,
    /// Makes the request replay-safe: the same key and request answer the first subscription.
    pub idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct CreateSubscriptionPayload {
    pub subscription: PlanSubscription,
    /// True when this answered an earlier request with the same idempotency key.
    pub replayed: bool,
}

#[derive(InputObject)]
pub struct CancelSubscriptionInput {
    pub project_id: Option<ID>,
    pub subscription_id: ID,
    /// End at the end of the current period (default) or at once.
    #[graphql(default = true)]
    pub at_period_end: bool,
}

#[derive(SimpleObject)]
pub struct CancelSubscriptionPayload {
    pub subscription: PlanSubscription,
}

/// A billing period `[from, to)`, in whole UTC days.
#[derive(InputObject)]
pub struct ChangeSubscriptionPlanInput {
    pub project_id: Option<ID>,
    pub subscription_id: ID,
    /// The version to move to: of the same plan (a migration) or of another.
    pub plan_version_id: ID,
    /// `NOW` (an upgrade: prorated at once) or `PERIOD_END` (a downgrade).
    #[graphql(default_with = "subscriptions::PlanChangeTiming::Now")]
    pub timing: subscriptions::PlanChangeTiming,
    /// The new subscription's key: a retry answers the same change.
    pub idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct ChangeSubscriptionPlanPayload {
    /// The subscription that ends (at once, or at the end of its period).
    pub previous: PlanSubscription,
    /// The subscription on the new version, from then on.
    pub subscription: PlanSubscription,
    pub replayed: bool,
}

#[derive(SimpleObject)]
pub struct BillingPeriod {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The whole calendar period this one is part of, when it is shorter (a calendar
    /// subscription's first period): its fixed fee is prorated over the whole.
    pub full_from: DateTime<Utc>,
    pub full_to: DateTime<Utc>,
}

/// A customer's subscription to a plan version. (Named so beside GraphQL's `Subscription` root.)
pub struct PlanSubscription(pub(crate) SubscriptionRow);

fn midnight(day: chrono::NaiveDate) -> DateTime<Utc> {
    utc(day.and_time(chrono::NaiveTime::MIN))
}

#[Object]
impl PlanSubscription {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// The customer (scope `READ`).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        absent_is_null(async {
            Ok(Customer(
                load_link::<CustomerLoader>(ctx, &self.0.project_id, &self.0.customer_id, "customer").await?,
            ))
        })
        .await
    }
    /// The plan version it bills.
    async fn plan_version(&self, ctx: &Context<'_>) -> Result<PlanVersion> {
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(PlanVersion(
            plans::load_version(&mut conn, &self.0.project_id, &self.0.plan_version_id).await?,
        ))
    }
    /// Where it stands now.
    async fn status(&self) -> SubscriptionStatus {
        self.0.status(crate::store::now())
    }
    async fn billing_anchor(&self) -> Result<BillingAnchor> {
        Ok(self.0.billing_anchor.parse()?)
    }
    async fn starts_at(&self) -> DateTime<Utc> {
        utc(self.0.starts_at)
    }
    async fn trial_ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.trial_ends_at.map(utc)
    }
    /// When it ends (set by a cancellation).
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.ends_at.map(utc)
    }
    async fn canceled_at(&self) -> Option<DateTime<Utc>> {
        self.0.canceled_at.map(utc)
    }
    /// The period now running; null before the start and after the end.
    async fn current_period(&self, ctx: &Context<'_>) -> Result<Option<BillingPeriod>> {
        let mut conn = db::get(&state(ctx).pool).await?;
        let version = plans::load_version(&mut conn, &self.0.project_id, &self.0.plan_version_id).await?;
        let period = subscriptions::period_at(&self.0, &version, crate::store::now())?;
        Ok(period.map(|p| BillingPeriod {
            from: midnight(p.billed.start()),
            to: midnight(p.billed.end()),
            full_from: midnight(p.full.start()),
            full_to: midnight(p.full.end()),
        }))
    }
    /// What happened to it, oldest first.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, SubscriptionChange>> {
        let size = pagination::page_size(first)?;
        let after_seq = pagination::after_key(CursorKind::SubscriptionChange, after.as_deref())?
            .map(|k| {
                k.parse::<u64>()
                    .map_err(|_| Error::invalid("after", "is not a cursor from this list"))
            })
            .transpose()?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = subscription_store::changes(&mut conn, &self.0.id, after_seq, size + 1).await?;
        Ok(pagination::connection(
            CursorKind::SubscriptionChange,
            rows,
            size,
            after.as_deref(),
            |c| c.seq.to_string(),
            SubscriptionChange,
        ))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
}

/// One change in a subscription's history.
pub struct SubscriptionChange(ChangeRow);

#[Object]
impl SubscriptionChange {
    async fn kind(&self) -> Result<SubscriptionChangeKind> {
        Ok(self.0.kind.parse()?)
    }
    /// When the change takes effect (the start, the end).
    async fn effective_at(&self) -> DateTime<Utc> {
        utc(self.0.effective_at)
    }
    /// The plan version the subscription was on.
    async fn plan_version_id(&self) -> ID {
        ID(self.0.plan_version_id.clone())
    }
    async fn actor(&self) -> Actor {
        Actor::parse(&self.0.actor, &self.0.project_id)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
}

#[derive(Default)]
pub struct SubscriptionQuery;

#[Object]
impl SubscriptionQuery {
    /// The project's subscriptions (a customer's, when named), oldest first (scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn subscriptions(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        customer_id: Option<ID>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, PlanSubscription>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        subscription_page(ctx, &project_id, customer_id.as_ref().map(|c| c.as_str()), first, after).await
    }

    /// A subscription by id; null when there is none (scope `READ`).
    async fn subscription(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        id: ID,
    ) -> Result<Option<PlanSubscription>> {
        let found = absent_is_null(async {
            let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
            let mut conn = db::get(&state(ctx).pool).await?;
            Ok(subscription_store::find(&mut conn, &project_id, &id).await?)
        })
        .await?;
        Ok(found.flatten().map(PlanSubscription))
    }
}

#[derive(Default)]
pub struct SubscriptionMutation;

#[Object]
impl SubscriptionMutation {
    /// Subscribes a customer to a plan (scope `BILLING`). Replay-safe by `idempotencyKey`; a second
    /// live subscription of the customer to the plan is `SUBSCRIPTION_EXISTS`; a plan whose
    /// currency differs from the customer's is refused on `planId`.
    async fn create_subscription(
        &self,
        ctx: &Context<'_>,
        input: CreateSubscriptionInput,
    ) -> Result<CreateSubscriptionPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let actor = principal(ctx)?.actor();
        let starts_at = crate::time::opt_to_column("startsAt", input.starts_at)?;
        let domain = subscriptions::CreateInput {
            customer_id: input.customer_id.map(|id| id.0),
            customer_external_id: input.customer_external_id,
            plan_id: input.plan_id.0,
            plan_version: input.plan_version,
            starts_at,
            billing_anchor: input.billing_anchor,
            idempotency_key: input.idempotency_key,
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        let (row, created) = subscriptions::create(&mut conn, &project_id, &domain, &actor).await?;
        Ok(CreateSubscriptionPayload {
            subscription: PlanSubscription(row),
            replayed: !created,
        })
    }

    /// Moves a subscription to another plan version (scope `BILLING`): `NOW` ends it at once and
    /// starts one on the new version (billing credits the unused days of a fee billed in advance
    /// and bills the new fee from now: proration), `PERIOD_END` at the end of its period. Both
    /// are in the histories; replay-safe by `idempotencyKey`.
    async fn change_subscription_plan(
        &self,
        ctx: &Context<'_>,
        input: ChangeSubscriptionPlanInput,
    ) -> Result<ChangeSubscriptionPlanPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let actor = principal(ctx)?.actor();
        let mut conn = db::get(&state(ctx).pool).await?;
        let (previous, subscription, created) = subscriptions::change_plan(
            &mut conn,
            &project_id,
            &subscriptions::ChangeInput {
                subscription_id: input.subscription_id.0,
                plan_version_id: input.plan_version_id.0,
                timing: input.timing,
                idempotency_key: input.idempotency_key,
            },
            &actor,
        )
        .await?;
        Ok(ChangeSubscriptionPlanPayload {
            previous: PlanSubscription(previous),
            subscription: PlanSubscription(subscription),
            replayed: !created,
        })
    }

    /// Cancels a subscription at the end of its period (default) or at once (scope `BILLING`).
    /// Canceling again the same way changes nothing.
    async fn cancel_subscription(
        &self,
        ctx: &Context<'_>,
        input: CancelSubscriptionInput,
    ) -> Result<CancelSubscriptionPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let actor = principal(ctx)?.actor();
        let mut conn = db::get(&state(ctx).pool).await?;
        let row = subscriptions::cancel(
            &mut conn,
            &project_id,
            &input.subscription_id,
            input.at_period_end,
            &actor,
        )
        .await?;
        Ok(CancelSubscriptionPayload {
            subscription: PlanSubscription(row),
        })
    }
}

/// A page of the project's subscriptions, a customer's when named.
async fn subscription_page(
    ctx: &Context<'_>,
    project_id: &str,
    customer_id: Option<&str>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Connection<String, PlanSubscription>> {
    let size = pagination::page_size(first)?;
    let after_key = pagination::after_key(CursorKind::Subscription, after.as_deref())?;
    let mut conn = db::get(&state(ctx).pool).await?;
    let rows = subscription_store::list(&mut conn, project_id, customer_id, after_key.as_deref(), size + 1).await?;
    Ok(pagination::connection(
        CursorKind::Subscription,
        rows,
        size,
        after.as_deref(),
        |s| s.id.clone(),
        PlanSubscription,
    ))
}

/// A page of one customer's subscriptions (for `Customer.subscriptions`; the caller checked access).
pub(crate) async fn customer_subscription_page(
    ctx: &Context<'_>,
    project_id: &str,
    customer_id: &str,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Connection<String, PlanSubscription>> {
    subscription_page(ctx, project_id, Some(customer_id), first, after).await
}
