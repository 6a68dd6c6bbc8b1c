//! Customers, billable metrics, usage ingest and usage reads.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Json, Object, SimpleObject,
    connection::Connection,
    dataloader::{DataLoader, Loader},
};
use chrono::{DateTime, NaiveDateTime, Utc};

use super::{
    Decimal,
    money::Money,
    pagination::{self, CursorKind},
    require_read_of, resolve_project, state, utc,
};
use crate::{
    app::AppState,
    auth::Scope,
    customers::{self, CustomerInput},
    db,
    error::{Error, ErrorCode, GraphqlResult as Result},
    store::{
        billable_metrics::{self, MetricRow},
        customers::{self as customer_store, CustomerRow},
        now,
        usage_events::{self, EventCursor, EventFilter},
    },
    time,
    usage::{
        event::{RawEvent, parse_metric_code, parse_property_name},
        ingest::{self, IngestedEvent, Outcome, check_batch_size},
        metrics::{self, Aggregation, MetricDef, MetricInput, UsageValue},
    },
};

// ---------------------------------------------------------------------------------------------
// Output types

/// A customer of a project, named by the project's own external id.
pub struct Customer(pub CustomerRow);

#[Object]
impl Customer {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// The project's id for this customer.
    async fn external_id(&self) -> &str {
        &self.0.external_id
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    async fn currency(&self) -> Option<&str> {
        self.0.currency.as_deref()
    }
    async fn metadata(&self) -> Option<Json<serde_json::Value>> {
        self.0
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .map(Json)
    }
    /// True when the record was made by an event naming an unknown customer and has no details yet.
    async fn implicit(&self) -> bool {
        self.0.implicit
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }

    /// The metric's aggregate over `[from, to)` (event time). Batched across customers: a list of
    /// customers with their usage costs one query per metric and period, not one per customer.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The billable metric's code.")] metric: String,
        #[graphql(desc = "Start of the period, inclusive.")] from: DateTime<Utc>,
        #[graphql(desc = "End of the period, exclusive.")] to: DateTime<Utc>,
        #[graphql(desc = "A property to group by; defaults to the metric's own group-by.")] group_by: Option<String>,
    ) -> Result<Usage> {
        require_read_of(ctx, &self.0.project_id, &self.0.id)?;
        let metric = parse_metric_code("metric", &metric)?;
        let (from_at, to_at) = (time::to_column("from", from)?, time::to_column("to", to)?);
        if from_at >= to_at {
            return Err(Error::invalid("to", "must be after `from`").into());
        }
        let group_by = group_by.map(|g| parse_property_name("groupBy", &g)).transpose()?;
        let key = UsageKey {
            project_id: self.0.project_id.clone(),
            metric,
            from: from_at,
            to: to_at,
            group_by,
            customer: self.0.external_id.clone(),
        };
        let loader = ctx.data_unchecked::<DataLoader<UsageLoader>>();
        let found = loader
            .load_one(key.clone())
            .await
            .map_err(|e: Arc<Error>| (*e).clone())?;
        let LoadedUsage { metric, value } = found.ok_or(Error::NotFound("billable metric"))?;
        let group_by = key.group_by.clone().or(metric.group_by.clone());
        Ok(Usage {
            aggregation: metric.aggregation,
            metric,
            from,
            to,
            value: value.value.into(),
            group_by,
            groups: value
                .groups
                .into_iter()
                .map(|(key, value)| UsageGroup {
                    key,
                    value: value.into(),
                })
                .collect(),
        })
    }

