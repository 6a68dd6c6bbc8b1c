//! Buy credits: a preset or a custom amount within the project's limits, for one of the
//! customer's wallets, paid through checkout. The person leaves for the payment page and comes
//! back to `checkout/return` (see `session::park_for_checkout` for how the session survives).

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use rust_decimal::Decimal;

use crate::api::ApiError;
use crate::api::ops::{CreateCheckout, create_checkout};
use crate::app::CHECKOUT_RETURN_PATH;
use crate::components::states::{Empty, Loading};
use crate::money::parse_top_up;
use crate::portal::{Load, Portal, use_portal};
use crate::session;

/// What a checkout pays for, and what the return page should show afterwards.
pub enum Purpose {
    TopUp { wallet_id: String, amount: Decimal },
    Invoice { invoice_id: String },
}

/// Creates the checkout and sends the tab to the provider's page. Returns only on failure.
pub async fn start_checkout(portal: &Portal, purpose: Purpose) -> Result<(), String> {
    let reference = session::random_reference();
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .ok_or("no window")?;
    let (purpose_input, subject) = match purpose {
        Purpose::TopUp { wallet_id, amount } => (
            create_checkout::CheckoutPurposeInput::TopUp(create_checkout::TopUpPurposeInput {
                wallet_id: wallet_id.clone(),
                amount: amount.to_string(),
            }),
            format!("wallet={wallet_id}"),
        ),
        Purpose::Invoice { invoice_id } => (
            create_checkout::CheckoutPurposeInput::Invoice(create_checkout::InvoicePurposeInput {
                invoice_id: invoice_id.clone(),
            }),
            format!("invoice={invoice_id}"),
        ),
    };
    let back = |result: &str| format!("{origin}{CHECKOUT_RETURN_PATH}?ref={reference}&result={result}&{subject}");
    let variables = create_checkout::Variables {
        input: create_checkout::CreateCheckoutInput {
            project_id: None,
            purpose: purpose_input,
            success_url: back("paid"),
            cancel_url: back("canceled"),
            idempotency_key: format!("portal-{reference}"),
        },
    };
    let answer = portal.run::<CreateCheckout>(variables).await.map_err(|e| match e {
        ApiError::Rejected { message, .. } => message,
        other => other.to_string(),
    })?;
    let Some(url) = answer.create_checkout.url else {
        return Err("The payment provider did not answer. Try again in a moment.".into());
    };
    if !session::park_for_checkout(&portal.session, &reference) {
        return Err("This browser does not let the portal keep your session while you pay \
                    (site storage is off). Allow it for this site and try again."
            .into());
    }
    web_sys::window()
        .ok_or("no window")?
        .location()
        .assign(&url)
        .map_err(|_| "The payment page could not be opened.".to_owned())
}

#[component]
pub fn BuyPage() -> impl IntoView {
    let portal = use_portal();
    let wallets = portal.wallets;
    let query = use_query_map();
    // Which wallets can be topped up, apart from their balances: a live balance change must
    // not rebuild the form under the person typing in it.
    let buyable = Memo::new(move |_| match wallets.get() {
        Load::Loading => Load::Loading,
        Load::Failed(message) => Load::Failed(message),
        Load::Ready(list) => Load::Ready(
            list.into_iter()
                .filter(|w| w.can_buy())
                .map(|w| Buyable {
                    id: w.id,
                    currency: w.currency,
                    decimals: u32::try_from(w.balance.decimals).unwrap_or(2),
                })
                .collect::<Vec<_>>(),
        ),
    });
    view! {
        <section aria-labelledby="buy-title">
            <h1 id="buy-title">"Buy credits"</h1>
            {move || match buyable.get() {
                Load::Loading => view! { <Loading what="your wallets" /> }.into_any(),
                Load::Failed(message) => view! { <p class="notice notice-error" role="alert" data-testid="error">{message}</p> }.into_any(),
                Load::Ready(buyable) => {
                    if buyable.is_empty() {
                        view! {
                            <Empty testid="no-buyable-wallets">
                                <p>"There is no wallet you can top up here yet."</p>
                            </Empty>
                        }
                        .into_any()
                    } else {
                        let wanted = query.get_untracked().get("wallet");
                        let initial = wanted
                            .filter(|id| buyable.iter().any(|w| &w.id == id))
                            .unwrap_or_else(|| buyable[0].id.clone());
                        view! { <BuyForm wallets=buyable initial=initial /> }.into_any()
                    }
                }
            }}
        </section>
    }
}

/// A wallet checkout can top up: an ISO 4217 currency, and its minor-unit digits.
#[derive(Debug, Clone, PartialEq)]
struct Buyable {
    id: String,
    currency: String,
    decimals: u32,
}

