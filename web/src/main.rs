//! Neruba customer portal: a client-side rendered Leptos app that Trunk builds into `web/dist`
//! and the server serves at `/portal/`. A customer opens it with a one-time session link; it
//! talks only to the same-origin GraphQL endpoint, with that session's customer credential.

mod api;
mod app;
mod components;
mod live;
mod money;
mod pages;
mod portal;
mod session;
mod time;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
