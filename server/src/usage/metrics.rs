//! Billable metrics: what to aggregate over a metric's events, and the aggregation itself.
//!
//! A metric names events by `code` and says how to turn them into one number per customer and
//! period: `COUNT` of events, `SUM`/`MAX` of quantities, `UNIQUE_COUNT` of a property's distinct
//! values, or the `LATEST` quantity (by event time, then arrival). Optional `filters` keep events
//! whose property equals one of the listed values; an optional group-by property splits the
//! result. Aggregation runs in SQL over the stored raw events, so a metric defined today bills
//! events that arrived before it.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use diesel_async::AsyncConnection;
use rust_decimal::Decimal;

use crate::{
    error::{Error, ErrorCode, Result},
    ids,
    projects::parse_name,
    store::{
        Conn,
        billable_metrics::{self, AggregateRow, Bind, MetricRow, NewMetric},
        now,
    },
    text_enum::text_enum,
    usage::event::{parse_metric_code, parse_property_name},
};

pub const METRIC_ID_PREFIX: &str = "bm";
const MAX_FILTERS: usize = 10;
const MAX_FILTER_VALUES: usize = 100;
const MAX_FILTER_VALUE_CHARS: usize = 255;
/// Most customers aggregated by one query (the data loader splits larger sets).
pub const MAX_CUSTOMERS_PER_QUERY: usize = 500;

text_enum! {
    /// How a metric turns its events into one number.
    Aggregation {
        /// Number of events.
        Count = "COUNT",
        /// Sum of quantities.
        Sum = "SUM",
        /// Largest quantity.
        Max = "MAX",
        /// Number of distinct values of `property`.
        UniqueCount = "UNIQUE_COUNT",
        /// Quantity of the latest event (by timestamp, then arrival).
        Latest = "LATEST",
    }
}

/// A metric as defined, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDef {
    pub code: String,
    pub name: String,
    pub aggregation: Aggregation,
    /// The property `UNIQUE_COUNT` counts; `None` for the others.
    pub property: Option<String>,
    /// property → accepted values (an event passes when each filtered property has one of them).
    pub filters: BTreeMap<String, Vec<String>>,
    pub group_by: Option<String>,
}

/// What `createBillableMetric` takes, before validation.
#[derive(Debug, Clone, Default)]
pub struct MetricInput {
    pub code: String,
    pub name: String,
    pub aggregation: Option<Aggregation>,
    pub property: Option<String>,
    pub filters: Vec<(String, Vec<String>)>,
    pub group_by: Option<String>,
}

impl MetricInput {
    pub fn validate(&self) -> Result<MetricDef> {
        let code = parse_metric_code("code", &self.code)?;
        let name = parse_name("name", &self.name)?;
        let aggregation = self
            .aggregation
            .ok_or_else(|| Error::invalid("aggregation", "is required"))?;
        let property = self
            .property
            .as_deref()
            .map(|p| parse_property_name("property", p))
            .transpose()?;
        match (aggregation, &property) {
            (Aggregation::UniqueCount, None) => {
                return Err(Error::invalid(
                    "property",
                    "UNIQUE_COUNT needs the property whose values it counts",
                ));
            }
            (Aggregation::UniqueCount, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(Error::invalid(
                    "property",
                    "only UNIQUE_COUNT takes a property; the others aggregate quantities",
                ));
            }
        }
        if self.filters.len() > MAX_FILTERS {
            return Err(Error::invalid("filters", format!("at most {MAX_FILTERS} filters")));
        }
        let mut filters = BTreeMap::new();
        for (i, (prop, values)) in self.filters.iter().enumerate() {
            let prop = parse_property_name(&format!("filters[{i}].property"), prop)?;
            let field = format!("filters[{i}].values");
            if values.is_empty() || values.len() > MAX_FILTER_VALUES {
                return Err(Error::invalid(
                    field,
                    format!("must list 1 to {MAX_FILTER_VALUES} values"),
                ));
            }
            if values
                .iter()
                .any(|v| v.chars().count() > MAX_FILTER_VALUE_CHARS || v.chars().any(char::is_control))
            {
                return Err(Error::invalid(
                    field,
                    format!("values must be at most {MAX_FILTER_VALUE_CHARS} characters, without control characters"),
                ));
            }
            if filters.insert(prop, values.clone()).is_some() {
                return Err(Error::invalid(format!("filters[{i}].property"), "is filtered twice"));
            }
        }
        let group_by = self
            .group_by
            .as_deref()
            .map(|g| parse_property_name("groupBy", g))
            .transpose()?;
        Ok(MetricDef {
            code,
            name,
            aggregation,
            property,
            filters,
            group_by,
        })
    }
}

