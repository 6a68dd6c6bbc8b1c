//! Coupons and tax rates: what billing runs feed `neruba_pricing::invoice::compute` after the fees
//! and true-ups (docs/billing.md, "Coupons and taxes").
//!
//! A **coupon** (per project, by code) is a percentage off or a fixed amount off in one unit, for
//! `ONCE`, `REPEATING` (n invoices) or `FOREVER`. Applying it to a subscription records a
//! **redemption** (replay-safe by idempotency key; a coupon once per subscription). A redemption
//! is used by each invoice of the subscription that has fees or usage to discount, until its
//! periods are used up; how many were used is *counted* from the manifests of the invoices at
//! earlier boundaries, never kept in a counter, so a retried run, or a recomputation of the same
//! invoice, cannot use a period twice. Coupons apply in the order they were applied.
//!
//! A **tax rate** (per project, by code) is an exclusive percentage. The project has an ordered
//! default list; a customer's own list, when it has one, replaces it. Invoices copy the code, name
//! and percentage of every rate they applied into their manifest.

use chrono::NaiveDateTime;
use neruba_pricing::invoice::{Coupon as PricingCoupon, Invoice, LineKind};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    billing::plans,
    credit_units, db,
    error::{Error, ErrorCode, Result},
    ids,
    money::{DecimalLimits, parse_decimal},
    projects::parse_name,
    store::{
        Conn,
        customers::CustomerRow,
        discounts::{self as store, CouponRow, CustomerTaxRateRow, RedemptionRow, TaxRateRow},
        now, subscriptions as subscription_store,
    },
    text_enum::text_enum,
};

pub const COUPON_ID_PREFIX: &str = "cpn";
pub const REDEMPTION_ID_PREFIX: &str = "cpr";
pub const TAX_RATE_ID_PREFIX: &str = "txr";
/// Tax rates in one list (the project's default, a customer's).
pub const MAX_TAX_RATES: usize = 10;
/// The most invoices a `REPEATING` coupon may discount.
pub const MAX_PERIODS: i64 = 1200;
const MAX_CODE_CHARS: usize = 64;
/// Percentages (coupons and tax rates) have at most this many decimal places (`DECIMAL(7, 4)`).
pub const PERCENTAGE_DECIMALS: u32 = 4;

text_enum! {
    /// What a coupon takes off.
    CouponKind {
        /// A percentage of what is left of the invoice's subtotal.
        Percentage = "PERCENTAGE",
        /// A fixed amount in the coupon's currency, at most what is left.
        Amount = "AMOUNT",
    }
}

text_enum! {
    /// How many invoices a coupon discounts once applied to a subscription.
    CouponDuration {
        /// The next invoice that has fees or usage to discount.
        Once = "ONCE",
        /// The next `periods` invoices that have fees or usage to discount.
        Repeating = "REPEATING",
        /// Every invoice.
        Forever = "FOREVER",
    }
}

/// A coupon's discount as sent: the text of a percentage or of an amount.
#[derive(Debug, Clone)]
pub enum DiscountInput {
    Percentage(String),
    Amount(String),
}

/// What `createCoupon` takes, before validation.
#[derive(Debug, Clone)]
pub struct CouponInput {
    pub code: String,
    pub name: String,
    pub discount: DiscountInput,
    pub currency: Option<String>,
    pub duration: CouponDuration,
    pub periods: Option<i64>,
}

/// A checked coupon definition: what a replay must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct CouponDefinition {
    name: String,
    kind: &'static str,
    percentage: Option<String>,
    amount: Option<String>,
    currency: Option<String>,
    duration: &'static str,
    periods: Option<u32>,
}

fn sha256_hex(value: &impl Serialize) -> String {
    let json = serde_json::to_vec(value).expect("a definition serializes");
    hex::encode(Sha256::digest(json))
}

/// A coupon or tax rate code: 1 to 64 of `A-Z a-z 0-9 _ - . :`.
pub fn parse_code(field: &str, raw: &str) -> Result<String> {
    crate::usage::event::parse_code(field, raw, MAX_CODE_CHARS)
}

