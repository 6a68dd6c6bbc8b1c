//! The top bar: the project's logo and name, whose account this is, the page links and the
//! state of the live connection.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::live::LiveStatus;
use crate::portal::use_portal;

#[component]
pub fn Header() -> impl IntoView {
    let portal = use_portal();
    let viewer = portal.viewer.clone();
    let live = portal.live;
    let who = viewer
        .customer_name
        .clone()
        .or(viewer.customer_email.clone())
        .unwrap_or_else(|| viewer.customer_external_id.clone());
    let logo = viewer.logo_url.clone().map(|src| {
        view! { <img class="brand-logo" src=src alt="" width="32" height="32" data-testid="project-logo" /> }
    });
    view! {
        <header class="topbar">
            <div class="topbar-row">
                <div class="brand">
                    {logo}
                    <span class="brand-name" data-testid="project-name">{viewer.project_name.clone()}</span>
                </div>
                <div class="topbar-meta">
                    <span class="who" data-testid="customer-name">{who}</span>
                    <span
                        class=move || match live.get() {
                            LiveStatus::Live => "live live-on",
                            _ => "live live-off",
                        }
                        data-testid="live-status"
                        role="status"
                        aria-live="polite"
                    >
                        {move || match live.get() {
                            LiveStatus::Live => "Live",
                            LiveStatus::Connecting => "Connecting…",
                            LiveStatus::Reconnecting => "Reconnecting…",
                        }}
                    </span>
                </div>
            </div>
            <nav class="nav" aria-label="Account">
                <A href="/portal/" exact=true attr:data-testid="nav-balance">"Balance"</A>
                <A href="/portal/usage" attr:data-testid="nav-usage">"Usage"</A>
                <A href="/portal/invoices" attr:data-testid="nav-invoices">"Invoices"</A>
                <A href="/portal/buy" attr:data-testid="nav-buy">"Buy credits"</A>
                <A href="/portal/subscription" attr:data-testid="nav-subscription">"Subscription"</A>
            </nav>
        </header>
    }
}
