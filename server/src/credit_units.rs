//! Credit units a project declares (`CREDITS`, `GPU_HOURS`): code, name, decimals 0..=12 and an
//! optional money value. A wallet's unit is an ISO 4217 currency or one of these
//! ([`resolve_unit`]); declaring is idempotent like `createBillableMetric`: the same definition
//! again returns the stored unit, a different one under a used code is `CREDIT_UNIT_EXISTS`.
//! Units are never changed or removed, so a unit read once stays true.

use diesel_async::AsyncConnection;
use rust_decimal::Decimal;

use crate::{
    currency::Currency,
    error::{Error, ErrorCode, Result},
    ids,
    ledger::{parse_positive_amount, service::MAX_RATE_TO_MONEY},
    projects::parse_name,
    store::{
        Conn,
        credit_units::{self as store, CreditUnitRow},
        now,
    },
};

pub const CREDIT_UNIT_ID_PREFIX: &str = "cru";

/// What `createCreditUnit` takes, before validation.
#[derive(Debug, Clone, Default)]
pub struct CreditUnitInput {
    pub code: String,
    pub name: String,
    pub decimals: i64,
    pub rate_to_money: Option<String>,
    pub money_currency: Option<String>,
}

/// A credit unit's money value: one unit is worth `rate` of `currency` (an ISO 4217 currency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyRate {
    pub rate: Decimal,
    pub currency: Currency,
}

/// A declared credit unit: what a row says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditUnit {
    pub id: String,
    pub project_id: String,
    pub currency: Currency,
    pub name: String,
    pub money_rate: Option<MoneyRate>,
    pub created_at: chrono::NaiveDateTime,
}

/// The parts of a definition a replay must match.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Definition {
    currency: Currency,
    name: String,
    money_rate: Option<MoneyRate>,
}

/// `rateToMoney` and `moneyCurrency`, both or neither: a positive rate of at most
/// [`MAX_RATE_TO_MONEY`] and a known ISO 4217 currency.
pub fn parse_money_rate(rate: Option<&str>, currency: Option<&str>) -> Result<Option<MoneyRate>> {
    let rate = rate
        .map(|r| {
            let rate = parse_positive_amount("rateToMoney", r)?;
            if rate > MAX_RATE_TO_MONEY {
                return Err(Error::invalid(
                    "rateToMoney",
                    format!("must be at most {MAX_RATE_TO_MONEY}"),
                ));
            }
            Ok(rate)
        })
        .transpose()?;
    let currency = currency.map(|c| Currency::parse_iso("moneyCurrency", c)).transpose()?;
    match (rate, currency) {
        (Some(rate), Some(currency)) => Ok(Some(MoneyRate { rate, currency })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::invalid(
            "moneyCurrency",
            "rateToMoney and moneyCurrency go together",
        )),
        (None, Some(_)) => Err(Error::invalid(
            "rateToMoney",
            "rateToMoney and moneyCurrency go together",
        )),
    }
}

impl CreditUnitInput {
    fn validate(&self) -> Result<Definition> {
        Ok(Definition {
            currency: Currency::credit_unit("code", &self.code, "decimals", self.decimals)?,
            name: parse_name("name", &self.name)?,
            money_rate: parse_money_rate(self.rate_to_money.as_deref(), self.money_currency.as_deref())?,
        })
    }
}

impl TryFrom<CreditUnitRow> for CreditUnit {
    type Error = Error;

    /// A stored row is trusted for its code (the server checked it when declaring); a broken
    /// money currency or decimals is a bug, not the client's.
    fn try_from(row: CreditUnitRow) -> Result<CreditUnit> {
        let broken = |what: &str| Error::Internal(format!("credit unit {}: stored {what} is invalid", row.id));
        let currency =
            Currency::stored_credit_unit(&row.code, u32::from(row.decimals)).ok_or_else(|| broken("decimals"))?;
        let money_rate = match (row.rate_to_money, row.money_currency.as_deref()) {
            (Some(rate), Some(code)) => Some(MoneyRate {
                rate: rate.normalize(),
                currency: Currency::from_iso_code(code).ok_or_else(|| broken("money currency"))?,
            }),
            _ => None,
        };
        Ok(CreditUnit {
            id: row.id,
            project_id: row.project_id,
            currency,
            name: row.name,
            money_rate,
            created_at: row.created_at,
        })
    }
}

