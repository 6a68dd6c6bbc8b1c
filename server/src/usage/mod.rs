//! Usage: events in (idempotent, batched, durable before they are acknowledged), billable
//! metrics defined over them, and aggregates out.
//!
//! - [`event`]: the pure validation every entry point shares;
//! - [`ingest`]: the one write path, a batch in one statement;
//! - [`group_commit`]: concurrent single events share one write;
//! - [`metrics`]: metric definitions and the SQL aggregation that reads them.
//! - [`series`]: a metric per hour, day or month of a time zone, for charts.

pub mod event;
pub mod group_commit;
pub mod ingest;
pub mod metrics;
pub mod series;