    /// The metric's aggregate per hour, day or month of `timeZone` over `[from, to)` (event time),
    /// for charts: every bucket from the one holding `from` to the one holding the instant before
    /// `to`, zero where nothing counts, at most 1000 buckets. One query (scope `READ`).
    async fn usage_series(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The billable metric's code.")] metric: String,
        #[graphql(desc = "Start of the range, inclusive.")] from: DateTime<Utc>,
        #[graphql(desc = "End of the range, exclusive.")] to: DateTime<Utc>,
        interval: crate::usage::series::UsageInterval,
        #[graphql(desc = "The IANA time zone whose calendar the buckets follow (`Europe/Berlin`; default `UTC`).")]
        time_zone: Option<String>,
    ) -> Result<UsageSeries> {
        use crate::usage::series;
        require_read_of(ctx, &self.0.project_id, &self.0.id)?;
        let code = parse_metric_code("metric", &metric)?;
        let tz = series::parse_time_zone("timeZone", time_zone.as_deref().unwrap_or("UTC"))?;
        let (from_at, to_at) = (time::to_column("from", from)?, time::to_column("to", to)?);
        let bounds = series::boundaries(from_at, to_at, interval, tz)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let row = billable_metrics::find_by_code(&mut conn, &self.0.project_id, &code)
            .await?
            .ok_or(Error::NotFound("billable metric"))?;
        let def = metrics::MetricDef::from_row(&row)?;
        // The buckets' edges, but only `[from, to)` counts.
        let mut query_bounds = bounds.clone();
        query_bounds[0] = from_at;
        if let Some(last) = query_bounds.last_mut() {
            *last = to_at;
        }
        let mut buckets =
            series::series(&mut conn, &self.0.project_id, &def, &self.0.external_id, &query_bounds).await?;
        for (bucket, edges) in buckets.iter_mut().zip(bounds.windows(2)) {
            bucket.start = edges[0];
            bucket.end = edges[1];
        }
        Ok(UsageSeries {
            metric: code,
            aggregation: def.aggregation,
            interval,
            time_zone: tz.name().to_string(),
            buckets: buckets
                .into_iter()
                .map(|b| UsageBucket {
                    start: utc(b.start),
                    end: utc(b.end),
                    value: b.value.into(),
                })
                .collect(),
        })
    }

    /// What the customer's usage cost under its subscriptions' plans, per hour, day or month of
    /// `timeZone` over `[from, to)`: one series per currency its plans bill in, with every bucket
    /// of the range (as `usageSeries` lays them out). A bucket holds the difference between what
    /// the billing period's usage so far cost at its end and at its start, each rounded as an
    /// invoice line is, so a period's buckets add up to its invoice's usage lines exactly. Fixed
    /// fees, minimums, coupons, taxes and credits stay on invoices. Usage as received now; at
    /// most 50 subscriptions and 1000 billing periods in the range (scope `READ`). It reads a
    /// query per subscription and charge: it costs 1000 toward the complexity limit.
    #[graphql(complexity = "super::pagination::SPEND_SERIES_COST + child_complexity")]
    async fn spend_series(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Start of the range, inclusive.")] from: DateTime<Utc>,
        #[graphql(desc = "End of the range, exclusive.")] to: DateTime<Utc>,
        interval: crate::usage::series::UsageInterval,
        #[graphql(desc = "The IANA time zone whose calendar the buckets follow (`Europe/Berlin`; default `UTC`).")]
        time_zone: Option<String>,
    ) -> Result<Vec<SpendSeries>> {
        use crate::usage::series;
        require_read_of(ctx, &self.0.project_id, &self.0.id)?;
        let tz = series::parse_time_zone("timeZone", time_zone.as_deref().unwrap_or("UTC"))?;
        let (from_at, to_at) = (time::to_column("from", from)?, time::to_column("to", to)?);
        let bounds = series::boundaries(from_at, to_at, interval, tz)?;
        // The buckets' edges, but only `[from, to)` counts.
        let mut query_bounds = bounds.clone();
        query_bounds[0] = from_at;
        if let Some(last) = query_bounds.last_mut() {
            *last = to_at;
        }
        let mut conn = db::get(&state(ctx).pool).await?;
        let found = crate::billing::spend::series(
            &mut conn,
            &self.0.project_id,
            &self.0.id,
            &self.0.external_id,
            &query_bounds,
            now(),
        )
        .await?;
        Ok(found
            .into_iter()
            .map(|s| {
                let total = s
                    .amounts
                    .iter()
                    .try_fold(rust_decimal::Decimal::ZERO, |t, a| crate::billing::spend::add(t, *a))?;
                Ok(SpendSeries {
                    currency: s.currency.code().to_string(),
                    interval,
                    time_zone: tz.name().to_string(),
                    total: Money::in_unit(total, &s.currency),
                    buckets: bounds
                        .windows(2)
                        .zip(s.amounts)
                        .map(|(edges, amount)| SpendBucket {
                            start: utc(edges[0]),
                            end: utc(edges[1]),
                            amount: Money::in_unit(amount, &s.currency),
                        })
                        .collect(),
                })
            })
            .collect::<std::result::Result<Vec<_>, Error>>()?)
    }

