//! Neruba customer portal: a client-side rendered Leptos app that Trunk builds into `web/dist`
//! and the server serves at `/portal/`. It talks only to the same-origin GraphQL endpoint.

mod api;
mod app;
mod components;
mod credentials;
mod pages;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
