//! A portal address that names no page.

use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <section class="card" data-testid="not-found">
            <h1>"Page not found"</h1>
            <p class="muted">"This page does not exist in the portal."</p>
            <A href="/portal/">"Go to your balance"</A>
        </section>
    }
}
