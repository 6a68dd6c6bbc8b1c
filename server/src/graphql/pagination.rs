//! Relay-style cursor pagination, the one convention for every list that can grow.
//!
//! Pages are keyset pages: the cursor is the last row's (time-ordered) id, treated by clients as
//! opaque. A query fetches `first + 1` rows to learn whether another page follows.

use async_graphql::{
    OutputType,
    connection::{Connection, Edge},
};

use crate::error::Error;

pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 100;

/// Validated `first`: the page size, 1 to [`MAX_PAGE`].
pub fn page_size(first: Option<i32>) -> Result<i64, Error> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(Error::invalid("first", format!("must be between 1 and {MAX_PAGE}")));
    }
    Ok(first as i64)
}

/// Builds the connection from up to `size + 1` rows fetched after `after`.
pub fn connection<R, N: OutputType>(
    mut rows: Vec<R>,
    size: i64,
    after: Option<&str>,
    cursor: impl Fn(&R) -> String,
    node: impl Fn(R) -> N,
) -> Connection<String, N> {
    let has_next = rows.len() as i64 > size;
    rows.truncate(size as usize);
    let mut page = Connection::new(after.is_some(), has_next);
    page.edges
        .extend(rows.into_iter().map(|row| Edge::new(cursor(&row), node(row))));
    page
}
