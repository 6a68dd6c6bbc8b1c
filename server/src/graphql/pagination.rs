//! Relay-style cursor pagination, the one convention for every list that can grow.
//!
//! Pages are keyset pages: a query fetches `first + 1` rows after the previous page's last key to
//! learn whether another page follows. The key (a row id, an event's time and arrival, a group's
//! key) never reaches the client as it is: a cursor is the unpadded base64url of `v1:<kind>:<key>`,
//! made and read only here. The kind names the list, so a cursor from one list is refused by
//! another (`BAD_USER_INPUT` on `after`) instead of silently paging from an unrelated position,
//! and the version lets the key's shape change later without breaking cursors in flight.

use async_graphql::{
    OutputType,
    connection::{Connection, Edge},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::Error;

pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 100;

/// What a page costs against the complexity limit: its rows times what each row selects, so
/// fifty aliases of a 100-row page cannot pass for fifty cheap fields.
pub fn cost(first: Option<i32>, child_complexity: usize) -> usize {
    let rows = first.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
    1 + rows * child_complexity
}

/// What a field that scans a whole project's ledger costs (`reconciliation`): more than half the
/// default limit, so one request runs it once.
pub const WHOLE_LEDGER_COST: usize = 3000;
/// What `Customer.spendSeries` counts toward the complexity limit: it reads a query per
/// subscription and charge of the range, so a request holds a handful at most.
pub const SPEND_SERIES_COST: usize = 1000;

/// Validated `first`: the page size, 1 to [`MAX_PAGE`].
pub fn page_size(first: Option<i32>) -> Result<i64, Error> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(Error::invalid("first", format!("must be between 1 and {MAX_PAGE}")));
    }
    Ok(first as i64)
}

/// The order of a list that can be read either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, async_graphql::Enum)]
pub enum ListOrder {
    #[default]
    OldestFirst,
    NewestFirst,
}

/// Which list a cursor belongs to. Lists with the same rows in the same order share a kind
/// (`wallets` and `Customer.wallets`); any other list refuses the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    Project,
    ApiKey,
    Customer,
    Event,
    Wallet,
    Lot,
    LedgerEntry,
    UsageGroup,
    Plan,
    PlanVersion,
    Subscription,
    SubscriptionChange,
    Invoice,
    /// Invoices newest first: the same rows in the other order, so not the same cursors.
    InvoiceNewest,
    Coupon,
    TaxRate,
    Backtest,
    Adjustment,
    Hold,
    Payment,
}

impl CursorKind {
    fn tag(self) -> &'static str {
        match self {
            CursorKind::Project => "project",
            CursorKind::ApiKey => "apikey",
            CursorKind::Customer => "customer",
            CursorKind::Event => "event",
            CursorKind::Wallet => "wallet",
            CursorKind::Lot => "lot",
            CursorKind::LedgerEntry => "entry",
            CursorKind::UsageGroup => "group",
            CursorKind::Plan => "plan",
            CursorKind::PlanVersion => "planversion",
            CursorKind::Subscription => "subscription",
            CursorKind::SubscriptionChange => "subchange",
            CursorKind::Invoice => "invoice",
            CursorKind::InvoiceNewest => "invoicenewest",
            CursorKind::Coupon => "coupon",
            CursorKind::TaxRate => "taxrate",
            CursorKind::Backtest => "backtest",
            CursorKind::Adjustment => "adjustment",
            CursorKind::Hold => "hold",
            CursorKind::Payment => "payment",
        }
    }
}

const VERSION: &str = "v1";

/// A cursor longer than this is not one of ours (the longest keys are usage-group keys).
const MAX_CURSOR_LEN: usize = 16 * 1024;

/// The opaque cursor of the row at `key` in a list of `kind`.
pub fn encode(kind: CursorKind, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{VERSION}:{}:{key}", kind.tag()))
}

