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

/// At most this many pages of 100 are read (10,000 invoices): far beyond one customer's.
const MAX_PAGES: usize = 100;

/// The server lists a customer's invoices oldest first; the portal reads them all and shows the
/// newest first.
async fn load_all(portal: &crate::portal::Portal) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut after = None;
    for _ in 0..MAX_PAGES {
        let data = portal
            .run::<Invoices>(invoices::Variables { after })
            .await
            .map_err(|e| e.to_string())?;
        let Some(customer) = data.viewer.customer else {
            break;
        };
        let page = customer.invoices;
        rows.extend(page.nodes.into_iter().map(|i| Row {
            id: i.id,
            number: i.number,
            status: enum_name(&i.status),
            date: i.finalized_at.unwrap_or(i.created_at),
            total: i.total.into(),
            due: i.amount_due.into(),
        }));
        match (page.page_info.has_next_page, page.page_info.end_cursor) {
            (true, Some(cursor)) => after = Some(cursor),
            _ => break,
        }
    }
    rows.reverse();
    Ok(rows)
}

#[component]
pub fn InvoicesPage() -> impl IntoView {
    let portal = use_portal();
    let rows = RwSignal::new(Load::<Vec<Row>>::Loading);
    spawn_local(async move {
        rows.set(match load_all(&portal).await {
            Ok(list) => Load::Ready(list),
            Err(e) => Load::Failed(e),
        });
    });

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
        </section>
    }
}
