//! The `subscriptions` and `subscription_changes` tables.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    Conn,
    schema::{plan_charges, subscription_changes, subscriptions},
};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = subscriptions, check_for_backend(diesel::mysql::Mysql))]
pub struct SubscriptionRow {
    pub id: String,
    pub project_id: String,
    pub customer_id: String,
    pub plan_id: String,
    pub plan_version_id: String,
    pub billing_anchor: String,
    pub starts_at: NaiveDateTime,
    pub trial_ends_at: Option<NaiveDateTime>,
    pub ends_at: Option<NaiveDateTime>,
    pub canceled_at: Option<NaiveDateTime>,
    pub live: Option<i8>,
    pub idempotency_key: String,
    pub request_hash: Vec<u8>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = subscription_changes, check_for_backend(diesel::mysql::Mysql))]
pub struct ChangeRow {
    pub seq: u64,
    pub subscription_id: String,
    pub project_id: String,
    pub kind: String,
    pub plan_version_id: String,
    pub effective_at: NaiveDateTime,
    pub actor: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = subscription_changes)]
pub struct NewChange<'a> {
    pub subscription_id: &'a str,
    pub project_id: &'a str,
    pub kind: &'a str,
    pub plan_version_id: &'a str,
    pub effective_at: NaiveDateTime,
    pub actor: &'a str,
    pub created_at: NaiveDateTime,
}

pub async fn insert(conn: &mut Conn, row: &SubscriptionRow) -> QueryResult<usize> {
    diesel::insert_into(subscriptions::table)
        .values(row)
        .execute(conn)
        .await
}

pub async fn insert_change(conn: &mut Conn, change: &NewChange<'_>) -> QueryResult<usize> {
    diesel::insert_into(subscription_changes::table)
        .values(change)
        .execute(conn)
        .await
}

pub async fn find(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::project_id.eq(project_id))
        .filter(subscriptions::id.eq(id))
        .select(SubscriptionRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The subscriptions to a plan (any version) that ran during part of `[from, to)`, in id order.
pub async fn on_plan_during(
    conn: &mut Conn,
    project_id: &str,
    plan_id: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> QueryResult<Vec<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::project_id.eq(project_id))
        .filter(subscriptions::plan_id.eq(plan_id))
        .filter(subscriptions::starts_at.lt(to))
        .filter(subscriptions::ends_at.is_null().or(subscriptions::ends_at.gt(from)))
        .select(SubscriptionRow::as_select())
        .order(subscriptions::id.asc())
        .load(conn)
        .await
}

/// A subscription of the customer that runs at some time from `starts_at` on and whose plan
/// version charges one of `metric_ids`: its id and the metric's id. Plain reads: the caller
/// takes the customer's lock as its transaction's first statement, so the snapshot they read
/// is taken after every transaction that held it committed (locking reads here would take gap
/// locks on the customer's index range and deadlock concurrent subscriptions of other
/// customers).
pub async fn charging_any_of(
    conn: &mut Conn,
    project_id: &str,
    customer_id: &str,
    starts_at: NaiveDateTime,
    metric_ids: &[&str],
) -> QueryResult<Option<(String, String)>> {
    if metric_ids.is_empty() {
        return Ok(None);
    }
    let running: Vec<(String, String)> = subscriptions::table
        .filter(subscriptions::project_id.eq(project_id))
        .filter(subscriptions::customer_id.eq(customer_id))
        .filter(
            subscriptions::ends_at
                .is_null()
                .or(subscriptions::ends_at.gt(starts_at)),
        )
        .select((subscriptions::id, subscriptions::plan_version_id))
        .order(subscriptions::id.asc())
        .load(conn)
        .await?;
    if running.is_empty() {
        return Ok(None);
    }
    let versions: Vec<&str> = running.iter().map(|(_, v)| v.as_str()).collect();
    let shared: Option<(String, String)> = plan_charges::table
        .filter(plan_charges::plan_version_id.eq_any(&versions))
        .filter(plan_charges::metric_id.eq_any(metric_ids))
        .select((plan_charges::plan_version_id, plan_charges::metric_id))
        .order((plan_charges::plan_version_id.asc(), plan_charges::position.asc()))
        .first(conn)
        .await
        .optional()?;
    Ok(shared.and_then(|(version, metric)| {
        running
            .into_iter()
            .find(|(_, v)| *v == version)
            .map(|(id, _)| (id, metric))
    }))
}