/// A percentage from 0 (or above 0 when `zero` is false) to 100, with at most 4 decimal places.
pub fn parse_percentage(field: &str, raw: &str, zero: bool) -> Result<Decimal> {
    let limits = DecimalLimits {
        scale: PERCENTAGE_DECIMALS,
        integer_digits: 3,
    };
    let value = parse_decimal(field, raw, limits)?;
    let low_ok = if zero {
        value >= Decimal::ZERO
    } else {
        value > Decimal::ZERO
    };
    if !low_ok || value > Decimal::ONE_HUNDRED {
        let low = if zero { "from 0" } else { "above 0" };
        return Err(Error::invalid(field, format!("must be {low} up to 100 (percent)")));
    }
    Ok(value)
}

impl CouponInput {
    async fn validate(&self, conn: &mut Conn, project_id: &str) -> Result<CouponDefinition> {
        let name = parse_name("name", &self.name)?;
        let (kind, percentage, amount, currency) = match &self.discount {
            DiscountInput::Percentage(raw) => {
                let p = parse_percentage("discount.percentage", raw, false)?;
                if self.currency.is_some() {
                    return Err(Error::invalid(
                        "currency",
                        "a percentage coupon has no currency: leave it out",
                    ));
                }
                (CouponKind::Percentage, Some(crate::money::canonical(p)), None, None)
            }
            DiscountInput::Amount(raw) => {
                let Some(code) = &self.currency else {
                    return Err(Error::invalid("currency", "is required for an amount coupon"));
                };
                let (unit, _) = credit_units::resolve_unit(conn, project_id, "currency", code).await?;
                let a = parse_decimal("discount.amount", raw, DecimalLimits::MONEY)?;
                if a <= Decimal::ZERO {
                    return Err(Error::invalid("discount.amount", "must be above 0"));
                }
                unit.check_precision("discount.amount", a)?;
                (
                    CouponKind::Amount,
                    None,
                    Some(crate::money::canonical(a)),
                    Some(unit.code().to_string()),
                )
            }
        };
        let periods = match (self.duration, self.periods) {
            (CouponDuration::Repeating, None) => {
                return Err(Error::invalid("periods", "is required for a REPEATING coupon"));
            }
            (CouponDuration::Repeating, Some(n)) if !(1..=MAX_PERIODS).contains(&n) => {
                return Err(Error::invalid("periods", format!("must be from 1 to {MAX_PERIODS}")));
            }
            (CouponDuration::Repeating, Some(n)) => Some(n as u32),
            (_, Some(_)) => {
                return Err(Error::invalid(
                    "periods",
                    format!("only a REPEATING coupon has periods; {} does not", self.duration),
                ));
            }
            (_, None) => None,
        };
        Ok(CouponDefinition {
            name,
            kind: kind.as_str(),
            percentage,
            amount,
            currency,
            duration: self.duration.as_str(),
            periods,
        })
    }
}

fn decimal(text: &Option<String>) -> Result<Option<Decimal>> {
    text.as_deref()
        .map(|t| {
            t.parse::<Decimal>()
                .map_err(|_| Error::Internal("canonical decimal".into()))
        })
        .transpose()
}

/// Creates coupon `code`. The same definition again answers the stored coupon (`false`: nothing
/// new); another definition under the code is `COUPON_EXISTS`.
pub async fn create_coupon(conn: &mut Conn, project_id: &str, input: &CouponInput) -> Result<(CouponRow, bool)> {
    let code = parse_code("code", &input.code)?;
    let def = input.validate(conn, project_id).await?;
    let hash = sha256_hex(&def);
    let row = CouponRow {
        id: ids::new_id(COUPON_ID_PREFIX),
        project_id: project_id.to_string(),
        code: code.clone(),
        name: def.name.clone(),
        kind: def.kind.to_string(),
        percentage: decimal(&def.percentage)?,
        amount: decimal(&def.amount)?,
        currency: def.currency.clone(),
        duration: def.duration.to_string(),
        periods: def.periods,
        definition_hash: hash.clone(),
        created_at: now(),
    };
    db::transaction_with_retry!(conn, |_| false, |c| {
        let inserted = store::insert_coupon_ignore(c, &row).await?;
        let stored = store::find_coupon_by_code(c, project_id, &code)
            .await?
            .ok_or_else(|| Error::Internal("coupon vanished after insert".into()))?;
        if stored.definition_hash != hash {
            return Err(Error::conflict(
                ErrorCode::CouponExists,
                format!("coupon '{code}' exists with another definition"),
            )
            .into());
        }
        Ok((stored, inserted))
    })
}

