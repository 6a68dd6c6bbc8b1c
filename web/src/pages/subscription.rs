//! Subscription: the current plan, its period and charges, and the next invoice as it stands
//! now (`upcomingInvoice`: the usage so far, priced like a billing run, nothing written).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::ops::{Subscriptions, UpcomingInvoice, subscriptions, upcoming_invoice};
use crate::components::lines::{Line, LinesTable, Totals, enum_name};
use crate::components::states::{Empty, Loading};
use crate::money::Money;
use crate::portal::{Load, Portal, use_portal};
use crate::time::{self, IntervalUnit};

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sub {
    pub id: String,
    pub status: String,
    pub plan: String,
    pub fixed_fee: Money,
    pub interval: (IntervalUnit, u32),
    pub interval_label: String,
    pub current_period: Option<(String, String)>,
    pub starts_at: String,
    pub trial_ends_at: Option<String>,
    pub ends_at: Option<String>,
    pub metrics: Vec<Metric>,
}

impl Sub {
    /// Running now (or about to): the ones whose usage and next invoice matter.
    pub fn is_live(&self) -> bool {
        matches!(self.status.as_str(), "ACTIVE" | "TRIALING" | "CANCELING" | "SCHEDULED")
    }
}

fn interval_of(unit: &str, count: i64) -> ((IntervalUnit, u32), String) {
    let n = u32::try_from(count).unwrap_or(1).max(1);
    let (unit, word) = match unit {
        "DAY" => (IntervalUnit::Day, "day"),
        "YEAR" => (IntervalUnit::Year, "year"),
        _ => (IntervalUnit::Month, "month"),
    };
    let label = if n == 1 {
        format!("every {word}")
    } else {
        format!("every {n} {word}s")
    };
    ((unit, n), label)
}

pub async fn load_subscriptions(portal: &Portal) -> Result<Vec<Sub>, String> {
    let data = portal
        .run::<Subscriptions>(subscriptions::Variables {})
        .await
        .map_err(|e| e.to_string())?;
    let nodes = data.viewer.customer.map(|c| c.subscriptions.nodes).unwrap_or_default();
    Ok(nodes
        .into_iter()
        .map(|s| {
            let plan = s.plan_version;
            let (interval, interval_label) = interval_of(&enum_name(&plan.interval.unit), plan.interval.count);
            let mut metrics: Vec<Metric> = Vec::new();
            for charge in plan.charges {
                if let Some(m) = charge.metric
                    && !metrics.iter().any(|x| x.code == m.code)
                {
                    metrics.push(Metric {
                        code: m.code,
                        name: m.name,
                    });
                }
            }
            Sub {
                id: s.id,
                status: enum_name(&s.status),
                plan: plan.name,
                fixed_fee: plan.fixed_fee.into(),
                interval,
                interval_label,
                current_period: s.current_period.map(|p| (p.from, p.to)),
                starts_at: s.starts_at,
                trial_ends_at: s.trial_ends_at,
                ends_at: s.ends_at,
                metrics,
            }
        })
        .collect())
}

fn status_text(status: &str) -> &str {
    match status {
        "SCHEDULED" => "Starts later",
        "TRIALING" => "Trial",
        "ACTIVE" => "Active",
        "CANCELING" => "Ends at the end of the period",
        "ENDED" => "Ended",
        other => other,
    }
}

#[component]
pub fn SubscriptionPage() -> impl IntoView {
    let portal = use_portal();
    let subs = RwSignal::new(Load::<Vec<Sub>>::Loading);
    let p = portal.clone();
    spawn_local(async move {
        subs.set(match load_subscriptions(&p).await {
            Ok(list) => Load::Ready(list),
            Err(e) => Load::Failed(e),
        });
    });
    view! {
        <section aria-labelledby="subscription-title">
            <h1 id="subscription-title">"Subscription"</h1>
            {move || match subs.get() {
                Load::Loading => view! { <Loading what="your subscription" /> }.into_any(),
                Load::Failed(message) => view! { <p class="notice notice-error" role="alert" data-testid="error">{message}</p> }.into_any(),
                Load::Ready(list) if list.is_empty() => view! {
                    <Empty testid="no-subscription"><p>"You have no subscription."</p></Empty>
                }
                .into_any(),
                Load::Ready(list) => list
                    .into_iter()
                    .map(|sub| view! { <SubscriptionCard sub=sub /> })
                    .collect_view()
                    .into_any(),
            }}
        </section>
    }
}

