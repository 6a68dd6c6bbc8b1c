//! The ledger service against a real database: invariants after random sequences of operations
//! (proptest), grant consumption order, the expiry sweep, and concurrent charges.

mod common;

use chrono::{Duration, NaiveDateTime};
use neruba::{
    db,
    ledger::{
        WalletPolicy,
        holds::{self, Close, CloseRequest, HoldPosted, Reserve, ReserveRequest},
        reconcile::reconcile,
        service::{self, MoneyRequest, OpKind, Operation, Posted, WalletInput},
    },
    store::{self, ledger::WalletRow},
    testing::TestApp,
};
use rust_decimal::Decimal;

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

async fn wallet(app: &TestApp, project: &str, customer: &str, policy: WalletPolicy, limit: Option<&str>) -> WalletRow {
    wallet_in(app, project, customer, "USD", policy, limit).await
}

async fn wallet_in(
    app: &TestApp,
    project: &str,
    customer: &str,
    unit: &str,
    policy: WalletPolicy,
    limit: Option<&str>,
) -> WalletRow {
    let mut conn = db::get(&app.pool).await.unwrap();
    service::create_wallet(
        &mut conn,
        project,
        &WalletInput {
            customer_external_id: customer.into(),
            currency: unit.into(),
            policy: Some(policy),
            credit_limit: limit.map(str::to_string),
            ..WalletInput::default()
        },
    )
    .await
    .unwrap()
    .0
}

async fn op(app: &TestApp, project: &str, kind: OpKind, request: MoneyRequest) -> neruba::error::Result<Posted> {
    let mut conn = db::get(&app.pool).await.unwrap();
    let op = Operation::parse(kind, &request, "test")?;
    service::execute(&mut conn, project, &op).await
}

fn req(wallet: &WalletRow, amount: &str, key: &str) -> MoneyRequest {
    MoneyRequest {
        wallet_id: Some(wallet.id.clone()),
        amount: amount.into(),
        idempotency_key: key.into(),
        ..MoneyRequest::default()
    }
}

async fn reserve(
    app: &TestApp,
    project: &str,
    wallet: &WalletRow,
    amount: &str,
    key: &str,
    expires_in: i64,
) -> neruba::error::Result<HoldPosted> {
    let mut conn = db::get(&app.pool).await.unwrap();
    let op = Reserve::parse(
        &ReserveRequest {
            wallet_id: wallet.id.clone(),
            amount: amount.into(),
            expires_in,
            idempotency_key: key.into(),
            metadata: Some(serde_json::json!({ "job": key })),
        },
        "test",
    )?;
    holds::reserve(&mut conn, project, &op).await
}

/// Settles `amount` of the hold, or releases it when `amount` is `None`.
async fn close(
    app: &TestApp,
    project: &str,
    hold_id: &str,
    amount: Option<&str>,
    key: &str,
) -> neruba::error::Result<HoldPosted> {
    let mut conn = db::get(&app.pool).await.unwrap();
    let op = Close::parse(
        &CloseRequest {
            hold_id: hold_id.into(),
            amount: amount.map(str::to_string),
            idempotency_key: key.into(),
        },
        "test",
    )?;
    holds::close(&mut conn, project, &op).await
}

/// What a transaction put on the EXPIRED account (a hold's part drawn from a lot that expired).
async fn expired_part(app: &TestApp, transaction_id: &str) -> Decimal {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use neruba::store::schema::{ledger_accounts, ledger_postings};
    let mut conn = db::get(&app.pool).await.unwrap();
    let sum: Option<Decimal> = ledger_postings::table
        .inner_join(ledger_accounts::table)
        .filter(ledger_postings::transaction_id.eq(transaction_id))
        .filter(ledger_accounts::kind.eq("EXPIRED"))
        .select(diesel::dsl::sum(ledger_postings::amount))
        .first(&mut conn)
        .await
        .unwrap();
    sum.unwrap_or_default()
}