impl MetricDef {
    pub fn from_row(row: &MetricRow) -> Result<MetricDef> {
        let aggregation: Aggregation = row.aggregation.parse()?;
        let filters = match &row.filters {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| Error::Internal(format!("stored filters of metric {} unreadable: {e}", row.code)))?,
            None => BTreeMap::new(),
        };
        Ok(MetricDef {
            code: row.code.clone(),
            name: row.name.clone(),
            aggregation,
            property: row.property.clone(),
            filters,
            group_by: row.group_by.clone(),
        })
    }

    fn filters_text(&self) -> Option<String> {
        (!self.filters.is_empty()).then(|| serde_json::to_string(&self.filters).expect("strings serialize"))
    }
}

/// Creates a metric. The code is the idempotency key: the same definition again returns the
/// stored one; a different definition under a used code is `METRIC_EXISTS`.
pub async fn create_metric(conn: &mut Conn, project_id: &str, input: &MetricInput) -> Result<MetricRow> {
    let def = input.validate()?;
    let filters = def.filters_text();
    conn.transaction(async |conn| {
        let id = ids::new_id(METRIC_ID_PREFIX);
        let row = NewMetric {
            id: &id,
            project_id,
            code: &def.code,
            name: &def.name,
            aggregation: def.aggregation.as_str(),
            property: def.property.as_deref(),
            filters: filters.as_deref(),
            group_by: def.group_by.as_deref(),
            created_at: now(),
        };
        billable_metrics::insert_ignore(conn, &row).await?;
        let stored = billable_metrics::find_by_code(conn, project_id, &def.code)
            .await?
            .ok_or_else(|| Error::Internal("metric vanished after insert".into()))?;
        if MetricDef::from_row(&stored)? != def {
            return Err(Error::conflict(
                ErrorCode::MetricExists,
                format!("metric '{}' already exists with a different definition", def.code),
            ));
        }
        Ok(stored)
    })
    .await
}

/// A JSON path for a validated property name (`$."name"`); names never contain quotes.
pub(crate) fn path(property: &str) -> String {
    format!("$.\"{property}\"")
}

/// The SQL expression of a grouped aggregation (every one but `LATEST`, which ranks events
/// instead), pushing the parameters it binds onto `binds`.
pub(crate) fn grouped_value(def: &MetricDef, aggregation: Aggregation, binds: &mut Vec<Bind>) -> &'static str {
    match aggregation {
        Aggregation::Count => "COUNT(*)",
        Aggregation::Sum => "SUM(quantity)",
        Aggregation::Max => "MAX(quantity)",
        Aggregation::UniqueCount => {
            let prop = def.property.as_deref().expect("validated: UNIQUE_COUNT has a property");
            binds.push(Bind::Text(path(prop)));
            "COUNT(DISTINCT JSON_VALUE(properties, ?))"
        }
        Aggregation::Latest => "NULL",
    }
}

