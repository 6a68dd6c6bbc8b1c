//! The `Money` output object: an amount together with its unit, never a bare `Decimal` beside a
//! sibling currency field. Built from the domain [`crate::currency::Money`] with `From`.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{Context, Object, dataloader::Loader};

use super::Decimal;
use crate::{
    app::AppState,
    credit_units,
    currency::{self, Currency},
    error::{Error, GraphqlResult},
};

/// An amount of money or credits in one unit.
///
/// `amount` and `currency` come with the row; `decimals` and `formatted` need the unit's minor
/// units, which for a credit unit are the project's declaration: those are loaded once per
/// response for all the amounts in it ([`UnitLoader`]), and only when selected.
///
/// Its fields cost nothing against the complexity limit: an amount is one value of its parent
/// row (as the bare `Decimal` it replaced was), and the unit lookup is one batch per response,
/// not per row. So `balance { amount currency formatted }` costs what `balance` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Money {
    amount: rust_decimal::Decimal,
    code: String,
    project_id: String,
    /// Known already (ISO currencies, or a unit the caller had at hand).
    unit: Option<Currency>,
}

impl Money {
    /// An exact amount in a unit already at hand (a plan's currency, a quote's unit): nothing
    /// left to look up.
    pub fn in_unit(amount: rust_decimal::Decimal, unit: &Currency) -> Money {
        currency::Money::from_ledger(amount, unit.clone()).into()
    }

    /// An amount stored in `project_id`'s ledger in the unit `code`.
    pub fn stored(amount: rust_decimal::Decimal, code: &str, project_id: &str) -> Money {
        Money {
            amount,
            code: code.to_string(),
            project_id: project_id.to_string(),
            unit: Currency::from_iso_code(code),
        }
    }

    async fn unit(&self, ctx: &Context<'_>) -> GraphqlResult<Currency> {
        if let Some(unit) = &self.unit {
            return Ok(unit.clone());
        }
        let loader = ctx.data_unchecked::<async_graphql::dataloader::DataLoader<UnitLoader>>();
        let found = loader
            .load_one((self.project_id.clone(), self.code.clone()))
            .await
            .map_err(|e: Arc<Error>| (*e).clone())?;
        Ok(found.unwrap_or_else(|| Currency::undeclared(&self.code)))
    }
}

#[Object]
impl Money {
    /// The exact amount, at the ledger's precision (up to 12 decimal places, never rounded).
    #[graphql(complexity = 0)]
    async fn amount(&self) -> Decimal {
        self.amount.into()
    }
    /// The unit's code: an ISO 4217 currency (`USD`) or a credit unit the project declared.
    #[graphql(complexity = 0)]
    async fn currency(&self) -> &str {
        &self.code
    }
    /// The unit's minor-unit digits: 2 for USD, 0 for JPY, 3 for KWD, a credit unit's declared decimals.
    #[graphql(complexity = 0)]
    async fn decimals(&self, ctx: &Context<'_>) -> GraphqlResult<i32> {
        Ok(self.unit(ctx).await?.decimals() as i32)
    }
    /// For display only: the amount rounded half to even to `decimals` places, written with
    /// exactly that many places, `.` as the decimal point, no grouping, then a space and the code
    /// (`12.50 USD`, `-1200 JPY`, `1200 CREDITS`). Format for a locale from `amount` and `currency`.
    #[graphql(complexity = 0)]
    async fn formatted(&self, ctx: &Context<'_>) -> GraphqlResult<String> {
        let unit = self.unit(ctx).await?;
        Ok(currency::Money::from_ledger(self.amount, unit).formatted())
    }
}

impl From<&currency::Money> for Money {
    fn from(m: &currency::Money) -> Self {
        Money {
            amount: m.amount(),
            code: m.currency().code().to_string(),
            project_id: String::new(),
            unit: Some(m.currency().clone()),
        }
    }
}

impl From<currency::Money> for Money {
    fn from(m: currency::Money) -> Self {
        Money::from(&m)
    }
}

/// Loads credit units by (project, code): one query per project in a response.
pub struct UnitLoader {
    pub state: AppState,
}

impl Loader<(String, String)> for UnitLoader {
    type Value = Currency;
    type Error = Arc<Error>;

    async fn load(&self, keys: &[(String, String)]) -> Result<HashMap<(String, String), Currency>, Arc<Error>> {
        let mut projects: Vec<&str> = keys.iter().map(|(p, _)| p.as_str()).collect();
        projects.sort_unstable();
        projects.dedup();
        let mut conn = crate::db::get(&self.state.pool).await.map_err(|e| Arc::new(e.into()))?;
        let mut found = HashMap::new();
        for project_id in projects {
            for unit in credit_units::list(&mut conn, project_id).await.map_err(Arc::new)? {
                found.insert(
                    (project_id.to_string(), unit.currency.code().to_string()),
                    unit.currency,
                );
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_amounts_know_their_unit_and_credit_amounts_load_it() {
        let m = Money::stored("12.505".parse().unwrap(), "USD", "prj_1");
        assert_eq!(m.unit.as_ref().map(Currency::decimals), Some(2));
        assert_eq!(m.code, "USD");
        // A credit unit's decimals are the project's declaration: loaded, not guessed.
        let m = Money::stored("1200".parse().unwrap(), "CREDITS", "prj_1");
        assert!(m.unit.is_none());
        // A domain amount brings its unit along.
        let credits = Currency::credit_unit("code", "CREDITS", "decimals", 0).unwrap();
        let m = Money::from(currency::Money::from_ledger("1200".parse().unwrap(), credits));
        assert_eq!(m.unit.as_ref().map(Currency::decimals), Some(0));
        assert_eq!(m.amount, "1200".parse::<rust_decimal::Decimal>().unwrap());
    }
}
