//! Charges that share one transaction (`ledger::hot`): a group answers every charge as the same
//! charges run one by one in the same order would, keeps the ledger's invariants and sequences,
//! retries a group that hit a deadlock, falls back to one by one when a group cannot commit, and
//! commits a charge whose client went away exactly once.
//!
//! Each test makes its charges wait behind a wallet lock the test holds, so that they queue and
//! form one group in a known order (the first charge's own group, then all the others).

mod common;

use std::{future::Future, pin::Pin, time::Duration};

use diesel::sql_types::{BigInt, Text, Unsigned};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use neruba::{
    db,
    error::Error,
    ledger::{
        WalletPolicy,
        reconcile::reconcile,
        service::{self, MoneyRequest, OpKind, Operation, Posted, WalletInput},
    },
    store::ledger::WalletRow,
    testing::TestApp,
};
use rust_decimal::Decimal;

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

async fn funded_wallet(
    app: &TestApp,
    project: &str,
    customer: &str,
    policy: WalletPolicy,
    limit: Option<&str>,
    funds: &str,
) -> WalletRow {
    let mut conn = db::get(&app.pool).await.unwrap();
    let (wallet, _) = service::create_wallet(
        &mut conn,
        project,
        &WalletInput {
            customer_external_id: customer.into(),
            currency: "USD".into(),
            policy: Some(policy),
            credit_limit: limit.map(str::to_string),
            low_balance_threshold: Some("1".into()),
            ..WalletInput::default()
        },
    )
    .await
    .unwrap();
    let op = Operation::parse(
        OpKind::TopUp,
        &request(&wallet.id, funds, &format!("fund-{customer}")),
        "test",
    )
    .unwrap();
    service::execute(&mut conn, project, &op).await.unwrap();
    service::find_wallet(&mut conn, project, &wallet.id).await.unwrap()
}

fn request(wallet_id: &str, amount: &str, key: &str) -> MoneyRequest {
    MoneyRequest {
        wallet_id: Some(wallet_id.into()),
        amount: amount.into(),
        idempotency_key: key.into(),
        ..MoneyRequest::default()
    }
}

/// Holds `wallet`'s row lock on a connection of its own until dropped (or released).
struct WalletLock(AsyncMysqlConnection);

impl WalletLock {
    async fn take(app: &TestApp, wallet_id: &str) -> WalletLock {
        WalletLock::take_on(&app.db.as_ref().expect("the test owns its database").url, wallet_id).await
    }

    async fn take_on(url: &str, wallet_id: &str) -> WalletLock {
        let mut conn = AsyncMysqlConnection::establish(url).await.unwrap();
        conn.batch_execute("START TRANSACTION").await.unwrap();
        diesel::sql_query("SELECT id FROM wallets WHERE id = ? FOR UPDATE")
            .bind::<Text, _>(wallet_id)
            .execute(&mut conn)
            .await
            .unwrap();
        WalletLock(conn)
    }

    async fn release(mut self) {
        self.0.batch_execute("ROLLBACK").await.unwrap();
    }
}

type Answer = neruba::error::Result<Posted>;

/// Queues `charges` (wallet, amount, key) in this order behind `lock`, then releases it and
/// answers each charge's outcome, in the same order.
async fn queued(app: &TestApp, project: &str, lock: WalletLock, charges: &[(String, String, String)]) -> Vec<Answer> {
    let mut pending: Vec<Pin<Box<dyn Future<Output = Answer> + Send + '_>>> = Vec::new();
    for (wallet, amount, key) in charges {
        let op = Operation::parse(OpKind::Charge, &request(wallet, amount, key), "test").unwrap();
        let mut charge: Pin<Box<dyn Future<Output = Answer> + Send + '_>> =
            Box::pin(app.state.charges.charge(project, op));
        // One poll queues it (in this order); it then waits for its group.
        assert!(
            futures_util::poll!(charge.as_mut()).is_pending(),
            "a charge finished behind a held lock"
        );
        pending.push(charge);
    }
    lock.release().await;
    futures_util::future::join_all(pending).await
}

