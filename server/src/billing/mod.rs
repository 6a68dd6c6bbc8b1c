//! Billing: plans (versioned definitions of what a subscription bills), subscriptions, billing
//! runs that turn closed periods into invoices, and the scheduler that runs them. Rating itself
//! is the pure `neruba-pricing` crate; this module reads usage and stores what it bills.

pub mod backtest;
pub mod discounts;
pub mod export;
pub mod plans;
pub mod runs;
pub mod scheduler;
pub mod spend;
pub mod subscriptions;
