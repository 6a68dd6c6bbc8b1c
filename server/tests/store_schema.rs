//! `store/schema.rs` is written by hand (diesel's CLI needs libmysqlclient): check it against the
//! migrated database, table by table: every column it names exists, and it names them all.

use diesel::{QueryDsl, QueryableByName, Table, sql_types::BigInt};
use diesel_async::RunQueryDsl;
use neruba::{store::schema, testing::TestDb};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

macro_rules! check_tables {
    ($conn:expr, $db:expr, $($table:ident),+ $(,)?) => {{
        let mut checked = Vec::new();
        $(
            let select = schema::$table::table.select(schema::$table::table::all_columns());
            let sql = diesel::debug_query::<diesel::mysql::Mysql, _>(&select).to_string();
            let sql = sql.split(" -- binds").next().unwrap().to_string();
            diesel::sql_query(format!("{sql} LIMIT 0"))
                .execute($conn)
                .await
                .unwrap_or_else(|e| panic!("{}: schema.rs names a column the table lacks: {e}", stringify!($table)));
            let named = sql.matches(&format!("`{}`.`", stringify!($table))).count();
            let counted: Vec<Count> = diesel::sql_query(format!(
                "SELECT COUNT(*) AS n FROM information_schema.columns WHERE table_schema = '{}' AND table_name = '{}'",
                $db,
                stringify!($table)
            ))
            .load($conn)
            .await
            .unwrap();
            assert_eq!(
                counted[0].n as usize,
                named,
                "{}: the table has columns schema.rs does not name",
                stringify!($table)
            );
            checked.push(stringify!($table));
        )+
        checked
    }};
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hand_written_schema_matches_the_migrated_tables() {
    let db = TestDb::create().await;
    let mut conn = neruba::db::connect(&db.url).await.unwrap();
    let checked = check_tables!(
        &mut conn,
        db.name,
        projects,
        api_keys,
        customers,
        billable_metrics,
        usage_events,
        wallets,
        ledger_accounts,
        ledger_transactions,
        ledger_postings,
        credit_lots,
        ledger_outbox,
        credit_units,
        plans,
        plan_versions,
        plan_charges,
        subscriptions,
        subscription_changes,
        invoices,
        invoice_lines,
        invoice_sequences,
        leases,
        coupons,
        coupon_redemptions,
        tax_rates,
        customer_tax_rates,
        invoice_adjustments,
        customer_event_seqs,
        credit_holds,
        payment_settings,
        payment_secrets,
        checkout_sessions,
        payments,
        webhook_events,
        stripe_customers,
        portal_sessions,
        portal_settings,
    );
    let tables: Vec<Count> = diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = '{}' \
         AND table_name <> '__diesel_schema_migrations'",
        db.name
    ))
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        tables[0].n as usize,
        checked.len(),
        "a migrated table is missing from this check"
    );
}

/// `node(id:)` looks every kind of object up by its public id, so no table with an `id` column
/// may need a scan for it: each has an index whose first column is `id` (the primary key, or
/// `ix_usage_events_id` for usage events, which are keyed by `seq`).
#[tokio::test(flavor = "multi_thread")]
async fn every_public_id_is_the_first_column_of_an_index() {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
    }
    let db = TestDb::create().await;
    let mut conn = neruba::db::connect(&db.url).await.unwrap();
    let unindexed: Vec<Name> = diesel::sql_query(format!(
        "SELECT c.table_name AS table_name FROM information_schema.columns c
         WHERE c.table_schema = '{0}' AND c.column_name = 'id'
           AND NOT EXISTS (SELECT 1 FROM information_schema.statistics s
                           WHERE s.table_schema = c.table_schema AND s.table_name = c.table_name
                             AND s.column_name = 'id' AND s.seq_in_index = 1)",
        db.name
    ))
    .load(&mut conn)
    .await
    .unwrap();
    let unindexed: Vec<String> = unindexed.into_iter().map(|n| n.table_name).collect();
    assert!(unindexed.is_empty(), "tables whose id needs a scan: {unindexed:?}");
    let with_id: Vec<Count> = diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM information_schema.columns WHERE table_schema = '{}' \
         AND column_name = 'id' AND table_name = 'usage_events'",
        db.name
    ))
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(with_id[0].n, 1, "usage_events.id is covered by the check above");
}
