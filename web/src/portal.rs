//! A live session: loads who the customer is, keeps the wallets (and their live balances) for
//! every page, lays out the header and the routes, and ends the session when the server says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use graphql_client::GraphQLQuery;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;
use wasm_bindgen::JsCast;

use crate::api::ops::{PortalViewer, Wallets, portal_viewer, wallets};
use crate::api::{self, ApiError};
use crate::components::header::Header;
use crate::live::{self, BalanceEvent, LiveHandler, LiveStatus};
use crate::money::{Money, TopUpLimits};
use crate::pages;
use crate::session::{EndReason, Ended, Session};

/// Something loaded from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Load<T> {
    Loading,
    Ready(T),
    Failed(String),
}

/// Who is signed in, from `viewer`.
#[derive(Debug, Clone, PartialEq)]
pub struct Viewer {
    pub project_name: String,
    pub logo_url: Option<String>,
    pub limits: TopUpLimits,
    pub customer_id: String,
    pub customer_external_id: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wallet {
    pub id: String,
    pub currency: String,
    pub balance: Money,
    pub available: Money,
    pub held: Money,
    pub below_threshold: bool,
}

impl Wallet {
    /// Checkout tops up wallets in an ISO 4217 currency (three letters); credit units are
    /// bought through their own top-ups (docs/payments.md).
    pub fn can_buy(&self) -> bool {
        self.currency.len() == 3 && self.currency.chars().all(|c| c.is_ascii_uppercase())
    }
}

/// What every page can reach: the session, the viewer, the wallets and the live connection.
#[derive(Clone)]
pub struct Portal {
    pub session: Session,
    pub viewer: Viewer,
    pub wallets: RwSignal<Load<Vec<Wallet>>>,
    pub live: RwSignal<LiveStatus>,
    end: Callback<Ended>,
    /// A wallet reload is running / another one was asked for meanwhile.
    reloading: StoredValue<(bool, bool)>,
}

pub fn use_portal() -> Portal {
    expect_context::<Portal>()
}

impl Portal {
    /// Runs `Q` with the session's credential; an `UNAUTHENTICATED` answer ends the session.
    pub async fn run<Q: GraphQLQuery>(&self, variables: Q::Variables) -> Result<Q::ResponseData, ApiError> {
        let result = api::execute::<Q>(&self.session.credential, variables).await;
        if let Err(ApiError::Unauthenticated(message)) = &result {
            self.end(EndReason::Refused(message.clone()));
        }
        result
    }

    pub fn end(&self, reason: EndReason) {
        self.end.run(Ended {
            reason,
            return_url: self.session.return_url.clone(),
        });
    }

    /// Reads the wallets again (after a live event, for `available` and `held`); calls that
    /// come while one is running are folded into one more read.
    pub fn reload_wallets(&self) {
        let (running, _) = self.reloading.get_value();
        if running {
            self.reloading.set_value((true, true));
            return;
        }
        self.reloading.set_value((true, false));
        let portal = self.clone();
        spawn_local(async move {
            loop {
                let result = portal.run::<Wallets>(wallets::Variables {}).await;
                match result {
                    Ok(data) => portal.wallets.set(Load::Ready(wallets_of(data))),
                    Err(e) => {
                        // Keep showing what we have; only a first load shows the error.
                        if !matches!(portal.wallets.get_untracked(), Load::Ready(_)) {
                            portal.wallets.set(Load::Failed(e.to_string()));
                        }
                    }
                }
                let (_, again) = portal.reloading.get_value();
                if again {
                    portal.reloading.set_value((true, false));
                } else {
                    portal.reloading.set_value((false, false));
                    break;
                }
            }
        });
    }