#[component]
fn SubscriptionCard(sub: Sub) -> impl IntoView {
    let portal = use_portal();
    let upcoming = RwSignal::new(Load::<Option<Upcoming>>::Loading);
    if sub.is_live() {
        let id = sub.id.clone();
        spawn_local(async move {
            let result = portal
                .run::<UpcomingInvoice>(upcoming_invoice::Variables { subscription_id: id })
                .await;
            upcoming.set(match result {
                Ok(data) => Load::Ready(data.upcoming_invoice.map(upcoming_of)),
                Err(e) => Load::Failed(e.to_string()),
            });
        });
    } else {
        upcoming.set(Load::Ready(None));
    }
    let metrics = sub
        .metrics
        .iter()
        .map(|m| m.name.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let live = sub.is_live();
    view! {
        <article class="card" data-testid="subscription">
            <p class="eyebrow">"Plan"</p>
            <h2 data-testid="plan-name">{sub.plan.clone()}</h2>
            <dl class="facts">
                <dt>"Status"</dt>
                <dd data-testid="subscription-status">{status_text(&sub.status).to_owned()}</dd>
                <dt>"Fee"</dt>
                <dd>{format!("{} {}", sub.fixed_fee.formatted, sub.interval_label)}</dd>
                {sub.current_period.clone().map(|(f, t)| view! {
                    <dt>"Current period"</dt>
                    <dd data-testid="current-period">{time::span(&f, &t)}</dd>
                })}
                {sub.trial_ends_at.clone().map(|t| view! { <dt>"Trial ends"</dt><dd>{time::date(&t)}</dd> })}
                {sub.ends_at.clone().map(|t| view! { <dt>"Ends"</dt><dd>{time::date(&t)}</dd> })}
                {(!metrics.is_empty()).then(|| view! { <dt>"Usage billed"</dt><dd>{metrics}</dd> })}
            </dl>
            {live.then(|| view! {
                <h3>"Next invoice"</h3>
                {move || match upcoming.get() {
                    Load::Loading => view! { <Loading what="the next invoice" /> }.into_any(),
                    Load::Failed(message) => view! { <p class="notice notice-error" role="alert" data-testid="error">{message}</p> }.into_any(),
                    Load::Ready(None) => view! { <p class="muted" data-testid="no-upcoming">"No invoice is coming for this subscription."</p> }.into_any(),
                    Load::Ready(Some(u)) => view! {
                        <div data-testid="upcoming-invoice">
                            <p class="muted">{format!("Billed on {} · usage so far, as of {}", time::date(&u.boundary), time::date_time(&u.computed_at))}</p>
                            <div class="table-scroll"><LinesTable lines=u.lines /></div>
                            <Totals rows=u.totals />
                        </div>
                    }
                    .into_any(),
                }}
            })}
        </article>
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Upcoming {
    boundary: String,
    computed_at: String,
    lines: Vec<Line>,
    totals: Vec<(&'static str, Money, &'static str)>,
}

fn upcoming_of(u: upcoming_invoice::UpcomingInvoiceUpcomingInvoice) -> Upcoming {
    Upcoming {
        boundary: u.boundary,
        computed_at: u.computed_at,
        lines: u.lines.into_iter().map(Into::into).collect(),
        totals: vec![
            ("Subtotal", u.subtotal.into(), "upcoming-subtotal"),
            ("Discount", u.discount.into(), "upcoming-discount"),
            ("Tax", u.tax.into(), "upcoming-tax"),
            ("Total", u.total.into(), "upcoming-total"),
            ("Prepaid credits", u.credits.into(), "upcoming-credits"),
            ("Amount due", u.amount_due.into(), "upcoming-amount-due"),
        ],
    }
}