/// The project's coupon with this id.
pub async fn find_coupon(conn: &mut Conn, project_id: &str, id: &str) -> Result<CouponRow> {
    if !ids::looks_like(COUPON_ID_PREFIX, id) {
        return Err(Error::NotFound("coupon"));
    }
    store::find_coupon(conn, project_id, id)
        .await?
        .ok_or(Error::NotFound("coupon"))
}

/// What `applyCoupon` takes.
#[derive(Debug, Clone)]
pub struct ApplyInput {
    pub subscription_id: String,
    pub coupon_id: String,
    pub idempotency_key: String,
}

/// How many invoices a redemption of a coupon with this duration discounts (`None`: all).
pub fn redemption_periods(duration: CouponDuration, periods: Option<u32>) -> Option<u32> {
    match duration {
        CouponDuration::Once => Some(1),
        CouponDuration::Repeating => periods,
        CouponDuration::Forever => None,
    }
}

/// Whether a redemption granted `periods` invoices (`None`: forever) still applies after `used`.
pub fn applies(periods: Option<u32>, used: u32) -> bool {
    periods.is_none_or(|n| used < n)
}

/// Applies a coupon to a subscription. Answers `(redemption, created)`: the same idempotency key
/// and request answer the first redemption (`false`); the key with another request is
/// `IDEMPOTENCY_CONFLICT`. A coupon is applied to a subscription once (`COUPON_APPLIED`); an amount
/// coupon in another unit than the subscription's plan is refused on `couponId`. The subscription
/// row is locked first, as billing runs lock it: a run bills either before or after it.
pub async fn apply_coupon(
    conn: &mut Conn,
    project_id: &str,
    input: &ApplyInput,
    actor: &str,
) -> Result<(RedemptionRow, bool)> {
    let key = ids::parse_idempotency_key("idempotencyKey", &input.idempotency_key)?;
    let hash = crate::ledger::request_hash(&["applyCoupon", &input.subscription_id, &input.coupon_id]);
    let replay = |existing: RedemptionRow| {
        if existing.request_hash == hash {
            Ok((existing, false))
        } else {
            Err(Error::conflict(
                ErrorCode::IdempotencyConflict,
                "this idempotency key was used for another coupon application",
            ))
        }
    };
    // A lost race on either key rolls back; the retry reads the winner's row.
    let retryable = |e: &diesel::result::Error| {
        db::is_unique_violation(e, "uq_coupon_redemptions_idempotency")
            || db::is_unique_violation(e, "uq_coupon_redemptions_coupon")
    };
    db::transaction_with_retry!(conn, retryable, |c| {
        let sub = subscription_store::lock(c, project_id, &input.subscription_id)
            .await?
            .ok_or(Error::NotFound("subscription"))?;
        if let Some(existing) = store::find_redemption_by_key(c, project_id, &key).await? {
            return Ok(replay(existing)?);
        }
        let coupon = find_coupon(c, project_id, &input.coupon_id).await?;
        if coupon.kind == CouponKind::Amount.as_str() {
            let version = plans::load_version(c, project_id, &sub.plan_version_id).await?;
            let unit = coupon.currency.as_deref().unwrap_or_default();
            if unit != version.row.currency {
                return Err(Error::invalid(
                    "couponId",
                    format!(
                        "the coupon takes off {unit}, the subscription bills in {}",
                        version.row.currency
                    ),
                )
                .into());
            }
        }
        if store::find_redemption_of(c, &sub.id, &coupon.id).await?.is_some() {
            return Err(Error::conflict(
                ErrorCode::CouponApplied,
                format!("coupon '{}' is applied to this subscription already", coupon.code),
            )
            .into());
        }
        let duration: CouponDuration = coupon.duration.parse()?;
        let row = RedemptionRow {
            id: ids::new_id(REDEMPTION_ID_PREFIX),
            project_id: project_id.to_string(),
            subscription_id: sub.id.clone(),
            coupon_id: coupon.id.clone(),
            applied_at: now(),
            periods: redemption_periods(duration, coupon.periods),
            actor: actor.to_string(),
            idempotency_key: key.clone(),
            request_hash: hash.clone(),
        };
        store::insert_redemption(c, &row).await?;
        Ok((row, true))
    })
}

