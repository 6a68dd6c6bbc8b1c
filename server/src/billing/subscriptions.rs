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
    /// A change in a subscription's history.
    SubscriptionChangeKind {
        Created = "CREATED",
        /// Canceled with effect at once.
        Canceled = "CANCELED",
        /// Canceled with effect at the end of the current period.
        CancelScheduled = "CANCEL_SCHEDULED",
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
            Ok::<_, DieselError>(())
        })
        .await;
    match inserted {
        Ok(()) => Ok((row, true)),
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
            (at, SubscriptionChangeKind::Canceled)
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
