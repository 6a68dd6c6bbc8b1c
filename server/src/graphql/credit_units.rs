//! Credit units: `createCreditUnit` (scope `BILLING`) and `creditUnits` (scope `READ`).

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{Decimal, money::Money, resolve_project, state, utc};
use crate::{
    auth::Scope,
    credit_units::{self, CreditUnitInput},
    db,
    error::GraphqlResult as Result,
};

/// A unit of credits a project declared, which wallets may hold.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct CreditUnit {
    #[graphql(skip)]
    pub id: ID,
    /// The unit's code (`CREDITS`), what wallets and charges name as their `currency`.
    pub code: String,
    pub name: String,
    /// Decimal places an amount in this unit may carry (0..=12).
    pub decimals: i32,
    /// What one unit is worth in money, when the project declared it; wallets in this unit take it
    /// as their `unitValue` unless they were created with their own `rateToMoney`/`moneyCurrency`.
    pub unit_value: Option<Money>,
    pub created_at: DateTime<Utc>,
}

#[async_graphql::ComplexObject]
impl CreditUnit {
    pub async fn id(&self) -> ID {
        self.id.clone()
    }
}

impl From<credit_units::CreditUnit> for CreditUnit {
    fn from(unit: credit_units::CreditUnit) -> Self {
        CreditUnit {
            id: ID(unit.id),
            code: unit.currency.code().to_string(),
            name: unit.name,
            decimals: unit.currency.decimals() as i32,
            unit_value: unit.money_rate.map(|r| Money::in_unit(r.rate, &r.currency)),
            created_at: utc(unit.created_at),
        }
    }
}

#[derive(InputObject)]
pub struct CreateCreditUnitInput {
    /// The operator names the project; a project key acts on its own.
    pub project_id: Option<ID>,
    /// 2-16 of `A-Z0-9_`, starting with a letter (upper-cased); not an ISO 4217 code.
    pub code: String,
    pub name: String,
    /// Decimal places amounts in this unit may carry: 0..=12.
    pub decimals: i32,
    /// What one unit is worth in `moneyCurrency` (with it, or neither).
    pub rate_to_money: Option<Decimal>,
    /// An ISO 4217 currency code.
    pub money_currency: Option<String>,
}

#[derive(SimpleObject)]
pub struct CreateCreditUnitPayload {
    pub credit_unit: CreditUnit,
}

#[derive(Default)]
pub struct CreditUnitQuery;

#[Object]
impl CreditUnitQuery {
    /// The project's credit units, by code (scope `READ`).
    async fn credit_units(&self, ctx: &Context<'_>, project_id: Option<ID>) -> Result<Vec<CreditUnit>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let units = credit_units::list(&mut conn, &project_id).await?;
        Ok(units.into_iter().map(CreditUnit::from).collect())
    }
}

#[derive(Default)]
pub struct CreditUnitMutation;

#[Object]
impl CreditUnitMutation {
    /// Declares a credit unit (scope `BILLING`). The same definition again returns it; a different
    /// one under a used code is `CREDIT_UNIT_EXISTS`.
    async fn create_credit_unit(
        &self,
        ctx: &Context<'_>,
        input: CreateCreditUnitInput,
    ) -> Result<CreateCreditUnitPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let (unit, _created) = credit_units::create(
            &mut conn,
            &project_id,
            &CreditUnitInput {
                code: input.code,
                name: input.name,
                decimals: i64::from(input.decimals),
                rate_to_money: input.rate_to_money.map(|d| d.0),
                money_currency: input.money_currency,
            },
        )
        .await?;
        Ok(CreateCreditUnitPayload {
            credit_unit: unit.into(),
        })
    }
}