/// How many invoices a redemption has discounted: its subscription's invoices (not void) at a
/// boundary before `before` (all of them, when `None`) that list it in their manifest.
pub async fn periods_used(conn: &mut Conn, redemption: &RedemptionRow, before: Option<NaiveDateTime>) -> Result<u32> {
    Ok(store::periods_used(conn, &redemption.subscription_id, &redemption.id, before).await?)
}

// ---- tax rates

/// What `createTaxRate` takes, before validation.
#[derive(Debug, Clone)]
pub struct TaxRateInput {
    pub code: String,
    pub name: String,
    pub percentage: String,
}

/// Creates tax rate `code`. The same definition again answers the stored rate (`false`); another
/// definition under the code is `TAX_RATE_EXISTS`.
pub async fn create_tax_rate(conn: &mut Conn, project_id: &str, input: &TaxRateInput) -> Result<(TaxRateRow, bool)> {
    let code = parse_code("code", &input.code)?;
    let name = parse_name("name", &input.name)?;
    let percentage = parse_percentage("percentage", &input.percentage, true)?;
    let row = TaxRateRow {
        id: ids::new_id(TAX_RATE_ID_PREFIX),
        project_id: project_id.to_string(),
        code: code.clone(),
        name,
        percentage,
        default_position: None,
        created_at: now(),
    };
    db::transaction_with_retry!(conn, |_| false, |c| {
        let inserted = store::insert_tax_rate_ignore(c, &row).await?;
        let stored = store::find_tax_rate_by_code(c, project_id, &code)
            .await?
            .ok_or_else(|| Error::Internal("tax rate vanished after insert".into()))?;
        if stored.name != row.name || stored.percentage != row.percentage {
            return Err(Error::conflict(
                ErrorCode::TaxRateExists,
                format!("tax rate '{code}' exists with another definition"),
            )
            .into());
        }
        Ok((stored, inserted))
    })
}

/// A list of tax rate ids as sent: at most [`MAX_TAX_RATES`], none twice.
fn check_ids<'a>(field: &str, ids: &'a [String]) -> Result<Vec<&'a str>> {
    if ids.len() > MAX_TAX_RATES {
        return Err(Error::invalid(field, format!("at most {MAX_TAX_RATES} tax rates")));
    }
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(Error::invalid(format!("{field}.{i}"), "is listed twice"));
        }
    }
    Ok(ids.iter().map(String::as_str).collect())
}

/// The rates with these ids, in this order; an id that is not the project's is `NOT_FOUND`.
async fn rates_in_order(conn: &mut Conn, project_id: &str, ids: &[&str]) -> Result<Vec<TaxRateRow>> {
    let found = store::find_tax_rates(conn, project_id, ids).await?;
    ids.iter()
        .map(|id| {
            found
                .iter()
                .find(|r| r.id == *id)
                .cloned()
                .ok_or(Error::NotFound("tax rate"))
        })
        .collect()
}

/// Replaces the project's default tax rates with `ids`, in order (empty: none).
pub async fn set_default_tax_rates(conn: &mut Conn, project_id: &str, ids: &[String]) -> Result<Vec<TaxRateRow>> {
    let ids = check_ids("taxRateIds", ids)?;
    db::transaction_with_retry!(conn, |_| false, |c| {
        // Every rate of the project is locked, so two replacements take turns.
        store::lock_tax_rates(c, project_id).await?;
        rates_in_order(c, project_id, &ids).await?;
        store::set_default_tax_rates(c, project_id, &ids).await?;
        Ok(store::default_tax_rates(c, project_id).await?)
    })
}

