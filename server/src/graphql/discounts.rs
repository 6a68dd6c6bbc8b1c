//! Coupons and tax rates: `createCoupon`, `applyCoupon`, `createTaxRate`, `setDefaultTaxRates`,
//! `setCustomerTaxRates` (scope `BILLING`) and `coupons`, `coupon`, `taxRates` (scope `READ`).
//! What they mean for invoices is `billing::discounts`.

use async_graphql::{Context, ID, InputObject, Object, OneofObject, SimpleObject, connection::Connection};
use chrono::{DateTime, Utc};

use super::{
    Decimal, Money, absent_is_null,
    billing::PlanSubscription,
    pagination::{self, CursorKind},
    principal, resolve_project, state,
    types::utc,
    usage::Customer,
};
use crate::{
    auth::Scope,
    billing::discounts::{self, CouponDuration, CouponKind},
    db,
    error::GraphqlResult as Result,
    store::{
        discounts::{self as store, CouponRow, RedemptionRow, TaxRateRow},
        subscriptions as subscription_store,
    },
};

/// What a coupon takes off: exactly one of its fields.
#[derive(OneofObject)]
pub enum DiscountInput {
    /// Percent off what is left of the invoice's subtotal: above 0 up to 100, at most 4 decimal
    /// places (`"12.5"` is 12.5 %).
    Percentage(Decimal),
    /// A fixed amount off, in the coupon's `currency` (above 0, in its minor units); never more
    /// than what is left.
    Amount(Decimal),
}

#[derive(InputObject)]
pub struct CreateCouponInput {
    pub project_id: Option<ID>,
    /// 1 to 64 of `A-Z a-z 0-9 _ - . :`; unique in the project.
    pub code: String,
    pub name: String,
    pub discount: DiscountInput,
    /// The unit of an amount coupon (required for it, refused for a percentage): an ISO 4217
    /// currency or a declared credit unit. It applies to subscriptions whose plan bills in it.
    pub currency: Option<String>,
    pub duration: CouponDuration,
    /// For `REPEATING` only (and then required): how many invoices it discounts, 1 to 1200.
    pub periods: Option<i32>,
}

#[derive(SimpleObject)]
pub struct CreateCouponPayload {
    pub coupon: Coupon,
    /// False when the same definition was there already (a replay): nothing was written.
    pub created: bool,
}

