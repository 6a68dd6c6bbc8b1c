//! Plans. A plan is a code; what it bills is an immutable **version**: currency, interval, a fixed
//! fee (in advance or in arrears), usage charges on billable metrics, a minimum commitment,
//! credits included each period and trial days. `createPlan` makes version 1; the same
//! definition again returns it, another one under the code is `PLAN_EXISTS`.
//! `createPlanVersion` makes the next version unless the definition equals the latest (a
//! replay). Subscriptions keep their version until migrated, so a version is never changed.

use neruba_pricing::{Charge, PriceSpec};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    credit_units,
    currency::Currency,
    db,
    error::{Error, ErrorCode, Result},
    ids,
    money::{DecimalLimits, parse_decimal},
    projects::parse_name,
    store::billable_metrics,
    store::{
        Conn, now,
        plans::{self as store, PlanChargeRow, PlanRow, PlanVersionRow},
    },
    text_enum::text_enum,
    usage::metrics::Aggregation,
};

pub const PLAN_ID_PREFIX: &str = "pln";
pub const PLAN_VERSION_ID_PREFIX: &str = "plv";
pub const PLAN_CHARGE_ID_PREFIX: &str = "chg";
/// Usage charges per plan version.
pub const MAX_CHARGES: usize = 50;
const MAX_CODE_CHARS: usize = 64;
const MAX_TRIAL_DAYS: i64 = 730;

text_enum! {
    /// The unit of a plan's billing interval.
    IntervalUnit {
        /// Calendar months (1 to 12 of them).
        Month = "MONTH",
        /// Calendar years (1 to 5).
        Year = "YEAR",
        /// Days (1 to 366): a custom interval.
        Day = "DAY",
    }
}

text_enum! {
    /// When a plan's fixed fee is billed.
    FeeTiming {
        /// At the start of the period it pays for.
        Advance = "ADVANCE",
        /// At the end of the period it paid for.
        Arrears = "ARREARS",
    }
}

/// A usage charge as given: a metric code and a charge already parsed from the wire format
/// (`field` is where it was, for errors: `charges.2`).
#[derive(Debug, Clone)]
pub struct ChargeInput {
    pub field: String,
    pub metric: String,
    pub charge: Charge,
}

/// What `createPlan` and `createPlanVersion` take, before validation.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub name: String,
    pub currency: String,
    pub interval_unit: IntervalUnit,
    pub interval_count: i64,
    pub fixed_fee: Option<String>,
    pub fixed_fee_timing: FeeTiming,
    pub minimum_commitment: Option<String>,
    pub included_credits: Option<String>,
    pub included_credits_currency: Option<String>,
    /// Threshold (progressive) billing: invoice early once the period's unbilled usage reaches it.
    pub usage_threshold: Option<String>,
    pub trial_days: i64,
    pub charges: Vec<ChargeInput>,
}

/// A checked definition: what a version stores and what a replay must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Definition {
    name: String,
    currency: String,
    interval_unit: &'static str,
    interval_count: u16,
    fixed_fee: String,
    fixed_fee_timing: &'static str,
    minimum_commitment: Option<String>,
    included_credits: Option<(String, String)>,
    /// Left out when absent, so versions defined before thresholds keep their hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_threshold: Option<String>,
    trial_days: u16,
    charges: Vec<DefinedCharge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct DefinedCharge {
    metric_id: String,
    charge: Charge,
}

impl Definition {
    fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("a definition serializes");
        hex::encode(Sha256::digest(json))
    }
}

/// A stored plan version with its charges.
#[derive(Debug, Clone)]
pub struct PlanVersion {
    pub row: PlanVersionRow,
    pub code: String,
    pub latest_version: u32,
    pub currency: Currency,
    pub charges: Vec<PlanCharge>,
}

#[derive(Debug, Clone)]
pub struct PlanCharge {
    pub id: String,
    pub metric_id: String,
    pub charge: Charge,
}