/// Replaces a customer's own tax rates with `ids`, in order; empty gives the customer the
/// project's default again.
pub async fn set_customer_tax_rates(
    conn: &mut Conn,
    project_id: &str,
    customer_id: &str,
    ids: &[String],
) -> Result<(CustomerRow, Vec<TaxRateRow>)> {
    let ids = check_ids("taxRateIds", ids)?;
    db::transaction_with_retry!(conn, |_| false, |c| {
        let customer = crate::customers::find_customer_by_id(c, project_id, customer_id).await?;
        store::lock_customer(c, project_id, &customer.id).await?;
        let rates = rates_in_order(c, project_id, &ids).await?;
        let rows: Vec<CustomerTaxRateRow> = rates
            .iter()
            .enumerate()
            .map(|(position, r)| CustomerTaxRateRow {
                customer_id: customer.id.clone(),
                position: position as u16,
                project_id: project_id.to_string(),
                tax_rate_id: r.id.clone(),
            })
            .collect();
        store::set_customer_tax_rates(c, &customer.id, &rows).await?;
        Ok((customer, rates))
    })
}

// ---- what an invoice applies

/// A redemption an invoice may use, with its coupon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceCoupon {
    pub redemption_id: String,
    pub coupon_id: String,
    pub code: String,
    pub name: String,
    pub kind: CouponKind,
    /// Percent, or an amount in the invoice's unit.
    pub value: Decimal,
    pub duration: CouponDuration,
    /// Invoices it discounts in all (`None`: forever).
    pub periods: Option<u32>,
    /// Invoices it discounted before this one (counted only when `periods` is limited).
    pub used_before: u32,
}

impl InvoiceCoupon {
    pub fn pricing(&self) -> PricingCoupon {
        match self.kind {
            CouponKind::Percentage => PricingCoupon::Percentage(self.value),
            CouponKind::Amount => PricingCoupon::Amount(self.value),
        }
    }

    pub fn description(&self) -> String {
        format!("{} ({})", self.name, self.code)
    }
}

/// Where an invoice's tax rates came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaxSource {
    /// The project's default list.
    Default,
    /// The customer's own list.
    Customer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceTax {
    pub tax_rate_id: String,
    pub code: String,
    pub name: String,
    pub percentage: Decimal,
    pub source: TaxSource,
}

impl InvoiceTax {
    pub fn description(&self) -> String {
        format!("{} ({}), {} %", self.name, self.code, self.percentage.normalize())
    }
}

/// The coupons and taxes an invoice applies, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceDiscounts {
    pub coupons: Vec<InvoiceCoupon>,
    pub taxes: Vec<InvoiceTax>,
}

/// A coupon as an invoice's manifest records it: the redemption it used and what it took off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsedCoupon {
    pub redemption_id: String,
    pub coupon_id: String,
    pub code: String,
    pub name: String,
    /// A [`CouponKind`].
    pub kind: String,
    pub value: Decimal,
    /// A [`CouponDuration`].
    pub duration: String,
    pub periods: Option<u32>,
    /// Which of its invoices this is (1 for the first), counted when `periods` is limited.
    pub period: Option<u32>,
    /// The discount line (zero or negative: an earlier coupon may have left nothing).
    pub discount: Decimal,
}

/// A tax rate as an invoice's manifest records it: its definition at the time, and the tax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedTax {
    pub tax_rate_id: String,
    pub code: String,
    pub name: String,
    pub percentage: Decimal,
    pub source: TaxSource,
    pub amount: Decimal,
}

impl InvoiceDiscounts {
    pub fn pricing_coupons(&self) -> Vec<PricingCoupon> {
        self.coupons.iter().map(InvoiceCoupon::pricing).collect()
    }

    pub fn percentages(&self) -> Vec<Decimal> {
        self.taxes.iter().map(|t| t.percentage).collect()
    }

