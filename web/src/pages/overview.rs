//! What the signed-in key can see: its project and what it is allowed to do.

use leptos::prelude::*;

use crate::api::viewer::Viewer;

#[component]
pub fn Overview(viewer: Viewer) -> impl IntoView {
    let Viewer { kind, scopes, project } = viewer;
    let (name, id) = match project {
        Some(project) => (project.name, Some(project.id.0)),
        None => ("No project".to_owned(), None),
    };
    let scopes = if scopes.is_empty() {
        view! { <li class="muted">"none"</li> }.into_any()
    } else {
        scopes
            .into_iter()
            .map(|scope| view! { <li class="badge">{scope}</li> })
            .collect_view()
            .into_any()
    };

    view! {
        <section class="card">
            <p class="eyebrow">"Project"</p>
            <h1 data-testid="project-name">{name}</h1>
            {id.map(|id| view! { <p class="mono muted" data-testid="project-id">{id}</p> })}
            <dl class="facts">
                <dt>"Signed in with"</dt>
                <dd>{kind.label()}</dd>
                <dt>"Scopes"</dt>
                <dd>
                    <ul class="badges" data-testid="scopes">
                        {scopes}
                    </ul>
                </dd>
            </dl>
        </section>
    }
}
