//! The ledger tables: `wallets`, `ledger_accounts`, `ledger_transactions`, `ledger_postings`,
//! `credit_lots`, `credit_holds`, `ledger_outbox`. Postings and transactions are only ever inserted.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use super::{
    Conn,
    schema::{
        credit_holds, credit_lots, customer_event_seqs, ledger_accounts, ledger_outbox, ledger_postings,
        ledger_transactions, wallets,
    },
};

#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable, Identifiable, Insertable)]
#[diesel(table_name = wallets, check_for_backend(diesel::mysql::Mysql))]
pub struct WalletRow {
    pub id: String,
    pub project_id: String,
    pub customer_id: String,
    pub customer_external_id: String,
    pub currency: String,
    pub rate_to_money: Option<Decimal>,
    pub money_currency: Option<String>,
    pub policy: String,
    pub credit_limit: Decimal,
    pub low_balance_threshold: Option<Decimal>,
    pub below_threshold: bool,
    pub balance: Decimal,
    /// What the wallet's active holds reserve (part of `balance`; not available to debits).
    pub held: Decimal,
    /// The sequence of the wallet's latest balance event (0 before the first).
    pub event_seq: u64,
    pub overdraft_account_id: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = ledger_accounts, check_for_backend(diesel::mysql::Mysql))]
pub struct AccountRow {
    pub id: String,
    pub project_id: String,
    pub currency: String,
    pub kind: String,
    pub code: String,
    pub wallet_id: Option<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = ledger_transactions, check_for_backend(diesel::mysql::Mysql))]
pub struct TransactionRow {
    pub id: String,
    pub project_id: String,
    pub wallet_id: Option<String>,
    pub cause: String,
    pub cause_id: Option<String>,
    pub currency: String,
    pub amount: Decimal,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    pub description: Option<String>,
    pub actor: String,
    pub corrects_transaction_id: Option<String>,
    pub wallet_balance_after: Option<Decimal>,
    /// The number of the transaction's balance event in its wallet's sequence.
    pub wallet_seq: Option<u64>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = ledger_postings, check_for_backend(diesel::mysql::Mysql))]
pub struct PostingRow {
    pub id: u64,
    pub transaction_id: String,
    pub project_id: String,
    pub account_id: String,
    pub wallet_id: Option<String>,
    pub lot_id: Option<String>,
    pub currency: String,
    pub amount: Decimal,
    pub wallet_balance_after: Option<Decimal>,
    pub cause: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = ledger_postings)]
pub struct NewPosting {
    pub transaction_id: String,
    pub project_id: String,
    pub account_id: String,
    pub wallet_id: Option<String>,
    pub lot_id: Option<String>,
    pub currency: String,
    pub amount: Decimal,
    pub wallet_balance_after: Option<Decimal>,
    pub cause: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable, Identifiable, Insertable)]
#[diesel(table_name = credit_lots, check_for_backend(diesel::mysql::Mysql))]
pub struct LotRow {
    pub id: String,
    pub project_id: String,
    pub wallet_id: String,
    pub account_id: String,
    pub source: String,
    pub original_amount: Decimal,
    pub remaining: Decimal,
    pub priority: i32,
    pub expires_at: Option<NaiveDateTime>,
    pub expired_at: Option<NaiveDateTime>,
    pub transaction_id: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = credit_holds, check_for_backend(diesel::mysql::Mysql))]
pub struct HoldRow {
    pub id: String,
    pub project_id: String,
    pub wallet_id: String,
    pub account_id: String,
    pub currency: String,
    pub amount: Decimal,
    pub remaining: Decimal,
    pub settled_amount: Option<Decimal>,
    pub status: String,
    pub draws: String,
    pub metadata: Option<String>,
    pub expires_at: NaiveDateTime,
    pub transaction_id: String,
    pub closing_transaction_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub closed_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = ledger_outbox, check_for_backend(diesel::mysql::Mysql))]
pub struct OutboxRow {
    pub id: u64,
    pub project_id: String,
    pub wallet_id: String,
    pub customer_id: Option<String>,
    pub wallet_seq: Option<u64>,
    pub customer_seq: Option<u64>,
    pub kind: String,
    pub payload: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = ledger_outbox)]
pub struct NewOutbox {
    pub project_id: String,
    pub wallet_id: String,
    pub customer_id: Option<String>,
    pub wallet_seq: Option<u64>,
    pub customer_seq: Option<u64>,
    pub kind: String,
    pub payload: String,
    pub created_at: NaiveDateTime,
}

// ---- wallets

pub async fn insert_wallet(conn: &mut Conn, row: &WalletRow) -> QueryResult<usize> {
    diesel::insert_or_ignore_into(wallets::table)
        .values(row)
        .execute(conn)
        .await
}