    fn apply(&self, event: &BalanceEvent) {
        self.wallets.update(|load| {
            if let Load::Ready(wallets) = load
                && let Some(w) = wallets.iter_mut().find(|w| w.id == event.wallet_id)
            {
                w.balance = event.balance.clone();
            }
        });
    }
}

fn wallets_of(data: wallets::ResponseData) -> Vec<Wallet> {
    data.viewer
        .customer
        .map(|c| c.wallets.nodes)
        .unwrap_or_default()
        .into_iter()
        .map(|w| Wallet {
            id: w.id,
            currency: w.currency,
            balance: w.balance.into(),
            available: w.available.into(),
            held: w.held.into(),
            below_threshold: w.below_threshold,
        })
        .collect()
}

fn viewer_of(data: portal_viewer::ResponseData) -> Result<Viewer, String> {
    let viewer = data.viewer;
    let (Some(project), Some(customer)) = (viewer.project, viewer.customer) else {
        return Err("this link does not open a customer's account".into());
    };
    Ok(Viewer {
        project_name: project.name,
        logo_url: project
            .logo_url
            .filter(|u| u.starts_with("https://") || u.starts_with("http://") || u.starts_with('/')),
        limits: TopUpLimits::parse(
            &project.top_up_limits.minimum,
            &project.top_up_limits.maximum,
            &project.top_up_limits.presets,
        ),
        customer_id: customer.id,
        customer_external_id: customer.external_id,
        customer_name: customer.name,
        customer_email: customer.email,
    })
}

/// Bridges the live stream to the portal's signals.
struct Handler(Portal);

impl LiveHandler for Handler {
    fn status(&self, status: LiveStatus) {
        self.0.live.set(status);
    }
    fn subscribed(&self) {
        self.0.reload_wallets();
    }
    fn event(&self, event: BalanceEvent) {
        self.0.apply(&event);
        self.0.reload_wallets();
    }
    fn refused(&self, message: String) {
        self.0.end(EndReason::Refused(message));
    }
}

/// Ends the session when its time is up, even if the page makes no call.
fn end_at_expiry(portal: &Portal, stop: Arc<AtomicBool>) {
    let Some(expires) = crate::time::parse(&portal.session.expires_at) else {
        return;
    };
    let ms = (expires - crate::time::now())
        .num_milliseconds()
        .clamp(0, i64::from(i32::MAX)) as u32;
    let portal = portal.clone();
    spawn_local(async move {
        gloo_timers::future::TimeoutFuture::new(ms).await;
        if !stop.load(Ordering::Relaxed) {
            portal.end(EndReason::Expired);
        }
    });
}

#[component]
pub fn PortalRoot(session: Session, on_end: Callback<Ended>) -> impl IntoView {
    let state = RwSignal::new(Load::<Portal>::Loading);
    // Set when this session's view goes away (it ended): background tasks stop.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        on_cleanup(move || stop.store(true, Ordering::Relaxed));
    }
    let return_url = session.return_url.clone();
    spawn_local(async move {
        let answer = api::execute::<PortalViewer>(&session.credential, portal_viewer::Variables {}).await;
        let viewer = match answer {
            Ok(data) => viewer_of(data),
            Err(ApiError::Unauthenticated(message)) => {
                on_end.run(Ended {
                    reason: EndReason::Refused(message),
                    return_url,
                });
                return;
            }
            Err(e) => Err(e.to_string()),
        };
        match viewer {
            Ok(viewer) => {
                let portal = Portal {
                    session,
                    viewer,
                    wallets: RwSignal::new(Load::Loading),
                    live: RwSignal::new(LiveStatus::Connecting),
                    end: on_end,
                    reloading: StoredValue::new((false, false)),
                };
                document().set_title(&format!("{} · Your account", portal.viewer.project_name));
                portal.reload_wallets();
                end_at_expiry(&portal, stop.clone());
                spawn_local(live::run(
                    portal.session.credential.clone(),
                    portal.viewer.customer_external_id.clone(),
                    Handler(portal.clone()),
                    stop,
                ));
                state.set(Load::Ready(portal));
            }
            Err(message) => state.set(Load::Failed(message)),
        }
    });

    move || match state.get() {
        Load::Loading => view! {
            <main class="content">
                <p class="status" data-testid="loading" aria-live="polite">"Opening your account…"</p>
            </main>
        }
        .into_any(),
        Load::Failed(message) => view! {
            <main class="content">
                <section class="card card-narrow">
                    <h1>"Your account could not be opened"</h1>
                    <p class="notice notice-error" role="alert" data-testid="error">{message}</p>
                </section>
            </main>
        }
        .into_any(),
        Load::Ready(portal) => {
            provide_context(portal);
            view! { <Layout /> }.into_any()
        }
    }
}

/// After a link to another page of the portal is followed (by click, tap or Enter), puts the
/// keyboard focus (and a screen reader) at the start of the new page's content instead of
/// leaving it on the link, or on nothing when the link was part of the old page.
fn focus_content_after_link(ev: leptos::ev::MouseEvent) {
    let followed = ev
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .and_then(|e| e.closest("a[href^='/portal/']").ok().flatten())
        .is_some();
    // A modified click opens another tab: this page stays as it is.
    if !followed || ev.button() != 0 || ev.ctrl_key() || ev.meta_key() || ev.shift_key() {
        return;
    }
    request_animation_frame(|| {
        if let Some(main) = document()
            .get_element_by_id("main")
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = main.focus();
        }
    });
}

/// The routes, under the `/portal` base. Links are written absolute (`/portal/usage`): the
/// router's `<A>` uses an absolute href as it is, without its base.
#[component]
fn Layout() -> impl IntoView {
    view! {
        <Router base="/portal">
            <div class="layout" on:click=focus_content_after_link>
            <a class="skip-link" href="#main">"Skip to content"</a>
            <Header />
            <main class="content" id="main" tabindex="-1">
                <Routes fallback=|| view! { <pages::not_found::NotFound /> }>
                    <Route path=path!("/") view=pages::balance::BalancePage />
                    <Route path=path!("/usage") view=pages::usage::UsagePage />
                    <Route path=path!("/invoices") view=pages::invoices::InvoicesPage />
                    <Route path=path!("/invoices/:id") view=pages::invoice::InvoicePage />
                    <Route path=path!("/buy") view=pages::buy::BuyPage />
                    <Route path=path!("/subscription") view=pages::subscription::SubscriptionPage />
                    <Route path=path!("/checkout/return") view=pages::checkout_return::CheckoutReturnPage />
                </Routes>
            </main>
            </div>
        </Router>
    }
}