    /// The customer's wallets, one per currency or credit unit, oldest first (by id, which is
    /// time-ordered), a page at a time (scope `READ`). Cursors are shared with `wallets`.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn wallets(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, super::ledger::Wallet>> {
        require_read_of(ctx, &self.0.project_id, &self.0.id)?;
        super::ledger::wallet_page(ctx, &self.0.project_id, Some(&self.0.external_id), first, after).await
    }

    /// The customer's payments, oldest first (scope `READ`). Cursors are shared with `payments`.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn payments(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, super::payments::Payment>> {
        require_read_of(ctx, &self.0.project_id, &self.0.id)?;
        let filter = crate::store::payments::PaymentFilter {
            customer_id: Some(self.0.id.clone()),
            ..Default::default()
        };
        super::payments::payment_page(ctx, &self.0.project_id, filter, first, after).await
    }

    /// The customer's raw events, newest first (by event time, then arrival), a page at a time.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only events of this metric code.")] metric: Option<String>,
        #[graphql(desc = "Only events at or after this time.")] from: Option<DateTime<Utc>>,
        #[graphql(desc = "Only events before this time.")] to: Option<DateTime<Utc>>,
    ) -> Result<Connection<String, UsageEvent>> {
        require_read_of(ctx, &self.0.project_id, &self.0.id)?;
        let size = pagination::page_size(first)?;
        let cursor = pagination::after_key(CursorKind::Event, after.as_deref())?
            .as_deref()
            .map(parse_event_cursor)
            .transpose()?;
        let metric = metric.map(|m| parse_metric_code("metric", &m)).transpose()?;
        let filter = EventFilter {
            metric: metric.as_deref(),
            from: time::opt_to_column("from", from)?,
            to: time::opt_to_column("to", to)?,
        };
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = usage_events::list_for_customer(
            &mut conn,
            &self.0.project_id,
            &self.0.external_id,
            &filter,
            cursor,
            size + 1,
        )
        .await?;
        Ok(pagination::connection(
            CursorKind::Event,
            rows,
            size,
            after.as_deref(),
            |r| event_cursor(r.occurred_at, r.seq),
            |r| UsageEvent(r.into()),
        ))
    }
    /// The customer's invoices by boundary, oldest first unless `order` says otherwise,
    /// optionally in one status (scope `READ`). Cursors are shared with `invoices` in the same
    /// order.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn invoices(
        &self,
        ctx: &Context<'_>,
        status: Option<crate::billing::runs::InvoiceStatus>,
        #[graphql(
            default,
            desc = "Oldest first (the default) or newest first; each order has its own cursors."
        )]
        order: super::pagination::ListOrder,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, super::invoices::Invoice>> {
        require_read_of(ctx, &self.0.project_id, &self.0.id)?;
        super::invoices::customer_invoice_page(ctx, &self.0.project_id, &self.0.id, status, order, first, after).await
    }

    /// The customer's subscriptions, oldest first (scope `READ`). Cursors are shared with
    /// `subscriptions`.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn subscriptions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, super::billing::PlanSubscription>> {
        require_read_of(ctx, &self.0.project_id, &self.0.id)?;
        super::billing::customer_subscription_page(ctx, &self.0.project_id, &self.0.id, first, after).await
    }
}