    /// What the manifest records of a computed invoice: the redemptions it used (every coupon
    /// given, when the invoice has fees or usage to discount; none otherwise, so a period is used
    /// only by an invoice with something to discount) and every tax rate with its tax.
    pub fn manifest(&self, invoice: &Invoice) -> (Vec<UsedCoupon>, Vec<AppliedTax>) {
        let line = |kind: LineKind, index: usize| {
            invoice
                .lines
                .iter()
                .filter(|l| l.kind == kind && l.index == index)
                .map(|l| l.amount)
                .sum::<Decimal>()
        };
        let coupons = if invoice.subtotal > Decimal::ZERO {
            self.coupons
                .iter()
                .enumerate()
                .map(|(i, c)| UsedCoupon {
                    redemption_id: c.redemption_id.clone(),
                    coupon_id: c.coupon_id.clone(),
                    code: c.code.clone(),
                    name: c.name.clone(),
                    kind: c.kind.as_str().to_string(),
                    value: c.value.normalize(),
                    duration: c.duration.as_str().to_string(),
                    periods: c.periods,
                    period: c.periods.map(|_| c.used_before + 1),
                    discount: line(LineKind::Coupon, i),
                })
                .collect()
        } else {
            Vec::new()
        };
        let taxes = self
            .taxes
            .iter()
            .enumerate()
            .map(|(i, t)| AppliedTax {
                tax_rate_id: t.tax_rate_id.clone(),
                code: t.code.clone(),
                name: t.name.clone(),
                percentage: t.percentage.normalize(),
                source: t.source,
                amount: line(LineKind::Tax, i),
            })
            .collect();
        (coupons, taxes)
    }
}

