//! Small pieces shared by the pages.

pub mod chart;
pub mod header;
pub mod lines;
pub mod states;