/// An event's keyset position inside its cursor: `<event time in micros>.<arrival seq>`.
pub(crate) fn event_cursor(occurred_at: NaiveDateTime, seq: u64) -> String {
    format!("{}.{seq}", occurred_at.and_utc().timestamp_micros())
}

pub(crate) fn parse_event_cursor(raw: &str) -> std::result::Result<EventCursor, Error> {
    let bad = || Error::invalid("after", "is not a cursor from this list");
    let (micros, seq) = raw.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    let occurred_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let occurred_at = time::to_column("after", occurred_at).map_err(|_| bad())?;
    Ok(EventCursor { occurred_at, seq })
}

/// A metric's aggregate for one customer and period.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Usage {
    /// The billable metric aggregated (`metric { code }` is the code asked for).
    pub metric: BillableMetric,
    pub aggregation: Aggregation,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The aggregate over all matching events (0 when there are none).
    pub value: Decimal,
    /// The property the groups are split by, if any.
    pub group_by: Option<String>,
    /// Per value of `groupBy`, ordered by key (see `groups`).
    #[graphql(skip)]
    pub groups: Vec<UsageGroup>,
}

#[ComplexObject]
impl Usage {
    /// Per value of `groupBy`, a page at a time, ordered by key: the group without the property
    /// (`key` null) first, then by the key's bytes. The aggregate is one SQL query over the
    /// period; its groups are paged here, in memory, by key.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn groups(
        &self,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, UsageGroup>> {
        let size = pagination::page_size(first)?;
        let after_key = pagination::after_key(CursorKind::UsageGroup, after.as_deref())?
            .as_deref()
            .map(parse_group_cursor)
            .transpose()?;
        // `groups` is sorted by `Option<String>`'s order and its keys are distinct (one SQL group each).
        let start = match &after_key {
            Some(after) => self.groups.partition_point(|g| g.key <= *after),
            None => 0,
        };
        let rows: Vec<&UsageGroup> = self.groups[start..].iter().take(size as usize + 1).collect();
        Ok(pagination::connection(
            CursorKind::UsageGroup,
            rows,
            size,
            after.as_deref(),
            |g| group_cursor(&g.key),
            |g| g.clone(),
        ))
    }
}

/// A group's position inside its cursor: `-` for the group without the property, `=<key>` otherwise.
fn group_cursor(key: &Option<String>) -> String {
    match key {
        None => "-".to_string(),
        Some(k) => format!("={k}"),
    }
}

fn parse_group_cursor(raw: &str) -> std::result::Result<Option<String>, Error> {
    match raw.strip_prefix('=') {
        Some(key) => Ok(Some(key.to_string())),
        None if raw == "-" => Ok(None),
        None => Err(Error::invalid("after", "is not a cursor from this list")),
    }
}

#[derive(SimpleObject, Clone)]
pub struct UsageGroup {
    /// The `groupBy` property's value; null for events without the property.
    pub key: Option<String>,
    pub value: Decimal,
}

/// A stored usage event.
pub struct UsageEvent(pub IngestedEvent);

#[Object]
impl UsageEvent {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn idempotency_key(&self) -> &str {
        &self.0.idempotency_key
    }
    async fn customer_external_id(&self) -> &str {
        &self.0.customer_external_id
    }
    async fn metric(&self) -> &str {
        &self.0.metric
    }
    async fn quantity(&self) -> Decimal {
        self.0.quantity.into()
    }
    /// When the usage happened (the event's timestamp, or its receipt time when it had none).
    async fn occurred_at(&self) -> DateTime<Utc> {
        utc(self.0.occurred_at)
    }
    /// When Neruba first received it.
    async fn received_at(&self) -> DateTime<Utc> {
        utc(self.0.received_at)
    }
    async fn properties(&self) -> Option<Json<serde_json::Value>> {
        self.0
            .properties
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .map(Json)
    }
}