/// A plan code: 1 to 64 of `A-Z a-z 0-9 _ - . :`.
pub fn parse_code(field: &str, raw: &str) -> Result<String> {
    crate::usage::event::parse_code(field, raw, MAX_CODE_CHARS)
}

fn amount(field: &str, raw: &str, unit: &Currency) -> Result<Decimal> {
    let value = parse_decimal(field, raw, DecimalLimits::MONEY)?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(Error::invalid(field, "must not be negative"));
    }
    unit.check_precision(field, value)?;
    Ok(value)
}

impl PlanInput {
    async fn validate(&self, conn: &mut Conn, project_id: &str) -> Result<Definition> {
        let name = parse_name("name", &self.name)?;
        let (unit, _) = credit_units::resolve_unit(conn, project_id, "currency", &self.currency).await?;
        let max_count = match self.interval_unit {
            IntervalUnit::Month => 12,
            IntervalUnit::Year => 5,
            IntervalUnit::Day => 366,
        };
        if !(1..=max_count).contains(&self.interval_count) {
            return Err(Error::invalid(
                "interval.count",
                format!("must be from 1 to {max_count} for {}", self.interval_unit),
            ));
        }
        let fixed_fee = match &self.fixed_fee {
            Some(raw) => amount("fixedFee", raw, &unit)?,
            None => Decimal::ZERO,
        };
        let minimum_commitment = self
            .minimum_commitment
            .as_deref()
            .map(|raw| amount("minimumCommitment", raw, &unit))
            .transpose()?;
        let included_credits = match (&self.included_credits, &self.included_credits_currency) {
            (None, None) => None,
            (Some(raw), Some(code)) => {
                let (credit_unit, _) =
                    credit_units::resolve_unit(conn, project_id, "includedCreditsCurrency", code).await?;
                let credits = amount("includedCredits", raw, &credit_unit)?;
                if credits.is_zero() {
                    return Err(Error::invalid("includedCredits", "must be positive (or left out)"));
                }
                Some((crate::money::canonical(credits), credit_unit.code().to_string()))
            }
            (Some(_), None) => {
                return Err(Error::invalid(
                    "includedCreditsCurrency",
                    "is required with includedCredits",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "includedCredits",
                    "is required with includedCreditsCurrency",
                ));
            }
        };
        let usage_threshold = match self.usage_threshold.as_deref() {
            Some(raw) => {
                let threshold = amount("usageThreshold", raw, &unit)?;
                if threshold.is_zero() {
                    return Err(Error::invalid("usageThreshold", "must be positive (or left out)"));
                }
                if self.charges.is_empty() {
                    return Err(Error::invalid(
                        "usageThreshold",
                        "a plan without usage charges has no usage to bill early",
                    ));
                }
                Some(crate::money::canonical(threshold))
            }
            None => None,
        };
        if !(0..=MAX_TRIAL_DAYS).contains(&self.trial_days) {
            return Err(Error::invalid(
                "trialDays",
                format!("must be from 0 to {MAX_TRIAL_DAYS}"),
            ));
        }
        if self.charges.len() > MAX_CHARGES {
            return Err(Error::invalid("charges", format!("at most {MAX_CHARGES} charges")));
        }
        let mut charges: Vec<DefinedCharge> = Vec::with_capacity(self.charges.len());
        for input in &self.charges {
            let metric_field = format!("{}.metric", input.field);
            let metric = billable_metrics::find_by_code(conn, project_id, &input.metric)
                .await?
                .ok_or_else(|| {
                    Error::invalid(
                        &metric_field,
                        format!("no billable metric has the code '{}'", input.metric),
                    )
                })?;
            if let Some(other) = self
                .charges
                .iter()
                .zip(&charges)
                .find(|(_, c)| c.metric_id == metric.id)
            {
                return Err(Error::invalid(
                    &metric_field,
                    format!(
                        "the metric is charged already by {}: one charge per metric",
                        other.0.field
                    ),
                ));
            }
            let percentage = matches!(
                input.charge.price().spec(),
                PriceSpec::Percentage(_) | PriceSpec::GraduatedPercentage { .. }
            );
            if percentage && metric.aggregation != Aggregation::Sum.as_str() {
                return Err(Error::invalid(
                    format!("{}.price", input.field),
                    "a percentage price takes a percentage of event quantities: its metric must aggregate SUM",
                ));
            }
            if let Some(minimum) = input.charge.minimum() {
                unit.check_precision(&format!("{}.minimum", input.field), minimum)?;
            }
            charges.push(DefinedCharge {
                metric_id: metric.id,
                charge: input.charge.clone(),
            });
        }
        Ok(Definition {
            name,
            currency: unit.code().to_string(),
            interval_unit: self.interval_unit.as_str(),
            interval_count: self.interval_count as u16,
            fixed_fee: crate::money::canonical(fixed_fee),
            fixed_fee_timing: self.fixed_fee_timing.as_str(),
            minimum_commitment: minimum_commitment.map(crate::money::canonical),
            included_credits,
            usage_threshold,
            trial_days: self.trial_days as u16,
            charges,
        })
    }
}

