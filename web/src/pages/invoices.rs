//! Invoices: newest first, a page at a time, each linking to its detail.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;

use crate::api::ops::{Invoices, invoices};
use crate::components::lines::enum_name;
use crate::components::states::{Empty, Loading};
use crate::money::Money;
use crate::portal::{Load, use_portal};
use crate::time;

#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: String,
    number: Option<String>,
    status: String,
    date: String,
    total: Money,
    due: Money,
}

/// `PAID` → `Paid`, for a badge.
pub fn status_label(status: &str) -> String {
    match status {
        "DRAFT" => "Draft".into(),
        "FINALIZED" => "Open".into(),
        "PAID" => "Paid".into(),
        "VOID" => "Void".into(),
        other => other.to_lowercase(),
    }
}

#[component]
pub fn InvoicesPage() -> impl IntoView {
    let portal = use_portal();
    let rows = RwSignal::new(Load::<Vec<Row>>::Loading);
    let next = RwSignal::new(None::<String>);
    let more_error = RwSignal::new(None::<String>);
    let loading_more = RwSignal::new(false);

    let load = move |after: Option<String>| {
        let portal = portal.clone();
        spawn_local(async move {
            let first_page = after.is_none();
            loading_more.set(!first_page);
            let result = portal.run::<Invoices>(invoices::Variables { after }).await;
            loading_more.set(false);
            match result {
                Ok(data) => {
                    let Some(customer) = data.viewer.customer else {
                        rows.set(Load::Ready(Vec::new()));
                        return;
                    };
                    let page = customer.invoices;
                    next.set(
                        page.page_info
                            .has_next_page
                            .then_some(page.page_info.end_cursor)
                            .flatten(),
                    );
                    let new_rows = page.nodes.into_iter().map(|i| Row {
                        id: i.id,
                        number: i.number,
                        status: enum_name(&i.status),
                        date: i.finalized_at.unwrap_or(i.created_at),
                        total: i.total.into(),
                        due: i.amount_due.into(),
                    });
                    if first_page {
                        rows.set(Load::Ready(new_rows.collect()));
                    } else {
                        rows.update(|r| {
                            if let Load::Ready(list) = r {
                                list.extend(new_rows);
                            }
                        });
                    }
                }
                Err(e) if first_page => rows.set(Load::Failed(e.to_string())),
                Err(e) => more_error.set(Some(e.to_string())),
            }
        });
    };
    let load = {
        let load = load.clone();
        load(None);
        load
    };

    view! {
        <section aria-labelledby="invoices-title">
            <h1 id="invoices-title">"Invoices"</h1>
            {move || match rows.get() {
                Load::Loading => view! { <Loading what="your invoices" /> }.into_any(),
                Load::Failed(message) => view! { <p class="notice notice-error" role="alert" data-testid="error">{message}</p> }.into_any(),
                Load::Ready(list) if list.is_empty() => view! {
                    <Empty testid="no-invoices"><p>"No invoices yet."</p></Empty>
                }
                .into_any(),
                Load::Ready(list) => {
                    let items = list
                        .into_iter()
                        .map(|row| {
                            let href = format!("/portal/invoices/{}", row.id);
                            let name = row.number.clone().unwrap_or_else(|| "Draft".into());
                            let open = row.status == "FINALIZED" && !row.due.is_zero();
                            view! {
                                <tr data-testid="invoice-row">
                                    <td><A href=href attr:data-testid="invoice-link">{name}</A></td>
                                    <td class="nowrap">{time::date(&row.date)}</td>
                                    <td><span class=format!("badge badge-{}", row.status.to_lowercase()) data-testid="invoice-status">{status_label(&row.status)}</span></td>
                                    <td class="num hide-narrow">{row.total.formatted.clone()}</td>
                                    <td class="num" class:due=open>{row.due.formatted.clone()}</td>
                                </tr>
                            }
                        })
                        .collect_view();
                    view! {
                        <div class="table-scroll">
                            <table class="table" data-testid="invoices">
                                <thead>
                                    <tr>
                                        <th scope="col">"Invoice"</th>
                                        <th scope="col">"Date"</th>
                                        <th scope="col">"Status"</th>
                                        <th scope="col" class="num hide-narrow">"Total"</th>
                                        <th scope="col" class="num">"Due"</th>
                                    </tr>
                                </thead>
                                <tbody>{items}</tbody>
                            </table>
                        </div>
                    }
                    .into_any()
                }
            }}
            {move || next.get().map(|cursor| {
                let load = load.clone();
                view! {
                <button
                    type="button"
                    class="button button-quiet"
                    data-testid="more-invoices"
                    disabled=move || loading_more.get()
                    on:click=move |_| load(Some(cursor.clone()))
                >
                    "Show older invoices"
                </button>
            }})}
            {move || more_error.get().map(|m| view! { <p class="notice notice-error" role="alert">{m}</p> })}
        </section>
    }
}
