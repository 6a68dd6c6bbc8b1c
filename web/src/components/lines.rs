//! An invoice's (or a preview's) lines, each usage line explained by its rated steps (tiers,
//! packages, free units), and the totals under them.

use leptos::prelude::*;

use crate::money::{Money, plain};
use crate::time;

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: String,
    pub tier: Option<i64>,
    pub from: Option<String>,
    pub up_to: Option<String>,
    pub quantity: String,
    pub count: Option<i64>,
    pub unit_amount: Option<Money>,
    pub flat_amount: Option<Money>,
    pub rate: Option<String>,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub kind: String,
    pub description: String,
    pub quantity: Option<String>,
    pub amount: Money,
    pub period: Option<(String, String)>,
    pub steps: Vec<Step>,
}

/// A generated enum's schema name (`FIXED_FEE`), also for a value this build does not know.
pub fn enum_name(value: &impl std::fmt::Debug) -> String {
    let debug = format!("{value:?}");
    match debug.strip_prefix("Other(\"").and_then(|s| s.strip_suffix("\")")) {
        Some(inner) => inner.to_owned(),
        None => debug,
    }
}

/// Converts one operation module's generated `LineFields` into [`Line`].
macro_rules! lines_from {
    ($($module:ident),* $(,)?) => {$(
        impl From<crate::api::ops::$module::LineFields> for Line {
            fn from(l: crate::api::ops::$module::LineFields) -> Self {
                Line {
                    kind: enum_name(&l.kind),
                    description: l.description,
                    quantity: l.quantity,
                    amount: l.amount.into(),
                    period: l.period.map(|p| (p.from, p.to)),
                    steps: l
                        .steps
                        .into_iter()
                        .map(|s| Step {
                            kind: enum_name(&s.kind),
                            tier: s.tier,
                            from: s.from,
                            up_to: s.up_to,
                            quantity: s.quantity,
                            count: s.count,
                            unit_amount: s.unit_amount.map(Into::into),
                            flat_amount: s.flat_amount.map(Into::into),
                            rate: s.rate,
                            amount: s.amount.into(),
                        })
                        .collect(),
                }
            }
        }
    )*};
}
lines_from!(invoice_detail, upcoming_invoice);

/// One sentence per rated step, e.g. `Tier 2 (100–1000): 250 × 0.01 USD = 2.50 USD`.
pub fn explain(step: &Step) -> String {
    let q = plain(&step.quantity);
    let unit = step
        .unit_amount
        .as_ref()
        .map(|m| m.formatted.clone())
        .unwrap_or_default();
    let flat = step
        .flat_amount
        .as_ref()
        .filter(|m| !m.is_zero())
        .map(|m| format!(" + {}", m.formatted))
        .unwrap_or_default();
    let amount = &step.amount.formatted;
    let count = step.count.unwrap_or(0);
    let tier = step.tier.map(|t| t.to_string()).unwrap_or_default();
    let range = match (&step.from, &step.up_to) {
        (Some(f), Some(u)) => format!(" ({}–{})", plain(f), plain(u)),
        (Some(f), None) => format!(" (above {})", plain(f)),
        (None, Some(u)) => format!(" (up to {})", plain(u)),
        (None, None) => String::new(),
    };
    let rate = step.rate.as_deref().map(plain).unwrap_or_default();
    match step.kind.as_str() {
        "FREE_UNITS" => format!("{q} units free"),
        "UNIT" => format!("{q} × {unit} = {amount}"),
        "TIER" => format!("Tier {tier}{range}: {q} × {unit}{flat} = {amount}"),
        "VOLUME_TIER" => format!("Volume tier {tier}{range}: {q} × {unit}{flat} = {amount}"),
        "PACKAGE" => format!("{count} packages for {q} units × {unit} = {amount}"),
        "FREE_USAGE" => format!("{count} events free ({q})"),
        "PERCENTAGE" => format!("{rate}% of {q} = {amount}"),
        "EVENT_FEES" => format!("{count} events × {unit} = {amount}"),
        "EVENT_MINIMUM" => format!("{count} events raised to the minimum of {unit}: {amount}"),
        "EVENT_MAXIMUM" => format!("{count} events capped at {unit}: {amount}"),
        "PERCENTAGE_TIER" => format!("Tier {tier}{range}: {rate}% of {q}{flat} = {amount}"),
        other => format!("{other}: {amount}"),
    }
}

