//! Small presentational pieces shared by the pages.

pub mod error_notice;
pub mod header;