#[derive(InputObject)]
pub struct ApplyCouponInput {
    pub project_id: Option<ID>,
    pub subscription_id: ID,
    pub coupon_id: ID,
    /// Makes the request replay-safe: the same key and request answer the first redemption.
    pub idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct ApplyCouponPayload {
    pub redemption: CouponRedemption,
    /// True when this answered an earlier request with the same idempotency key.
    pub replayed: bool,
}

#[derive(InputObject)]
pub struct CreateTaxRateInput {
    pub project_id: Option<ID>,
    /// 1 to 64 of `A-Z a-z 0-9 _ - . :`; unique in the project.
    pub code: String,
    pub name: String,
    /// Exclusive, percent of the discounted subtotal: 0 to 100, at most 4 decimal places.
    pub percentage: Decimal,
}

#[derive(SimpleObject)]
pub struct CreateTaxRatePayload {
    pub tax_rate: TaxRate,
    /// False when the same definition was there already (a replay): nothing was written.
    pub created: bool,
}

#[derive(InputObject)]
pub struct SetDefaultTaxRatesInput {
    pub project_id: Option<ID>,
    /// The project's default rates, in the order invoices list them (at most 10; empty: none).
    pub tax_rate_ids: Vec<ID>,
}

#[derive(SimpleObject)]
pub struct SetDefaultTaxRatesPayload {
    /// The project's default rates now, in order.
    pub tax_rates: Vec<TaxRate>,
}

#[derive(InputObject)]
pub struct SetCustomerTaxRatesInput {
    pub project_id: Option<ID>,
    pub customer_id: ID,
    /// The customer's own rates, in order (at most 10): they replace the project's default for
    /// this customer. Empty gives it the default again; a 0 % rate makes it exempt, visibly.
    pub tax_rate_ids: Vec<ID>,
}

#[derive(SimpleObject)]
pub struct SetCustomerTaxRatesPayload {
    pub customer: Customer,
    /// The customer's own rates now, in order (empty: the project's default applies).
    pub tax_rates: Vec<TaxRate>,
}

/// A discount a subscription can be given with `applyCoupon`.
pub struct Coupon(pub(crate) CouponRow);

#[Object]
impl Coupon {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn code(&self) -> &str {
        &self.0.code
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn kind(&self) -> Result<CouponKind> {
        Ok(self.0.kind.parse()?)
    }
    /// Percent off (a `PERCENTAGE` coupon).
    async fn percentage(&self) -> Option<Decimal> {
        self.0.percentage.map(Decimal::from)
    }
    /// The amount off (an `AMOUNT` coupon), in its unit.
    async fn amount(&self) -> Option<Money> {
        match (self.0.amount, &self.0.currency) {
            (Some(amount), Some(code)) => Some(Money::stored(amount, code, &self.0.project_id)),
            _ => None,
        }
    }
    async fn duration(&self) -> Result<CouponDuration> {
        Ok(self.0.duration.parse()?)
    }
    /// How many invoices a `REPEATING` coupon discounts.
    async fn periods(&self) -> Option<i32> {
        self.0.periods.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
}

/// A coupon applied to a subscription.
pub struct CouponRedemption(pub(crate) RedemptionRow);

#[Object]
impl CouponRedemption {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn coupon(&self, ctx: &Context<'_>) -> Result<Option<Coupon>> {
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(store::find_coupon(&mut conn, &self.0.project_id, &self.0.coupon_id)
            .await?
            .map(Coupon))
    }
    async fn subscription(&self, ctx: &Context<'_>) -> Result<Option<PlanSubscription>> {
        let mut conn = db::get(&state(ctx).pool).await?;
        Ok(
            subscription_store::find(&mut conn, &self.0.project_id, &self.0.subscription_id)
                .await?
                .map(PlanSubscription),
        )
    }
    async fn applied_at(&self) -> DateTime<Utc> {
        utc(self.0.applied_at)
    }
    /// How many invoices it discounts in all: 1 for `ONCE`, the coupon's periods for
    /// `REPEATING`, null for `FOREVER`.
    async fn periods(&self) -> Option<i32> {
        self.0.periods.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
    }
    /// How many invoices of the subscription (drafts included, void ones not) it discounted,
    /// counted from their manifests.
    async fn periods_used(&self, ctx: &Context<'_>) -> Result<i32> {
        let mut conn = db::get(&state(ctx).pool).await?;
        let used = discounts::periods_used(&mut conn, &self.0, None).await?;
        Ok(i32::try_from(used).unwrap_or(i32::MAX))
    }
}

/// An exclusive tax rate.
pub struct TaxRate(pub(crate) TaxRateRow);

#[Object]
impl TaxRate {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn code(&self) -> &str {
        &self.0.code
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Percent of the discounted subtotal.
    async fn percentage(&self) -> Decimal {
        Decimal::from(self.0.percentage)
    }
    /// Its place in the project's default list (0 first); null when not in it.
    async fn default_position(&self) -> Option<i32> {
        self.0.default_position.map(i32::from)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
}

#[derive(Default)]
pub struct DiscountQuery;

#[Object]
impl DiscountQuery {
    /// The project's coupons by code (scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn coupons(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Coupon>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let size = pagination::page_size(first)?;
        let after_key = pagination::after_key(CursorKind::Coupon, after.as_deref())?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = store::list_coupons(&mut conn, &project_id, after_key.as_deref(), size + 1).await?;
        Ok(pagination::connection(
            CursorKind::Coupon,
            rows,
            size,
            after.as_deref(),
            |c| c.code.clone(),
            Coupon,
        ))
    }

    /// A coupon by id; null when there is none (scope `READ`).
    async fn coupon(&self, ctx: &Context<'_>, project_id: Option<ID>, id: ID) -> Result<Option<Coupon>> {
        let found = absent_is_null(async {
            let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
            let mut conn = db::get(&state(ctx).pool).await?;
            Ok(discounts::find_coupon(&mut conn, &project_id, &id).await?)
        })
        .await?;
        Ok(found.map(Coupon))
    }

