//! The loading and empty states every page uses, so they look and announce alike.

use leptos::prelude::*;

#[component]
pub fn Loading(#[prop(into)] what: String) -> impl IntoView {
    view! {
        <p class="status" data-testid="loading" role="status" aria-live="polite">
            {format!("Loading {what}…")}
        </p>
    }
}

#[component]
pub fn Empty(#[prop(into)] testid: String, children: Children) -> impl IntoView {
    view! {
        <div class="empty" data-testid=testid>
            {children()}
        </div>
    }
}
