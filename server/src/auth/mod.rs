//! Who is calling: the operator (admin token) or a project's API key with its scopes.
//! Every GraphQL resolver and HTTP handler asks the [`Principal`] before touching project data.

pub mod keys;
pub mod principal;

pub use keys::Scope;
pub use principal::{AuthError, Principal, authenticate};
