//! Neruba: usage billing with a double-entry ledger behind every balance.
//!
//! Layers point one way: `http`/`graphql` → domain modules (`projects`, …) → `store`.

/// The allocator the binaries use: ingest allocates many small strings per event, where glibc's
/// malloc showed as a quarter of the server's time in the ingest benchmark.
pub use mimalloc::MiMalloc as Allocator;

pub mod app;
pub mod auth;
pub mod billing;
pub mod config;
pub mod credit_units;
pub mod currency;
pub mod customers;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod payments;
pub mod portal;
pub mod projects;
pub mod server;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
mod text_enum;
pub mod time;
pub mod usage;