/// The SQL and parameters aggregating `def` for `customers` over `[from, to)`, grouped by
/// `group_by` when given. Every value is a bound parameter; only validated property names reach
/// the JSON paths, and those are bound too.
pub fn aggregate_sql(
    project_id: &str,
    def: &MetricDef,
    customers: &[&str],
    from: NaiveDateTime,
    to: NaiveDateTime,
    group_by: Option<&str>,
) -> (String, Vec<Bind>) {
    let mut select_binds = Vec::new();
    let group_expr = match group_by {
        Some(g) => {
            select_binds.push(Bind::Text(path(g)));
            "JSON_VALUE(properties, ?)"
        }
        None => "CAST(NULL AS CHAR)",
    };

    let (where_sql, where_binds) = where_clause(project_id, def, customers, from, to, None);

    let grouping = if group_by.is_some() {
        "customer_external_id, group_key"
    } else {
        "customer_external_id"
    };
    let (sql, mut binds) = match def.aggregation {
        Aggregation::Latest => {
            // The newest event per customer (and group): rank within the partition, keep rank 1.
            let mut binds = select_binds.clone();
            let partition = match group_by {
                Some(g) => {
                    binds.push(Bind::Text(path(g)));
                    "customer_external_id, JSON_VALUE(properties, ?)"
                }
                None => "customer_external_id",
            };
            let sql = format!(
                "SELECT customer, group_key, value FROM (SELECT customer_external_id AS customer, \
                 {group_expr} AS group_key, CAST(quantity AS CHAR) AS value, \
                 ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY occurred_at DESC, seq DESC) AS rn \
                 FROM usage_events WHERE {where_sql}) ranked WHERE rn = 1"
            );
            (sql, binds)
        }
        other => {
            let mut binds = select_binds;
            let value = grouped_value(def, other, &mut binds);
            let sql = format!(
                "SELECT customer_external_id AS customer, {group_expr} AS group_key, \
                 CAST(CAST({value} AS DECIMAL(65, 12)) AS CHAR) AS value FROM usage_events WHERE {where_sql} GROUP BY {grouping}"
            );
            (sql, binds)
        }
    };
    binds.extend(where_binds);
    (sql, binds)
}

/// The events of `def` for `customers` that occurred in `[from, to)` (and arrived by
/// `received_until`, when given) and pass the metric's filters: the WHERE clause every
/// aggregation shares.
pub(crate) fn where_clause(
    project_id: &str,
    def: &MetricDef,
    customers: &[&str],
    from: NaiveDateTime,
    to: NaiveDateTime,
    received_until: Option<NaiveDateTime>,
) -> (String, Vec<Bind>) {
    let mut where_sql = String::from(
        "project_id = ? AND metric = ? AND occurred_at >= ? AND occurred_at < ? AND customer_external_id IN (",
    );
    let mut where_binds = vec![
        Bind::Text(project_id.to_string()),
        Bind::Text(def.code.clone()),
        Bind::Time(from),
        Bind::Time(to),
    ];
    for (i, c) in customers.iter().enumerate() {
        where_sql.push_str(if i == 0 { "?" } else { ", ?" });
        where_binds.push(Bind::Text(c.to_string()));
    }
    where_sql.push(')');
    if let Some(until) = received_until {
        where_sql.push_str(" AND received_at <= ?");
        where_binds.push(Bind::Time(until));
    }
    for (prop, values) in &def.filters {
        where_sql.push_str(" AND JSON_VALUE(properties, ?) IN (");
        where_binds.push(Bind::Text(path(prop)));
        for (i, v) in values.iter().enumerate() {
            where_sql.push_str(if i == 0 { "?" } else { ", ?" });
            where_binds.push(Bind::Text(v.clone()));
        }
        where_sql.push(')');
    }
    (where_sql, where_binds)
}

