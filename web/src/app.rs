//! The root component: where the session comes from (a one-time link, or the way back from a
//! checkout), and whether the portal or the "session ended" page shows.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use crate::pages::ended::SessionEnded;
use crate::portal::PortalRoot;
use crate::session::{self, EndReason, Ended, Session};

/// The path the payment provider sends the person back to (see `session::park_for_checkout`).
pub const CHECKOUT_RETURN_PATH: &str = "/portal/checkout/return";

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Starting,
    Active(Session),
    Ended(Ended),
}

fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    let params = web_sys::UrlSearchParams::new_with_str(&search).ok()?;
    params.get(name)
}

#[component]
pub fn App() -> impl IntoView {
    let phase = RwSignal::new(Phase::Starting);
    let end = Callback::new(move |ended: Ended| phase.set(Phase::Ended(ended)));

    // A page restored from the back-forward cache (the person pressed "back" on the payment
    // page) still has its credential in memory: the parked copy is not needed any more.
    if let Some(window) = web_sys::window() {
        let on_pageshow =
            Closure::<dyn Fn(web_sys::PageTransitionEvent)>::new(|event: web_sys::PageTransitionEvent| {
                if event.persisted() {
                    session::discard_parked();
                }
            });
        let _ = window.add_event_listener_with_callback("pageshow", on_pageshow.as_ref().unchecked_ref());
        on_pageshow.forget();
    }

    let path = web_sys::window()
        .and_then(|w| w.location().pathname().ok())
        .unwrap_or_default();
    let token = session::take_token_from_fragment();
    if let Some(token) = token {
        // A new link always wins, and a parked session from an earlier checkout is dropped.
        session::discard_parked();
        spawn_local(async move {
            match session::exchange(&token).await {
                Ok(session) => {
                    session::remember_return_url(session.return_url.as_deref());
                    phase.set(Phase::Active(session));
                }
                Err(reason) => phase.set(Phase::Ended(Ended {
                    reason,
                    return_url: session::remembered_return_url(),
                })),
            }
        });
    } else if path.trim_end_matches('/') == CHECKOUT_RETURN_PATH {
        match session::take_parked(query_param("ref").as_deref()) {
            Some(session) => phase.set(Phase::Active(session)),
            None => phase.set(Phase::Ended(Ended {
                reason: EndReason::NoSession,
                return_url: session::remembered_return_url(),
            })),
        }
    } else {
        session::discard_parked();
        phase.set(Phase::Ended(Ended {
            reason: EndReason::NoSession,
            return_url: session::remembered_return_url(),
        }));
    }

    move || match phase.get() {
        Phase::Starting => view! {
            <main class="content">
                <p class="status" data-testid="loading" aria-live="polite">"Opening your account…"</p>
            </main>
        }
        .into_any(),
        Phase::Active(session) => view! { <PortalRoot session=session on_end=end /> }.into_any(),
        Phase::Ended(ended) => view! { <SessionEnded ended=ended /> }.into_any(),
    }
}
