//! One module per screen of the portal.

pub mod balance;
pub mod buy;
pub mod checkout_return;
pub mod ended;
pub mod invoice;
pub mod invoices;
pub mod not_found;
pub mod subscription;
pub mod usage;