#[component]
fn BuyForm(wallets: Vec<Buyable>, initial: String) -> impl IntoView {
    let portal = use_portal();
    let limits = portal.viewer.limits.clone();
    let wallet_id = RwSignal::new(initial);
    let amount_text = RwSignal::new(String::new());
    let field_error = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);

    let wallets_for_decimals = wallets.clone();
    let decimals = move || {
        wallets_for_decimals
            .iter()
            .find(|w| w.id == wallet_id.get())
            .map_or(2, |w| w.decimals)
    };
    let wallets_for_currency = wallets.clone();
    let currency = move || {
        wallets_for_currency
            .iter()
            .find(|w| w.id == wallet_id.get())
            .map(|w| w.currency.clone())
            .unwrap_or_default()
    };

    let limits_for_submit = limits.clone();
    let portal_for_submit = portal.clone();
    let decimals_for_submit = decimals.clone();
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if pending.get_untracked() {
            return;
        }
        error.set(None);
        let amount = match parse_top_up(&amount_text.get_untracked(), decimals_for_submit(), &limits_for_submit) {
            Ok(amount) => amount,
            Err(e) => {
                field_error.set(Some(e.to_string()));
                return;
            }
        };
        field_error.set(None);
        pending.set(true);
        let portal = portal_for_submit.clone();
        let wallet_id = wallet_id.get_untracked();
        spawn_local(async move {
            if let Err(message) = start_checkout(&portal, Purpose::TopUp { wallet_id, amount }).await {
                error.set(Some(message));
                pending.set(false);
            }
        });
    };

    let selector = (wallets.len() > 1).then(|| {
        let options = wallets
            .iter()
            .map(|w| {
                let id = w.id.clone();
                view! { <option value=id.clone() selected=move || wallet_id.get() == id>{w.currency.clone()}</option> }
            })
            .collect_view();
        view! {
            <label for="buy-wallet">"Wallet"</label>
            <select id="buy-wallet" data-testid="buy-wallet" on:change=move |ev| wallet_id.set(event_target_value(&ev))>
                {options}
            </select>
        }
    });

    let currency_for_presets = currency.clone();
    let presets = limits
        .presets
        .iter()
        .map(|p| {
            let value = p.normalize().to_string();
            let label_value = value.clone();
            let click_value = value.clone();
            let pressed_value = value.clone();
            let currency = currency_for_presets.clone();
            view! {
                <button
                    type="button"
                    class="button button-quiet preset"
                    data-testid=format!("preset-{value}")
                    aria-pressed=move || (amount_text.get() == pressed_value).to_string()
                    on:click=move |_| {
                        amount_text.set(click_value.clone());
                        field_error.set(None);
                    }
                >
                    {move || format!("{label_value} {}", currency())}
                </button>
            }
        })
        .collect_view();
    let has_presets = !limits.presets.is_empty();
    // The selected wallet's balance as it is now (it follows live changes).
    let all_wallets = portal.wallets;
    let balance_now = move || match all_wallets.get() {
        Load::Ready(list) => list
            .into_iter()
            .find(|w| w.id == wallet_id.get())
            .map(|w| format!("Balance now: {}", w.balance.formatted))
            .unwrap_or_default(),
        _ => String::new(),
    };
    let hint = format!(
        "Between {} and {}.",
        limits.minimum.normalize(),
        limits.maximum.normalize()
    );

    view! {
        <form class="card form" on:submit=submit novalidate>
            {selector}
            {has_presets.then(|| view! {
                <fieldset class="presets">
                    <legend>"Choose an amount"</legend>
                    <div class="preset-row">{presets}</div>
                </fieldset>
            })}
            <label for="buy-amount">{move || format!("Amount ({})", currency())}</label>
            <input
                id="buy-amount"
                type="text"
                inputmode="decimal"
                autocomplete="off"
                data-testid="buy-amount"
                aria-describedby="buy-amount-hint buy-amount-error"
                aria-invalid=move || field_error.get().is_some().to_string()
                prop:value=move || amount_text.get()
                on:input=move |ev| {
                    amount_text.set(event_target_value(&ev));
                    field_error.set(None);
                }
            />
            <p id="buy-amount-hint" class="muted small">{hint}</p>
            <p class="muted small" data-testid="buy-balance-now">{balance_now}</p>
            <p id="buy-amount-error" class="field-error" data-testid="buy-amount-error" aria-live="polite">
                {move || field_error.get()}
            </p>
            {move || error.get().map(|m| view! { <p class="notice notice-error" role="alert" data-testid="error">{m}</p> })}
            <button type="submit" class="button button-primary" data-testid="buy-submit" disabled=move || pending.get()>
                {move || if pending.get() { "Opening the payment page…" } else { "Continue to payment" }}
            </button>
        </form>
    }
}