pub async fn find_wallet(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<WalletRow>> {
    wallets::table
        .filter(wallets::project_id.eq(project_id))
        .filter(wallets::id.eq(id))
        .select(WalletRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The wallets of `project_id` among `ids` (any order; absent ones are left out): the links to
/// wallets of a page of rows, in one query.
pub async fn find_wallets(conn: &mut Conn, project_id: &str, ids: &[&str]) -> QueryResult<Vec<WalletRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    wallets::table
        .filter(wallets::project_id.eq(project_id))
        .filter(wallets::id.eq_any(ids))
        .select(WalletRow::as_select())
        .load(conn)
        .await
}

pub async fn find_wallet_by_customer(
    conn: &mut Conn,
    project_id: &str,
    customer_external_id: &str,
    currency: &str,
) -> QueryResult<Option<WalletRow>> {
    wallets::table
        .filter(wallets::project_id.eq(project_id))
        .filter(wallets::customer_external_id.eq(customer_external_id))
        .filter(wallets::currency.eq(currency))
        .select(WalletRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the wallet row for the rest of the transaction: every change to a wallet's lots and
/// balance happens under this lock, so one wallet's money operations run one at a time.
pub async fn lock_wallet(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<WalletRow>> {
    wallets::table
        .filter(wallets::project_id.eq(project_id))
        .filter(wallets::id.eq(id))
        .select(WalletRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Locks a wallet named by its customer and unit (a locking read, so nothing read before it fixes
/// the transaction's snapshot; see `ledger::service`).
pub async fn lock_wallet_by_customer(
    conn: &mut Conn,
    project_id: &str,
    customer_external_id: &str,
    currency: &str,
) -> QueryResult<Option<WalletRow>> {
    wallets::table
        .filter(wallets::project_id.eq(project_id))
        .filter(wallets::customer_external_id.eq(customer_external_id))
        .filter(wallets::currency.eq(currency))
        .select(WalletRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The wallets of `project_id` among `ids` (absent ones are left out), in id order, read with
/// `lock` after the query (`FOR UPDATE`, `FOR UPDATE SKIP LOCKED`, or nothing for a plain read).
/// By the primary key, named: a scan of the table would lock other wallets too.
async fn wallets_among(conn: &mut Conn, project_id: &str, ids: &[&str], lock: &str) -> QueryResult<Vec<WalletRow>> {
    // Ids that are not plain name no wallet (Neruba makes none).
    let ids: Vec<&str> = ids.iter().copied().filter(|id| plain_id(id)).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(format!(
        "SELECT * FROM wallets FORCE INDEX (PRIMARY) WHERE id IN ({}) AND project_id = ? ORDER BY id {lock}",
        quoted(&ids)
    ))
    .bind::<diesel::sql_types::Varchar, _>(project_id)
    .load(conn)
    .await
}

/// Locks the wallets of `project_id` among `ids`, in id order, waiting for each: the wallet a
/// group of charges (`ledger::hot`) waits for.
pub async fn lock_wallets(conn: &mut Conn, project_id: &str, ids: &[&str]) -> QueryResult<Vec<WalletRow>> {
    wallets_among(conn, project_id, ids, "FOR UPDATE").await
}

/// Locks those of the project's wallets `ids` that no other transaction holds, in id order, and
/// skips the others without waiting (`SKIP LOCKED`): a group of charges takes along the wallets
/// it can have now and leaves the rest for later.
pub async fn lock_free_wallets(conn: &mut Conn, project_id: &str, ids: &[&str]) -> QueryResult<Vec<WalletRow>> {
    wallets_among(conn, project_id, ids, "FOR UPDATE SKIP LOCKED").await
}

/// Which of `ids` are wallets of the project (a plain read: wallets are never deleted).
pub async fn existing_wallet_ids(conn: &mut Conn, project_id: &str, ids: &[&str]) -> QueryResult<Vec<String>> {
    Ok(wallets_among(conn, project_id, ids, "")
        .await?
        .into_iter()
        .map(|w| w.id)
        .collect())
}

/// `'a', 'b'`: ids known to be plain ([`plain_id`]) as a list of SQL literals.
fn quoted(ids: &[&str]) -> String {
    ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ")
}

pub async fn update_wallet_balance(
    conn: &mut Conn,
    id: &str,
    balance: Decimal,
    held: Decimal,
    below_threshold: bool,
    event_seq: u64,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(wallets::table.find(id))
        .set((
            wallets::balance.eq(balance),
            wallets::held.eq(held),
            wallets::below_threshold.eq(below_threshold),
            wallets::event_seq.eq(event_seq),
            wallets::updated_at.eq(at),
        ))
        .execute(conn)
        .await
}

/// [`update_wallet_balance`] for several wallets in one statement (a group of charges). The
/// values are sent as SQL literals: ids only when they are plain `[A-Za-z0-9_]` (every id Neruba
/// makes; otherwise one statement per wallet), amounts as exact DECIMAL literals (never text:
/// see [`set_lot_remaining`]), so nothing is prepared afresh for each group size.
pub async fn update_wallet_balances(conn: &mut Conn, rows: &[WalletRow]) -> QueryResult<usize> {
    if rows.len() < 2 || !rows.iter().all(|w| plain_id(&w.id)) {
        let mut updated = 0;
        for w in rows {
            updated += update_wallet_balance(
                conn,
                &w.id,
                w.balance,
                w.held,
                w.below_threshold,
                w.event_seq,
                w.updated_at,
            )
            .await?;
        }
        return Ok(updated);
    }
    let case = |value: &dyn Fn(&WalletRow) -> String| {
        let mut sql = String::from("CASE id");
        for w in rows {
            sql.push_str(&format!(" WHEN '{}' THEN {}", w.id, value(w)));
        }
        sql.push_str(" END");
        sql
    };
    let ids: Vec<String> = rows.iter().map(|w| format!("'{}'", w.id)).collect();
    let sql = format!(
        "UPDATE wallets SET balance = {}, held = {}, below_threshold = {}, event_seq = {}, updated_at = {} WHERE id IN ({})",
        case(&|w| decimal_literal(w.balance)),
        case(&|w| decimal_literal(w.held)),
        case(&|w| u8::from(w.below_threshold).to_string()),
        case(&|w| w.event_seq.to_string()),
        case(&|w| datetime_literal(w.updated_at)),
        ids.join(", ")
    );
    diesel::sql_query(sql).execute(conn).await
}

/// Whether an id can go into SQL text as a quoted literal as it is.
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An exact DECIMAL literal (`-12.5`): rust_decimal never writes an exponent.
fn decimal_literal(d: Decimal) -> String {
    d.to_string()
}

fn datetime_literal(t: NaiveDateTime) -> String {
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"))
}

/// Writes a wallet's policy, limit and threshold state (the caller holds the wallet lock).
pub async fn update_wallet_settings(conn: &mut Conn, wallet: &WalletRow) -> QueryResult<usize> {
    diesel::update(wallets::table.find(&wallet.id))
        .set((
            wallets::policy.eq(&wallet.policy),
            wallets::credit_limit.eq(wallet.credit_limit),
            wallets::low_balance_threshold.eq(wallet.low_balance_threshold),
            wallets::below_threshold.eq(wallet.below_threshold),
            wallets::updated_at.eq(wallet.updated_at),
        ))
        .execute(conn)
        .await
}

/// Keyset page of a project's wallets (optionally one customer's), oldest first.
pub async fn list_wallets(
    conn: &mut Conn,
    project_id: &str,
    customer_external_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<WalletRow>> {
    let mut query = wallets::table
        .filter(wallets::project_id.eq(project_id))
        .select(WalletRow::as_select())
        .order(wallets::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(customer) = customer_external_id {
        query = query.filter(wallets::customer_external_id.eq(customer.to_string()));
    }
    if let Some(after) = after {
        query = query.filter(wallets::id.gt(after.to_string()));
    }
    query.load(conn).await
}

/// Wallets with a lot whose expiry passed at `now` and that the sweep has not expired yet.
pub async fn wallets_with_expired_lots(
    conn: &mut Conn,
    project_id: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<Vec<(String, String)>> {
    let mut query = credit_lots::table
        .filter(credit_lots::expired_at.is_null())
        .filter(credit_lots::expires_at.le(now))
        .select((credit_lots::project_id, credit_lots::wallet_id))
        .distinct()
        .order(credit_lots::wallet_id.asc())
        .into_boxed();
    if let Some(project_id) = project_id {
        query = query.filter(credit_lots::project_id.eq(project_id.to_string()));
    }
    query.load(conn).await
}

// ---- accounts

pub async fn find_account(
    conn: &mut Conn,
    project_id: &str,
    currency: &str,
    code: &str,
) -> QueryResult<Option<AccountRow>> {
    ledger_accounts::table
        .filter(ledger_accounts::project_id.eq(project_id))
        .filter(ledger_accounts::currency.eq(currency))
        .filter(ledger_accounts::code.eq(code))
        .select(AccountRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_account_by_id(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<AccountRow>> {
    ledger_accounts::table
        .filter(ledger_accounts::project_id.eq(project_id))
        .filter(ledger_accounts::id.eq(id))
        .select(AccountRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Inserts the account unless its code exists (concurrent creators settle on the unique index).
/// The accounts of a project in one unit with these codes (those that exist), in one query.
pub async fn find_accounts(
    conn: &mut Conn,
    project_id: &str,
    currency: &str,
    codes: &[&str],
) -> QueryResult<Vec<AccountRow>> {
    ledger_accounts::table
        .filter(ledger_accounts::project_id.eq(project_id))
        .filter(ledger_accounts::currency.eq(currency))
        .filter(ledger_accounts::code.eq_any(codes))
        .select(AccountRow::as_select())
        .load(conn)
        .await
}

pub async fn insert_account_missing(conn: &mut Conn, row: &AccountRow) -> QueryResult<usize> {
    diesel::insert_or_ignore_into(ledger_accounts::table)
        .values(row)
        .execute(conn)
        .await
}

// ---- transactions and postings

pub async fn insert_transaction(conn: &mut Conn, row: &TransactionRow) -> QueryResult<usize> {
    diesel::insert_into(ledger_transactions::table)
        .values(row)
        .execute(conn)
        .await
}

/// Several transactions in one multi-row `INSERT` (a group of charges). Two or more go as SQL
/// text with literal values, as usage ingest sends its events: diesel prepares a multi-row insert
/// afresh for each size, and a group's 500 rows would be 7,500 bound parameters.
pub async fn insert_transactions(conn: &mut Conn, rows: &[TransactionRow]) -> QueryResult<usize> {
    if rows.len() < 2 {
        return match rows.first() {
            Some(row) => insert_transaction(conn, row).await,
            None => Ok(0),
        };
    }
    let mut sql = String::with_capacity(200 + rows.len() * 500);
    sql.push_str(
        "INSERT INTO ledger_transactions (id, project_id, wallet_id, cause, cause_id, currency, amount, \
         idempotency_key, request_hash, description, actor, corrects_transaction_id, wallet_balance_after, \
         wallet_seq, created_at) VALUES ",
    );
    for (i, r) in rows.iter().enumerate() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        let mut values = Values(&mut sql);
        values.text(Some(&r.id));
        values.text(Some(&r.project_id));
        values.text(r.wallet_id.as_deref());
        values.text(Some(&r.cause));
        values.text(r.cause_id.as_deref());
        values.text(Some(&r.currency));
        values.decimal(Some(r.amount));
        values.text(r.idempotency_key.as_deref());
        values.bytes(r.request_hash.as_deref());
        values.text(r.description.as_deref());
        values.text(Some(&r.actor));
        values.text(r.corrects_transaction_id.as_deref());
        values.decimal(r.wallet_balance_after);
        values.number(r.wallet_seq);
        values.time(r.created_at);
        sql.push(')');
    }
    execute_text(conn, &sql, rows.len()).await
}

/// Values of a row as SQL literals: text and bytes in hex (no quoting to get wrong), exact
/// DECIMAL literals, numbers, `'YYYY-MM-DD hh:mm:ss.ffffff'`; comma-separated.
struct Values<'a>(&'a mut String);

impl Values<'_> {
    fn next(&mut self) {
        if !self.0.ends_with('(') {
            self.0.push_str(", ");
        }
    }

    fn text(&mut self, value: Option<&str>) {
        self.bytes(value.map(str::as_bytes));
    }

    fn bytes(&mut self, value: Option<&[u8]>) {
        self.next();
        match value {
            Some(b) => super::usage_events::push_hex(self.0, b),
            None => self.0.push_str("NULL"),
        }
    }

    fn decimal(&mut self, value: Option<Decimal>) {
        self.next();
        match value {
            Some(d) => self.0.push_str(&decimal_literal(d)),
            None => self.0.push_str("NULL"),
        }
    }

    fn number(&mut self, value: Option<u64>) {
        self.next();
        match value {
            Some(n) => self.0.push_str(&n.to_string()),
            None => self.0.push_str("NULL"),
        }
    }

    fn time(&mut self, value: NaiveDateTime) {
        self.next();
        super::usage_events::push_time(self.0, value);
    }
}

/// Runs an `INSERT` sent as text (not prepared) and checks it wrote `expected` rows.
async fn execute_text(conn: &mut Conn, sql: &str, expected: usize) -> QueryResult<usize> {
    use diesel_async::SimpleAsyncConnection;
    conn.batch_execute(sql).await?;
    Ok(expected)
}

/// The transaction recorded under an idempotency key. A plain read, on purpose: a locking read
/// of an absent key takes a gap lock, and two charges on different wallets whose new keys fall in
/// one gap would deadlock on insert. Read after the wallet lock, the snapshot already holds every
/// earlier request on that wallet; a concurrent duplicate on another wallet meets the unique index
/// on insert and is retried.
pub async fn find_transaction_by_key(
    conn: &mut Conn,
    project_id: &str,
    key: &str,
) -> QueryResult<Option<TransactionRow>> {
    ledger_transactions::table
        .filter(ledger_transactions::project_id.eq(project_id))
        .filter(ledger_transactions::idempotency_key.eq(key))
        .select(TransactionRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The transactions recorded under any of `keys` (one query for a group of charges; a plain
/// read after the wallet locks, as [`find_transaction_by_key`]).
pub async fn find_transactions_by_keys(
    conn: &mut Conn,
    project_id: &str,
    keys: &[&str],
) -> QueryResult<Vec<TransactionRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    ledger_transactions::table
        .filter(ledger_transactions::project_id.eq(project_id))
        .filter(ledger_transactions::idempotency_key.eq_any(keys))
        .select(TransactionRow::as_select())
        .load(conn)
        .await
}

pub async fn find_transaction(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<TransactionRow>> {
    ledger_transactions::table
        .filter(ledger_transactions::project_id.eq(project_id))
        .filter(ledger_transactions::id.eq(id))
        .select(TransactionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn insert_postings(conn: &mut Conn, rows: &[NewPosting]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    if rows.len() > 2 {
        // A group's postings: as text, see `insert_transactions`.
        let mut sql = String::with_capacity(200 + rows.len() * 300);
        sql.push_str(
            "INSERT INTO ledger_postings (transaction_id, project_id, account_id, wallet_id, lot_id, currency, \
             amount, wallet_balance_after, cause, created_at) VALUES ",
        );
        for (i, r) in rows.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            let mut values = Values(&mut sql);
            values.text(Some(&r.transaction_id));
            values.text(Some(&r.project_id));
            values.text(Some(&r.account_id));
            values.text(r.wallet_id.as_deref());
            values.text(r.lot_id.as_deref());
            values.text(Some(&r.currency));
            values.decimal(Some(r.amount));
            values.decimal(r.wallet_balance_after);
            values.text(Some(&r.cause));
            values.time(r.created_at);
            sql.push(')');
        }
        return execute_text(conn, &sql, rows.len()).await;
    }
    diesel::insert_into(ledger_postings::table)
        .values(rows)
        .execute(conn)
        .await
}

/// Filters of the entry list.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub wallet_id: Option<String>,
    pub account_id: Option<String>,
    pub transaction_id: Option<String>,
    pub cause: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
}

/// The project of posting `id`, if it exists.
pub async fn posting_project(conn: &mut Conn, id: u64) -> QueryResult<Option<String>> {
    ledger_postings::table
        .find(id)
        .select(ledger_postings::project_id)
        .first(conn)
        .await
        .optional()
}

/// Posting `id` of `project_id`, with its transaction and account.
pub async fn find_entry(conn: &mut Conn, project_id: &str, id: u64) -> QueryResult<Option<Entry>> {
    let found = list_entries(conn, project_id, &EntryFilter::default(), id.checked_sub(1), 1).await?;
    Ok(found.into_iter().find(|(p, _, _)| p.id == id))
}

/// A posting with its transaction and account: an entry that explains itself.
pub type Entry = (PostingRow, TransactionRow, AccountRow);

/// Keyset page of a project's postings in posting order, with their transactions and accounts.
pub async fn list_entries(
    conn: &mut Conn,
    project_id: &str,
    filter: &EntryFilter,
    after: Option<u64>,
    limit: i64,
) -> QueryResult<Vec<Entry>> {
    let mut query = ledger_postings::table
        .inner_join(ledger_transactions::table)
        .inner_join(ledger_accounts::table)
        .filter(ledger_postings::project_id.eq(project_id.to_string()))
        .select((
            PostingRow::as_select(),
            TransactionRow::as_select(),
            AccountRow::as_select(),
        ))
        .order(ledger_postings::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(wallet_id) = &filter.wallet_id {
        query = query.filter(ledger_postings::wallet_id.eq(wallet_id.clone()));
    }
    if let Some(account_id) = &filter.account_id {
        query = query.filter(ledger_postings::account_id.eq(account_id.clone()));
    }
    if let Some(transaction_id) = &filter.transaction_id {
        query = query.filter(ledger_postings::transaction_id.eq(transaction_id.clone()));
    }
    if let Some(cause) = &filter.cause {
        query = query.filter(ledger_postings::cause.eq(cause.clone()));
    }
    if let Some(from) = filter.from {
        query = query.filter(ledger_postings::created_at.ge(from));
    }
    if let Some(until) = filter.until {
        query = query.filter(ledger_postings::created_at.lt(until));
    }
    if let Some(after) = after {
        query = query.filter(ledger_postings::id.gt(after));
    }
    query.load(conn).await
}

// ---- lots

pub async fn insert_lot(conn: &mut Conn, row: &LotRow) -> QueryResult<usize> {
    diesel::insert_into(credit_lots::table).values(row).execute(conn).await
}

/// Lot `id` of `project_id`, with its wallet's unit (the lot's row does not repeat it).
pub async fn find_lot(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<(LotRow, String)>> {
    credit_lots::table
        .inner_join(wallets::table)
        .filter(credit_lots::project_id.eq(project_id))
        .filter(credit_lots::id.eq(id))
        .select((LotRow::as_select(), wallets::currency))
        .first(conn)
        .await
        .optional()
}

/// The wallet's lots that still hold something and have not been expired by the sweep. A plain
/// read: inside a money transaction it runs after the wallet lock, so its snapshot is current
/// (locking the lots would take gap locks that collide with other wallets' new lots).
/// The wallet's open lots, locked: for money operations under the wallet's lock, which must see
/// the latest commit whatever the transaction read before (InnoDB's plain reads see the snapshot
/// taken at the transaction's first plain read).
pub async fn lock_open_lots(conn: &mut Conn, wallet_id: &str) -> QueryResult<Vec<LotRow>> {
    credit_lots::table
        .filter(credit_lots::wallet_id.eq(wallet_id))
        .filter(credit_lots::remaining.gt(Decimal::ZERO))
        .filter(credit_lots::expired_at.is_null())
        .select(LotRow::as_select())
        .order(credit_lots::id.asc())
        .for_update()
        .load(conn)
        .await
}

/// Every lot of the wallets among `wallet_ids` that the sweep has not expired (open lots, those
/// whose expiry passed, and spent ones that never expire), locked, by wallet then id: a group of
/// charges reads what [`expired_lots`] and [`lock_open_lots`] read for one wallet, in one query.
/// Through `ix_credit_lots_wallet_open`, named: on a small table the optimizer may prefer the
/// primary key, and a locking scan in id order would lock other wallets' lots (migration 000016).
pub async fn lock_unexpired_lots_of(conn: &mut Conn, wallet_ids: &[&str]) -> QueryResult<Vec<LotRow>> {
    let ids: Vec<&str> = wallet_ids.iter().copied().filter(|id| plain_id(id)).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(format!(
        "SELECT * FROM credit_lots FORCE INDEX (ix_credit_lots_wallet_open) \
         WHERE wallet_id IN ({}) AND expired_at IS NULL ORDER BY wallet_id, id FOR UPDATE",
        quoted(&ids)
    ))
    .load(conn)
    .await
}

/// The wallet's open lots as of the reader's snapshot (previews).
pub async fn open_lots(conn: &mut Conn, wallet_id: &str) -> QueryResult<Vec<LotRow>> {
    credit_lots::table
        .filter(credit_lots::wallet_id.eq(wallet_id))
        .filter(credit_lots::remaining.gt(Decimal::ZERO))
        .filter(credit_lots::expired_at.is_null())
        .select(LotRow::as_select())
        .order(credit_lots::id.asc())
        .load(conn)
        .await
}

/// Keyset page of the wallet's open lots (as [`open_lots`]), oldest first: by id, which is
/// time-ordered.
pub async fn list_open_lots(
    conn: &mut Conn,
    wallet_id: &str,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<LotRow>> {
    let mut query = credit_lots::table
        .filter(credit_lots::wallet_id.eq(wallet_id.to_string()))
        .filter(credit_lots::remaining.gt(Decimal::ZERO))
        .filter(credit_lots::expired_at.is_null())
        .select(LotRow::as_select())
        .order(credit_lots::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(credit_lots::id.gt(after.to_string()));
    }
    query.load(conn).await
}

/// The wallet's unexpired lots whose expiry passed at `now`, locked (see [`lock_open_lots`]).
pub async fn expired_lots(conn: &mut Conn, wallet_id: &str, now: NaiveDateTime) -> QueryResult<Vec<LotRow>> {
    credit_lots::table
        .filter(credit_lots::wallet_id.eq(wallet_id))
        .filter(credit_lots::expired_at.is_null())
        .filter(credit_lots::expires_at.le(now))
        .select(LotRow::as_select())
        .order(credit_lots::id.asc())
        .for_update()
        .load(conn)
        .await
}

/// Sets a lot's remainder to a value computed in Rust. Never `remaining + ?` in SQL: diesel binds a
/// `Decimal` as text, and MariaDB does arithmetic between DECIMAL and text in DOUBLE.
pub async fn set_lot_remaining(conn: &mut Conn, id: &str, remaining: Decimal) -> QueryResult<usize> {
    diesel::update(credit_lots::table.find(id))
        .set(credit_lots::remaining.eq(remaining))
        .execute(conn)
        .await
}

/// [`set_lot_remaining`] for several lots in one statement (values as literals, as
/// [`update_wallet_balances`]).
pub async fn set_lots_remaining(conn: &mut Conn, lots: &[(&str, Decimal)]) -> QueryResult<usize> {
    if lots.len() < 2 || !lots.iter().all(|(id, _)| plain_id(id)) {
        let mut updated = 0;
        for (id, remaining) in lots {
            updated += set_lot_remaining(conn, id, *remaining).await?;
        }
        return Ok(updated);
    }
    let mut sql = String::from("UPDATE credit_lots SET remaining = CASE id");
    for (id, remaining) in lots {
        sql.push_str(&format!(" WHEN '{id}' THEN {}", decimal_literal(*remaining)));
    }
    let ids: Vec<String> = lots.iter().map(|(id, _)| format!("'{id}'")).collect();
    sql.push_str(&format!(" END WHERE id IN ({})", ids.join(", ")));
    diesel::sql_query(sql).execute(conn).await
}

pub async fn mark_lot_expired(conn: &mut Conn, id: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(credit_lots::table.find(id))
        .set((credit_lots::remaining.eq(Decimal::ZERO), credit_lots::expired_at.eq(at)))
        .execute(conn)
        .await
}

/// The wallet's lots among `ids`, whatever they hold now, locked (the lots a hold drew from,
/// which a settlement or release gives back to).
pub async fn lock_lots(conn: &mut Conn, wallet_id: &str, ids: &[&str]) -> QueryResult<Vec<LotRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    credit_lots::table
        .filter(credit_lots::wallet_id.eq(wallet_id))
        .filter(credit_lots::id.eq_any(ids))
        .select(LotRow::as_select())
        .order(credit_lots::id.asc())
        .for_update()
        .load(conn)
        .await
}

// ---- holds

pub async fn insert_hold(conn: &mut Conn, row: &HoldRow) -> QueryResult<usize> {
    diesel::insert_into(credit_holds::table).values(row).execute(conn).await
}

/// Hold `id` of `project_id` as of the reader's snapshot.
pub async fn find_hold(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<HoldRow>> {
    credit_holds::table
        .filter(credit_holds::project_id.eq(project_id))
        .filter(credit_holds::id.eq(id))
        .select(HoldRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Hold `id` of `project_id`, locked (by primary key: no gap lock). Called under its wallet's lock.
pub async fn lock_hold(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<HoldRow>> {
    credit_holds::table
        .filter(credit_holds::project_id.eq(project_id))
        .filter(credit_holds::id.eq(id))
        .select(HoldRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Writes how a hold ended (the caller holds its wallet's lock).
pub async fn close_hold(conn: &mut Conn, hold: &HoldRow) -> QueryResult<usize> {
    diesel::update(credit_holds::table.find(&hold.id))
        .set((
            credit_holds::status.eq(&hold.status),
            credit_holds::remaining.eq(hold.remaining),
            credit_holds::settled_amount.eq(hold.settled_amount),
            credit_holds::closing_transaction_id.eq(&hold.closing_transaction_id),
            credit_holds::closed_at.eq(hold.closed_at),
        ))
        .execute(conn)
        .await
}

/// Keyset page of a wallet's holds (optionally in one status), oldest first (by id).
pub async fn list_holds(
    conn: &mut Conn,
    wallet_id: &str,
    status: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<HoldRow>> {
    let mut query = credit_holds::table
        .filter(credit_holds::wallet_id.eq(wallet_id.to_string()))
        .select(HoldRow::as_select())
        .order(credit_holds::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(credit_holds::status.eq(status.to_string()));
    }
    if let Some(after) = after {
        query = query.filter(credit_holds::id.gt(after.to_string()));
    }
    query.load(conn).await
}

/// Active holds whose expiry passed at `now` (of one project, or all): `(project, wallet, hold)`,
/// in wallet then hold order.
pub async fn expired_holds(
    conn: &mut Conn,
    project_id: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<Vec<(String, String, String)>> {
    let mut query = credit_holds::table
        .filter(credit_holds::status.eq(crate::ledger::HoldStatus::Active.as_str()))
        .filter(credit_holds::expires_at.le(now))
        .select((credit_holds::project_id, credit_holds::wallet_id, credit_holds::id))
        .order((credit_holds::wallet_id.asc(), credit_holds::id.asc()))
        .into_boxed();
    if let Some(project_id) = project_id {
        query = query.filter(credit_holds::project_id.eq(project_id.to_string()));
    }
    query.load(conn).await
}

// ---- outbox

pub async fn insert_outbox(conn: &mut Conn, rows: &[NewOutbox]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    if rows.len() > 2 {
        // A group's events: as text, see `insert_transactions`.
        let mut sql = String::with_capacity(200 + rows.len() * 600);
        sql.push_str(
            "INSERT INTO ledger_outbox (project_id, wallet_id, customer_id, wallet_seq, customer_seq, kind, \
             payload, created_at) VALUES ",
        );
        for (i, r) in rows.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            let mut values = Values(&mut sql);
            values.text(Some(&r.project_id));
            values.text(Some(&r.wallet_id));
            values.text(r.customer_id.as_deref());
            values.number(r.wallet_seq);
            values.number(r.customer_seq);
            values.text(Some(&r.kind));
            values.text(Some(&r.payload));
            values.time(r.created_at);
            sql.push(')');
        }
        return execute_text(conn, &sql, rows.len()).await;
    }
    diesel::insert_into(ledger_outbox::table)
        .values(rows)
        .execute(conn)
        .await
}

pub async fn outbox_after(conn: &mut Conn, after: u64, limit: i64) -> QueryResult<Vec<OutboxRow>> {
    ledger_outbox::table
        .filter(ledger_outbox::id.gt(after))
        .select(OutboxRow::as_select())
        .order(ledger_outbox::id.asc())
        .limit(limit)
        .load(conn)
        .await
}

/// Deletes outbox rows older than `before` (every tailer polls every 100 ms, so an old row has been
/// seen by all of them), at most `limit` at a time.
///
/// The cut is found by a plain read and the delete goes by primary key: a `DELETE … WHERE
/// created_at < ?` has no index to use, scans and locks every row and the gap after the last, and
/// stalls every money transaction's outbox insert while it runs.
pub async fn delete_outbox_before(conn: &mut Conn, before: NaiveDateTime, limit: i64) -> QueryResult<usize> {
    let cut: Option<u64> = ledger_outbox::table
        .filter(ledger_outbox::created_at.lt(before))
        .select(diesel::dsl::max(ledger_outbox::id))
        .first(conn)
        .await?;
    let Some(cut) = cut else { return Ok(0) };
    diesel::sql_query("DELETE FROM ledger_outbox WHERE id <= ? ORDER BY id LIMIT ?")
        .bind::<diesel::sql_types::Unsigned<diesel::sql_types::BigInt>, _>(cut)
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .execute(conn)
        .await
}

/// Which events a stream follows: one wallet's (numbered by `wallet_seq`) or one customer's (by
/// `customer_seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKey {
    Wallet(String),
    Customer(String),
}

/// The events of `key` numbered `from` and up (at most `limit`, in order): what a resuming or
/// gap-filling subscriber reads. Filtered by the key before the limit, through the key's unique
/// index.
pub async fn stream_rows(
    conn: &mut Conn,
    project_id: &str,
    key: &StreamKey,
    from: u64,
    limit: i64,
) -> QueryResult<Vec<OutboxRow>> {
    let query = ledger_outbox::table
        .filter(ledger_outbox::project_id.eq(project_id.to_string()))
        .select(OutboxRow::as_select())
        .limit(limit)
        .into_boxed();
    match key {
        StreamKey::Wallet(id) => {
            query
                .filter(ledger_outbox::wallet_id.eq(id.clone()))
                .filter(ledger_outbox::wallet_seq.ge(from))
                .order(ledger_outbox::wallet_seq.asc())
                .load(conn)
                .await
        }
        StreamKey::Customer(id) => {
            query
                .filter(ledger_outbox::customer_id.eq(id.clone()))
                .filter(ledger_outbox::customer_seq.ge(from))
                .order(ledger_outbox::customer_seq.asc())
                .load(conn)
                .await
        }
    }
}

/// The sequence of the latest event of `key` (0 before the first).
pub async fn stream_head(conn: &mut Conn, project_id: &str, key: &StreamKey) -> QueryResult<u64> {
    let seq = match key {
        StreamKey::Wallet(id) => wallets::table
            .filter(wallets::project_id.eq(project_id))
            .filter(wallets::id.eq(id))
            .select(wallets::event_seq)
            .first::<u64>(conn)
            .await
            .optional()?,
        StreamKey::Customer(id) => customer_event_seqs::table
            .filter(customer_event_seqs::project_id.eq(project_id))
            .filter(customer_event_seqs::customer_id.eq(id))
            .select(customer_event_seqs::seq)
            .first::<u64>(conn)
            .await
            .optional()?,
    };
    Ok(seq.unwrap_or(0))
}

/// Takes the next `n` numbers of a customer's event sequence and answers the last one. The row
/// stays locked until the transaction ends, so a customer's numbers follow commit order: call it
/// as the transaction's last step.
pub async fn take_customer_seqs(conn: &mut Conn, project_id: &str, customer_id: &str, n: u64) -> QueryResult<u64> {
    diesel::sql_query(
        "INSERT INTO customer_event_seqs (customer_id, project_id, seq) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE seq = seq + VALUES(seq)",
    )
    .bind::<diesel::sql_types::Varchar, _>(customer_id)
    .bind::<diesel::sql_types::Varchar, _>(project_id)
    .bind::<diesel::sql_types::Unsigned<diesel::sql_types::BigInt>, _>(n)
    .execute(conn)
    .await?;
    customer_event_seqs::table
        .find(customer_id)
        .select(customer_event_seqs::seq)
        .for_update()
        .first(conn)
        .await
}

#[derive(QueryableByName)]
struct CustomerSeq {
    #[diesel(sql_type = diesel::sql_types::Varchar)]
    customer_id: String,
    #[diesel(sql_type = diesel::sql_types::Unsigned<diesel::sql_types::BigInt>)]
    seq: u64,
}

/// [`take_customer_seqs`] for several customers in two statements (a group of charges over many
/// customers): `wanted` is `(customer, project, n)` in customer id order, the order the rows are
/// locked in. Answers the last number taken for each, in the same order.
pub async fn take_customer_seqs_many(conn: &mut Conn, wanted: &[(&str, &str, u64)]) -> QueryResult<Vec<u64>> {
    if wanted.len() < 2 || !wanted.iter().all(|(c, p, _)| plain_id(c) && plain_id(p)) {
        let mut last = Vec::with_capacity(wanted.len());
        for (customer, project, n) in wanted {
            last.push(take_customer_seqs(conn, project, customer, *n).await?);
        }
        return Ok(last);
    }
    let values: Vec<String> = wanted.iter().map(|(c, p, n)| format!("('{c}', '{p}', {n})")).collect();
    diesel::sql_query(format!(
        "INSERT INTO customer_event_seqs (customer_id, project_id, seq) VALUES {} \
         ON DUPLICATE KEY UPDATE seq = seq + VALUES(seq)",
        values.join(", ")
    ))
    .execute(conn)
    .await?;
    let ids: Vec<String> = wanted.iter().map(|(c, _, _)| format!("'{c}'")).collect();
    let rows: Vec<CustomerSeq> = diesel::sql_query(format!(
        "SELECT customer_id, seq FROM customer_event_seqs WHERE customer_id IN ({}) FOR UPDATE",
        ids.join(", ")
    ))
    .load(conn)
    .await?;
    wanted
        .iter()
        .map(|(c, _, _)| {
            rows.iter()
                .find(|r| r.customer_id == *c)
                .map(|r| r.seq)
                .ok_or(diesel::result::Error::NotFound)
        })
        .collect()
}

pub async fn outbox_by_ids(conn: &mut Conn, ids: &[u64]) -> QueryResult<Vec<OutboxRow>> {
    ledger_outbox::table
        .filter(ledger_outbox::id.eq_any(ids))
        .select(OutboxRow::as_select())
        .order(ledger_outbox::id.asc())
        .load(conn)
        .await
}

pub async fn outbox_max_id(conn: &mut Conn) -> QueryResult<u64> {
    let max: Option<u64> = ledger_outbox::table
        .select(diesel::dsl::max(ledger_outbox::id))
        .first(conn)
        .await?;
    Ok(max.unwrap_or(0))
}

// ---- history: balances at a point, statements

/// A point in a wallet's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After every transaction stamped no later than this (stamps follow commit order per wallet).
    At(NaiveDateTime),
    /// After every transaction stamped before this.
    Before(NaiveDateTime),
    /// After the wallet's event with this number and those below it.
    Sequence(u64),
}

/// The wallet's balance at `point`: the running balance its last transaction up to there left,
/// found through an index (it does not sum the history); zero before the first.
pub async fn balance_as_of(conn: &mut Conn, wallet_id: &str, point: AsOf) -> QueryResult<Decimal> {
    use ledger_transactions as t;
    let base = t::table
        .filter(t::wallet_id.eq(wallet_id))
        .select(t::wallet_balance_after)
        .into_boxed();
    let found: Option<Option<Decimal>> = match point {
        AsOf::At(at) => base
            .filter(t::created_at.le(at))
            .order((t::created_at.desc(), t::wallet_seq.desc()))
            .first(conn)
            .await
            .optional()?,
        AsOf::Before(at) => base
            .filter(t::created_at.lt(at))
            .order((t::created_at.desc(), t::wallet_seq.desc()))
            .first(conn)
            .await
            .optional()?,
        AsOf::Sequence(seq) => {
            let numbered = t::table
                .filter(t::wallet_id.eq(wallet_id))
                .filter(t::wallet_seq.le(seq))
                .select(t::wallet_balance_after)
                .order(t::wallet_seq.desc())
                .first(conn)
                .await
                .optional()?;
            match numbered {
                Some(found) => Some(found),
                // Before the first numbered event: where the wallet stood when numbering began.
                None => base
                    .filter(t::wallet_seq.is_null())
                    .order(t::created_at.desc())
                    .first(conn)
                    .await
                    .optional()?,
            }
        }
    };
    Ok(found.flatten().unwrap_or(Decimal::ZERO))
}

/// What moved a wallet's balance in `[from, to)`: per cause, the sum of the wallet-side postings
/// and the number of transactions; and per lot, what charges drew from it (`None`: the
/// overdraft).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct CauseSum {
    #[diesel(sql_type = diesel::sql_types::Varchar)]
    pub cause: String,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub amount: Decimal,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub transactions: i64,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct LotSum {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Varchar>)]
    pub lot_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Varchar>)]
    pub source: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub amount: Decimal,
}

pub async fn statement_by_cause(
    conn: &mut Conn,
    wallet_id: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> QueryResult<Vec<CauseSum>> {
    diesel::sql_query(
        "SELECT cause, SUM(amount) AS amount, COUNT(DISTINCT transaction_id) AS transactions \
         FROM ledger_postings WHERE wallet_id = ? AND created_at >= ? AND created_at < ? \
         GROUP BY cause ORDER BY cause",
    )
    .bind::<diesel::sql_types::Varchar, _>(wallet_id)
    .bind::<diesel::sql_types::Datetime, _>(from)
    .bind::<diesel::sql_types::Datetime, _>(to)
    .load(conn)
    .await
}

/// Per lot (and the overdraft), what `cause` postings took from it in `[from, to)`.
pub async fn statement_by_lot(
    conn: &mut Conn,
    wallet_id: &str,
    cause: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> QueryResult<Vec<LotSum>> {
    diesel::sql_query(
        "SELECT p.lot_id, l.source, SUM(p.amount) AS amount \
         FROM ledger_postings p LEFT JOIN credit_lots l ON l.id = p.lot_id \
         WHERE p.wallet_id = ? AND p.cause = ? AND p.created_at >= ? AND p.created_at < ? \
         GROUP BY p.lot_id, l.source ORDER BY p.lot_id",
    )
    .bind::<diesel::sql_types::Varchar, _>(wallet_id)
    .bind::<diesel::sql_types::Varchar, _>(cause)
    .bind::<diesel::sql_types::Datetime, _>(from)
    .bind::<diesel::sql_types::Datetime, _>(to)
    .load(conn)
    .await
}
