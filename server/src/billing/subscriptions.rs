//! Subscriptions: a customer on a plan version, billed in periods ([`neruba_pricing::periods`]).
//! `createSubscription` is replay-safe through its idempotency key; a customer has at most one
//! live subscription per plan (a unique key, not a check). Status is derived from the stored
//! times and the clock of the question, so nothing has to flip it. Each change is recorded in
//! `subscription_changes`, the history the customer reads.

use chrono::{Duration, NaiveDateTime};
use diesel::result::Error as DieselError;
use diesel_async::AsyncConnection;
use neruba_pricing::periods::{self, BillingPeriod, Schedule};

use crate::{
    billing::plans::{self, IntervalUnit, PlanVersion},
    customers, db,
    error::{Error, ErrorCode, Result},
    ids,
    store::{
        Conn, now,
        subscriptions::{self as store, NewChange, SubscriptionRow},
    },
    text_enum::text_enum,
};

pub const SUBSCRIPTION_ID_PREFIX: &str = "sub";

text_enum! {
    /// How a subscription's periods are laid out.
    BillingAnchor {
        /// Periods align to calendar months or years; the first is partial, its fixed fee prorated.
        Calendar = "CALENDAR",
        /// Periods start on the start day's anniversary.
        Anniversary = "ANNIVERSARY",
    }
}

text_enum! {
    /// Where a subscription stands at the moment of the question.
    SubscriptionStatus {
        /// It starts later.
        Scheduled = "SCHEDULED",
        /// In its trial: fixed fees are not billed until `trialEndsAt`.
        Trialing = "TRIALING",
        Active = "ACTIVE",
        /// Canceled, ending at `endsAt` (the end of its period).
        Canceling = "CANCELING",
        /// Over since `endsAt`.
        Ended = "ENDED",
    }
}

text_enum! {
    /// A change in a subscription's history (stored in `subscription_changes.kind`, 20 characters).
    SubscriptionChangeKind {
        Created = "CREATED",
        /// Canceled with effect at once.
        Canceled = "CANCELED",
        /// Canceled with effect at the end of the current period.
        CancelScheduled = "CANCEL_SCHEDULED",
        /// Replaced by a subscription to another plan (version), with effect at once.
        PlanChanged = "PLAN_CHANGED",
        /// To be replaced by a subscription to another plan (version) at the end of the period.
        ChangeScheduled = "CHANGE_SCHEDULED",
    }
}

text_enum! {
    /// When a plan change takes effect.
    PlanChangeTiming {
        /// At once: the fixed fee billed in advance for the rest of the period is credited, and
        /// the new plan's is billed for it (an upgrade).
        Now = "NOW",
        /// At the end of the current period (a downgrade).
        PeriodEnd = "PERIOD_END",
    }
}

/// What `createSubscription` takes, before validation.
#[derive(Debug, Clone)]
pub struct CreateInput {
    pub customer_id: Option<String>,
    pub customer_external_id: Option<String>,
    pub plan_id: String,
    pub plan_version: Option<i32>,
    pub starts_at: Option<NaiveDateTime>,
    pub billing_anchor: BillingAnchor,
    pub idempotency_key: String,
}

impl SubscriptionRow {
    pub fn status(&self, at: NaiveDateTime) -> SubscriptionStatus {
        match (self.ends_at, self.trial_ends_at) {
            (Some(end), _) if end <= at => SubscriptionStatus::Ended,
            _ if self.starts_at > at => SubscriptionStatus::Scheduled,
            (_, Some(trial)) if trial > at => SubscriptionStatus::Trialing,
            (Some(_), _) => SubscriptionStatus::Canceling,
            _ => SubscriptionStatus::Active,
        }
    }
}

pub(crate) fn schedule(row: &SubscriptionRow, version: &PlanVersion) -> Result<Schedule> {
    let unit = match version.row.interval_unit.parse::<IntervalUnit>()? {
        IntervalUnit::Month => periods::IntervalUnit::Month,
        IntervalUnit::Year => periods::IntervalUnit::Year,
        IntervalUnit::Day => periods::IntervalUnit::Day,
    };
    let anchor = match row.billing_anchor.parse::<BillingAnchor>()? {
        BillingAnchor::Calendar => periods::Anchor::Calendar,
        BillingAnchor::Anniversary => periods::Anchor::Anniversary,
    };
    let interval = periods::Interval {
        unit,
        count: u32::from(version.row.interval_count),
    };
    Ok(Schedule::new(row.starts_at.date(), interval, anchor))
}

