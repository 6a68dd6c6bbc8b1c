//! Invoices: newest first, each linking to its detail.

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

/// One page of invoices, newest first: its rows and the cursor of the next (older) page.
async fn load_page(
    portal: &crate::portal::Portal,
    after: Option<String>,
) -> Result<(Vec<Row>, Option<String>), String> {
    let data = portal
        .run::<Invoices>(invoices::Variables { after })
        .await
        .map_err(|e| e.to_string())?;
    let Some(customer) = data.viewer.customer else {
        return Ok((Vec::new(), None));
    };
    let page = customer.invoices;
    let rows = page
        .nodes
        .into_iter()
        .map(|i| Row {
            id: i.id,
            number: i.number,
            status: enum_name(&i.status),
            date: i.finalized_at.unwrap_or(i.created_at),
            total: i.total.into(),
            due: i.amount_due.into(),
        })
        .collect();
    let next = match (page.page_info.has_next_page, page.page_info.end_cursor) {
        (true, Some(cursor)) => Some(cursor),
        _ => None,
    };
    Ok((rows, next))
}

#[component]
pub fn InvoicesPage() -> impl IntoView {
    let portal = use_portal();
    let rows = RwSignal::new(Load::<Vec<Row>>::Loading);
    // The cursor of the older invoices not shown yet; `None` once all are.
    let older = RwSignal::new(None::<String>);
    let more_failed = RwSignal::new(None::<String>);
    let loading_more = RwSignal::new(false);
    {
        let portal = portal.clone();
        spawn_local(async move {
            match load_page(&portal, None).await {
                Ok((list, next)) => {
                    older.set(next);
                    rows.set(Load::Ready(list));
                }
                Err(e) => rows.set(Load::Failed(e)),
            }
        });
    }
    // A copyable handle, so that the click handler can be made again on every render.
    let stored = StoredValue::new(portal);
    let show_older = move |_| {
        let Some(after) = older.get_untracked() else {
            return;
        };
        let portal = stored.get_value();
        loading_more.set(true);
        more_failed.set(None);
        spawn_local(async move {
            match load_page(&portal, Some(after)).await {
                Ok((list, next)) => {
                    rows.update(|r| {
                        if let Load::Ready(shown) = r {
                            shown.extend(list);
                        }
                    });
                    older.set(next);
                }
                Err(e) => more_failed.set(Some(e)),
            }
            loading_more.set(false);
        });
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
                        <Show when=move || older.with(Option::is_some)>
                            <p>
                                <button
                                    type="button"
                                    class="button button-quiet"
                                    data-testid="older-invoices"
                                    disabled=move || loading_more.get()
                                    on:click=show_older
                                >
                                    {move || if loading_more.get() { "Loading…" } else { "Show older invoices" }}
                                </button>
                            </p>
                        </Show>
                        {move || more_failed.get().map(|message| view! {
                            <p class="notice notice-error" role="alert" data-testid="error">{message}</p>
                        })}
                    }
                    .into_any()
                }
            }}
        </section>
    }
}
