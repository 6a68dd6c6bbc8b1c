//! Storage: diesel table definitions, row structs and the queries, one module per table group.
//! Functions take `&mut AsyncMysqlConnection` so callers compose them inside one transaction.

pub mod api_keys;
pub mod billable_metrics;
pub mod credit_units;
pub mod customers;
pub mod discounts;
pub mod invoices;
pub mod ledger;
pub mod payments;
pub mod plans;
pub mod portal;
pub mod projects;
pub mod schema;
pub mod subscriptions;
pub mod usage_events;

pub use diesel_async::AsyncMysqlConnection as Conn;

/// The tables whose rows have a public id and a project: what `node(id:)` can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTable {
    Customers,
    BillableMetrics,
    CreditUnits,
    Wallets,
    CreditLots,
    LedgerAccounts,
    LedgerTransactions,
    Plans,
    PlanVersions,
    PlanCharges,
    Subscriptions,
    Invoices,
    Coupons,
    CouponRedemptions,
    TaxRates,
    CreditHolds,
    CheckoutSessions,
    Payments,
}

impl IdTable {
    fn name(self) -> &'static str {
        match self {
            IdTable::Customers => "customers",
            IdTable::BillableMetrics => "billable_metrics",
            IdTable::CreditUnits => "credit_units",
            IdTable::Wallets => "wallets",
            IdTable::CreditLots => "credit_lots",
            IdTable::LedgerAccounts => "ledger_accounts",
            IdTable::LedgerTransactions => "ledger_transactions",
            IdTable::Plans => "plans",
            IdTable::PlanVersions => "plan_versions",
            IdTable::PlanCharges => "plan_charges",
            IdTable::Subscriptions => "subscriptions",
            IdTable::Invoices => "invoices",
            IdTable::Coupons => "coupons",
            IdTable::CouponRedemptions => "coupon_redemptions",
            IdTable::TaxRates => "tax_rates",
            IdTable::CreditHolds => "credit_holds",
            IdTable::CheckoutSessions => "checkout_sessions",
            IdTable::Payments => "payments",
        }
    }
}

/// The project of the row with public id `id` in `table`, if there is one (by primary key).
pub async fn project_of(conn: &mut Conn, table: IdTable, id: &str) -> diesel::QueryResult<Option<String>> {
    use diesel::{OptionalExtension, QueryableByName, sql_types::Text};
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        project_id: String,
    }
    // The table name comes from the enum above, never from the client.
    let row: Option<Row> = diesel::sql_query(format!("SELECT project_id FROM {} WHERE id = ?", table.name()))
        .bind::<Text, _>(id)
        .get_result(conn)
        .await
        .optional()?;
    Ok(row.map(|r| r.project_id))
}

/// The current time at the precision the database keeps (`DATETIME(6)`: microseconds), so a value
/// returned from memory equals the same value read back.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::SubsecRound;
    chrono::Utc::now().naive_utc().trunc_subsecs(6)
}