/// The lines as a table: description (with the period and the explanation under it),
/// quantity, amount.
#[component]
pub fn LinesTable(lines: Vec<Line>) -> impl IntoView {
    if lines.is_empty() {
        return view! { <p class="muted" data-testid="no-lines">"Nothing to bill yet."</p> }.into_any();
    }
    let rows = lines
        .into_iter()
        .map(|line| {
            let period = line
                .period
                .as_ref()
                .map(|(f, t)| view! { <div class="muted small">{time::span(f, t)}</div> });
            let steps = (!line.steps.is_empty()).then(|| {
                let items = line
                    .steps
                    .iter()
                    .map(|s| view! { <li>{explain(s)}</li> })
                    .collect_view();
                view! { <ul class="steps" data-testid="line-steps">{items}</ul> }
            });
            view! {
                <tr data-testid="invoice-line">
                    <td>
                        <div>{line.description.clone()}</div>
                        {period}
                        {steps}
                    </td>
                    <td class="num">{line.quantity.as_deref().map(plain).unwrap_or_default()}</td>
                    <td class="num">{line.amount.formatted.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="table lines">
            <thead>
                <tr>
                    <th scope="col">"Item"</th>
                    <th scope="col" class="num">"Quantity"</th>
                    <th scope="col" class="num">"Amount"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

/// Label and amount rows under the lines; zero rows other than the total are left out.
#[component]
pub fn Totals(rows: Vec<(&'static str, Money, &'static str)>) -> impl IntoView {
    let items = rows
        .into_iter()
        .filter(|(label, money, _)| !money.is_zero() || matches!(*label, "Total" | "Amount due" | "Subtotal"))
        .map(|(label, money, testid)| {
            view! {
                <dt>{label}</dt>
                <dd class="num" data-testid=testid>{money.formatted}</dd>
            }
        })
        .collect_view();
    view! { <dl class="totals">{items}</dl> }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(amount: &str, formatted: &str) -> Money {
        Money {
            amount: amount.into(),
            currency: "USD".into(),
            decimals: 2,
            formatted: formatted.into(),
        }
    }

    fn step(kind: &str) -> Step {
        Step {
            kind: kind.into(),
            tier: None,
            from: None,
            up_to: None,
            quantity: "250.000".into(),
            count: None,
            unit_amount: Some(usd("0.01", "0.01 USD")),
            flat_amount: None,
            rate: None,
            amount: usd("2.5", "2.50 USD"),
        }
    }

    #[test]
    fn a_graduated_tier_names_its_range_and_flat_fee() {
        let s = Step {
            tier: Some(2),
            from: Some("100".into()),
            up_to: Some("1000".into()),
            flat_amount: Some(usd("1", "1.00 USD")),
            ..step("TIER")
        };
        assert_eq!(explain(&s), "Tier 2 (100–1000): 250 × 0.01 USD + 1.00 USD = 2.50 USD");
        let last = Step {
            tier: Some(3),
            from: Some("1000".into()),
            ..step("TIER")
        };
        assert_eq!(explain(&last), "Tier 3 (above 1000): 250 × 0.01 USD = 2.50 USD");
    }

    #[test]
    fn unit_free_and_package_steps_read_as_sentences() {
        assert_eq!(explain(&step("UNIT")), "250 × 0.01 USD = 2.50 USD");
        assert_eq!(explain(&step("FREE_UNITS")), "250 units free");
        let p = Step {
            count: Some(3),
            ..step("PACKAGE")
        };
        assert_eq!(explain(&p), "3 packages for 250 units × 0.01 USD = 2.50 USD");
        let pct = Step {
            rate: Some("2.50".into()),
            ..step("PERCENTAGE")
        };
        assert_eq!(explain(&pct), "2.5% of 250 = 2.50 USD");
    }

    #[test]
    fn an_unknown_step_kind_still_shows_its_amount() {
        assert_eq!(explain(&step("NEW_KIND")), "NEW_KIND: 2.50 USD");
    }

    #[derive(Debug)]
    #[allow(non_camel_case_types, dead_code)]
    enum Generated {
        FIXED_FEE,
        Other(String),
    }

    #[test]
    fn enum_names_come_from_the_generated_variants() {
        assert_eq!(enum_name(&Generated::FIXED_FEE), "FIXED_FEE");
        assert_eq!(enum_name(&Generated::Other("NEW".into())), "NEW");
    }
}