/// The same charges one by one, each its own transaction, on `wallet` of `project`.
async fn one_by_one(app: &TestApp, project: &str, charges: &[(String, String, String)]) -> Vec<Answer> {
    let mut conn = db::get(&app.pool).await.unwrap();
    let mut answers = Vec::new();
    for (wallet, amount, key) in charges {
        let op = Operation::parse(OpKind::Charge, &request(wallet, amount, key), "test").unwrap();
        answers.push(service::execute(&mut conn, project, &op).await);
    }
    answers
}

/// What a client sees of an answer: replayed or not, the amount and balance after, or the code.
fn seen(answer: &Answer) -> String {
    match answer {
        Ok(p) => format!(
            "{} {} -> {} (wallet {})",
            if p.replayed { "replayed" } else { "posted" },
            p.transaction.amount.normalize(),
            p.transaction.wallet_balance_after.unwrap().normalize(),
            p.wallet.balance.normalize(),
        ),
        Err(e) => format!("error {}", e.code()),
    }
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Seqs {
    #[diesel(sql_type = Unsigned<BigInt>)]
    n: u64,
    #[diesel(sql_type = Unsigned<BigInt>)]
    lowest: u64,
    #[diesel(sql_type = Unsigned<BigInt>)]
    highest: u64,
}

/// The wallet's transactions' numbers, its outbox rows' wallet and customer numbers: each must be
/// 1..=n without a gap, and as many as the wallet's `event_seq`.
async fn assert_sequences(app: &TestApp, wallet: &WalletRow) {
    let mut conn = db::get(&app.pool).await.unwrap();
    let now = service::find_wallet(&mut conn, &wallet.project_id, &wallet.id)
        .await
        .unwrap();
    for (what, sql) in [
        (
            "outbox wallet_seq",
            "SELECT COUNT(DISTINCT wallet_seq) AS n, MIN(wallet_seq) AS lowest, MAX(wallet_seq) AS highest FROM ledger_outbox WHERE wallet_id = ?",
        ),
        (
            "outbox customer_seq",
            "SELECT COUNT(DISTINCT customer_seq) AS n, MIN(customer_seq) AS lowest, MAX(customer_seq) AS highest FROM ledger_outbox WHERE wallet_id = ?",
        ),
    ] {
        let seqs: Seqs = diesel::sql_query(sql)
            .bind::<Text, _>(&wallet.id)
            .get_result(&mut *conn)
            .await
            .unwrap();
        assert_eq!(
            seqs,
            Seqs {
                n: now.event_seq,
                lowest: 1,
                highest: now.event_seq
            },
            "{what}"
        );
    }
    // Every transaction's number is its balance event's: distinct, within the wallet's sequence.
    let seqs: Seqs = diesel::sql_query(
        "SELECT COUNT(DISTINCT wallet_seq) AS n, MIN(wallet_seq) AS lowest, MAX(wallet_seq) AS highest FROM ledger_transactions WHERE wallet_id = ?",
    )
    .bind::<Text, _>(&wallet.id)
    .get_result(&mut *conn)
    .await
    .unwrap();
    let count: Seqs = diesel::sql_query(
        "SELECT COUNT(*) AS n, CAST(0 AS UNSIGNED) AS lowest, CAST(0 AS UNSIGNED) AS highest FROM ledger_transactions WHERE wallet_id = ?",
    )
    .bind::<Text, _>(&wallet.id)
    .get_result(&mut *conn)
    .await
    .unwrap();
    assert_eq!(seqs.n, count.n, "one number per transaction");
    assert_eq!(seqs.lowest, 1);
    assert!(seqs.highest <= now.event_seq);
}

async fn assert_clean(app: &TestApp, project: &str) {
    let mut conn = db::get(&app.pool).await.unwrap();
    let report = reconcile(&mut conn, Some(project)).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// The mix every test queues: fresh charges, a replay and a conflicting reuse of an earlier key
/// in the same group, a key stored before the group, and charges past the funds.
fn mix(wallet: &str, tag: &str) -> Vec<(String, String, String)> {
    let c = |amount: &str, key: String| (wallet.to_string(), amount.to_string(), key);
    let mut charges = vec![c("0.25", format!("{tag}-stored"))];
    for i in 0..30 {
        charges.push(c("0.25", format!("{tag}-{i}")));
        if i % 7 == 3 {
            charges.push(c("0.25", format!("{tag}-{i}")));
        }
        if i % 9 == 4 {
            charges.push(c("0.26", format!("{tag}-{i}")));
        }
    }
    charges.push(c("0.25", format!("{tag}-stored")));
    charges.push(c("1.000000000001", format!("{tag}-precise")));
    for i in 0..10 {
        charges.push(c("0.75", format!("{tag}-big-{i}")));
    }
    charges
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_answers_every_charge_as_one_by_one_would() {
    let app = TestApp::spawn().await;
    let grouped = app.create_project("grouped").await;
    let alone = app.create_project("alone").await;
    for (policy, limit) in [(WalletPolicy::Reject, None), (WalletPolicy::AllowUntilLimit, Some("3"))] {
        let tag = format!("{policy:?}");
        let w = funded_wallet(&app, &grouped, &tag, policy, limit, "10").await;
        let v = funded_wallet(&app, &alone, &tag, policy, limit, "10").await;
        let charges = mix(&w.id, &tag);
        let control: Vec<_> = charges
            .iter()
            .map(|(_, a, k)| (v.id.clone(), a.clone(), k.clone()))
            .collect();
        // The first charge is stored before the group runs; the group must replay it.
        one_by_one(&app, &grouped, &charges[..1]).await;
        one_by_one(&app, &alone, &control[..1]).await;
        // A grant whose expiry passes before the group: the group expires it first, as the
        // first of the charges one by one does, and no charge draws from it.
        for (project, wallet) in [(&grouped, &w), (&alone, &v)] {
            let expires = neruba::store::now() + chrono::Duration::milliseconds(600);
            let mut grant = request(&wallet.id, "1", &format!("grant-{tag}"));
            grant.expires_at = Some(expires);
            let op = Operation::parse(OpKind::Grant, &grant, "test").unwrap();
            let mut conn = db::get(&app.pool).await.unwrap();
            service::execute(&mut conn, project, &op).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(800)).await;

        let before = app.state.charges.stats();
        let lock = WalletLock::take(&app, &w.id).await;
        let answers = queued(&app, &grouped, lock, &charges[1..]).await;
        let expected = one_by_one(&app, &alone, &control[1..]).await;

        let answers: Vec<String> = answers.iter().map(seen).collect();
        let expected: Vec<String> = expected.iter().map(seen).collect();
        assert_eq!(answers, expected, "{policy:?}");
        // Some of each: posted, replayed, conflicts, refusals.
        for kind in [
            "posted",
            "replayed",
            "IDEMPOTENCY_CONFLICT",
            "INSUFFICIENT_CREDITS",
            "BAD_USER_INPUT",
        ] {
            assert!(
                answers.iter().any(|a| a.contains(kind)),
                "{policy:?}: no {kind} in {answers:?}"
            );
        }
        let after = app.state.charges.stats();
        assert_eq!(after.fallbacks, before.fallbacks, "no group fell back");
        assert!(
            after.largest as usize >= charges.len() - 2,
            "the charges queued behind the lock ran as one group: {after:?}"
        );

        let mut conn = db::get(&app.pool).await.unwrap();
        let w_now = service::find_wallet(&mut conn, &grouped, &w.id).await.unwrap();
        let v_now = service::find_wallet(&mut conn, &alone, &v.id).await.unwrap();
        assert_eq!(
            (w_now.balance, w_now.event_seq, w_now.below_threshold),
            (v_now.balance, v_now.event_seq, v_now.below_threshold),
            "{policy:?}"
        );
        drop(conn);
        assert_sequences(&app, &w).await;
    }
    assert_clean(&app, &grouped).await;
    assert_clean(&app, &alone).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_over_many_wallets_keeps_each_exact() {
    let app = TestApp::spawn().await;
    let project = app.create_project("many").await;
    let mut wallets = Vec::new();
    for i in 0..12 {
        wallets.push(funded_wallet(&app, &project, &format!("c{i:02}"), WalletPolicy::Reject, None, "2").await);
    }
    // The first wallet's charges wait behind a lock; the others run in groups of their own
    // wallet meanwhile.
    let mut charges = Vec::new();
    for round in 0..9 {
        for w in &wallets {
            charges.push((w.id.clone(), "0.25".to_string(), format!("{}-{round}", w.id)));
        }
    }
    // The same key on two wallets, in different groups that may run at once: the second either
    // sees the first's key (a conflict) or, when it runs first, is refused for its empty wallet
    // and stores nothing (both are orders the charges could have run in one by one).
    charges.push((wallets[3].id.clone(), "0.25".into(), format!("{}-0", wallets[2].id)));
    let lock = WalletLock::take(&app, &wallets[0].id).await;
    let answers = queued(&app, &project, lock, &charges).await;
    let refused = |code: &str| {
        answers
            .iter()
            .filter(|a| matches!(a, Err(e) if e.code() == code))
            .count()
    };
    // 2.00 covers eight charges of 0.25 on each wallet; the ninth is refused.
    let conflicts = refused("IDEMPOTENCY_CONFLICT");
    assert!(conflicts <= 1);
    assert_eq!(refused("INSUFFICIENT_CREDITS") + conflicts, wallets.len() + 1);
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 8 * wallets.len());
    let mut conn = db::get(&app.pool).await.unwrap();
    for w in &wallets {
        let now = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
        assert_eq!(now.balance, Decimal::ZERO, "{}", w.id);
    }
    drop(conn);
    for w in &wallets {
        assert_sequences(&app, w).await;
    }
    assert_clean(&app, &project).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_takes_along_only_the_wallets_it_can_have_now() {
    // One group at a time, so that the order is known.
    let app = TestApp::spawn_with(|c| c.charge_group_writers = 1).await;
    let project = app.create_project("riders").await;
    let x = funded_wallet(&app, &project, "x", WalletPolicy::Reject, None, "5").await;
    let a = funded_wallet(&app, &project, "a", WalletPolicy::Reject, None, "5").await;
    let b = funded_wallet(&app, &project, "b", WalletPolicy::Reject, None, "5").await;
    let c = funded_wallet(&app, &project, "c", WalletPolicy::Reject, None, "5").await;
    let charge = |wallet: &WalletRow, key: &str| {
        let op = Operation::parse(OpKind::Charge, &request(&wallet.id, "1", key), "test").unwrap();
        Box::pin(app.state.charges.charge(&project, op)) as Pin<Box<dyn Future<Output = Answer> + Send + '_>>
    };
    // The writer waits for `x`; meanwhile charges of `a`, `b` and `c` queue, and `b` is held
    // elsewhere (as by a billing run).
    let before = app.state.charges.stats();
    let x_lock = WalletLock::take(&app, &x.id).await;
    let mut on_x = charge(&x, "x1");
    assert!(futures_util::poll!(on_x.as_mut()).is_pending());
    let b_lock = WalletLock::take(&app, &b.id).await;
    let mut waiting = vec![charge(&a, "a1"), charge(&b, "b1"), charge(&c, "c1"), charge(&a, "a2")];
    for w in &mut waiting {
        assert!(futures_util::poll!(w.as_mut()).is_pending());
    }
    x_lock.release().await;
    assert!(on_x.await.is_ok());
    let mut on_b = waiting.remove(1);
    // `a` waited longest: its group takes `c` along and leaves `b`, which another transaction
    // holds, without waiting for it.
    let done = tokio::time::timeout(Duration::from_secs(5), futures_util::future::join_all(waiting))
        .await
        .expect("the free wallets' charges do not wait for the held one");
    assert!(
        done.iter().all(Result::is_ok),
        "{:?}",
        done.iter().map(seen).collect::<Vec<_>>()
    );
    // x's group, then a's with c along (three charges in one group); b's own group may have
    // started already, waiting for its lock.
    let after = app.state.charges.stats();
    assert!(after.largest >= 3, "c rode along with a: {after:?}");
    assert_eq!(
        after.charges - before.charges,
        4,
        "b's charge is not answered yet: {after:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(futures_util::poll!(on_b.as_mut()).is_pending(), "b waits for its lock");
    b_lock.release().await;
    let answer = on_b.await;
    assert_eq!(seen(&answer), "posted 1 -> 4 (wallet 4)");
    assert_eq!(app.state.charges.stats().fallbacks, before.fallbacks);
    assert_eq!(app.state.charges.stats().retries, before.retries);
    let mut conn = db::get(&app.pool).await.unwrap();
    for (w, left) in [(&x, "4"), (&a, "3"), (&b, "4"), (&c, "4")] {
        let now = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
        assert_eq!(now.balance, d(left), "{}", w.id);
    }
    drop(conn);
    for w in [&x, &a, &b, &c] {
        assert_sequences(&app, w).await;
    }
    assert_clean(&app, &project).await;
    app.stop().await;
}

/// Installs a trigger that fails inserts of ledger transactions whose key matches `pattern`:
/// always (`once` false), or on each connection's first such insert (`once` true, as a deadlock).
async fn inject_fault(app: &TestApp, pattern: &str, once: bool) {
    let url = &app.db.as_ref().unwrap().url;
    let mut conn = AsyncMysqlConnection::establish(url).await.unwrap();
    let body = if once {
        "IF NEW.idempotency_key LIKE '{p}' AND @neruba_fault_seen IS NULL THEN \
           SET @neruba_fault_seen = 1; \
           SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'Deadlock found when trying to get lock; try restarting transaction (injected)'; \
         END IF;"
    } else {
        "IF NEW.idempotency_key LIKE '{p}' THEN \
           SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected fault'; \
         END IF;"
    };
    conn.batch_execute(&format!(
        "CREATE TRIGGER fault_{} BEFORE INSERT ON ledger_transactions FOR EACH ROW BEGIN {} END",
        if once { "once" } else { "always" },
        body.replace("{p}", pattern)
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_that_cannot_commit_runs_its_charges_one_by_one() {
    let app = TestApp::spawn().await;
    let project = app.create_project("faulty").await;
    let w = funded_wallet(&app, &project, "c", WalletPolicy::Reject, None, "10").await;
    inject_fault(&app, "poison%", false).await;
    let mut charges: Vec<_> = (0..20)
        .map(|i| (w.id.clone(), "0.5".to_string(), format!("k-{i}")))
        .collect();
    charges.insert(7, (w.id.clone(), "0.5".into(), "poison-1".into()));
    charges.push((w.id.clone(), "0.5".into(), "k-after".into()));
    let before = app.state.charges.stats();
    let lock = WalletLock::take(&app, &w.id).await;
    let answers = queued(&app, &project, lock, &charges).await;
    assert!(
        app.state.charges.stats().fallbacks > before.fallbacks,
        "the group fell back"
    );
    for (answer, (_, _, key)) in answers.iter().zip(&charges) {
        match key.as_str() {
            "poison-1" => assert!(matches!(answer, Err(Error::Internal(_))), "{key}: {answer:?}"),
            "k-after" => assert!(
                matches!(answer, Err(e) if e.code() == "INSUFFICIENT_CREDITS"),
                "{key}: {answer:?}"
            ),
            _ => assert!(matches!(answer, Ok(p) if !p.replayed), "{key}: {answer:?}"),
        }
    }
    let mut conn = db::get(&app.pool).await.unwrap();
    let now = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
    assert_eq!(now.balance, Decimal::ZERO);
    drop(conn);
    assert_sequences(&app, &w).await;
    assert_clean(&app, &project).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_that_deadlocks_is_run_again_whole() {
    let app = TestApp::spawn().await;
    let project = app.create_project("deadlocked").await;
    let w = funded_wallet(&app, &project, "c", WalletPolicy::Reject, None, "10").await;
    inject_fault(&app, "d-%", true).await;
    let charges: Vec<_> = (0..25)
        .map(|i| (w.id.clone(), "0.4".to_string(), format!("d-{i}")))
        .collect();
    let before = app.state.charges.stats();
    let lock = WalletLock::take(&app, &w.id).await;
    let answers = queued(&app, &project, lock, &charges).await;
    let stats = app.state.charges.stats();
    assert_eq!(stats.fallbacks, before.fallbacks, "retried as a group, not one by one");
    assert!(
        stats.retries > before.retries,
        "the injected deadlock happened: {stats:?}"
    );
    for answer in &answers {
        assert!(matches!(answer, Ok(p) if !p.replayed), "{answer:?}");
    }
    let mut conn = db::get(&app.pool).await.unwrap();
    let now = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
    assert_eq!(now.balance, Decimal::ZERO);
    drop(conn);
    assert_sequences(&app, &w).await;
    assert_clean(&app, &project).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_whose_client_went_away_commits_once() {
    let app = TestApp::spawn().await;
    let project = app.create_project("gone").await;
    let w = funded_wallet(&app, &project, "c", WalletPolicy::Reject, None, "1").await;
    let lock = WalletLock::take(&app, &w.id).await;
    // Two clients give up while their charges wait behind the lock (a dropped HTTP request).
    for key in ["gone-1", "gone-2"] {
        let op = Operation::parse(OpKind::Charge, &request(&w.id, "0.3", key), "test").unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(50), app.state.charges.charge(&project, op)).await;
        assert!(gave_up.is_err());
    }
    lock.release().await;
    // Their charges stand: a retry with the same key replays each, and the balance moved once each.
    for key in ["gone-1", "gone-2"] {
        let op = Operation::parse(OpKind::Charge, &request(&w.id, "0.3", key), "test").unwrap();
        let retried = app.state.charges.charge(&project, op).await.unwrap();
        assert!(retried.replayed, "{key}");
    }
    let mut conn = db::get(&app.pool).await.unwrap();
    let now = service::find_wallet(&mut conn, &project, &w.id).await.unwrap();
    assert_eq!(now.balance, d("0.4"));
    drop(conn);
    assert_sequences(&app, &w).await;
    assert_clean(&app, &project).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_off_runs_every_charge_alone() {
    let app = TestApp::spawn_with(|c| c.charge_groups = false).await;
    let project = app.create_project("off").await;
    let w = funded_wallet(&app, &project, "c", WalletPolicy::Reject, None, "1").await;
    let op = Operation::parse(OpKind::Charge, &request(&w.id, "0.3", "k"), "test").unwrap();
    let posted = app.state.charges.charge(&project, op).await.unwrap();
    assert_eq!(posted.wallet.balance, d("0.7"));
    assert_eq!(app.state.charges.stats().groups, 0);
    app.stop().await;
}

/// A group writes with the privileges of the serving user `neruba grants` prints (no UPDATE or
/// DELETE on posted ledger rows): its multi-row inserts and one-statement updates are allowed.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_runs_as_the_append_only_serving_user() {
    let db = neruba::testing::TestDb::create().await;
    let user = db.app_user().await;
    let app = TestApp::spawn_on(&user.url, |_| {}).await;
    let project = app.create_project("restricted").await;
    let a = funded_wallet(&app, &project, "a", WalletPolicy::Reject, None, "5").await;
    let b = funded_wallet(&app, &project, "b", WalletPolicy::Reject, None, "5").await;
    let mut charges = Vec::new();
    for i in 0..10 {
        for w in [&a, &b] {
            charges.push((w.id.clone(), "0.5".to_string(), format!("{}-{i}", w.id)));
        }
    }
    let lock = WalletLock::take_on(&db.url, &a.id).await;
    let answers = queued(&app, &project, lock, &charges).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(p) if !p.replayed)), "{answers:?}");
    assert_eq!(app.state.charges.stats().fallbacks, 0);
    let mut conn = db::get(&app.pool).await.unwrap();
    for w in [&a, &b] {
        assert_eq!(
            service::find_wallet(&mut conn, &project, &w.id).await.unwrap().balance,
            Decimal::ZERO
        );
    }
    drop(conn);
    assert_clean(&app, &project).await;
    app.stop().await;
}
