//! Stripe's API: the customer made on a customer's first checkout, and the Checkout Session.

use crate::{
    config::StripeConfig,
    error::Result,
    store::{Conn, payments::CheckoutRow},
};

/// A Checkout Session Stripe made: its id and the URL the customer is sent to.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub url: String,
}

/// Creates the Stripe Checkout Session of `checkout` (and the customer's Stripe customer on its
/// first checkout).
pub async fn create_session(_conn: &mut Conn, _config: &StripeConfig, _checkout: &CheckoutRow) -> Result<Session> {
    Err(super::provider_error(
        "the Stripe provider is not available in this build yet",
    ))
}
