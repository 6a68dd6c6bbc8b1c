//! The top bar: product name, and the sign-out button while a key is in use.

use leptos::prelude::*;

#[component]
pub fn Header(signed_in: Signal<bool>, on_sign_out: Callback<()>) -> impl IntoView {
    view! {
        <header class="topbar">
            <div class="brand">
                <span class="brand-name">"Neruba"</span>
                <span class="brand-sub">"Customer portal"</span>
            </div>
            <Show when=move || signed_in.get()>
                <button
                    type="button"
                    class="button button-quiet"
                    data-testid="sign-out"
                    on:click=move |_| on_sign_out.run(())
                >
                    "Sign out"
                </button>
            </Show>
        </header>
    }
}
