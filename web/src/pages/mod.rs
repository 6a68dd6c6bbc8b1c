//! One module per screen of the portal.

pub mod overview;
pub mod sign_in;
