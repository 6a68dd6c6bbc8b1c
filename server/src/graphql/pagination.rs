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

/// What a page costs against the complexity limit: its rows times what each row selects, so
/// fifty aliases of a 100-row page cannot pass for fifty cheap fields.
pub fn cost(first: Option<i32>, child_complexity: usize) -> usize {
    let rows = first.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
    1 + rows * child_complexity
}

/// What a list without paging costs per selected field (wallets of a customer, lots of a wallet,
/// postings of a transaction: usually a few rows, at most a few hundred).
pub const LIST_COST: usize = 5;

/// What a field that scans a whole project's ledger costs (`reconciliation`): more than half the
/// default limit, so one request runs it once.
pub const WHOLE_LEDGER_COST: usize = 3000;

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