fn version_rows(plan: &PlanRow, version: u32, def: &Definition) -> Result<(PlanVersionRow, Vec<PlanChargeRow>)> {
    let id = ids::new_id(PLAN_VERSION_ID_PREFIX);
    let decimal = |text: &str| {
        text.parse::<Decimal>()
            .map_err(|_| Error::Internal("canonical decimal".into()))
    };
    let row = PlanVersionRow {
        id: id.clone(),
        plan_id: plan.id.clone(),
        project_id: plan.project_id.clone(),
        version,
        name: def.name.clone(),
        currency: def.currency.clone(),
        interval_unit: def.interval_unit.to_string(),
        interval_count: def.interval_count,
        fixed_fee: decimal(&def.fixed_fee)?,
        fixed_fee_timing: def.fixed_fee_timing.to_string(),
        minimum_commitment: def.minimum_commitment.as_deref().map(decimal).transpose()?,
        included_credits: def.included_credits.as_ref().map(|(a, _)| decimal(a)).transpose()?,
        included_credits_currency: def.included_credits.as_ref().map(|(_, c)| c.clone()),
        usage_threshold: def.usage_threshold.as_deref().map(decimal).transpose()?,
        trial_days: def.trial_days,
        definition_hash: def.hash(),
        created_at: now(),
    };
    let charges = def
        .charges
        .iter()
        .enumerate()
        .map(|(position, c)| {
            Ok(PlanChargeRow {
                id: ids::new_id(PLAN_CHARGE_ID_PREFIX),
                plan_version_id: id.clone(),
                project_id: plan.project_id.clone(),
                position: position as u16,
                metric_id: c.metric_id.clone(),
                charge: serde_json::to_string(&c.charge).map_err(|e| Error::Internal(format!("charge json: {e}")))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((row, charges))
}

/// Creates plan `code` at version 1. The same definition again returns the stored version
/// (`false`: nothing new); another definition under the code is `PLAN_EXISTS`.
pub async fn create(conn: &mut Conn, project_id: &str, code: &str, input: &PlanInput) -> Result<(PlanVersion, bool)> {
    let code = parse_code("code", code)?;
    let def = input.validate(conn, project_id).await?;
    let (version_id, created) =
        db::transaction_with_retry!(conn, |e| db::is_unique_violation(e, "uq_plans_code"), |conn| {
            let plan = PlanRow {
                id: ids::new_id(PLAN_ID_PREFIX),
                project_id: project_id.to_string(),
                code: code.clone(),
                latest_version: 1,
                created_at: now(),
            };
            if store::insert_plan_ignore(conn, &plan).await? {
                let (row, charges) = version_rows(&plan, 1, &def)?;
                store::insert_version(conn, &row, &charges).await?;
                return Ok((row.id, true));
            }
            let stored = store::lock_plan_by_code(conn, project_id, &code)
                .await?
                .ok_or_else(|| Error::Internal("plan vanished after insert".into()))?;
            let latest = store::find_version(conn, &stored.id, stored.latest_version)
                .await?
                .ok_or_else(|| {
                    Error::Internal(format!("plan {} has no version {}", stored.id, stored.latest_version))
                })?;
            if latest.definition_hash != def.hash() {
                return Err(Error::conflict(
                    ErrorCode::PlanExists,
                    format!("plan '{code}' exists with another definition; createPlanVersion makes a new version"),
                )
                .into());
            }
            Ok((latest.id, false))
        })?;
    Ok((load_version(conn, project_id, &version_id).await?, created))
}

/// Makes the next version of plan `plan_id`, unless `input` equals its latest version, which is
/// then returned (`false`). The plan row is locked while the version is numbered.
pub async fn create_version(
    conn: &mut Conn,
    project_id: &str,
    plan_id: &str,
    input: &PlanInput,
) -> Result<(PlanVersion, bool)> {
    let def = input.validate(conn, project_id).await?;
    let (version_id, created) = db::transaction_with_retry!(
        conn,
        |e| db::is_unique_violation(e, "uq_plan_versions_version"),
        |conn| {
            // The lock comes first: see `store::plans::lock_plan`.
            let plan = store::lock_plan(conn, project_id, plan_id)
                .await?
                .ok_or(Error::NotFound("plan"))?;
            let latest = store::find_version(conn, &plan.id, plan.latest_version)
                .await?
                .ok_or_else(|| Error::Internal(format!("plan {} has no version {}", plan.id, plan.latest_version)))?;
            if latest.definition_hash == def.hash() {
                return Ok((latest.id, false));
            }
            let next = plan.latest_version + 1;
            let (row, charges) = version_rows(&plan, next, &def)?;
            store::insert_version(conn, &row, &charges).await?;
            store::set_latest_version(conn, &plan.id, next).await?;
            Ok((row.id, true))
        }
    )?;
    Ok((load_version(conn, project_id, &version_id).await?, created))
}

/// A version by id, with its charges, checked as it is read.
pub async fn load_version(conn: &mut Conn, project_id: &str, version_id: &str) -> Result<PlanVersion> {
    let row = store::find_version_by_id(conn, project_id, version_id)
        .await?
        .ok_or(Error::NotFound("plan version"))?;
    let plan = store::find_plan(conn, project_id, &row.plan_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("plan version {version_id} has no plan")))?;
    let currency = credit_units::stored_unit(conn, project_id, &row.currency).await?;
    let charges = store::charges(conn, &row.id)
        .await?
        .into_iter()
        .map(|c| {
            let charge: Charge = serde_json::from_str(&c.charge)
                .map_err(|e| Error::Internal(format!("plan charge {}: stored charge unreadable: {e}", c.id)))?;
            Ok(PlanCharge {
                id: c.id,
                metric_id: c.metric_id,
                charge,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PlanVersion {
        row,
        code: plan.code,
        latest_version: plan.latest_version,
        currency,
        charges,
    })
}

/// Version `version` of a plan (its latest when `None`).
pub async fn find_version(
    conn: &mut Conn,
    project_id: &str,
    plan_id: &str,
    version: Option<u32>,
) -> Result<PlanVersion> {
    let plan = store::find_plan(conn, project_id, plan_id)
        .await?
        .ok_or(Error::NotFound("plan"))?;
    let row = store::find_version(conn, &plan.id, version.unwrap_or(plan.latest_version))
        .await?
        .ok_or(Error::NotFound("plan version"))?;
    load_version(conn, project_id, &row.id).await
}