fn available(w: &WalletRow) -> Decimal {
    (w.balance - w.held).normalize()
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_reserve_settle_and_release_through_the_ledger() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    op(&app, &project, OpKind::TopUp, req(&w, "10", "t1")).await.unwrap();

    // A reserve leaves the balance alone and takes from what is available.
    let h1 = reserve(&app, &project, &w, "4", "r1", 3600).await.unwrap();
    assert!(!h1.replayed);
    assert_eq!(h1.hold.status, "ACTIVE");
    assert_eq!(h1.transaction.cause, "HOLD");
    assert_eq!(h1.wallet.balance.normalize(), d("10"));
    assert_eq!(h1.wallet.held.normalize(), d("4"));
    let err = op(&app, &project, OpKind::Charge, req(&w, "6.01", "c0"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "INSUFFICIENT_CREDITS");
    let charged = op(&app, &project, OpKind::Charge, req(&w, "6", "c1")).await.unwrap();
    assert_eq!(available(&charged.wallet), d("0"));
    let err = reserve(&app, &project, &w, "0.01", "r-none", 3600).await.unwrap_err();
    assert_eq!(err.code(), "INSUFFICIENT_CREDITS");

    // Settling 3 of 4 charges 3 and gives 1 back.
    let settled = close(&app, &project, &h1.hold.id, Some("3"), "s1").await.unwrap();
    assert_eq!(settled.transaction.cause, "HOLD_SETTLE");
    assert_eq!(settled.hold.status, "SETTLED");
    assert_eq!(settled.hold.settled_amount.map(|a| a.normalize()), Some(d("3")));
    assert_eq!(settled.wallet.balance.normalize(), d("1"));
    assert_eq!(settled.wallet.held.normalize(), d("0"));
    // Replays answer the original; a different amount under the key is a conflict; a second
    // settlement finds the hold settled.
    let again = close(&app, &project, &h1.hold.id, Some("3"), "s1").await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.transaction.id, settled.transaction.id);
    let err = close(&app, &project, &h1.hold.id, Some("2"), "s1").await.unwrap_err();
    assert_eq!(err.code(), "IDEMPOTENCY_CONFLICT");
    let err = close(&app, &project, &h1.hold.id, Some("1"), "s2").await.unwrap_err();
    assert_eq!(err.code(), "HOLD_NOT_ACTIVE");
    let again = reserve(&app, &project, &w, "4", "r1", 3600).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.hold.id, h1.hold.id);
    assert_eq!(again.hold.status, "SETTLED");
    let err = reserve(&app, &project, &w, "5", "r1", 3600).await.unwrap_err();
    assert_eq!(err.code(), "IDEMPOTENCY_CONFLICT");

    // REJECT: settling more than held is refused; releasing gives everything back.
    let h2 = reserve(&app, &project, &w, "1", "r2", 3600).await.unwrap();
    let err = close(&app, &project, &h2.hold.id, Some("1.5"), "s3").await.unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let released = close(&app, &project, &h2.hold.id, None, "rel2").await.unwrap();
    assert_eq!(released.hold.status, "RELEASED");
    assert_eq!(released.transaction.cause, "HOLD_RELEASE");
    assert_eq!(released.wallet.balance.normalize(), d("1"));
    assert_eq!(released.wallet.held.normalize(), d("0"));
    let err = close(&app, &project, &h2.hold.id, None, "rel3").await.unwrap_err();
    assert_eq!(err.code(), "HOLD_NOT_ACTIVE");

    // Bad input posts nothing.
    for (amount, expires_in) in [("0", 60), ("-1", 60), ("0.001", 60), ("1", 0), ("1", 31 * 24 * 3600)] {
        let err = reserve(
            &app,
            &project,
            &w,
            amount,
            &format!("bad-{amount}-{expires_in}"),
            expires_in,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{amount} {expires_in}");
    }
    let err = close(&app, &project, "hld_00000000000000000000000000", Some("1"), "s9")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    let other = app.create_project("Q").await;
    let err = close(&app, &other, &h2.hold.id, None, "s10").await.unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");

    // A hold that expired cannot be settled (the sweep releases it).
    let h3 = reserve(&app, &project, &w, "1", "r3", 1).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let err = close(&app, &project, &h3.hold.id, Some("1"), "s11").await.unwrap_err();
    assert_eq!(err.code(), "HOLD_NOT_ACTIVE");

    let mut conn = db::get(&app.pool).await.unwrap();
    let report = reconcile(&mut conn, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overdrawing_wallet_settles_overage_and_gets_repaid_overdraft_back_as_a_lot() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::AllowUntilLimit, Some("5")).await;
    op(&app, &project, OpKind::TopUp, req(&w, "10", "t1")).await.unwrap();
    let h = reserve(&app, &project, &w, "8", "r1", 3600).await.unwrap();
    // Overage: 8 held + 4 more drawn (2 from the lot, 2 from the overdraft).
    let settled = close(&app, &project, &h.hold.id, Some("12"), "s1").await.unwrap();
    assert_eq!(settled.wallet.balance.normalize(), d("-2"));
    assert_eq!(settled.wallet.held.normalize(), d("0"));
    // Past the limit, overage is refused like a charge.
    let h = reserve(&app, &project, &w, "1", "r2", 3600).await.unwrap();
    let err = close(&app, &project, &h.hold.id, Some("5"), "s2").await.unwrap_err();
    assert_eq!(err.code(), "INSUFFICIENT_CREDITS");
    // That hold drew from the overdraft (now 3 owed); a top-up of 5 repays it and leaves a lot of
    // 2 (balance 3 with the 1 held); releasing the hold then gives its 1 back as a new lot
    // (nothing is owed any more).
    let topped = op(&app, &project, OpKind::TopUp, req(&w, "5", "t2")).await.unwrap();
    assert_eq!(available(&topped.wallet), d("2"));
    let released = close(&app, &project, &h.hold.id, None, "rel").await.unwrap();
    assert_eq!(released.wallet.balance.normalize(), d("3"));
    assert_eq!(available(&released.wallet), d("3"));
    let lots = lot_remaining(&app, &w).await;
    assert!(
        lots.iter().any(|(t, r)| *t == released.transaction.id && *r == d("1")),
        "{lots:?}"
    );
    let mut conn = db::get(&app.pool).await.unwrap();
    let report = reconcile(&mut conn, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_expire_through_the_sweep_and_expired_lots_stay_expired() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    let now = store::now();
    op(
        &app,
        &project,
        OpKind::Grant,
        grant(&w, "5", "g1", Some(now + Duration::days(1)), 0),
    )
    .await
    .unwrap();
    op(&app, &project, OpKind::TopUp, req(&w, "5", "t1")).await.unwrap();
    // 8 held: the grant's 5 (it expires first) and 3 of the top-up.
    let h1 = reserve(&app, &project, &w, "8", "r1", 3600).await.unwrap();
    let mut conn = db::get(&app.pool).await.unwrap();
    assert!(service::sweep_expired(&mut conn, None, now).await.unwrap().is_empty());
    let swept = service::sweep_expired(&mut conn, None, now + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].cause, "HOLD_RELEASE");
    assert_eq!(swept[0].cause_id.as_deref(), Some(h1.hold.id.as_str()));
    let hold = holds::find_hold(&mut conn, &project, &h1.hold.id).await.unwrap();
    assert_eq!(hold.status, "EXPIRED");
    let stored = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
    assert_eq!((stored.balance.normalize(), stored.held.normalize()), (d("10"), d("0")));

    // Held across the grant's expiry: its part goes to EXPIRED when the hold ends, the rest back.
    let h2 = reserve(&app, &project, &w, "8", "r2", 2 * 24 * 3600).await.unwrap();
    let swept = service::sweep_expired(&mut conn, None, now + Duration::days(1) + Duration::seconds(1))
        .await
        .unwrap();
    assert!(swept.is_empty(), "the grant was all held: nothing to expire yet");
    let swept = service::sweep_expired(&mut conn, None, now + Duration::days(3))
        .await
        .unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].cause_id.as_deref(), Some(h2.hold.id.as_str()));
    assert_eq!(expired_part(&app, &swept[0].id).await, d("5"));
    let stored = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
    assert_eq!((stored.balance.normalize(), stored.held.normalize()), (d("5"), d("0")));
    let report = reconcile(&mut conn, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// Runs one step as a patient client would: a connection per step (100 sequences share the
/// pool, so one may not come within its timeout on a busy machine), and a step answered
/// `SERVICE_UNAVAILABLE` (the database kept reporting conflicts) sent again with the same
/// idempotency key, which replays it if it was stored.
macro_rules! patiently {
    ($pool:expr, |$c:ident| $body:expr) => {{
        loop {
            let Ok(mut pooled) = db::get(&$pool).await else {
                continue;
            };
            let $c = &mut *pooled;
            match $body {
                Err(e) if e.code() == "SERVICE_UNAVAILABLE" => continue,
                result => break result,
            }
        }
    }};
}

/// 100 concurrent sequences on one wallet topped up with 100: each reserves 2, then settles 1.5,
/// releases, or settles `last` (2, or 2.5 when overage is allowed; a refused overage is followed
/// by a release); every fifth also charges 0.5 directly. 200 asked of 100 (plus the limit): some
/// reserves are refused while others hold. The wallet ends at exactly 100 minus what was charged,
/// nothing held, and no answer ever showed `available` past the policy.
async fn hold_sequences(policy: WalletPolicy, limit: Option<&str>, last: &'static str) {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", policy, limit).await;
    let floor = -limit.map(d).unwrap_or_default();
    op(&app, &project, OpKind::TopUp, req(&w, "100", "t1")).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let app_pool = app.pool.clone();
            let project = project.clone();
            let w = w.clone();
            tokio::spawn(async move {
                let mut charged = Decimal::ZERO;
                let mut seen = Vec::new();
                if i % 5 == 0 {
                    let op = Operation::parse(OpKind::Charge, &req(&w, "0.5", &format!("c{i}")), "test").unwrap();
                    match patiently!(app_pool, |c| service::execute(c, &project, &op).await) {
                        Ok(p) => {
                            charged += d("0.5");
                            seen.push(p.wallet);
                        }
                        Err(e) => assert_eq!(e.code(), "INSUFFICIENT_CREDITS", "{e}"),
                    }
                }
                let op = Reserve::parse(
                    &ReserveRequest {
                        wallet_id: w.id.clone(),
                        amount: "2".into(),
                        expires_in: 3600,
                        idempotency_key: format!("r{i}"),
                        metadata: None,
                    },
                    "test",
                )
                .unwrap();
                let hold_id = match patiently!(app_pool, |c| holds::reserve(c, &project, &op).await) {
                    Ok(held) => {
                        seen.push(held.wallet);
                        Some(held.hold.id)
                    }
                    Err(e) => {
                        assert_eq!(e.code(), "INSUFFICIENT_CREDITS", "{e}");
                        None
                    }
                };
                if let Some(hold_id) = hold_id {
                    let amount = match i % 3 {
                        0 => Some("1.5"),
                        1 => None,
                        _ => Some(last),
                    };
                    let close = |amount: Option<&str>, key: String| {
                        Close::parse(
                            &CloseRequest {
                                hold_id: hold_id.clone(),
                                amount: amount.map(str::to_string),
                                idempotency_key: key,
                            },
                            "test",
                        )
                        .unwrap()
                    };
                    match patiently!(app_pool, |c| holds::close(c, &project, &close(amount, format!("s{i}")))
                        .await)
                    {
                        Ok(closed) => {
                            charged += amount.map(d).unwrap_or_default();
                            seen.push(closed.wallet);
                        }
                        Err(e) => {
                            // Only an overage can be refused; then the hold is released.
                            assert_eq!(e.code(), "INSUFFICIENT_CREDITS", "{e}");
                            let closed =
                                patiently!(app_pool, |c| holds::close(c, &project, &close(None, format!("rel{i}")))
                                    .await)
                                .unwrap();
                            seen.push(closed.wallet);
                        }
                    }
                }
                (charged, seen)
            })
        })
        .collect();
    let mut charged = Decimal::ZERO;
    for task in tasks {
        let (c, seen) = task.await.unwrap();
        charged += c;
        for wallet in seen {
            assert!(
                wallet.balance - wallet.held >= floor,
                "available past the policy: {wallet:?}"
            );
            assert!(wallet.held >= Decimal::ZERO);
        }
    }
    assert!(charged > Decimal::ZERO);
    let mut conn = db::get(&app.pool).await.unwrap();
    let stored = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
    assert_eq!(stored.balance, d("100") - charged);
    assert!(stored.balance >= floor);
    assert_eq!(stored.held, Decimal::ZERO);
    let report = reconcile(&mut conn, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_hold_sequences_end_at_the_exact_balance() {
    hold_sequences(WalletPolicy::Reject, None, "2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_hold_sequences_with_overage_stay_within_the_credit_limit() {
    hold_sequences(WalletPolicy::AllowUntilLimit, Some("10"), "2.5").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_below_what_a_hold_overdrew_is_refused() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::AllowUntilLimit, Some("50")).await;
    // Balance 0, held 40, all of it from the overdraft.
    reserve(&app, &project, &w, "40", "r1", 3600).await.unwrap();
    let mut conn = db::get(&app.pool).await.unwrap();
    let changes = service::WalletChanges {
        credit_limit: Some("10".into()),
        ..service::WalletChanges::default()
    };
    let err = service::update_wallet(&mut conn, &project, &w.id, &changes)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let changes = service::WalletChanges {
        credit_limit: Some("40".into()),
        ..service::WalletChanges::default()
    };
    service::update_wallet(&mut conn, &project, &w.id, &changes)
        .await
        .unwrap();
    let report = reconcile(&mut conn, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_names_a_hold_or_held_amount_that_disagrees_with_the_postings() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    op(&app, &project, OpKind::TopUp, req(&w, "10", "t1")).await.unwrap();
    let h = reserve(&app, &project, &w, "4", "r1", 3600).await.unwrap();
    let mut conn = db::get(&app.pool).await.unwrap();
    assert!(reconcile(&mut conn, None).await.unwrap().is_clean());
    let breaks = async |conn: &mut neruba::store::Conn| -> Vec<(String, String)> {
        reconcile(conn, None)
            .await
            .unwrap()
            .breaks
            .into_iter()
            .map(|b| (b.check.as_str().to_string(), b.subject))
            .collect()
    };
    diesel::sql_query(format!(
        "UPDATE credit_holds SET remaining = 3 WHERE id = '{}'",
        h.hold.id
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    let found = breaks(&mut conn).await;
    assert!(
        found.contains(&("HOLD_MISMATCH".into(), h.hold.id.clone())),
        "{found:?}"
    );
    diesel::sql_query(format!(
        "UPDATE credit_holds SET remaining = 4 WHERE id = '{}'",
        h.hold.id
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    diesel::sql_query(format!("UPDATE wallets SET held = 0 WHERE id = '{}'", w.id))
        .execute(&mut *conn)
        .await
        .unwrap();
    let found = breaks(&mut conn).await;
    assert!(found.contains(&("HOLD_MISMATCH".into(), w.id.clone())), "{found:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn top_up_charge_and_reconcile() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    let posted = op(&app, &project, OpKind::TopUp, req(&w, "10", "t1")).await.unwrap();
    assert_eq!(posted.wallet.balance, d("10"));
    let posted = op(&app, &project, OpKind::Charge, req(&w, "2.5", "c1")).await.unwrap();
    assert_eq!(posted.wallet.balance, d("7.5"));
    assert!(!posted.replayed);
    let again = op(&app, &project, OpKind::Charge, req(&w, "2.5", "c1")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.transaction.id, posted.transaction.id);
    let err = op(&app, &project, OpKind::Charge, req(&w, "3", "c1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "IDEMPOTENCY_CONFLICT");
    let err = op(&app, &project, OpKind::Charge, req(&w, "8", "c2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "INSUFFICIENT_CREDITS");
    let mut conn = db::get(&app.pool).await.unwrap();
    let report = reconcile(&mut conn, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions, 2);
}

fn grant(wallet: &WalletRow, amount: &str, key: &str, expires: Option<NaiveDateTime>, priority: i32) -> MoneyRequest {
    MoneyRequest {
        expires_at: expires,
        priority: Some(priority),
        ..req(wallet, amount, key)
    }
}

async fn lot_remaining(app: &TestApp, wallet: &WalletRow) -> Vec<(String, Decimal)> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use neruba::store::schema::credit_lots;
    let mut conn = db::get(&app.pool).await.unwrap();
    credit_lots::table
        .filter(credit_lots::wallet_id.eq(&wallet.id))
        .select((credit_lots::transaction_id, credit_lots::remaining))
        .order(credit_lots::id.asc())
        .load::<(String, Decimal)>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, r)| (t, r.normalize()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_are_consumed_soonest_expiry_then_priority_then_oldest() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    let now = store::now();
    let never = op(&app, &project, OpKind::TopUp, grant(&w, "10", "never", None, 0))
        .await
        .unwrap();
    let late = op(
        &app,
        &project,
        OpKind::Grant,
        grant(&w, "10", "late", Some(now + Duration::days(30)), 0),
    )
    .await
    .unwrap();
    let soon_p5 = op(
        &app,
        &project,
        OpKind::Grant,
        grant(&w, "10", "soon-p5", Some(now + Duration::days(7)), 5),
    )
    .await
    .unwrap();
    let soon_p1 = op(
        &app,
        &project,
        OpKind::Grant,
        grant(&w, "10", "soon-p1", Some(now + Duration::days(7)), 1),
    )
    .await
    .unwrap();
    let soon_p1_newer = op(
        &app,
        &project,
        OpKind::Grant,
        grant(&w, "10", "soon-p1-newer", Some(now + Duration::days(7)), 1),
    )
    .await
    .unwrap();

    // 25 = soon-p1 (10) + soon-p1-newer (10) + 5 of soon-p5.
    op(&app, &project, OpKind::Charge, req(&w, "25", "c1")).await.unwrap();
    let lots = lot_remaining(&app, &w).await;
    let remaining = |p: &Posted| lots.iter().find(|(t, _)| *t == p.transaction.id).unwrap().1;
    assert_eq!(remaining(&soon_p1), d("0"));
    assert_eq!(remaining(&soon_p1_newer), d("0"));
    assert_eq!(remaining(&soon_p5), d("5"));
    assert_eq!(remaining(&late), d("10"));
    assert_eq!(remaining(&never), d("10"));
    // 12 more: the rest of soon-p5, then 7 of the later-expiring grant before the top-up that never expires.
    op(&app, &project, OpKind::Charge, req(&w, "12", "c2")).await.unwrap();
    let lots = lot_remaining(&app, &w).await;
    let remaining = |p: &Posted| lots.iter().find(|(t, _)| *t == p.transaction.id).unwrap().1;
    assert_eq!(remaining(&soon_p5), d("0"));
    assert_eq!(remaining(&late), d("3"));
    assert_eq!(remaining(&never), d("10"));
    let mut conn = db::get(&app.pool).await.unwrap();
    assert!(reconcile(&mut conn, Some(&project)).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_expires_each_lot_remainder_as_its_own_transaction() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    let now = store::now();
    op(
        &app,
        &project,
        OpKind::Grant,
        grant(&w, "10", "g1", Some(now + Duration::days(1)), 0),
    )
    .await
    .unwrap();
    op(
        &app,
        &project,
        OpKind::Grant,
        grant(&w, "4", "g2", Some(now + Duration::days(2)), 0),
    )
    .await
    .unwrap();
    op(&app, &project, OpKind::TopUp, grant(&w, "5", "t1", None, 0))
        .await
        .unwrap();
    op(&app, &project, OpKind::Charge, req(&w, "3", "c1")).await.unwrap();

    let mut conn = db::get(&app.pool).await.unwrap();
    // Before the expiry nothing happens; after the first, one transaction of 7; then one of 4.
    assert!(service::sweep_expired(&mut conn, None, now).await.unwrap().is_empty());
    let first = service::sweep_expired(&mut conn, None, now + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].cause, "EXPIRY");
    assert_eq!(first[0].amount.normalize(), d("7"));
    assert_eq!(first[0].wallet_balance_after.unwrap().normalize(), d("9"));
    assert!(
        service::sweep_expired(&mut conn, None, now + Duration::days(1))
            .await
            .unwrap()
            .is_empty()
    );
    let second = service::sweep_expired(&mut conn, Some(&project), now + Duration::days(3))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    let w = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
    assert_eq!(w.balance.normalize(), d("5"));
    assert!(reconcile(&mut conn, None).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_charges_end_exactly_at_the_credit_limit() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::AllowUntilLimit, Some("5")).await;
    op(&app, &project, OpKind::TopUp, req(&w, "20", "t1")).await.unwrap();
    // 50 charges of 0.7 = 35 asked; 20 + 5 of credit = 25 available: 35 fit (24.5), the rest are refused.
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let pool = app.pool.clone();
            let project = project.clone();
            let request = req(&w, "0.7", &format!("c{i}"));
            tokio::spawn(async move {
                let mut conn = db::get(&pool).await.unwrap();
                let op = Operation::parse(OpKind::Charge, &request, "test").unwrap();
                service::execute(&mut conn, &project, &op).await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), "INSUFFICIENT_CREDITS", "{e}"),
        }
    }
    assert_eq!(ok, 35);
    let mut conn = db::get(&app.pool).await.unwrap();
    let w = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
    assert_eq!(w.balance.normalize(), d("-4.5"));
    let report = reconcile(&mut conn, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions, 36);
}

#[derive(Debug, Clone)]
enum Step {
    TopUp(Decimal),
    Grant(Decimal, Option<i64>, i32),
    Charge(Decimal),
    Adjust(Decimal),
    Sweep(i64),
    Replay(usize),
    WriteOff(Decimal),
    /// Reserve an amount for some days.
    Reserve(Decimal, i64),
    /// Settle one of the active holds: 0 settles 30% of it, 1 all of it, 2 one and a half times.
    Settle(usize, u8),
    Release(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let amount = || (1i64..5_000_000, prop_oneof![0u32..3, 10u32..13]).prop_map(|(n, scale)| Decimal::new(n, scale));
    prop_oneof![
        2 => amount().prop_map(Step::TopUp),
        2 => (amount(), prop::option::of(1i64..10), -2i32..3).prop_map(|(a, e, p)| Step::Grant(a, e, p)),
        4 => amount().prop_map(Step::Charge),
        1 => (amount(), any::<bool>()).prop_map(|(a, neg)| Step::Adjust(if neg { -a } else { a })),
        1 => (1i64..12).prop_map(Step::Sweep),
        1 => (0usize..100).prop_map(Step::Replay),
        1 => amount().prop_map(Step::WriteOff),
        2 => (amount(), 1i64..10).prop_map(|(a, days)| Step::Reserve(a, days)),
        2 => (0usize..10, 0u8..3).prop_map(|(j, f)| Step::Settle(j, f)),
        1 => (0usize..10).prop_map(Step::Release),
    ]
}

/// Random sequences of top-ups, grants, charges, adjustments, write-offs, holds (reserve, settle,
/// release, expiry), sweeps and replays on one wallet: the balance and what is held follow a
/// model, what is available never passes the policy, and reconciliation stays clean.
#[test]
fn random_sequences_keep_every_ledger_invariant() {
    use proptest::{
        prelude::*,
        test_runner::{Config, TestRunner},
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(TestApp::spawn());
    let project = rt.block_on(app.create_project("Prop"));
    // The amounts have up to 12 decimal places: a credit unit that keeps them all.
    rt.block_on(common::declare_credit_unit(&app, &project, "MICRO", 12));
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let strategy = (prop::collection::vec(step(), 1..25), any::<bool>(), 0i64..100);
    runner
        .run(&strategy, |(steps, allow, limit)| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            rt.block_on(async {
                let limit = Decimal::from(limit);
                let w = if allow {
                    wallet_in(
                        &app,
                        &project,
                        &format!("c{n}"),
                        "MICRO",
                        WalletPolicy::AllowUntilLimit,
                        Some(&limit.to_string()),
                    )
                    .await
                } else {
                    wallet_in(&app, &project, &format!("c{n}"), "MICRO", WalletPolicy::Reject, None).await
                };
                let limit = if allow { limit } else { Decimal::ZERO };
                let mut balance = Decimal::ZERO;
                let mut held = Decimal::ZERO;
                let mut active: Vec<(String, Decimal)> = Vec::new();
                let mut sent: Vec<(OpKind, MoneyRequest, Decimal)> = Vec::new();
                let start = store::now();
                for (i, s) in steps.iter().enumerate() {
                    let key = format!("c{n}-k{i}");
                    let (kind, request) = match s {
                        Step::TopUp(a) => (OpKind::TopUp, req(&w, &a.to_string(), &key)),
                        Step::Grant(a, expires, priority) => (
                            OpKind::Grant,
                            grant(
                                &w,
                                &a.to_string(),
                                &key,
                                expires.map(|d| start + Duration::days(d)),
                                *priority,
                            ),
                        ),
                        Step::Charge(a) => (OpKind::Charge, req(&w, &a.to_string(), &key)),
                        Step::Adjust(a) => (
                            OpKind::Adjustment,
                            MoneyRequest {
                                description: Some("property test".into()),
                                ..req(&w, &a.to_string(), &key)
                            },
                        ),
                        Step::WriteOff(a) => (
                            OpKind::WriteOff,
                            MoneyRequest {
                                description: Some("property test".into()),
                                ..req(&w, &a.to_string(), &key)
                            },
                        ),
                        Step::Sweep(days) => {
                            let mut conn = db::get(&app.pool).await.unwrap();
                            let expired =
                                service::sweep_expired(&mut conn, Some(&project), start + Duration::days(*days))
                                    .await
                                    .unwrap();
                            // Earlier cases' wallets share the project: only this wallet's expiries count here.
                            for t in expired.iter().filter(|t| t.wallet_id.as_deref() == Some(w.id.as_str())) {
                                if t.cause == "EXPIRY" {
                                    balance -= t.amount;
                                    continue;
                                }
                                assert_eq!(t.cause, "HOLD_RELEASE");
                                let at = active
                                    .iter()
                                    .position(|(id, _)| Some(id) == t.cause_id.as_ref())
                                    .expect("an active hold");
                                let (_, remaining) = active.remove(at);
                                let lost = expired_part(&app, &t.id).await;
                                assert!(lost <= remaining);
                                balance -= lost;
                                held -= remaining;
                            }
                            continue;
                        }
                        Step::Reserve(a, days) => {
                            let allowed = balance - held - *a >= -limit;
                            match reserve(&app, &project, &w, &a.to_string(), &key, days * 86_400).await {
                                Ok(posted) => {
                                    assert!(allowed, "{s:?} on {balance} held {held} (limit {limit})");
                                    held += *a;
                                    active.push((posted.hold.id, *a));
                                    assert_eq!((posted.wallet.balance, posted.wallet.held), (balance, held));
                                }
                                Err(e) => {
                                    assert!(!allowed, "{s:?} on {balance} held {held}: {e}");
                                    assert_eq!(e.code(), "INSUFFICIENT_CREDITS");
                                }
                            }
                            assert!(balance - held >= -limit);
                            continue;
                        }
                        Step::Settle(j, _) | Step::Release(j) => {
                            if active.is_empty() {
                                continue;
                            }
                            let at = j % active.len();
                            let remaining = active[at].1;
                            let settled = match s {
                                Step::Settle(_, 0) => Some((remaining * d("0.3")).round_dp(12)),
                                Step::Settle(_, 1) => Some(remaining),
                                Step::Settle(..) => Some((remaining * d("1.5")).round_dp(12)),
                                _ => None,
                            };
                            if settled.is_some_and(|a| a.is_zero()) {
                                continue;
                            }
                            let wanted = settled.unwrap_or_default();
                            let overage = (wanted - remaining).max(Decimal::ZERO);
                            let allowed = overage.is_zero() || (allow && balance - held - overage >= -limit);
                            let amount = settled.map(|a| a.to_string());
                            match close(&app, &project, &active[at].0, amount.as_deref(), &key).await {
                                Ok(posted) => {
                                    assert!(allowed, "{s:?} of {remaining} on {balance} held {held}");
                                    let lost = expired_part(&app, &posted.transaction.id).await;
                                    assert!(lost <= remaining - wanted.min(remaining));
                                    balance -= wanted + lost;
                                    held -= remaining;
                                    active.remove(at);
                                    assert_eq!((posted.wallet.balance, posted.wallet.held), (balance, held));
                                }
                                Err(e) => {
                                    assert!(!allowed, "{s:?} of {remaining} on {balance} held {held}: {e}");
                                    let expected = if allow {
                                        "INSUFFICIENT_CREDITS"
                                    } else {
                                        "BAD_USER_INPUT"
                                    };
                                    assert_eq!(e.code(), expected);
                                }
                            }
                            assert!(balance - held >= -limit);
                            continue;
                        }
                        Step::Replay(j) => {
                            let Some((kind, request, balance_then)) = sent.get(*j % sent.len().max(1)).cloned() else {
                                continue;
                            };
                            let posted = op(&app, &project, kind, request).await.unwrap();
                            assert!(posted.replayed);
                            assert_eq!(posted.transaction.wallet_balance_after, Some(balance_then));
                            continue;
                        }
                    };
                    let signed = match s {
                        Step::Charge(a) => -*a,
                        Step::Adjust(a) => *a,
                        Step::TopUp(a) | Step::Grant(a, ..) | Step::WriteOff(a) => *a,
                        _ => unreachable!(),
                    };
                    // An overdrawn wallet has no lots left (credits, and what holds give back, repay
                    // the overdraft first), so what it owes is minus what is available.
                    let available = balance - held;
                    let owed = (-available).max(Decimal::ZERO);
                    let allowed = match s {
                        Step::WriteOff(a) => *a <= owed,
                        _ => signed > Decimal::ZERO || available + signed >= -limit,
                    };
                    match op(&app, &project, kind, request.clone()).await {
                        Ok(posted) => {
                            assert!(allowed, "{s:?} on {balance} (limit {limit}) should be refused");
                            balance += signed;
                            assert_eq!(posted.wallet.balance, balance, "after {s:?}");
                            sent.push((kind, request, balance));
                        }
                        Err(e) => {
                            assert!(!allowed, "{s:?} on {balance} (limit {limit}) refused: {e}");
                            let expected = if matches!(s, Step::WriteOff(_)) {
                                "BAD_USER_INPUT"
                            } else {
                                "INSUFFICIENT_CREDITS"
                            };
                            assert_eq!(e.code(), expected);
                        }
                    }
                    assert!(balance - held >= -limit);
                }
                let mut conn = db::get(&app.pool).await.unwrap();
                let stored = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
                assert_eq!(stored.balance, balance);
                assert_eq!(stored.held, held);
                let report = reconcile(&mut conn, Some(&project)).await.unwrap();
                assert!(report.is_clean(), "{report:?}");
            });
            Ok(())
        })
        .unwrap();
    let mut conn = rt.block_on(db::get(&app.pool)).unwrap();
    let report = rt.block_on(reconcile(&mut conn, None)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(report.transactions > 0);
    drop(conn);
    drop(app);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_duplicates_store_one_charge() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    op(&app, &project, OpKind::TopUp, req(&w, "10", "t")).await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let pool = app.pool.clone();
            let project = project.clone();
            let request = req(&w, "1", "same");
            tokio::spawn(async move {
                let mut conn = db::get(&pool).await.unwrap();
                let op = Operation::parse(OpKind::Charge, &request, "test").unwrap();
                service::execute(&mut conn, &project, &op).await.unwrap()
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut fresh = 0;
    for task in tasks {
        let posted = task.await.unwrap();
        ids.insert(posted.transaction.id);
        fresh += usize::from(!posted.replayed);
    }
    assert_eq!((ids.len(), fresh), (1, 1));
    let mut conn = db::get(&app.pool).await.unwrap();
    assert_eq!(
        service::find_wallet(&mut conn, &project, &w.id)
            .await
            .unwrap()
            .balance
            .normalize(),
        d("9")
    );
    // The same key on another wallet is a conflict, not a second charge.
    let other = wallet(&app, &project, "other", WalletPolicy::Reject, None).await;
    let err = op(&app, &project, OpKind::Charge, req(&other, "1", "same"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "IDEMPOTENCY_CONFLICT");
}

/// Charges named by customer and unit, racing on several wallets at once: no lost update on any
/// wallet's lots or balance (the snapshot is taken only after the wallet lock).
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_charges_on_many_wallets_lose_no_update() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let mut wallets = Vec::new();
    for c in 0..4 {
        let w = wallet(&app, &project, &format!("c{c}"), WalletPolicy::Reject, None).await;
        op(&app, &project, OpKind::TopUp, req(&w, "3", &format!("t{c}-a")))
            .await
            .unwrap();
        op(&app, &project, OpKind::Grant, req(&w, "7", &format!("t{c}-b")))
            .await
            .unwrap();
        wallets.push(w);
    }
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let pool = app.pool.clone();
            let project = project.clone();
            let request = MoneyRequest {
                customer_external_id: Some(format!("c{}", i % 4)),
                currency: Some("USD".into()),
                amount: "0.25".into(),
                idempotency_key: format!("k{i}"),
                ..MoneyRequest::default()
            };
            tokio::spawn(async move {
                let mut conn = db::get(&pool).await.unwrap();
                let op = Operation::parse(OpKind::Charge, &request, "test").unwrap();
                service::execute(&mut conn, &project, &op).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut conn = db::get(&app.pool).await.unwrap();
    for w in &wallets {
        let w = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
        assert_eq!(w.balance.normalize(), d("7.5"));
    }
    let report = reconcile(&mut conn, None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn old_outbox_rows_are_trimmed() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use neruba::store::{ledger as ledger_store, schema::ledger_outbox};
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    op(&app, &project, OpKind::TopUp, req(&w, "1", "t")).await.unwrap();
    let mut conn = db::get(&app.pool).await.unwrap();
    let count =
        async |conn: &mut neruba::store::Conn| ledger_outbox::table.count().get_result::<i64>(conn).await.unwrap();
    assert_eq!(count(&mut conn).await, 1);
    assert_eq!(
        ledger_store::delete_outbox_before(&mut conn, store::now() - Duration::hours(1), 100)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        ledger_store::delete_outbox_before(&mut conn, store::now() + Duration::seconds(1), 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&mut conn).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_retried_after_its_expiry_passed_still_replays() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    let request = grant(&w, "5", "g", Some(store::now() + Duration::milliseconds(400)), 0);
    let first = op(&app, &project, OpKind::Grant, request.clone()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let again = op(&app, &project, OpKind::Grant, request.clone()).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.transaction.id, first.transaction.id);
    // A new grant with that expiry is refused, naming the field.
    let err = op(
        &app,
        &project,
        OpKind::Grant,
        MoneyRequest {
            idempotency_key: "g2".into(),
            ..request
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, neruba::error::Error::Invalid { ref field, .. } if field == "expiresAt"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_wallets_for_a_new_customer_both_find_it() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    common::declare_credit_unit(&app, &project, "CREDITS", 2).await;
    common::declare_credit_unit(&app, &project, "GPU_HOURS", 6).await;
    for round in 0..5 {
        let customer = format!("new-{round}");
        let mut tasks = Vec::new();
        for currency in ["USD", "CREDITS", "EUR", "GPU_HOURS"] {
            let (pool, project, customer) = (app.pool.clone(), project.clone(), customer.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = db::get(&pool).await.unwrap();
                service::create_wallet(
                    &mut conn,
                    &project,
                    &WalletInput {
                        customer_external_id: customer,
                        currency: currency.into(),
                        ..WalletInput::default()
                    },
                )
                .await
            }));
        }
        for t in tasks {
            let created = t.await.unwrap();
            assert!(created.is_ok(), "round {round}: {created:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn balances_past_what_a_column_keeps_are_refused_not_500() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "whale", WalletPolicy::Reject, None).await;
    let top = "99999999999999";
    let mut refused = None;
    for i in 0..102 {
        match op(&app, &project, OpKind::TopUp, req(&w, top, &format!("t{i}"))).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (i, e) = refused.expect("the 101st top-up reaches 10^16");
    assert_eq!(i, 100, "100 top-ups stay below 10^16");
    assert_eq!(e.code(), "BAD_USER_INPUT", "{e:?}");
    let mut conn = db::get(&app.pool).await.unwrap();
    assert!(reconcile(&mut conn, None).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_in_the_wrong_currency_is_refused_not_replayed() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let w = wallet(&app, &project, "acme", WalletPolicy::Reject, None).await;
    op(&app, &project, OpKind::TopUp, req(&w, "10", "t1")).await.unwrap();
    let err = op(
        &app,
        &project,
        OpKind::TopUp,
        MoneyRequest {
            currency: Some("EUR".into()),
            ..req(&w, "10", "t1")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT", "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn conversion_rates_are_capped_so_money_values_always_fit() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    common::declare_credit_unit(&app, &project, "CREDITS", 0).await;
    let mut conn = db::get(&app.pool).await.unwrap();
    let input = |rate: &str| WalletInput {
        customer_external_id: "acme".into(),
        currency: "CREDITS".into(),
        rate_to_money: Some(rate.into()),
        money_currency: Some("USD".into()),
        ..WalletInput::default()
    };
    let err = service::create_wallet(&mut conn, &project, &input("1000001"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    service::create_wallet(&mut conn, &project, &input("1000000"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_names_a_posting_filed_under_another_wallet() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let a = wallet(&app, &project, "a", WalletPolicy::Reject, None).await;
    let b = wallet(&app, &project, "b", WalletPolicy::Reject, None).await;
    op(&app, &project, OpKind::TopUp, req(&a, "10", "ta")).await.unwrap();
    op(&app, &project, OpKind::TopUp, req(&b, "10", "tb")).await.unwrap();
    let mut conn = db::get(&app.pool).await.unwrap();
    assert!(reconcile(&mut conn, None).await.unwrap().is_clean());

    // Move a's lot posting under b and make both stored balances agree with that lie: the
    // balance checks (which sum by the posting's wallet) pass; the posting check does not.
    diesel::sql_query(format!(
        "UPDATE ledger_postings SET wallet_id = '{}' WHERE wallet_id = '{}'",
        b.id, a.id
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    diesel::sql_query(format!("UPDATE wallets SET balance = 0 WHERE id = '{}'", a.id))
        .execute(&mut *conn)
        .await
        .unwrap();
    diesel::sql_query(format!("UPDATE wallets SET balance = 20 WHERE id = '{}'", b.id))
        .execute(&mut *conn)
        .await
        .unwrap();
    let report = reconcile(&mut conn, None).await.unwrap();
    let checks: Vec<&str> = report.breaks.iter().map(|b| b.check.as_str()).collect();
    assert!(checks.contains(&"POSTING_MISMATCH"), "{report:?}");
    assert!(
        !checks.contains(&"WALLET_BALANCE_MISMATCH"),
        "the lie is consistent there: {report:?}"
    );
}
