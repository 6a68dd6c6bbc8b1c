//! The ledger service against a real database: invariants after random sequences of operations
//! (proptest), grant consumption order, the expiry sweep, and concurrent charges.

mod common;

use chrono::{Duration, NaiveDateTime};
use neruba::{
    db,
    ledger::{
        WalletPolicy,
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
    ]
}

/// Random sequences of top-ups, grants, charges, adjustments, write-offs, sweeps and replays on one wallet:
/// the balance follows a model, never passes the policy, and reconciliation stays clean.
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
                                assert_eq!(t.cause, "EXPIRY");
                                balance -= t.amount;
                            }
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
                    // An overdrawn wallet has no lots left (credits repay the overdraft first), so
                    // what it owes is minus its balance.
                    let owed = (-balance).max(Decimal::ZERO);
                    let allowed = match s {
                        Step::WriteOff(a) => *a <= owed,
                        _ => signed > Decimal::ZERO || balance + signed >= -limit,
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
                    assert!(balance >= -limit);
                }
                let mut conn = db::get(&app.pool).await.unwrap();
                let stored = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
                assert_eq!(stored.balance, balance);
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
