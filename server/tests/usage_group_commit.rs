//! Concurrent single-event ingests share writes (group commit), and each still gets its own
//! answer. Alone in its test binary: it reads a process-wide statement counter.

mod common;

use std::sync::atomic::Ordering;

use common::{count_rows, project_with_key};
use neruba::{store::usage_events::INSERT_STATEMENTS, testing::TestApp};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_single_events_share_inserts_and_each_gets_its_answer() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "p").await;
    let client = reqwest::Client::new();
    let before = INSERT_STATEMENTS.load(Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (client, url, key) = (client.clone(), format!("{}/ingest/usage", app.base_url), key.clone());
        tasks.push(tokio::spawn(async move {
            // Every fourth request repeats the previous key: a replay, possibly in the same group.
            let k = if i % 4 == 3 { i - 1 } else { i };
            let body = json!({ "idempotencyKey": format!("k{k}"), "customerExternalId": format!("c{}", k % 5),
                               "metric": "m", "quantity": k.to_string() });
            let response = client.post(url).bearer_auth(key).json(&body).send().await.unwrap();
            (i, response.status().as_u16(), response.json::<Value>().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let statements = INSERT_STATEMENTS.load(Ordering::SeqCst) - before;
    assert!(
        statements < 64,
        "64 concurrent events took {statements} INSERTs: no group commit"
    );
    assert_eq!(count_rows(&app, "usage_events", Some(&project)).await, 48);
    let mut stored_per_key = std::collections::HashMap::new();
    for (i, status, body) in answers {
        let k = if i % 4 == 3 { i - 1 } else { i };
        assert_eq!(body["event"]["idempotencyKey"], format!("k{k}"), "{body}");
        assert_eq!(body["event"]["quantity"], k.to_string(), "{body}");
        match status {
            201 => *stored_per_key.entry(k).or_insert(0) += 1,
            200 => assert_eq!(body["status"], "replayed"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(stored_per_key.len(), 48);
    assert!(
        stored_per_key.values().all(|n| *n == 1),
        "each key stored by exactly one request"
    );
}