impl CreditUnit {
    fn definition(&self) -> Definition {
        Definition {
            currency: self.currency.clone(),
            name: self.name.clone(),
            money_rate: self.money_rate.clone(),
        }
    }
}

/// Declares a credit unit. The code is the idempotency key: the same definition again returns the
/// stored unit (`false`: nothing new); a different one is `CREDIT_UNIT_EXISTS`.
pub async fn create(conn: &mut Conn, project_id: &str, input: &CreditUnitInput) -> Result<(CreditUnit, bool)> {
    let def = input.validate()?;
    conn.transaction(async |conn| {
        let row = CreditUnitRow {
            id: ids::new_id(CREDIT_UNIT_ID_PREFIX),
            project_id: project_id.to_string(),
            code: def.currency.code().to_string(),
            name: def.name.clone(),
            decimals: u8::try_from(def.currency.decimals()).map_err(|_| Error::Internal("decimals".into()))?,
            rate_to_money: def.money_rate.as_ref().map(|r| r.rate),
            money_currency: def.money_rate.as_ref().map(|r| r.currency.code().to_string()),
            created_at: now(),
        };
        let inserted = store::insert_ignore(conn, &row).await?;
        let stored = store::find_by_code(conn, project_id, def.currency.code())
            .await?
            .ok_or_else(|| Error::Internal("credit unit vanished after insert".into()))?;
        let stored = CreditUnit::try_from(stored)?;
        if stored.definition() != def {
            return Err(Error::conflict(
                ErrorCode::CreditUnitExists,
                format!(
                    "credit unit '{}' already exists with a different definition",
                    def.currency.code()
                ),
            ));
        }
        Ok((stored, inserted))
    })
    .await
}

/// The project's credit units, by code.
pub async fn list(conn: &mut Conn, project_id: &str) -> Result<Vec<CreditUnit>> {
    store::list(conn, project_id)
        .await?
        .into_iter()
        .map(CreditUnit::try_from)
        .collect()
}

/// A wallet's unit as a client names it: an ISO 4217 currency, or a credit unit the project
/// declared (with its money rate, if it has one). Anything else is `BAD_USER_INPUT` naming `field`.
pub async fn resolve_unit(
    conn: &mut Conn,
    project_id: &str,
    field: &str,
    raw: &str,
) -> Result<(Currency, Option<MoneyRate>)> {
    let code = raw.trim().to_ascii_uppercase();
    if let Some(currency) = Currency::from_iso_code(&code) {
        return Ok((currency, None));
    }
    if let Some(row) = store::find_by_code(conn, project_id, &code).await? {
        let unit = CreditUnit::try_from(row)?;
        return Ok((unit.currency, unit.money_rate));
    }
    Err(Error::invalid(
        field,
        format!(
            "'{}' is neither an ISO 4217 currency nor a credit unit of this project (declare it with createCreditUnit)",
            code.chars().take(40).collect::<String>()
        ),
    ))
}

/// The unit of a stored wallet or account, by its code. A code that is neither ISO nor declared
/// (only possible for rows older than unit declarations that the migration did not cover) is read
/// at the ledger's full precision, so old wallets keep working.
pub async fn stored_unit(conn: &mut Conn, project_id: &str, code: &str) -> Result<Currency> {
    if let Some(currency) = Currency::from_iso_code(code) {
        return Ok(currency);
    }
    match store::find_by_code(conn, project_id, code).await? {
        Some(row) => Ok(CreditUnit::try_from(row)?.currency),
        None => {
            tracing::warn!(code, project_id, "a stored unit is not declared; using 12 decimals");
            Ok(Currency::undeclared(code))
        }
    }
}
