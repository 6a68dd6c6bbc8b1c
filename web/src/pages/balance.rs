//! Balance: each wallet's balance, what is available and what is reserved, kept current by the
//! live stream (see `portal::Handler`) without a reload.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::states::{Empty, Loading};
use crate::portal::{Load, Wallet, use_portal};

#[component]
pub fn BalancePage() -> impl IntoView {
    let portal = use_portal();
    let wallets = portal.wallets;
    // Which wallets there are, apart from their figures: a balance change must not rebuild the
    // cards (each card follows its own figures).
    let shape = Memo::new(move |_| match wallets.get() {
        Load::Loading => Load::Loading,
        Load::Failed(message) => Load::Failed(message),
        Load::Ready(list) => Load::Ready(list.into_iter().map(|w| w.id).collect::<Vec<_>>()),
    });
    view! {
        <section aria-labelledby="balance-title">
            <h1 id="balance-title">"Balance"</h1>
            {move || match shape.get() {
                Load::Loading => view! { <Loading what="your balance" /> }.into_any(),
                Load::Failed(message) => view! {
                    <p class="notice notice-error" role="alert" data-testid="error">{message}</p>
                }
                .into_any(),
                Load::Ready(ids) if ids.is_empty() => view! {
                    <Empty testid="no-wallets">
                        <p>"You have no balance yet. It appears here once credits are added to your account."</p>
                    </Empty>
                }
                .into_any(),
                Load::Ready(ids) => view! {
                    <div class="wallets">
                        {ids.into_iter().map(|id| view! { <WalletCard wallet_id=id /> }).collect_view()}
                    </div>
                }
                .into_any(),
            }}
        </section>
    }
}

/// One wallet, read from the shared signal so a live event updates it in place: the card is
/// built once and only its figures change, so a focused button or a link being clicked is not
/// replaced under the person's hand.
#[component]
pub fn WalletCard(wallet_id: String) -> impl IntoView {
    let portal = use_portal();
    let wallets = portal.wallets;
    let id = wallet_id.clone();
    let wallet = Memo::new(move |_| match wallets.get() {
        Load::Ready(list) => list.into_iter().find(|w| w.id == id),
        _ => None,
    });
    // What the card is built from: it appears once the wallet is known (the page may open
    // before the wallets are read) and is rebuilt only if these change, not on a new balance.
    let identity =
        Memo::new(move |_| wallet.with(|w| w.as_ref().map(|w| (w.id.clone(), w.currency.clone(), w.can_buy()))));
    move || {
        identity
            .get()
            .map(|(id, currency, can_buy)| card(wallet, id, currency, can_buy))
    }
}

fn card(wallet: Memo<Option<Wallet>>, id: String, currency: String, can_buy: bool) -> impl IntoView {
    let held_testid = format!("held-{currency}");
    let text = move |f: fn(&Wallet) -> String| move || wallet.get().map(|w| f(&w)).unwrap_or_default();
    let held = Memo::new(move |_| wallet.get().is_some_and(|w| !w.held.is_zero()));
    let low = Memo::new(move |_| wallet.get().is_some_and(|w| w.below_threshold));
    let negative = Memo::new(move |_| wallet.get().is_some_and(|w| w.balance.is_negative()));
    let buy = can_buy.then(|| {
        view! {
            <A
                href=format!("/portal/buy?wallet={id}")
                attr:class="button button-primary"
                attr:data-testid=format!("buy-{currency}")
            >
                "Buy credits"
            </A>
        }
    });
    view! {
        <article class="card wallet" data-testid="wallet" aria-label=format!("{currency} balance")>
            <p class="eyebrow">{currency.clone()}</p>
            <p
                class="amount"
                class:amount-negative=move || negative.get()
                data-testid=format!("balance-{currency}")
                aria-live="polite"
            >
                {text(|w| w.balance.formatted.clone())}
            </p>
            <Show when=move || low.get()>
                <p class="notice notice-warn" data-testid="low-balance">"Your balance is low."</p>
            </Show>
            <dl class="facts">
                <dt>"Available"</dt>
                <dd data-testid=format!("available-{currency}")>{text(|w| w.available.formatted.clone())}</dd>
                <Show when=move || held.get()>
                    <dt>"Reserved"</dt>
                    <dd data-testid=held_testid.clone()>{text(|w| w.held.formatted.clone())}</dd>
                </Show>
            </dl>
            {buy}
        </article>
    }
}
