//! Billing: plans (versioned definitions of what a subscription bills), and, as they land,
//! subscriptions, billing runs and invoices. Rating itself is the pure `neruba-pricing` crate;
//! this module validates definitions against the project (metrics, units) and stores them.

pub mod plans;
pub mod subscriptions;
