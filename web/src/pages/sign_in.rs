//! The sign-in form: asks for an API key when none is known or the last one failed.

use leptos::ev::SubmitEvent;
use leptos::html;
use leptos::prelude::*;

use crate::components::error_notice::ErrorNotice;
use crate::credentials::ApiKey;

#[component]
pub fn SignIn(notice: Option<String>, on_sign_in: Callback<ApiKey>) -> impl IntoView {
    let input = NodeRef::<html::Input>::new();
    let error = RwSignal::new(notice);

    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let raw = input.get().map(|el| el.value()).unwrap_or_default();
        match ApiKey::parse(&raw) {
            Some(key) => on_sign_in.run(key),
            None => error.set(Some("Paste an API key to sign in.".to_owned())),
        }
    };

    view! {
        <section class="card card-narrow">
            <h1>"Sign in"</h1>
            <p class="muted">
                "Use an API key issued for your project. "
                "It is kept in this browser until you sign out."
            </p>
            <ErrorNotice message=error />
            <form class="form" on:submit=submit>
                <label for="api-key">"API key"</label>
                <input
                    id="api-key"
                    type="password"
                    autocomplete="off"
                    spellcheck="false"
                    placeholder="nrb_…"
                    autofocus
                    data-testid="api-key-input"
                    node_ref=input
                />
                <button type="submit" class="button button-primary" data-testid="sign-in">
                    "Sign in"
                </button>
            </form>
        </section>
    }
}