/// A billable metric.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct BillableMetric {
    #[graphql(skip)]
    pub id: ID,
    pub code: String,
    pub name: String,
    pub aggregation: Aggregation,
    /// The property `UNIQUE_COUNT` counts.
    pub property: Option<String>,
    pub group_by: Option<String>,
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    filters: BTreeMap<String, Vec<String>>,
}

#[ComplexObject]
impl BillableMetric {
    pub async fn id(&self) -> ID {
        self.id.clone()
    }
    /// Events count only when each filtered property has one of the listed values.
    async fn filters(&self) -> Vec<MetricFilter> {
        self.filters
            .iter()
            .map(|(property, values)| MetricFilter {
                property: property.clone(),
                values: values.clone(),
            })
            .collect()
    }
}

impl TryFrom<MetricRow> for BillableMetric {
    type Error = Error;
    fn try_from(row: MetricRow) -> std::result::Result<Self, Error> {
        let def = MetricDef::from_row(&row)?;
        Ok(BillableMetric {
            id: ID(row.id),
            code: def.code,
            name: def.name,
            aggregation: def.aggregation,
            property: def.property,
            group_by: def.group_by,
            created_at: utc(row.created_at),
            filters: def.filters,
        })
    }
}

#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "MetricFilterInput")]
pub struct MetricFilter {
    pub property: String,
    pub values: Vec<String>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum IngestStatus {
    /// Stored by this request.
    Accepted,
    /// Stored by an earlier request with the same key and payload; this is the original.
    Replayed,
    /// Not stored; `error` says why.
    Rejected,
}

/// Why one item of a batch was not stored.
#[derive(SimpleObject)]
pub struct ItemError {
    /// `BAD_USER_INPUT` or `IDEMPOTENCY_CONFLICT`.
    pub code: ErrorCode,
    pub message: String,
    /// The input field at fault, for `BAD_USER_INPUT`.
    pub field: Option<String>,
}

impl From<&Error> for ItemError {
    fn from(e: &Error) -> Self {
        ItemError {
            code: e.error_code(),
            message: e.public_message(),
            field: match e {
                Error::Invalid { field, .. } => Some(field.clone()),
                _ => None,
            },
        }
    }
}

#[derive(SimpleObject)]
pub struct IngestItemResult {
    /// Position in the submitted list.
    pub index: i32,
    pub status: IngestStatus,
    pub event: Option<UsageEvent>,
    pub error: Option<ItemError>,
}

#[derive(SimpleObject)]
pub struct IngestUsageBatchPayload {
    pub accepted: i32,
    pub replayed: i32,
    pub rejected: i32,
    /// One result per submitted event, in order.
    pub results: Vec<IngestItemResult>,
}

/// A single ingested event: stored now, or the original of a replay.
#[derive(SimpleObject)]
pub struct IngestUsagePayload {
    pub event: UsageEvent,
    /// True when this request repeated an earlier one: `event` is the original.
    pub replayed: bool,
}

#[derive(SimpleObject)]
pub struct CreateCustomerPayload {
    pub customer: Customer,
}

#[derive(SimpleObject)]
pub struct CreateBillableMetricPayload {
    pub billable_metric: BillableMetric,
}

// ---------------------------------------------------------------------------------------------
// Inputs

#[derive(InputObject)]
pub struct UsageEventInput {
    /// Unique per project, forever; a retry with the same key and payload returns the original.
    pub idempotency_key: String,
    /// The project's id for the customer; an unknown one creates the customer.
    pub customer_external_id: String,
    /// The billable metric code the event counts toward (it may be defined later).
    pub metric: String,
    /// Non-negative, at most 12 decimal places; default 1.
    pub quantity: Option<Decimal>,
    /// When the usage happened; default the time of receipt. Late events are accepted; events
    /// too far in the future are refused.
    pub occurred_at: Option<DateTime<Utc>>,
    /// A flat JSON object of strings, numbers, booleans and nulls.
    pub properties: Option<Json<serde_json::Value>>,
}

impl From<UsageEventInput> for RawEvent {
    fn from(i: UsageEventInput) -> Self {
        RawEvent {
            idempotency_key: Some(i.idempotency_key),
            customer_external_id: Some(i.customer_external_id),
            metric: Some(i.metric),
            quantity: i.quantity.map(|q| q.0),
            // The exact instant as RFC 3339 text, checked by the same rules as HTTP's `timestamp`.
            timestamp: i
                .occurred_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            properties: i.properties.map(|p| p.0),
        }
    }
}

#[derive(InputObject)]
pub struct IngestUsageInput {
    /// Required for the operator.
    pub project_id: Option<ID>,
    pub event: UsageEventInput,
}

#[derive(InputObject)]
pub struct IngestUsageBatchInput {
    /// Required for the operator.
    pub project_id: Option<ID>,
    /// At most the configured batch size (`NERUBA_INGEST_MAX_BATCH`, default 1000).
    pub events: Vec<UsageEventInput>,
}

#[derive(InputObject)]
pub struct CreateCustomerInput {
    /// Required for the operator.
    pub project_id: Option<ID>,
    pub external_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// Three-letter currency code.
    pub currency: Option<String>,
    /// A JSON object, at most 4 KiB.
    pub metadata: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct CreateBillableMetricInput {
    /// Required for the operator.
    pub project_id: Option<ID>,
    /// What events name in `metric`.
    pub code: String,
    pub name: String,
    pub aggregation: Aggregation,
    /// For `UNIQUE_COUNT`: the property whose distinct values are counted.
    pub property: Option<String>,
    pub filters: Option<Vec<MetricFilter>>,
    pub group_by: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Usage data loader

/// One customer's usage of one metric over one period: the data loader's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub project_id: String,
    pub metric: String,
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    pub group_by: Option<String>,
    pub customer: String,
}

/// Batches `Customer.usage` across the customers of one response: keys that share project, metric,
/// period and grouping are aggregated by one SQL query. Unknown metrics are left out of the answer.
/// The metric's row is read once per group anyway, so `Usage.metric` comes with the value.
pub struct UsageLoader {
    pub state: AppState,
}

/// One key's answer: the metric as defined and the customer's aggregate of it.
#[derive(Clone)]
pub struct LoadedUsage {
    pub metric: BillableMetric,
    pub value: UsageValue,
}

impl Loader<UsageKey> for UsageLoader {
    type Value = LoadedUsage;
    type Error = Arc<Error>;