/// The SQL and parameters of a billing aggregate: `def` for `customers` over `[from, to)`,
/// counting only events received by `received_until`, one row per customer with the value and
/// the fingerprint of the events behind it (their count, and the sum and XOR of their sequence
/// numbers: events are append-only, so any event added to the set changes it). Groups are not
/// split: a charge bills the metric's total.
pub fn billing_sql(
    project_id: &str,
    def: &MetricDef,
    customers: &[&str],
    from: NaiveDateTime,
    to: NaiveDateTime,
    received_until: NaiveDateTime,
) -> (String, Vec<Bind>) {
    let (where_sql, where_binds) = where_clause(project_id, def, customers, from, to, Some(received_until));
    let fingerprint =
        "CAST(COUNT(*) AS CHAR) AS n, CAST(SUM(seq) AS CHAR) AS seq_sum, CAST(BIT_XOR(seq) AS CHAR) AS seq_xor";
    let mut binds = Vec::new();
    let sql = match def.aggregation {
        Aggregation::Latest => {
            let window = "OVER (PARTITION BY customer_external_id)";
            format!(
                "SELECT customer, value, n, seq_sum, seq_xor FROM (SELECT customer_external_id AS customer, \
                 CAST(quantity AS CHAR) AS value, \
                 ROW_NUMBER() OVER (PARTITION BY customer_external_id ORDER BY occurred_at DESC, seq DESC) AS rn, \
                 CAST(COUNT(*) {window} AS CHAR) AS n, CAST(SUM(seq) {window} AS CHAR) AS seq_sum, \
                 CAST(BIT_XOR(seq) {window} AS CHAR) AS seq_xor \
                 FROM usage_events WHERE {where_sql}) ranked WHERE rn = 1"
            )
        }
        other => {
            let value = grouped_value(def, other, &mut binds);
            format!(
                "SELECT customer_external_id AS customer, CAST(CAST({value} AS DECIMAL(65, 12)) AS CHAR) AS value, \
                 {fingerprint} FROM usage_events WHERE {where_sql} GROUP BY customer_external_id"
            )
        }
    };
    binds.extend(where_binds);
    (sql, binds)
}

/// What a charge bills for one customer and period: the metric's value and the events behind it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BilledUsage {
    pub value: Decimal,
    pub events: u64,
    /// Hex SHA-256 of the events' fingerprint (see [`billing_sql`]).
    pub events_hash: String,
}

fn events_hash(n: &str, seq_sum: &str, seq_xor: &str) -> String {
    hex::encode(crate::ledger::request_hash(&[n, seq_sum, seq_xor]))
}

/// Aggregates `def` for billing, for each of `customers` (one query per
/// [`MAX_CUSTOMERS_PER_QUERY`]). Customers without events get zero and the empty set's hash.
pub async fn aggregate_for_billing(
    conn: &mut Conn,
    project_id: &str,
    def: &MetricDef,
    customers: &[&str],
    from: NaiveDateTime,
    to: NaiveDateTime,
    received_until: NaiveDateTime,
) -> Result<HashMap<String, BilledUsage>> {
    let empty = BilledUsage {
        value: Decimal::ZERO,
        events: 0,
        events_hash: events_hash("0", "0", "0"),
    };
    let mut out: HashMap<String, BilledUsage> = customers.iter().map(|c| (c.to_string(), empty.clone())).collect();
    for chunk in customers.chunks(MAX_CUSTOMERS_PER_QUERY) {
        let (sql, binds) = billing_sql(project_id, def, chunk, from, to, received_until);
        for row in billable_metrics::aggregate_billed(conn, &sql, binds).await? {
            if let Some(v) = out.get_mut(&row.customer) {
                v.value = exact(row.value.as_deref())?;
                v.events = row.n.parse().unwrap_or(0);
                v.events_hash = events_hash(&row.n, &row.seq_sum, &row.seq_xor);
            }
        }
    }
    Ok(out)
}

/// The WHERE clause of a page of one customer's billed events, after the keyset position
/// `after` (`(occurred_at, seq)` of the previous page's last event).
fn page_where(
    project_id: &str,
    def: &MetricDef,
    customer: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    received_until: NaiveDateTime,
    after: Option<(NaiveDateTime, u64)>,
) -> (String, Vec<Bind>) {
    let (mut where_sql, mut binds) = where_clause(project_id, def, &[customer], from, to, Some(received_until));
    if let Some((at, seq)) = after {
        where_sql.push_str(" AND (occurred_at > ? OR (occurred_at = ? AND seq > ?))");
        binds.push(Bind::Time(at));
        binds.push(Bind::Time(at));
        binds.push(Bind::Text(seq.to_string()));
    }
    (where_sql, binds)
}

