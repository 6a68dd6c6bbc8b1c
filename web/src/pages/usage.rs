//! Usage: for each metric the customer's plan charges, a chart of the current period, the one
//! before, or the last twelve months (`Customer.usageSeries`, aggregated by the server).

use std::str::FromStr;

use leptos::prelude::*;
use leptos::task::spawn_local;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::api::ops::{SpendSeries, UsageSeries, spend_series, usage_series};
use crate::components::chart::{Bar, BarChart};
use crate::components::states::{Empty, Loading};
use crate::pages::subscription::{Metric, Sub, load_subscriptions};
use crate::portal::{Load, use_portal};
use crate::time::{self, Bucket, IntervalUnit, Period, usage_periods};

#[derive(Debug, Clone, PartialEq)]
struct Series {
    bars: Vec<Bar>,
    values: Vec<String>,
    total: String,
}

fn label(start: &str, bucket: Bucket) -> String {
    time::parse(start).map_or_else(
        || start.to_owned(),
        |t| match bucket {
            Bucket::Hour => t.format("%H:%M").to_string(),
            Bucket::Day => t.format("%-d %b").to_string(),
            Bucket::Month => t.format("%b %Y").to_string(),
        },
    )
}

fn series_of(buckets: Vec<usage_series::UsageSeriesViewerCustomerUsageSeriesBuckets>, bucket: Bucket) -> Series {
    let mut total = Decimal::ZERO;
    let mut bars = Vec::with_capacity(buckets.len());
    let mut values = Vec::with_capacity(buckets.len());
    for b in buckets {
        let value = Decimal::from_str(&b.value).unwrap_or_default();
        total += value;
        bars.push(Bar {
            label: label(&b.start, bucket),
            value: value.to_f64().unwrap_or(0.0),
        });
        values.push(value.normalize().to_string());
    }
    Series {
        bars,
        values,
        total: total.normalize().to_string(),
    }
}

fn chart_width() -> u32 {
    let inner = web_sys::window()
        .and_then(|w| w.inner_width().ok())
        .and_then(|v| v.as_f64())
        .unwrap_or(800.0);
    (inner - 72.0).clamp(280.0, 760.0) as u32
}

#[component]
pub fn UsagePage() -> impl IntoView {
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
        <section aria-labelledby="usage-title">
            <h1 id="usage-title">"Usage"</h1>
            {move || match subs.get() {
                Load::Loading => view! { <Loading what="your usage" /> }.into_any(),
                Load::Failed(message) => view! { <p class="notice notice-error" role="alert" data-testid="error">{message}</p> }.into_any(),
                Load::Ready(list) => {
                    let live: Vec<Sub> = list.iter().filter(|s| s.is_live()).cloned().collect();
                    let chosen = live.first().cloned().or_else(|| list.first().cloned());
                    let mut metrics: Vec<Metric> = Vec::new();
                    for m in list.iter().flat_map(|s| s.metrics.iter()) {
                        if !metrics.iter().any(|x| x.code == m.code) {
                            metrics.push(m.clone());
                        }
                    }
                    if metrics.is_empty() {
                        return view! {
                            <Empty testid="no-metrics"><p>"Your plan does not bill any usage."</p></Empty>
                        }
                        .into_any();
                    }
                    let current = chosen.as_ref().and_then(|s| {
                        let (f, t) = s.current_period.as_ref()?;
                        Some((time::parse(f)?, time::parse(t)?))
                    });
                    let interval = chosen.map_or((IntervalUnit::Month, 1), |s| s.interval);
                    let periods = usage_periods(current, interval, time::now());
                    view! { <UsageView metrics=metrics periods=periods /> }.into_any()
                }
            }}
        </section>
    }
}