    async fn load(&self, keys: &[UsageKey]) -> std::result::Result<HashMap<UsageKey, Self::Value>, Self::Error> {
        type Group<'a> = (&'a str, &'a str, NaiveDateTime, NaiveDateTime, Option<&'a str>);
        let mut groups: HashMap<Group<'_>, Vec<&UsageKey>> = HashMap::new();
        for k in keys {
            groups
                .entry((&k.project_id, &k.metric, k.from, k.to, k.group_by.as_deref()))
                .or_default()
                .push(k);
        }
        let mut conn = db::get(&self.state.pool).await.map_err(|e| Arc::new(e.into()))?;
        let mut out = HashMap::new();
        for ((project_id, metric, from, to, group_by), members) in groups {
            let row = match billable_metrics::find_by_code(&mut conn, project_id, metric).await {
                Ok(Some(row)) => row,
                Ok(None) => continue,
                Err(e) => return Err(Arc::new(e.into())),
            };
            let def = MetricDef::from_row(&row).map_err(Arc::new)?;
            let billable_metric = BillableMetric::try_from(row).map_err(Arc::new)?;
            let group_by = group_by.or(def.group_by.as_deref());
            let customers: Vec<&str> = members.iter().map(|k| k.customer.as_str()).collect();
            let values = metrics::aggregate(&mut conn, project_id, &def, &customers, from, to, group_by)
                .await
                .map_err(Arc::new)?;
            for k in members {
                let value = values.get(&k.customer).cloned().unwrap_or_default();
                out.insert(
                    k.clone(),
                    LoadedUsage {
                        metric: billable_metric.clone(),
                        value,
                    },
                );
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Roots

#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// A customer by Neruba's `id` or the project's `externalId` (one of them; scope `READ`);
    /// `null` when there is none.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        id: Option<ID>,
        external_id: Option<String>,
    ) -> Result<Option<Customer>> {
        super::absent_is_null(async {
            let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
            let mut conn = db::get(&state(ctx).pool).await?;
            let row = match (id, external_id) {
                (Some(id), None) => customers::find_customer_by_id(&mut conn, &project_id, &id).await?,
                (None, Some(external_id)) => customers::find_customer(&mut conn, &project_id, &external_id).await?,
                _ => return Err(Error::invalid("id", "give exactly one of `id` and `externalId`").into()),
            };
            Ok(Customer(row))
        })
        .await
    }

    /// The project's customers, oldest first, a page at a time (scope `READ`).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Customer>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let size = pagination::page_size(first)?;
        let after_key = pagination::after_key(CursorKind::Customer, after.as_deref())?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = customer_store::list(&mut conn, &project_id, after_key.as_deref(), size + 1).await?;
        Ok(pagination::connection(
            CursorKind::Customer,
            rows,
            size,
            after.as_deref(),
            |c| c.id.clone(),
            Customer,
        ))
    }