/// How many event amounts one page of [`event_amounts_page`] reads.
pub const AMOUNTS_PAGE: i64 = 5_000;

/// One page of a customer's event quantities for `def` over `[from, to)` received by
/// `received_until`, in the order they occurred (then arrived), after the position `after`
/// (`(occurred_at, seq)` of the last event of the previous page). A percentage price rates
/// events one by one; reading them in pages keeps memory bounded whatever the period holds.
#[allow(clippy::too_many_arguments)]
pub async fn event_amounts_page(
    conn: &mut Conn,
    project_id: &str,
    def: &MetricDef,
    customer: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    received_until: NaiveDateTime,
    after: Option<(NaiveDateTime, u64)>,
) -> Result<Vec<(NaiveDateTime, u64, Decimal)>> {
    let (where_sql, binds) = page_where(project_id, def, customer, from, to, received_until, after);
    let sql = format!(
        "SELECT occurred_at, seq, quantity FROM usage_events WHERE {where_sql} ORDER BY occurred_at, seq LIMIT {AMOUNTS_PAGE}"
    );
    let rows = billable_metrics::event_amounts(conn, &sql, binds).await?;
    Ok(rows.into_iter().map(|r| (r.occurred_at, r.seq, r.quantity)).collect())
}

/// One page of the events a usage line billed: `def`'s events of `customer` over `[from, to)`
/// received by `received_until`, in the order they occurred (then arrived), after the keyset
/// position `after` (`(occurred_at, seq)` of the previous page's last event).
#[allow(clippy::too_many_arguments)]
pub async fn billed_events_page(
    conn: &mut Conn,
    project_id: &str,
    def: &MetricDef,
    customer: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    received_until: NaiveDateTime,
    after: Option<(NaiveDateTime, u64)>,
    limit: i64,
) -> Result<Vec<crate::store::usage_events::EventRow>> {
    let (where_sql, binds) = page_where(project_id, def, customer, from, to, received_until, after);
    let sql = format!(
        "SELECT seq, id, project_id, idempotency_key, request_hash, customer_external_id, metric, quantity, \
         occurred_at, received_at, properties FROM usage_events WHERE {where_sql} ORDER BY occurred_at, seq LIMIT {limit}"
    );
    Ok(billable_metrics::billed_events(conn, &sql, binds).await?)
}

/// An aggregate's text as an exact decimal. A SUM of many large quantities can have more digits
/// than a `Decimal` holds (28): that is refused, never answered rounded.
pub(crate) fn exact(text: Option<&str>) -> Result<Decimal> {
    let Some(text) = text else {
        return Ok(Decimal::ZERO);
    };
    let digits = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    };
    Decimal::from_str_exact(digits).map(|d| d.normalize()).map_err(|_| {
        Error::invalid(
            "metric",
            format!(
                "the aggregate ({text}) has more digits than Neruba computes exactly (28); ask for a shorter period"
            ),
        )
    })
}

/// A customer's aggregate over a period: the total, and per group when grouped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageValue {
    pub value: Decimal,
    /// (group key, value); the key is `None` for events without the group-by property.
    pub groups: Vec<(Option<String>, Decimal)>,
}