    /// The project's tax rates by code (scope `READ`); `defaultPosition` says which are its default.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn tax_rates(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, TaxRate>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let size = pagination::page_size(first)?;
        let after_key = pagination::after_key(CursorKind::TaxRate, after.as_deref())?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = store::list_tax_rates(&mut conn, &project_id, after_key.as_deref(), size + 1).await?;
        Ok(pagination::connection(
            CursorKind::TaxRate,
            rows,
            size,
            after.as_deref(),
            |t| t.code.clone(),
            TaxRate,
        ))
    }
}

#[derive(Default)]
pub struct DiscountMutation;

fn ids(list: Vec<ID>) -> Vec<String> {
    list.into_iter().map(|id| id.0).collect()
}

#[Object]
impl DiscountMutation {
    /// Creates a coupon (scope `BILLING`). The same code and definition again answer the stored
    /// coupon (`created: false`); another definition under the code is `COUPON_EXISTS`.
    async fn create_coupon(&self, ctx: &Context<'_>, input: CreateCouponInput) -> Result<CreateCouponPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let domain = discounts::CouponInput {
            code: input.code,
            name: input.name,
            discount: match input.discount {
                DiscountInput::Percentage(p) => discounts::DiscountInput::Percentage(p.0),
                DiscountInput::Amount(a) => discounts::DiscountInput::Amount(a.0),
            },
            currency: input.currency,
            duration: input.duration,
            periods: input.periods.map(i64::from),
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        let (row, created) = discounts::create_coupon(&mut conn, &project_id, &domain).await?;
        Ok(CreateCouponPayload {
            coupon: Coupon(row),
            created,
        })
    }

    /// Applies a coupon to a subscription (scope `BILLING`): its next invoices are discounted
    /// (docs/billing.md). Replay-safe by `idempotencyKey`; a coupon is applied to a subscription
    /// once (`COUPON_APPLIED`); an amount coupon in another unit than the plan's is refused on
    /// `couponId`.
    async fn apply_coupon(&self, ctx: &Context<'_>, input: ApplyCouponInput) -> Result<ApplyCouponPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let actor = principal(ctx)?.actor();
        let domain = discounts::ApplyInput {
            subscription_id: input.subscription_id.0,
            coupon_id: input.coupon_id.0,
            idempotency_key: input.idempotency_key,
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        let (row, created) = discounts::apply_coupon(&mut conn, &project_id, &domain, &actor).await?;
        Ok(ApplyCouponPayload {
            redemption: CouponRedemption(row),
            replayed: !created,
        })
    }

    /// Creates a tax rate (scope `BILLING`). The same code and definition again answer the stored
    /// rate (`created: false`); another definition under the code is `TAX_RATE_EXISTS`.
    async fn create_tax_rate(&self, ctx: &Context<'_>, input: CreateTaxRateInput) -> Result<CreateTaxRatePayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let domain = discounts::TaxRateInput {
            code: input.code,
            name: input.name,
            percentage: input.percentage.0,
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        let (row, created) = discounts::create_tax_rate(&mut conn, &project_id, &domain).await?;
        Ok(CreateTaxRatePayload {
            tax_rate: TaxRate(row),
            created,
        })
    }

    /// Replaces the project's default tax rates (scope `BILLING`): invoices of customers without
    /// their own rates apply these, in this order.
    async fn set_default_tax_rates(
        &self,
        ctx: &Context<'_>,
        input: SetDefaultTaxRatesInput,
    ) -> Result<SetDefaultTaxRatesPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = discounts::set_default_tax_rates(&mut conn, &project_id, &ids(input.tax_rate_ids)).await?;
        Ok(SetDefaultTaxRatesPayload {
            tax_rates: rows.into_iter().map(TaxRate).collect(),
        })
    }

    /// Replaces a customer's own tax rates (scope `BILLING`); they replace the project's default
    /// on its invoices. An empty list gives it the default again.
    async fn set_customer_tax_rates(
        &self,
        ctx: &Context<'_>,
        input: SetCustomerTaxRatesInput,
    ) -> Result<SetCustomerTaxRatesPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let (customer, rows) =
            discounts::set_customer_tax_rates(&mut conn, &project_id, &input.customer_id, &ids(input.tax_rate_ids))
                .await?;
        Ok(SetCustomerTaxRatesPayload {
            customer: Customer(customer),
            tax_rates: rows.into_iter().map(TaxRate).collect(),
        })
    }
}
