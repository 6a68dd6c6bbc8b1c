//! Neruba's rating engine: a price and a quantity (or, for percentage prices, the amounts of the
//! events) in, an exact amount and the steps that explain it out.
//!
//! Pure functions over plain types: no I/O, no clock, no database, so the server's billing runs,
//! its `quotePrice` query and the portal (compiled to `wasm32`) all rate with the same code.
//! The conventions it implements are written once in `docs/billing.md`; each has a table test in
//! `tests/conventions.rs` with amounts computed by hand, and `tests/properties.rs` checks the
//! invariants (graduated prices are continuous, volume and package prices monotone, prorated
//! parts sum to the whole, steps sum to the amount).
//!
//! - [`Price`] is a validated price model ([`PriceSpec`] is its unchecked, serialized form);
//! - [`Charge`] is a price with the terms every usage charge may carry: free units and a minimum;
//! - [`rate`] turns a charge and its [`Usage`] into a [`Rating`]: exact amount plus [`Step`]s;
//! - [`Charge::bill`] turns a rating into invoice lines rounded to the currency's minor units;
//! - [`proration`] splits fixed fees by days, [`periods`] lays out billing periods;
//! - [`invoice::compute`] puts an invoice together in the documented order.

mod arith;
mod charge;
pub mod invoice;
mod percentage;
pub mod periods;
mod price;
pub mod proration;
mod rating;
mod rounding;

pub use charge::{Charge, ChargeLines, ChargeSpec};
pub use percentage::PercentageRater;
pub use price::{
    MAX_EVENT_AMOUNTS, MAX_TIERS, PercentageSpec, PercentageTierSpec, Price, PriceError, PriceSpec, TierSpec,
};
pub use rating::{RateError, Rating, Step, StepKind, Usage, rate};
pub use rounding::round_line;

/// The version of the conventions this crate implements (tier bounds, free units, rounding,
/// proration, the order of an invoice). Stored with every invoice so a recomputation can tell
/// whether a difference comes from the inputs or from a change of rules. Bump it whenever a
/// table test in `tests/conventions.rs` has to change its expected amount.
pub const CONVENTIONS_VERSION: u32 = 1;