/// Aggregates `def` for each of `customers` (one query for the totals, one more when grouped).
/// Customers without matching events get zero.
pub async fn aggregate(
    conn: &mut Conn,
    project_id: &str,
    def: &MetricDef,
    customers: &[&str],
    from: NaiveDateTime,
    to: NaiveDateTime,
    group_by: Option<&str>,
) -> Result<HashMap<String, UsageValue>> {
    let mut out: HashMap<String, UsageValue> = customers
        .iter()
        .map(|c| (c.to_string(), UsageValue::default()))
        .collect();
    for chunk in customers.chunks(MAX_CUSTOMERS_PER_QUERY) {
        let (sql, binds) = aggregate_sql(project_id, def, chunk, from, to, None);
        for row in billable_metrics::aggregate(conn, &sql, binds).await? {
            if let Some(v) = out.get_mut(&row.customer) {
                v.value = exact(row.value.as_deref())?;
            }
        }
        if let Some(g) = group_by {
            let (sql, binds) = aggregate_sql(project_id, def, chunk, from, to, Some(g));
            let mut rows: Vec<AggregateRow> = billable_metrics::aggregate(conn, &sql, binds).await?;
            rows.sort_by(|a, b| a.group_key.cmp(&b.group_key));
            for row in rows {
                if let Some(v) = out.get_mut(&row.customer) {
                    let value = exact(row.value.as_deref())?;
                    v.groups.push((row.group_key, value));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(aggregation: Aggregation) -> MetricInput {
        MetricInput {
            code: "api_calls".into(),
            name: "API calls".into(),
            aggregation: Some(aggregation),
            ..MetricInput::default()
        }
    }

    #[test]
    fn metric_definitions_are_checked() {
        assert!(input(Aggregation::Sum).validate().is_ok());
        let cases: Vec<(MetricInput, &str)> = vec![
            (
                MetricInput {
                    code: "bad code".into(),
                    ..input(Aggregation::Sum)
                },
                "code",
            ),
            (
                MetricInput {
                    name: "".into(),
                    ..input(Aggregation::Sum)
                },
                "name",
            ),
            (
                MetricInput {
                    aggregation: None,
                    ..input(Aggregation::Sum)
                },
                "aggregation",
            ),
            (input(Aggregation::UniqueCount), "property"),
            (
                MetricInput {
                    property: Some("user".into()),
                    ..input(Aggregation::Sum)
                },
                "property",
            ),
            (
                MetricInput {
                    property: Some("bad'name".into()),
                    ..input(Aggregation::UniqueCount)
                },
                "property",
            ),
            (
                MetricInput {
                    filters: vec![("region".into(), vec![])],
                    ..input(Aggregation::Count)
                },
                "filters[0].values",
            ),
            (
                MetricInput {
                    filters: vec![("re\"gion".into(), vec!["eu".into()])],
                    ..input(Aggregation::Count)
                },
                "filters[0].property",
            ),
            (
                MetricInput {
                    filters: vec![("a".into(), vec!["1".into()]), ("a".into(), vec!["2".into()])],
                    ..input(Aggregation::Count)
                },
                "filters[1].property",
            ),
            (
                MetricInput {
                    group_by: Some("$.x".into()),
                    ..input(Aggregation::Count)
                },
                "groupBy",
            ),
        ];
        for (i, field) in cases {
            match i.validate() {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_aggregation_sql_binds_every_value() {
        let def = MetricInput {
            filters: vec![("region".into(), vec!["eu".into(), "us".into()])],
            ..input(Aggregation::Sum)
        }
        .validate()
        .unwrap();
        let t = chrono::NaiveDateTime::default();
        let (sql, binds) = aggregate_sql("prj_1", &def, &["a", "b"], t, t, Some("tier"));
        assert_eq!(sql.matches('?').count(), binds.len());
        assert!(
            !sql.contains("prj_1") && !sql.contains("eu") && !sql.contains("tier"),
            "{sql}"
        );
        assert_eq!(binds[0], Bind::Text("$.\"tier\"".into()));
        let (sql, binds) = aggregate_sql("prj_1", &def, &["a"], t, t, Some("tier"));
        assert_eq!(sql.matches('?').count(), binds.len());
        let latest = MetricDef {
            aggregation: Aggregation::Latest,
            ..def
        };
        let (sql, binds) = aggregate_sql("prj_1", &latest, &["a"], t, t, Some("tier"));
        assert_eq!(sql.matches('?').count(), binds.len());
    }
}