/// The coupons (redemptions with periods left before `boundary`, in the order applied) and tax
/// rates (the customer's own, or else the project's default) for the invoice at `boundary` in
/// `currency`. Only invoices at earlier boundaries count, so computing the same invoice again
/// (a retry, a recomputed draft) gives the same coupons. Plain reads: the caller holds the
/// subscription's lock, which `applyCoupon` takes too. An amount coupon in another unit (the
/// subscription moved to a plan in another currency) is left out.
pub async fn for_invoice(
    conn: &mut Conn,
    project_id: &str,
    subscription_id: &str,
    customer_id: &str,
    currency: &str,
    boundary: NaiveDateTime,
) -> Result<InvoiceDiscounts> {
    let redemptions = store::redemptions(conn, subscription_id).await?;
    let coupon_ids: Vec<&str> = redemptions.iter().map(|r| r.coupon_id.as_str()).collect();
    let coupons = store::find_coupons(conn, project_id, &coupon_ids).await?;
    let mut out = InvoiceDiscounts::default();
    for r in &redemptions {
        let coupon = coupons
            .iter()
            .find(|c| c.id == r.coupon_id)
            .ok_or_else(|| Error::Internal(format!("redemption {} has no coupon", r.id)))?;
        let kind: CouponKind = coupon.kind.parse()?;
        let value = match kind {
            CouponKind::Percentage => coupon.percentage,
            CouponKind::Amount => coupon.amount,
        }
        .ok_or_else(|| Error::Internal(format!("coupon {} has no value", coupon.id)))?;
        if kind == CouponKind::Amount && coupon.currency.as_deref() != Some(currency) {
            tracing::warn!(redemption = %r.id, currency, "an amount coupon in another unit is left out");
            continue;
        }
        let used_before = match r.periods {
            Some(_) => periods_used(conn, r, Some(boundary)).await?,
            None => 0,
        };
        if !applies(r.periods, used_before) {
            continue;
        }
        out.coupons.push(InvoiceCoupon {
            redemption_id: r.id.clone(),
            coupon_id: coupon.id.clone(),
            code: coupon.code.clone(),
            name: coupon.name.clone(),
            kind,
            value,
            duration: coupon.duration.parse()?,
            periods: r.periods,
            used_before,
        });
    }
    let own = store::customer_tax_rates(conn, project_id, customer_id).await?;
    let (rates, source) = if own.is_empty() {
        (store::default_tax_rates(conn, project_id).await?, TaxSource::Default)
    } else {
        (own, TaxSource::Customer)
    };
    out.taxes = rates
        .into_iter()
        .map(|r| InvoiceTax {
            tax_rate_id: r.id,
            code: r.code,
            name: r.name,
            percentage: r.percentage,
            source,
        })
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use neruba_pricing::invoice::Line;

    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn field_of(r: Result<Decimal>) -> String {
        match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn percentages_are_0_to_100_with_at_most_4_places() {
        assert_eq!(parse_percentage("p", "19", true).unwrap(), d("19"));
        assert_eq!(parse_percentage("p", "7.6875", true).unwrap(), d("7.6875"));
        assert_eq!(parse_percentage("p", "0", true).unwrap(), Decimal::ZERO);
        assert_eq!(parse_percentage("p", "100", false).unwrap(), Decimal::ONE_HUNDRED);
        for bad in ["0", "-1", "100.0001", "1.00001", "abc", "1000"] {
            assert_eq!(field_of(parse_percentage("p", bad, false)), "p", "{bad}");
        }
        assert_eq!(field_of(parse_percentage("p", "-0.5", true)), "p");
    }

    #[test]
    fn once_is_one_period_repeating_n_and_forever_never_runs_out() {
        assert_eq!(redemption_periods(CouponDuration::Once, None), Some(1));
        assert_eq!(redemption_periods(CouponDuration::Repeating, Some(3)), Some(3));
        assert_eq!(redemption_periods(CouponDuration::Forever, None), None);
        assert!(applies(Some(1), 0));
        assert!(!applies(Some(1), 1));
        assert!(applies(Some(2), 1));
        assert!(!applies(Some(2), 2));
        assert!(applies(None, 1_000_000));
    }

    fn coupon(id: &str, kind: CouponKind, value: &str, periods: Option<u32>, used_before: u32) -> InvoiceCoupon {
        InvoiceCoupon {
            redemption_id: id.into(),
            coupon_id: format!("cpn_{id}"),
            code: id.to_uppercase(),
            name: id.into(),
            kind,
            value: d(value),
            duration: if periods.is_some() {
                CouponDuration::Repeating
            } else {
                CouponDuration::Forever
            },
            periods,
            used_before,
        }
    }

    fn invoice(subtotal: &str, lines: Vec<(LineKind, usize, &str)>) -> Invoice {
        Invoice {
            lines: lines
                .into_iter()
                .map(|(kind, index, amount)| Line {
                    kind,
                    index,
                    amount: d(amount),
                    exact: d(amount),
                    rating: None,
                })
                .collect(),
            subtotal: d(subtotal),
            discount: Decimal::ZERO,
            billed_earlier: Decimal::ZERO,
            tax: Decimal::ZERO,
            total: Decimal::ZERO,
            credits: Decimal::ZERO,
            amount_due: Decimal::ZERO,
        }
    }

    #[test]
    fn an_invoice_with_something_to_discount_uses_every_coupon_and_one_without_uses_none() {
        let discounts = InvoiceDiscounts {
            coupons: vec![
                coupon("all", CouponKind::Percentage, "100", Some(2), 1),
                coupon("five", CouponKind::Amount, "5", None, 0),
            ],
            taxes: vec![InvoiceTax {
                tax_rate_id: "txr_1".into(),
                code: "VAT".into(),
                name: "VAT".into(),
                percentage: d("19.0"),
                source: TaxSource::Default,
            }],
        };
        // The first coupon takes everything: the second is used (a period of it passed) for 0.
        let (used, taxes) = discounts.manifest(&invoice(
            "10",
            vec![(LineKind::FixedFee, 0, "10"), (LineKind::Coupon, 0, "-10")],
        ));
        assert_eq!(used.len(), 2);
        assert_eq!((used[0].period, used[0].discount), (Some(2), d("-10")));
        assert_eq!((used[1].period, used[1].discount), (None, Decimal::ZERO));
        assert_eq!(taxes[0].amount, Decimal::ZERO);
        assert_eq!(taxes[0].percentage.to_string(), "19");
        // Nothing to discount: no period is used, the rates are still recorded.
        let (used, taxes) = discounts.manifest(&invoice("0", vec![]));
        assert!(used.is_empty());
        assert_eq!(taxes.len(), 1);
    }
}
