//! Readiness around a database outage, against Neruba's own embedded MariaDB, which this test
//! stops and starts again (so it also proves the embedded launcher: init, start, stop, restart).

use std::time::Duration;

use neruba::{
    db::embedded::{EmbeddedMariaDb, EmbeddedOptions},
    testing::TestApp,
};
use reqwest::StatusCode;
use serde_json::Value;

async fn graphql(app: &TestApp, key: &str, query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(key)
        .json(&serde_json::json!({ "query": query }))
        .send()
        .await
        .unwrap()
}

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let r = reqwest::get(format!("{}/health/ready", app.base_url)).await.unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_goes_503_while_the_database_is_down_and_200_when_it_is_back() {
    let dir = std::env::temp_dir().join(format!("neruba-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = EmbeddedOptions {
        port: None,
        fast_unsafe: true,
    };
    let db = EmbeddedMariaDb::start(&dir, options.clone())
        .await
        .expect("embedded MariaDB starts");
    let port = db.port();
    let url = db.database_url();
    neruba::db::run_migrations(&url).await.unwrap();
    let app = TestApp::spawn_on(&url, |_| {}).await;
    let project = app.create_project("Survivor").await;
    let key = app.create_api_key(&project, &["read"]).await;

    assert_eq!(ready(&app).await.0, StatusCode::OK);

    db.stop().await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["failing"][0], "database");
    assert_eq!(body["checks"]["database"]["ok"], false);
    // A request that needs the database fails cleanly, not with a hang or a 500 panic page.
    let r = graphql(&app, &key, "{ viewer { kind } }").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some(), "{:?}", r.headers());
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["extensions"]["code"],
        "SERVICE_UNAVAILABLE"
    );

    // Same data directory, same port: the data survives and the server recovers without a restart.
    let db = EmbeddedMariaDb::start(
        &dir,
        EmbeddedOptions {
            port: Some(port),
            ..options
        },
    )
    .await
    .expect("restarts");
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = ready(&app).await.0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, StatusCode::OK);
    let r = graphql(&app, &key, "{ project { name } }").await;
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["project"]["name"], "Survivor");

    app.stop().await;
    db.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_the_same_data_directory_is_refused_at_once() {
    let dir = std::env::temp_dir().join(format!("neruba-twice-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = EmbeddedOptions {
        port: None,
        fast_unsafe: true,
    };
    let first = EmbeddedMariaDb::start(&dir, options.clone())
        .await
        .expect("first start");

    let started = std::time::Instant::now();
    let err = EmbeddedMariaDb::start(&dir, options.clone())
        .await
        .expect_err("second start is refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once, not after InnoDB's lock retries"
    );
    assert!(err.to_string().contains("already running"), "{err}");

    // Once the first has stopped, the directory is free again.
    first.stop().await;
    let again = EmbeddedMariaDb::start(&dir, options)
        .await
        .expect("starts after the first stopped");
    again.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
