//! The root component: owns the session (signed out, checking a key, signed in) and decides
//! which page shows.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, viewer::Viewer};
use crate::components::header::Header;
use crate::credentials::{self, ApiKey};
use crate::pages::overview::Overview;
use crate::pages::sign_in::SignIn;

#[derive(Debug, Clone, PartialEq)]
enum Session {
    /// `notice` explains why the person is looking at the sign-in form, if it was not by choice.
    SignedOut {
        notice: Option<String>,
    },
    Checking,
    SignedIn(Viewer),
}

#[component]
pub fn App() -> impl IntoView {
    let session = RwSignal::new(Session::SignedOut { notice: None });
    // Bumped on every sign-in and sign-out, so an answer that arrives after the person moved on
    // (signed out, or tried another key) is dropped instead of overwriting the newer state.
    let attempt = StoredValue::new(0_u64);

    let sign_in = move |key: ApiKey| {
        attempt.update_value(|n| *n += 1);
        let this_attempt = attempt.get_value();
        credentials::remember(&key);
        session.set(Session::Checking);
        spawn_local(async move {
            let outcome = api::viewer::fetch(&key).await;
            if attempt.get_value() != this_attempt {
                return;
            }
            match outcome {
                Ok(viewer) => session.set(Session::SignedIn(viewer)),
                Err(error) => {
                    if error.rejects_credential() {
                        credentials::forget();
                    }
                    session.set(Session::SignedOut {
                        notice: Some(error.to_string()),
                    });
                }
            }
        });
    };
    let sign_out = move || {
        attempt.update_value(|n| *n += 1);
        credentials::forget();
        session.set(Session::SignedOut { notice: None });
    };

    if let Some(key) = credentials::initial() {
        sign_in(key);
    }

    let signed_in = Signal::derive(move || matches!(session.get(), Session::SignedIn(_)));
    view! {
        <Header signed_in=signed_in on_sign_out=Callback::new(move |()| sign_out()) />
        <main class="content">
            {move || match session.get() {
                Session::SignedOut { notice } => {
                    view! { <SignIn notice=notice on_sign_in=Callback::new(sign_in) /> }.into_any()
                }
                Session::Checking => {
                    view! {
                        <p class="status" data-testid="loading" aria-live="polite">
                            "Checking your API key…"
                        </p>
                    }
                        .into_any()
                }
                Session::SignedIn(viewer) => view! { <Overview viewer=viewer /> }.into_any(),
            }}
        </main>
    }
}