/// The subscriptions with these ids, of any project (a billing run's page: ids it just read).
pub async fn find_by_ids(conn: &mut Conn, ids: &[&str]) -> QueryResult<Vec<SubscriptionRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    subscriptions::table
        .filter(subscriptions::id.eq_any(ids))
        .select(SubscriptionRow::as_select())
        .load(conn)
        .await
}

pub async fn lock(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::project_id.eq(project_id))
        .filter(subscriptions::id.eq(id))
        .select(SubscriptionRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Locks the subscriptions `ids` (of any project) in id order, as one statement: a billing run's
/// group takes all its subscriptions' locks before any wallet's. Answers the ids locked.
pub async fn lock_ids(conn: &mut Conn, ids: &[&str]) -> QueryResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    subscriptions::table
        .filter(subscriptions::id.eq_any(ids))
        .order(subscriptions::id)
        .select(subscriptions::id)
        .for_update()
        .load(conn)
        .await
}

pub async fn find_by_idempotency_key(
    conn: &mut Conn,
    project_id: &str,
    key: &str,
) -> QueryResult<Option<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::project_id.eq(project_id))
        .filter(subscriptions::idempotency_key.eq(key))
        .select(SubscriptionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn cancel(
    conn: &mut Conn,
    id: &str,
    ends_at: NaiveDateTime,
    canceled_at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(subscriptions::table.filter(subscriptions::id.eq(id)))
        .set((
            subscriptions::ends_at.eq(Some(ends_at)),
            subscriptions::canceled_at.eq(Some(canceled_at)),
            subscriptions::live.eq(None::<i8>),
        ))
        .execute(conn)
        .await
}

/// A page of the project's subscriptions (a customer's, when given), by id, after `after_id`.
pub async fn list(
    conn: &mut Conn,
    project_id: &str,
    customer_id: Option<&str>,
    after_id: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<SubscriptionRow>> {
    let mut query = subscriptions::table
        .filter(subscriptions::project_id.eq(project_id))
        .select(SubscriptionRow::as_select())
        .order(subscriptions::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(customer) = customer_id {
        query = query.filter(subscriptions::customer_id.eq(customer.to_string()));
    }
    if let Some(after) = after_id {
        query = query.filter(subscriptions::id.gt(after.to_string()));
    }
    query.load(conn).await
}

/// A page of a subscription's changes, oldest first, after `after_seq`.
pub async fn changes(
    conn: &mut Conn,
    subscription_id: &str,
    after_seq: Option<u64>,
    limit: i64,
) -> QueryResult<Vec<ChangeRow>> {
    let mut query = subscription_changes::table
        .filter(subscription_changes::subscription_id.eq(subscription_id))
        .select(ChangeRow::as_select())
        .order(subscription_changes::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after_seq {
        query = query.filter(subscription_changes::seq.gt(after));
    }
    query.load(conn).await
}

/// A customer's subscriptions that overlap `[from, to)` (started before `to`, not ended by
/// `from`), oldest first, at most `limit`.
pub async fn overlapping(
    conn: &mut Conn,
    project_id: &str,
    customer_id: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::project_id.eq(project_id))
        .filter(subscriptions::customer_id.eq(customer_id))
        .filter(subscriptions::starts_at.lt(to))
        .filter(subscriptions::ends_at.is_null().or(subscriptions::ends_at.gt(from)))
        .select(SubscriptionRow::as_select())
        .order((subscriptions::starts_at.asc(), subscriptions::id.asc()))
        .limit(limit)
        .load(conn)
        .await
}