    /// The project's billable metrics, by code (scope `READ`).
    async fn billable_metrics(&self, ctx: &Context<'_>, project_id: Option<ID>) -> Result<Vec<BillableMetric>> {
        let project_id = resolve_project(ctx, &project_id, Scope::Read).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let rows = crate::store::billable_metrics::list(&mut conn, &project_id).await?;
        Ok(rows
            .into_iter()
            .map(BillableMetric::try_from)
            .collect::<std::result::Result<_, _>>()?)
    }
}

#[derive(Default)]
pub struct UsageMutation;

#[Object]
impl UsageMutation {
    /// Records one usage event (scope `INGEST`). Returns after it is committed. A replay returns
    /// the original with `replayed: true`; the key with a different payload is
    /// `IDEMPOTENCY_CONFLICT`.
    async fn ingest_usage(&self, ctx: &Context<'_>, input: IngestUsageInput) -> Result<IngestUsagePayload> {
        let IngestUsageInput { project_id, event } = input;
        let project_id = resolve_project(ctx, &project_id, Scope::Ingest).await?;
        let state = state(ctx);
        let received_at = now();
        let item = RawEvent::from(event).validate(&state.config.ingest, received_at);
        let outcome = state.group_commit.ingest_one(&project_id, item, received_at).await?;
        match outcome {
            Outcome::Accepted(e) => Ok(IngestUsagePayload {
                event: UsageEvent(e),
                replayed: false,
            }),
            Outcome::Replayed(e) => Ok(IngestUsagePayload {
                event: UsageEvent(e),
                replayed: true,
            }),
            Outcome::Rejected(e) => Err(graphql_names(e).into()),
        }
    }

    /// Records up to the configured batch size of events (scope `INGEST`) in one transaction.
    /// Each item is answered on its own: one bad item does not keep the others out.
    async fn ingest_usage_batch(
        &self,
        ctx: &Context<'_>,
        input: IngestUsageBatchInput,
    ) -> Result<IngestUsageBatchPayload> {
        let IngestUsageBatchInput { project_id, events } = input;
        let project_id = resolve_project(ctx, &project_id, Scope::Ingest).await?;
        let state = state(ctx);
        check_batch_size(events.len(), state.config.ingest.max_batch)?;
        let received_at = now();
        let items = events
            .into_iter()
            .map(|e| RawEvent::from(e).validate(&state.config.ingest, received_at))
            .collect();
        let outcomes = ingest::ingest(&state.pool, &state.known_customers, &project_id, items, received_at).await?;
        Ok(batch_result(outcomes))
    }