/// The billing period containing `at`; `None` before the start, after the end, or past the
/// calendar's end. Periods are whole UTC days.
pub fn period_at(row: &SubscriptionRow, version: &PlanVersion, at: NaiveDateTime) -> Result<Option<BillingPeriod>> {
    if row.status(at) == SubscriptionStatus::Ended {
        return Ok(None);
    }
    Ok(schedule(row, version)?.period_containing(at.date()))
}

/// What a replay of the idempotency key must match: the request as sent (`startsAt` as given,
/// not the `now` it defaults to, so a retry hours later still matches).
fn request_hash(input: &CreateInput, customer_id: &str, version_id: &str) -> Vec<u8> {
    let starts_at = input.starts_at.map(|t| t.to_string()).unwrap_or_default();
    crate::ledger::request_hash(&[customer_id, version_id, &starts_at, input.billing_anchor.as_str()])
}

/// Subscribes a customer to a plan version (the latest unless `plan_version` names one).
/// Answers `(subscription, created)`: a replay of the idempotency key with the same request
/// answers the first subscription with `false`; with another request it is
/// `IDEMPOTENCY_CONFLICT`. A second live subscription to the plan is `SUBSCRIPTION_EXISTS`.
pub async fn create(
    conn: &mut Conn,
    project_id: &str,
    input: &CreateInput,
    actor: &str,
) -> Result<(SubscriptionRow, bool)> {
    let key = ids::parse_idempotency_key("idempotencyKey", &input.idempotency_key)?;
    let customer = match (&input.customer_id, &input.customer_external_id) {
        (Some(id), None) => customers::find_customer_by_id(conn, project_id, id).await?,
        (None, Some(external)) => customers::find_customer(conn, project_id, external).await?,
        _ => {
            return Err(Error::invalid(
                "customerId",
                "give exactly one of customerId and customerExternalId",
            ));
        }
    };
    let version = match input.plan_version {
        Some(n) => {
            let n = u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| Error::invalid("planVersion", "must be 1 or more"))?;
            plans::find_version(conn, project_id, &input.plan_id, Some(n)).await?
        }
        None => plans::find_version(conn, project_id, &input.plan_id, None).await?,
    };
    if let Some(currency) = customer.currency.as_deref()
        && currency != version.row.currency
        && version.currency.is_iso()
    {
        return Err(Error::invalid(
            "planId",
            format!(
                "the plan bills in {}, the customer's currency is {currency}",
                version.row.currency
            ),
        ));
    }
    let created_at = now();
    let starts_at = input.starts_at.unwrap_or(created_at);
    let trial_ends_at = (version.row.trial_days > 0)
        .then(|| starts_at.checked_add_signed(Duration::days(i64::from(version.row.trial_days))))
        .flatten();
    let hash = request_hash(input, &customer.id, &version.row.id);
    let row = SubscriptionRow {
        id: ids::new_id(SUBSCRIPTION_ID_PREFIX),
        project_id: project_id.to_string(),
        customer_id: customer.id.clone(),
        plan_id: version.row.plan_id.clone(),
        plan_version_id: version.row.id.clone(),
        billing_anchor: input.billing_anchor.as_str().to_string(),
        starts_at,
        trial_ends_at,
        ends_at: None,
        canceled_at: None,
        live: Some(1),
        idempotency_key: key.clone(),
        request_hash: hash.clone(),
        created_at,
    };
    let replay = |existing: SubscriptionRow| {
        if existing.request_hash == hash {
            Ok((existing, false))
        } else {
            Err(Error::conflict(
                ErrorCode::IdempotencyConflict,
                "this idempotency key was used for another subscription request",
            ))
        }
    };
    if let Some(existing) = store::find_by_idempotency_key(conn, project_id, &key).await? {
        return replay(existing);
    }
    let inserted = conn
        .transaction(async |conn| {
            // The customer's row, locked first: two subscriptions sharing a metric take turns
            // here, and the reads below see what the one before committed.
            crate::store::customers::lock_by_external_id(conn, project_id, &customer.external_id).await?;
            if let Err(e) = refuse_shared_metrics(conn, project_id, &customer, &version, starts_at).await {
                return Ok(Err(e));
            }
            store::insert(conn, &row).await?;
            store::insert_change(
                conn,
                &NewChange {
                    subscription_id: &row.id,
                    project_id,
                    kind: SubscriptionChangeKind::Created.as_str(),
                    plan_version_id: &row.plan_version_id,
                    effective_at: row.starts_at,
                    actor,
                    created_at,
                },
            )
            .await?;
            Ok::<_, DieselError>(Ok(()))
        })
        .await;
    match inserted {
        Ok(Ok(())) => Ok((row, true)),
        Ok(Err(refused)) => Err(refused),
        Err(e)
            if db::is_unique_violation(&e, "uq_subscriptions_idempotency")
                || db::is_unique_violation(&e, "uq_subscriptions_live") =>
        {
            // A concurrent retry of this very request may trip either key first: it is a replay
            // when the key is stored now, a second live subscription otherwise.
            match store::find_by_idempotency_key(conn, project_id, &key).await? {
                Some(existing) => replay(existing),
                None if db::is_unique_violation(&e, "uq_subscriptions_live") => Err(Error::conflict(
                    ErrorCode::SubscriptionExists,
                    format!("customer {} has a live subscription to this plan", customer.external_id),
                )),
                None => Err(Error::Internal("subscription vanished after a duplicate key".into())),
            }
        }
        // A deadlock (or, on Galera, a conflicting commit): nothing was written; the client's
        // retry with the same key is safe.
        Err(e) if db::is_transient(&e) => Err(Error::Unavailable(
            "the database reported a conflict; retry the request".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `at`, or the subscription's latest threshold invoice if that is later (another replica's
/// clock ran ahead): a subscription never ends before usage it was billed for, and its end
/// invoice deducts the threshold invoices up to its end.
async fn not_before_threshold(conn: &mut Conn, sub: &SubscriptionRow, at: NaiveDateTime) -> Result<NaiveDateTime> {
    let last = crate::store::invoices::last_threshold_boundary(conn, &sub.id, sub.starts_at).await?;
    Ok(last.map_or(at, |last| last.max(at)))
}

/// Refuses a subscription of `customer` on `version` from `starts_at` on when another of the
/// customer's subscriptions running then charges one of the same metrics: usage is the
/// customer's, not a subscription's, so both would bill the same events. Called with the
/// customer's row locked, so two such requests take turns (on one server: a Galera cluster does
/// not share row locks, see docs/notes.md).
async fn refuse_shared_metrics(
    conn: &mut Conn,
    project_id: &str,
    customer: &crate::store::customers::CustomerRow,
    version: &plans::PlanVersion,
    starts_at: NaiveDateTime,
) -> Result<()> {
    let metric_ids: Vec<&str> = version.charges.iter().map(|c| c.metric_id.as_str()).collect();
    let Some((other, metric_id)) =
        store::charging_any_of(conn, project_id, &customer.id, starts_at, &metric_ids).await?
    else {
        return Ok(());
    };
    let metric = crate::store::billable_metrics::find_by_id(conn, project_id, &metric_id)
        .await?
        .map_or(metric_id, |m| m.code);
    Err(Error::conflict(
        ErrorCode::SubscriptionExists,
        format!(
            "customer {}'s subscription {other} charges metric '{metric}' already: its usage would be billed twice",
            customer.external_id
        ),
    ))
}

/// Cancels a subscription: at the end of its current period (`at_period_end`), or at once. A
/// subscription that has ended already, or that is canceled again the same way, is answered as
/// it is; an earlier cancellation may be brought forward to now.
pub async fn cancel(
    conn: &mut Conn,
    project_id: &str,
    id: &str,
    at_period_end: bool,
    actor: &str,
) -> Result<SubscriptionRow> {
    db::transaction_with_retry!(conn, |_| false, |conn| {
        let row = store::lock(conn, project_id, id)
            .await?
            .ok_or(Error::NotFound("subscription"))?;
        let at = now();
        if row.status(at) == SubscriptionStatus::Ended {
            return Ok(row);
        }
        let version = plans::load_version(conn, project_id, &row.plan_version_id).await?;
        let (ends_at, kind) = if row.starts_at > at {
            (row.starts_at, SubscriptionChangeKind::Canceled)
        } else if at_period_end {
            let period = schedule(&row, &version)?
                .period_containing(at.date())
                .ok_or_else(|| Error::Internal(format!("subscription {id} has no current period")))?;
            (
                period.full.end().and_time(chrono::NaiveTime::MIN),
                SubscriptionChangeKind::CancelScheduled,
            )
        } else {
            (
                not_before_threshold(conn, &row, at).await?,
                SubscriptionChangeKind::Canceled,
            )
        };
        if row.ends_at.is_some_and(|current| current <= ends_at) {
            return Ok(row);
        }
        store::cancel(conn, &row.id, ends_at, at).await?;
        store::insert_change(
            conn,
            &NewChange {
                subscription_id: &row.id,
                project_id,
                kind: kind.as_str(),
                plan_version_id: &row.plan_version_id,
                effective_at: ends_at,
                actor,
                created_at: at,
            },
        )
        .await?;
        Ok(store::find(conn, project_id, id)
            .await?
            .ok_or(Error::NotFound("subscription"))?)
    })
}

/// What `changeSubscriptionPlan` takes, before validation.
#[derive(Debug, Clone)]
pub struct ChangeInput {
    pub subscription_id: String,
    pub plan_version_id: String,
    pub timing: PlanChangeTiming,
    pub idempotency_key: String,
}

/// Moves a subscription to another plan version (of the same plan or another): the subscription
/// ends at once (`NOW`) or at the end of its period (`PERIOD_END`), and a new one on the new
/// version starts then, with the same customer and billing anchor and no trial. Billing does the
/// proration: the ended subscription's last invoice credits the unused days of a fee billed in
/// advance, the new one's first invoice bills its fee from the change on. Answers `(previous,
/// new, created)`; replay-safe by `idempotency_key` (the new subscription's).
pub async fn change_plan(
    conn: &mut Conn,
    project_id: &str,
    input: &ChangeInput,
    actor: &str,
) -> Result<(SubscriptionRow, SubscriptionRow, bool)> {
    let key = ids::parse_idempotency_key("idempotencyKey", &input.idempotency_key)?;
    if !ids::looks_like(SUBSCRIPTION_ID_PREFIX, &input.subscription_id) {
        return Err(Error::NotFound("subscription"));
    }
    let hash = crate::ledger::request_hash(&[
        "change",
        &input.subscription_id,
        &input.plan_version_id,
        input.timing.as_str(),
    ]);
    let replay = |conn_existing: SubscriptionRow| {
        if conn_existing.request_hash == hash {
            Ok(conn_existing)
        } else {
            Err(Error::conflict(
                ErrorCode::IdempotencyConflict,
                "this idempotency key was used for another subscription request",
            ))
        }
    };
    if let Some(existing) = store::find_by_idempotency_key(conn, project_id, &key).await? {
        let new = replay(existing)?;
        let previous = store::find(conn, project_id, &input.subscription_id)
            .await?
            .ok_or(Error::NotFound("subscription"))?;
        return Ok((previous, new, false));
    }
    let version = plans::load_version(conn, project_id, &input.plan_version_id)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::invalid("planVersionId", "no such plan version"),
            other => other,
        })?;
    let project = project_id.to_string();
    // Its customer (which never changes) is locked first, as `create` does: the check that no
    // two running subscriptions charge one metric takes turns on it, and the transaction's
    // snapshot (its first plain read) is taken once the lock is granted.
    let customer_id = store::find(conn, project_id, &input.subscription_id)
        .await?
        .ok_or(Error::NotFound("subscription"))?
        .customer_id;
    let done = db::transaction_with_retry!(
        conn,
        |e| db::is_unique_violation(e, "uq_subscriptions_idempotency"),
        |conn| {
            let customer = crate::store::customers::lock_by_id(conn, &project, &customer_id)
                .await?
                .ok_or_else(|| Error::Internal("a subscription without its customer".into()))?;
            let previous = store::lock(conn, &project, &input.subscription_id)
                .await?
                .ok_or(Error::NotFound("subscription"))?;
            if let Some(existing) = store::find_by_idempotency_key(conn, &project, &key).await? {
                return Ok((previous, replay(existing)?, false));
            }
            let at = now();
            if previous.starts_at > at {
                return Err(Error::invalid(
                    "subscriptionId",
                    "has not started: cancel it and subscribe to the other plan instead",
                )
                .into());
            }
            if let Some(end) = previous.ends_at {
                return Err(Error::invalid(
                    "subscriptionId",
                    format!("is canceled (it ends at {end}): subscribe to the other plan instead"),
                )
                .into());
            }
            if previous.plan_version_id == version.row.id {
                return Err(Error::invalid("planVersionId", "is the subscription's version already").into());
            }
            let current = plans::load_version(conn, &project, &previous.plan_version_id).await?;
            let (effective, kind) = match input.timing {
                PlanChangeTiming::Now => (
                    not_before_threshold(conn, &previous, at).await?,
                    SubscriptionChangeKind::PlanChanged,
                ),
                PlanChangeTiming::PeriodEnd => {
                    let period = schedule(&previous, &current)?
                        .period_containing(at.date())
                        .ok_or_else(|| Error::Internal("the subscription has no current period".into()))?;
                    (
                        period.full.end().and_time(chrono::NaiveTime::MIN),
                        SubscriptionChangeKind::ChangeScheduled,
                    )
                }
            };
            if let Some(currency) = customer.currency.as_deref()
                && currency != version.row.currency
                && version.currency.is_iso()
            {
                return Err(Error::invalid(
                    "planVersionId",
                    format!(
                        "the plan bills in {}, the customer's currency is {currency}",
                        version.row.currency
                    ),
                )
                .into());
            }
            store::cancel(conn, &previous.id, effective, at).await?;
            // Another of the customer's subscriptions may charge the new plan's metrics.
            refuse_shared_metrics(conn, &project, &customer, &version, effective).await?;
            store::insert_change(
                conn,
                &NewChange {
                    subscription_id: &previous.id,
                    project_id: &project,
                    kind: kind.as_str(),
                    plan_version_id: &version.row.id,
                    effective_at: effective,
                    actor,
                    created_at: at,
                },
            )
            .await?;
            let new = SubscriptionRow {
                id: ids::new_id(SUBSCRIPTION_ID_PREFIX),
                project_id: project.clone(),
                customer_id: previous.customer_id.clone(),
                plan_id: version.row.plan_id.clone(),
                plan_version_id: version.row.id.clone(),
                billing_anchor: previous.billing_anchor.clone(),
                starts_at: effective,
                trial_ends_at: None,
                ends_at: None,
                canceled_at: None,
                live: Some(1),
                idempotency_key: key.clone(),
                request_hash: hash.clone(),
                created_at: at,
            };
            match store::insert(conn, &new).await {
                Err(e) if db::is_unique_violation(&e, "uq_subscriptions_live") => {
                    return Err(Error::conflict(
                        ErrorCode::SubscriptionExists,
                        format!("customer {} has a live subscription to that plan", customer.external_id),
                    )
                    .into());
                }
                other => other?,
            };
            store::insert_change(
                conn,
                &NewChange {
                    subscription_id: &new.id,
                    project_id: &project,
                    kind: SubscriptionChangeKind::Created.as_str(),
                    plan_version_id: &new.plan_version_id,
                    effective_at: effective,
                    actor,
                    created_at: at,
                },
            )
            .await?;
            let previous = store::find(conn, &project, &previous.id)
                .await?
                .ok_or(Error::NotFound("subscription"))?;
            Ok((previous, new, true))
        }
    )?;
    Ok(done)
}
