//! An error message in the page flow, announced to screen readers.

use leptos::prelude::*;

#[component]
pub fn ErrorNotice(#[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    move || {
        message.get().map(|message| {
            view! {
                <p class="notice notice-error" role="alert" data-testid="error">
                    {message}
                </p>
            }
        })
    }
}
