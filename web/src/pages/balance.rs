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
    view! {
        <section aria-labelledby="balance-title">
            <h1 id="balance-title">"Balance"</h1>
            {move || match wallets.get() {
                Load::Loading => view! { <Loading what="your balance" /> }.into_any(),
                Load::Failed(message) => view! {
                    <p class="notice notice-error" role="alert" data-testid="error">{message}</p>
                }
                .into_any(),
                Load::Ready(list) if list.is_empty() => view! {
                    <Empty testid="no-wallets">
                        <p>"You have no balance yet. It appears here once credits are added to your account."</p>
                    </Empty>
                }
                .into_any(),
                Load::Ready(list) => view! {
                    <div class="wallets">
                        <For each=move || list.clone() key=|w| w.id.clone() let:wallet>
                            <WalletCard wallet_id=wallet.id.clone() />
                        </For>
                    </div>
                }
                .into_any(),
            }}
        </section>
    }
}

/// One wallet, read from the shared signal so a live event updates it in place.
#[component]
pub fn WalletCard(wallet_id: String) -> impl IntoView {
    let portal = use_portal();
    let wallets = portal.wallets;
    let id = wallet_id.clone();
    let wallet = Memo::new(move |_| match wallets.get() {
        Load::Ready(list) => list.into_iter().find(|w| w.id == id),
        _ => None,
    });
    move || {
        wallet.get().map(|w: Wallet| {
            let can_buy = w.can_buy();
            let buy_href = format!("/portal/buy?wallet={}", w.id);
            let held = (!w.held.is_zero()).then(|| {
                view! {
                    <dt>"Reserved"</dt>
                    <dd data-testid=format!("held-{}", w.currency)>{w.held.formatted.clone()}</dd>
                }
            });
            view! {
                <article class="card wallet" data-testid="wallet" aria-label=format!("{} balance", w.currency)>
                    <p class="eyebrow">{w.currency.clone()}</p>
                    <p
                        class=if w.balance.is_negative() { "amount amount-negative" } else { "amount" }
                        data-testid=format!("balance-{}", w.currency)
                        aria-live="polite"
                    >
                        {w.balance.formatted.clone()}
                    </p>
                    {w.below_threshold.then(|| view! { <p class="notice notice-warn" data-testid="low-balance">"Your balance is low."</p> })}
                    <dl class="facts">
                        <dt>"Available"</dt>
                        <dd data-testid=format!("available-{}", w.currency)>{w.available.formatted.clone()}</dd>
                        {held}
                    </dl>
                    {can_buy.then(|| view! {
                        <A href=buy_href attr:class="button button-primary" attr:data-testid=format!("buy-{}", w.currency)>
                            "Buy credits"
                        </A>
                    })}
                </article>
            }
        })
    }
}
