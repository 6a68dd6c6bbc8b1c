//! The page for a session that is over, or never was: what happened, and the way back to the
//! project's site (where a new link is made) when the portal knows it.

use leptos::prelude::*;

use crate::session::{EndReason, Ended};

#[component]
pub fn SessionEnded(ended: Ended) -> impl IntoView {
    let (title, detail) = match &ended.reason {
        EndReason::NoSession => (
            "Open the portal from your account",
            "This page needs a sign-in link from the service you use. Links work once and for a \
             limited time, and closing or reloading the portal ends the session."
                .to_owned(),
        ),
        EndReason::Refused(message) => (
            "Your session has ended",
            format!("This link can no longer be used ({message}). Links work once and for a limited time."),
        ),
        EndReason::Expired => (
            "Your session has ended",
            "Your session timed out. Open the portal again from your account.".to_owned(),
        ),
        EndReason::Unreachable(message) => (
            "The portal could not be opened",
            format!("The server could not be reached ({message}). Try the link again in a moment."),
        ),
    };
    let back = ended
        .return_url
        .clone()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    view! {
        <main class="content">
            <section class="card card-narrow" data-testid="session-ended" aria-labelledby="ended-title">
                <h1 id="ended-title">{title}</h1>
                <p class="muted" data-testid="session-ended-detail">{detail}</p>
                {match back {
                    Some(url) => view! {
                        <a class="button button-primary" href=url data-testid="return-link">"Back to your account"</a>
                    }
                    .into_any(),
                    None => view! {
                        <p class="muted">"Go back to the service you came from to open it again."</p>
                    }
                    .into_any(),
                }}
            </section>
        </main>
    }
}