    /// Creates a customer (scope `BILLING`). Creating the same customer again returns it; an
    /// implicit customer (made by an event) gets the details; different details for an existing
    /// external id are `CUSTOMER_EXISTS`.
    async fn create_customer(&self, ctx: &Context<'_>, input: CreateCustomerInput) -> Result<CreateCustomerPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let (row, _) = customers::create_customer(
            &mut conn,
            &project_id,
            &CustomerInput {
                external_id: input.external_id,
                name: input.name,
                email: input.email,
                currency: input.currency,
                metadata: input.metadata.map(|m| m.0),
            },
        )
        .await?;
        Ok(CreateCustomerPayload {
            customer: Customer(row),
        })
    }

    /// Defines a billable metric (scope `BILLING`). The same definition again returns it; a
    /// different definition under a used code is `METRIC_EXISTS`.
    async fn create_billable_metric(
        &self,
        ctx: &Context<'_>,
        input: CreateBillableMetricInput,
    ) -> Result<CreateBillableMetricPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let row = metrics::create_metric(
            &mut conn,
            &project_id,
            &MetricInput {
                code: input.code,
                name: input.name,
                aggregation: Some(input.aggregation),
                property: input.property,
                filters: input
                    .filters
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| (f.property, f.values))
                    .collect(),
                group_by: input.group_by,
            },
        )
        .await?;
        Ok(CreateBillableMetricPayload {
            billable_metric: BillableMetric::try_from(row)?,
        })
    }
}

/// The shared event validation names HTTP's fields; GraphQL's `occurredAt` is HTTP's `timestamp`.
fn graphql_names(e: Error) -> Error {
    match e {
        Error::Invalid { field, message } if field == "timestamp" => Error::Invalid {
            field: "occurredAt".into(),
            message,
        },
        other => other,
    }
}

fn batch_result(outcomes: Vec<Outcome>) -> IngestUsageBatchPayload {
    let mut result = IngestUsageBatchPayload {
        accepted: 0,
        replayed: 0,
        rejected: 0,
        results: Vec::with_capacity(outcomes.len()),
    };
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let (status, event, error) = match outcome {
            Outcome::Accepted(e) => {
                result.accepted += 1;
                (IngestStatus::Accepted, Some(UsageEvent(e)), None)
            }
            Outcome::Replayed(e) => {
                result.replayed += 1;
                (IngestStatus::Replayed, Some(UsageEvent(e)), None)
            }
            Outcome::Rejected(err) => {
                result.rejected += 1;
                (IngestStatus::Rejected, None, Some(ItemError::from(&graphql_names(err))))
            }
        };
        result.results.push(IngestItemResult {
            index: index as i32,
            status,
            event,
            error,
        });
    }
    result
}

/// A metric's aggregate per calendar interval (`Customer.usageSeries`).
#[derive(SimpleObject)]
pub struct UsageSeries {
    pub metric: String,
    pub aggregation: Aggregation,
    pub interval: crate::usage::series::UsageInterval,
    /// The IANA name of the time zone the buckets follow.
    pub time_zone: String,
    /// Oldest first, every bucket of the range.
    pub buckets: Vec<UsageBucket>,
}

/// One currency's spend per calendar interval (`Customer.spendSeries`).
#[derive(SimpleObject)]
pub struct SpendSeries {
    /// The ISO 4217 currency of the plans behind this series.
    pub currency: String,
    pub interval: crate::usage::series::UsageInterval,
    /// The IANA name of the time zone the buckets follow.
    pub time_zone: String,
    /// The buckets' sum.
    pub total: Money,
    /// Oldest first, every bucket of the range.
    pub buckets: Vec<SpendBucket>,
}

/// One interval of a spend series: what the usage in `[start, end)` (and in the series' range)
/// cost, rounded to the currency's minor unit.
#[derive(SimpleObject)]
pub struct SpendBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub amount: Money,
}

/// One interval of a usage series: the aggregate of the events in `[start, end)` (and in the
/// series' range).
#[derive(SimpleObject)]
pub struct UsageBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub value: Decimal,
}