/// The key inside a cursor of a list of `kind`; anything else is `BAD_USER_INPUT` on `after`.
pub fn decode(kind: CursorKind, cursor: &str) -> Result<String, Error> {
    let malformed = || Error::invalid("after", "is not a cursor from this list");
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(malformed());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| malformed())?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let mut parts = text.splitn(3, ':');
    let (Some(VERSION), Some(tag), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    if tag != kind.tag() {
        return Err(Error::invalid("after", "is a cursor from another list"));
    }
    Ok(key.to_string())
}

/// `after` decoded, when given.
pub fn after_key(kind: CursorKind, after: Option<&str>) -> Result<Option<String>, Error> {
    after.map(|a| decode(kind, a)).transpose()
}

/// Builds the connection from up to `size + 1` rows fetched after `after`; `key` is a row's keyset
/// position, which becomes its cursor.
pub fn connection<R, N: OutputType>(
    kind: CursorKind,
    mut rows: Vec<R>,
    size: i64,
    after: Option<&str>,
    key: impl Fn(&R) -> String,
    node: impl Fn(R) -> N,
) -> Connection<String, N> {
    let has_next = rows.len() as i64 > size;
    rows.truncate(size as usize);
    let mut page = Connection::new(after.is_some(), has_next);
    page.edges.extend(
        rows.into_iter()
            .map(|row| Edge::new(encode(kind, &key(&row)), node(row))),
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(r: Result<String, Error>) -> (String, String) {
        match r {
            Err(Error::Invalid { field, message }) => (field, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn cursors_round_trip_every_kind_and_key() {
        let kinds = [
            CursorKind::Project,
            CursorKind::ApiKey,
            CursorKind::Customer,
            CursorKind::Event,
            CursorKind::Wallet,
            CursorKind::Lot,
            CursorKind::LedgerEntry,
            CursorKind::UsageGroup,
            CursorKind::Plan,
            CursorKind::PlanVersion,
            CursorKind::Subscription,
            CursorKind::SubscriptionChange,
            CursorKind::Invoice,
            CursorKind::InvoiceNewest,
            CursorKind::Coupon,
            CursorKind::TaxRate,
        ];
        for kind in kinds {
            for key in ["wal_01JX", "42", "1764547200000000.7", "", "a:b:c", "ünï/cødé+=?"] {
                let cursor = encode(kind, key);
                assert!(
                    cursor
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "{cursor} is not unpadded base64url"
                );
                assert!(!cursor.contains(key) || key.len() < 3, "{cursor} shows the key {key}");
                assert_eq!(decode(kind, &cursor).unwrap(), key);
            }
        }
    }

    #[test]
    fn a_cursor_from_another_list_is_refused_on_after() {
        let cursor = encode(CursorKind::Wallet, "wal_1");
        let (field, message) = refusal(decode(CursorKind::Lot, &cursor));
        assert_eq!(field, "after");
        assert!(message.contains("another list"), "{message}");
    }

    #[test]
    fn garbage_is_refused_on_after() {
        let other_version = URL_SAFE_NO_PAD.encode("v2:wallet:wal_1");
        let no_key = URL_SAFE_NO_PAD.encode("v1:wallet");
        let not_utf8 = URL_SAFE_NO_PAD.encode([0xff, 0xfe, b':']);
        let padded = format!("{}=", encode(CursorKind::Wallet, "wal_1"));
        let too_long = "A".repeat(MAX_CURSOR_LEN + 4);
        for garbage in [
            "",
            "garbage!",
            "wal_1",
            "12345",
            "-70000000000000000.1",
            other_version.as_str(),
            no_key.as_str(),
            not_utf8.as_str(),
            padded.as_str(),
            too_long.as_str(),
        ] {
            let (field, _) = refusal(decode(CursorKind::Wallet, garbage));
            assert_eq!(field, "after", "{garbage}");
        }
    }

    #[test]
    fn after_key_passes_absence_through() {
        assert_eq!(after_key(CursorKind::Project, None).unwrap(), None);
        let cursor = encode(CursorKind::Project, "prj_1");
        assert_eq!(
            after_key(CursorKind::Project, Some(&cursor)).unwrap().as_deref(),
            Some("prj_1")
        );
    }
}
