//! One invoice: its explained lines, totals and payments; "Pay" through checkout while
//! something is due; a print view (print CSS) for a paper or PDF copy.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use crate::api::ops::{InvoiceDetail, invoice_detail};
use crate::components::lines::{Line, LinesTable, Totals, enum_name};
use crate::components::states::Loading;
use crate::money::Money;
use crate::pages::buy::{Purpose, start_checkout};
use crate::pages::invoices::status_label;
use crate::portal::{Load, use_portal};
use crate::time;

#[derive(Debug, Clone, PartialEq)]
struct Payment {
    status: String,
    date: String,
    amount: Money,
    failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Invoice {
    id: String,
    number: Option<String>,
    status: String,
    date: String,
    period: Option<(String, String)>,
    plan: String,
    lines: Vec<Line>,
    totals: Vec<(&'static str, Money, &'static str)>,
    due: Money,
    payments: Vec<Payment>,
}

fn invoice_of(node: invoice_detail::InvoiceDetailNode) -> Option<Invoice> {
    let invoice_detail::InvoiceDetailNode::Invoice(i) = node else {
        return None;
    };
    let due: Money = i.amount_due.into();
    Some(Invoice {
        id: i.id,
        number: i.number,
        status: enum_name(&i.status),
        date: i.finalized_at.unwrap_or(i.created_at),
        period: i.usage_period.map(|p| (p.from, p.to)),
        plan: i.plan_version.name,
        lines: i.lines.into_iter().map(Into::into).collect(),
        totals: vec![
            ("Subtotal", i.subtotal.into(), "invoice-subtotal"),
            ("Discount", i.discount.into(), "invoice-discount"),
            ("Billed earlier", i.billed_earlier.into(), "invoice-billed-earlier"),
            ("Tax", i.tax.into(), "invoice-tax"),
            ("Total", i.total.into(), "invoice-total"),
            ("Prepaid credits", i.credits.into(), "invoice-credits"),
            ("Amount due", due.clone(), "invoice-amount-due"),
        ],
        due,
        payments: i
            .payments
            .nodes
            .into_iter()
            .map(|p| Payment {
                status: enum_name(&p.status),
                date: p.created_at,
                amount: p.amount.into(),
                failure: p.failure_reason,
            })
            .collect(),
    })
}

#[component]
pub fn InvoicePage() -> impl IntoView {
    let portal = use_portal();
    let params = use_params_map();
    let state = RwSignal::new(Load::<Option<Invoice>>::Loading);
    let pay_error = RwSignal::new(None::<String>);
    let paying = RwSignal::new(false);

    let portal_for_load = portal.clone();
    Effect::new(move |_| {
        let Some(id) = params.get().get("id") else {
            return;
        };
        state.set(Load::Loading);
        let portal = portal_for_load.clone();
        spawn_local(async move {
            match portal.run::<InvoiceDetail>(invoice_detail::Variables { id }).await {
                Ok(data) => state.set(Load::Ready(data.node.and_then(invoice_of))),
                Err(e) => state.set(Load::Failed(e.to_string())),
            }
        });
    });

    let portal_for_view = portal.clone();
    let pay = move |invoice_id: String| {
        if paying.get_untracked() {
            return;
        }
        paying.set(true);
        pay_error.set(None);
        let portal = portal.clone();
        spawn_local(async move {
            if let Err(message) = start_checkout(&portal, Purpose::Invoice { invoice_id }).await {
                pay_error.set(Some(message));
                paying.set(false);
            }
        });
    };

    view! {
        <section aria-labelledby="invoice-title" class="invoice">
            <p class="no-print"><A href="/portal/invoices">"← All invoices"</A></p>
            {move || match state.get() {
                Load::Loading => view! { <Loading what="the invoice" /> }.into_any(),
                Load::Failed(message) => view! { <p class="notice notice-error" role="alert" data-testid="error">{message}</p> }.into_any(),
                Load::Ready(None) => view! {
                    <div class="empty" data-testid="invoice-not-found">
                        <h1 id="invoice-title">"Invoice not found"</h1>
                        <p>"There is no such invoice in your account."</p>
                    </div>
                }
                .into_any(),
                Load::Ready(Some(invoice)) => {
                    let open = invoice.status == "FINALIZED" && !invoice.due.is_zero() && !invoice.due.is_negative();
                    let id = invoice.id.clone();
                    let pay = pay.clone();
                    let payments = (!invoice.payments.is_empty()).then(|| {
                        let items = invoice
                            .payments
                            .iter()
                            .map(|p| view! {
                                <li data-testid="invoice-payment">
                                    {format!("{} · {} · {}", time::date_time(&p.date), p.amount.formatted, status_label_payment(&p.status))}
                                    {p.failure.clone().map(|f| view! { <span class="muted">{format!(" ({f})")}</span> })}
                                </li>
                            })
                            .collect_view();
                        view! {
                            <h2>"Payments"</h2>
                            <ul class="payments">{items}</ul>
                        }
                    });
                    let viewer = portal_for_view.viewer.clone();
                    let billed_to = [viewer.customer_name.clone(), viewer.customer_email.clone()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" · ");
                    view! {
                        <article class="card invoice-sheet" data-testid="invoice-detail">
                            // On paper the invoice says who issued it and to whom (the header with
                            // the project's name is not printed).
                            <div class="print-only" data-testid="invoice-parties">
                                <p><strong>{viewer.project_name.clone()}</strong></p>
                                <p>{format!("Billed to {billed_to}")}</p>
                            </div>
                            <header class="invoice-head">
                                <div>
                                    <p class="eyebrow">"Invoice"</p>
                                    <h1 id="invoice-title" data-testid="invoice-number">{invoice.number.clone().unwrap_or_else(|| "Draft".into())}</h1>
                                    <p class="muted">{format!("{} · {}", time::date(&invoice.date), invoice.plan)}</p>
                                    {invoice.period.as_ref().map(|(f, t)| view! { <p class="muted">{format!("Usage {}", time::span(f, t))}</p> })}
                                </div>
                                <span class=format!("badge badge-{}", invoice.status.to_lowercase()) data-testid="invoice-status">{status_label(&invoice.status)}</span>
                            </header>
                            <div class="table-scroll">
                                <LinesTable lines=invoice.lines.clone() />
                            </div>
                            <Totals rows=invoice.totals.clone() />
                            {payments}
                            <div class="actions no-print">
                                {open.then(|| view! {
                                    <button
                                        type="button"
                                        class="button button-primary"
                                        data-testid="pay-invoice"
                                        disabled=move || paying.get()
                                        on:click=move |_| pay(id.clone())
                                    >
                                        {move || if paying.get() { "Opening the payment page…".to_owned() } else { format!("Pay {}", invoice.due.formatted) }}
                                    </button>
                                })}
                                <button
                                    type="button"
                                    class="button button-quiet"
                                    data-testid="print-invoice"
                                    on:click=|_| {
                                        if let Some(w) = web_sys::window() {
                                            let _ = w.print();
                                        }
                                    }
                                >
                                    "Print or save as PDF"
                                </button>
                            </div>
                            {move || pay_error.get().map(|m| view! { <p class="notice notice-error" role="alert" data-testid="error">{m}</p> })}
                        </article>
                    }
                    .into_any()
                }
            }}
        </section>
    }
}

fn status_label_payment(status: &str) -> &str {
    match status {
        "PENDING" => "pending",
        "SUCCEEDED" => "paid",
        "FAILED" => "failed",
        "REFUNDED" => "refunded",
        other => other,
    }
}
