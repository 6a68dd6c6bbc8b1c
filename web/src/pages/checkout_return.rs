//! Back from the payment page: what happened, and the new balance (or the invoice) at once.
//! The sandbox applies the payment before it sends the person back; with Stripe the webhook may
//! come a moment later, and the live stream then updates the balance shown here.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use crate::pages::balance::WalletCard;

#[component]
pub fn CheckoutReturnPage() -> impl IntoView {
    let query = use_query_map();
    let params = query.get_untracked();
    let paid = params.get("result").as_deref() == Some("paid");
    let wallet = params.get("wallet");
    let invoice = params.get("invoice");
    // The reference has done its work: keep the address clean for a bookmark or a copy.
    if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some("/portal/checkout/return"));
    }
    let (title, detail) = if paid {
        (
            "Thank you: your payment went through",
            "It can take a moment to show everywhere.",
        )
    } else {
        (
            "Payment canceled",
            "Nothing was charged. You can try again at any time.",
        )
    };
    view! {
        <section aria-labelledby="return-title" data-testid=if paid { "checkout-paid" } else { "checkout-canceled" }>
            <h1 id="return-title">{title}</h1>
            <p class="muted">{detail}</p>
            {wallet.map(|id| view! {
                <div class="wallets">
                    <WalletCard wallet_id=id />
                </div>
            })}
            {invoice.map(|id| {
                let href = format!("/portal/invoices/{id}");
                view! {
                    <p>
                        <A href=href attr:class="button button-primary" attr:data-testid="back-to-invoice">"View the invoice"</A>
                    </p>
                }
            })}
            <p><A href="/portal/" attr:data-testid="back-to-balance">"Go to your balance"</A></p>
        </section>
    }
}