#[component]
fn UsageView(metrics: Vec<Metric>, periods: Vec<Period>) -> impl IntoView {
    let portal = use_portal();
    let metric = RwSignal::new(metrics[0].code.clone());
    let period_key = RwSignal::new(periods[0].key);
    let series = RwSignal::new(Load::<Series>::Loading);
    // The chart is drawn for the width it has (its labels stay readable on a phone); a resize
    // or a rotation draws it again.
    let width = RwSignal::new(chart_width());
    let resize = window_event_listener(leptos::ev::resize, move |_| width.set(chart_width()));
    on_cleanup(move || resize.remove());
    // What the period's usage cost under the plan, in each currency it bills in.
    let spend = RwSignal::new(Load::<Vec<String>>::Loading);
    let spend_generation = StoredValue::new(0_u64);
    let periods_for_spend = periods.clone();
    let spend_portal = portal.clone();
    Effect::new(move |_| {
        let key = period_key.get();
        let Some(period) = periods_for_spend.iter().find(|p| p.key == key).cloned() else {
            return;
        };
        spend_generation.update_value(|g| *g += 1);
        let mine = spend_generation.get_value();
        spend.set(Load::Loading);
        let portal = spend_portal.clone();
        spawn_local(async move {
            // The total does not depend on the buckets: months are the fewest.
            let variables = spend_series::Variables {
                from: period.start_rfc3339(),
                to: period.end_rfc3339(),
                interval: spend_series::UsageInterval::MONTH,
                time_zone: Some("UTC".into()),
            };
            let result = portal.run::<SpendSeries>(variables).await;
            if spend_generation.get_value() != mine {
                return;
            }
            spend.set(match result {
                Ok(data) => Load::Ready(
                    data.viewer
                        .customer
                        .map(|c| c.spend_series.into_iter().map(|s| s.total.formatted).collect())
                        .unwrap_or_default(),
                ),
                Err(e) => Load::Failed(e.to_string()),
            });
        });
    });
    let periods_for_load = periods.clone();
    // Each choice loads its series; an answer that arrives after another choice is dropped.
    let generation = StoredValue::new(0_u64);
    Effect::new(move |_| {
        let code = metric.get();
        let key = period_key.get();
        let Some(period) = periods_for_load.iter().find(|p| p.key == key).cloned() else {
            return;
        };
        generation.update_value(|g| *g += 1);
        let mine = generation.get_value();
        series.set(Load::Loading);
        let portal = portal.clone();
        spawn_local(async move {
            let variables = usage_series::Variables {
                metric: code,
                from: period.start_rfc3339(),
                to: period.end_rfc3339(),
                interval: match period.bucket {
                    Bucket::Hour => usage_series::UsageInterval::HOUR,
                    Bucket::Day => usage_series::UsageInterval::DAY,
                    Bucket::Month => usage_series::UsageInterval::MONTH,
                },
                time_zone: Some("UTC".into()),
            };
            let result = portal.run::<UsageSeries>(variables).await;
            if generation.get_value() != mine {
                return;
            }
            series.set(match result {
                Ok(data) => match data.viewer.customer {
                    Some(c) => Load::Ready(series_of(c.usage_series.buckets, period.bucket)),
                    None => Load::Failed("No usage is available for this account.".into()),
                },
                Err(e) => Load::Failed(e.to_string()),
            });
        });
    });

    let metric_names = metrics.clone();
    let metric_buttons = metrics
        .into_iter()
        .map(|m| {
            let code = m.code.clone();
            let pressed = m.code.clone();
            view! {
                <button
                    type="button"
                    class="button button-quiet tab"
                    data-testid=format!("metric-{}", m.code)
                    aria-pressed=move || (metric.get() == pressed).to_string()
                    on:click=move |_| metric.set(code.clone())
                >
                    {m.name}
                </button>
            }
        })
        .collect_view();
    let period_labels = periods.clone();
    let period_buttons = periods
        .into_iter()
        .map(|p| {
            let key = p.key;
            view! {
                <button
                    type="button"
                    class="button button-quiet tab"
                    data-testid=format!("period-{key}")
                    aria-pressed=move || (period_key.get() == key).to_string()
                    on:click=move |_| period_key.set(key)
                >
                    {p.label}
                </button>
            }
        })
        .collect_view();

    let title = move || {
        let name = metric_names
            .iter()
            .find(|m| m.code == metric.get())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let span = period_labels
            .iter()
            .find(|p| p.key == period_key.get())
            .map(|p| time::span(&p.start_rfc3339(), &p.end_rfc3339()))
            .unwrap_or_default();
        format!("{name}, {span}")
    };

    view! {
        <div class="card">
            <div class="tabs" role="group" aria-label="Metric">{metric_buttons}</div>
            <div class="tabs" role="group" aria-label="Period">{period_buttons}</div>
            <h2 class="chart-title" data-testid="usage-title">{title.clone()}</h2>
            {move || match spend.get() {
                Load::Ready(totals) if !totals.is_empty() => view! {
                    <p class="amount-small">"Charged for this usage: " <strong data-testid="usage-cost">{totals.join(" + ")}</strong></p>
                }
                .into_any(),
                Load::Failed(message) => view! { <p class="notice notice-error" role="alert" data-testid="error">{message}</p> }.into_any(),
                _ => ().into_any(),
            }}
            {move || match series.get() {
                Load::Loading => view! { <Loading what="usage" /> }.into_any(),
                Load::Failed(message) => view! { <p class="notice notice-error" role="alert" data-testid="error">{message}</p> }.into_any(),
                Load::Ready(s) => view! {
                    <p class="amount-small">"Total: " <strong data-testid="usage-total">{s.total.clone()}</strong></p>
                    <BarChart title=title() bars=s.bars values=s.values width=width.get() />
                }
                .into_any(),
            }}
        </div>
    }
}
