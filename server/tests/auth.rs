//! Projects, API keys, scopes and tenant isolation, through the real GraphQL endpoint.

mod common;

use common::{count_keys, count_projects, gql};
use neruba::testing::TestApp;
use reqwest::StatusCode;
use serde_json::json;

const CREATE_KEY: &str = "mutation($p: ID, $n: String!, $s: [Scope!]!) {
    createApiKey(input: { projectId: $p, name: $n, scopes: $s }) { secret apiKey { id prefix scopes revoked } } }";

#[tokio::test(flavor = "multi_thread")]
async fn operator_creates_a_project_and_a_key_that_reads_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token.clone();

    let r = gql(&app, &admin, "{ viewer { kind scopes project { id } } }", json!({})).await;
    assert_eq!(r.data()["viewer"]["kind"], "OPERATOR");
    assert!(r.data()["viewer"]["project"].is_null());

    let r = gql(
        &app,
        &admin,
        "mutation { createProject(input: { name: \"  Acme  \" }) { project { id name } } }",
        json!({}),
    )
    .await;
    let project = r.data()["createProject"]["project"].clone();
    assert_eq!(project["name"], "Acme");
    let project_id = project["id"].as_str().unwrap();

    let r = gql(
        &app,
        &admin,
        CREATE_KEY,
        json!({ "p": project_id, "n": "reader", "s": ["READ"] }),
    )
    .await;
    let created = &r.data()["createApiKey"];
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("nrb_"));
    assert!(secret.starts_with(created["apiKey"]["prefix"].as_str().unwrap()));
    assert_eq!(created["apiKey"]["scopes"], json!(["READ"]));

    let r = gql(
        &app,
        &secret,
        "{ viewer { kind scopes project { id name } apiKey { name } } project { id name } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["viewer"]["kind"], "API_KEY");
    assert_eq!(r.data()["viewer"]["scopes"], json!(["READ"]));
    assert_eq!(r.data()["viewer"]["project"]["name"], "Acme");
    assert_eq!(r.data()["project"]["id"], project_id);

    // The secret is never shown again, and use is recorded.
    let r = gql(
        &app,
        &admin,
        "query($id: ID) { project(id: $id) { apiKeys { nodes { name lastUsedAt } } } }",
        json!({ "id": project_id }),
    )
    .await;
    let text = r.body.to_string();
    assert!(!text.contains(&secret));
    assert!(
        r.data()["project"]["apiKeys"]["nodes"][0]["lastUsedAt"].is_string(),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_invalid_and_revoked_credentials_are_401_json() {
    let app = TestApp::spawn().await;
    let project = app.create_project("Acme").await;
    let secret = app.create_api_key(&project, &["read"]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/graphql", app.base_url);
    let body = json!({ "query": "{ viewer { kind } }" });

    let missing = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let json: serde_json::Value = missing.json().await.unwrap();
    // A GraphQL response without data, so GraphQL clients show the reason.
    assert_eq!(json["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{json}");
    assert!(
        json["errors"][0]["message"].is_string() && json.get("data").is_none(),
        "{json}"
    );

    for bad in ["nrb_notakey", "Basic abc", &format!("{secret}x"), "nrb_"] {
        let r = client
            .post(&url)
            .header("Authorization", format!("Bearer {bad}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }

    assert_eq!(
        gql(&app, &secret, "{ viewer { kind } }", json!({})).await.status,
        StatusCode::OK
    );
    app.revoke_api_key_by_secret(&secret).await;
    let r = gql(&app, &secret, "{ viewer { kind } }", json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_key_stops_working_at_once_and_revoking_twice_is_harmless() {
    let app = TestApp::spawn().await;
    let project = app.create_project("Acme").await;
    let admin_key = app.create_api_key(&project, &["admin", "read", "ingest"]).await;
    let r = gql(&app, &admin_key, CREATE_KEY, json!({ "n": "ci", "s": ["INGEST"] })).await;
    let victim_id = r.data()["createApiKey"]["apiKey"]["id"].as_str().unwrap().to_string();
    let victim = r.data()["createApiKey"]["secret"].as_str().unwrap().to_string();
    assert_eq!(
        gql(&app, &victim, "{ viewer { kind } }", json!({})).await.status,
        StatusCode::OK
    );

    let revoke = "mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { id revoked revokedAt } } }";
    let first = gql(&app, &admin_key, revoke, json!({ "id": victim_id })).await;
    assert_eq!(first.data()["revokeApiKey"]["apiKey"]["revoked"], true);
    let second = gql(&app, &admin_key, revoke, json!({ "id": victim_id })).await;
    assert_eq!(
        second.data()["revokeApiKey"]["apiKey"]["revokedAt"],
        first.data()["revokeApiKey"]["apiKey"]["revokedAt"]
    );
    assert_eq!(
        gql(&app, &victim, "{ viewer { kind } }", json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_of_project_a_can_neither_read_nor_change_project_b() {
    let app = TestApp::spawn().await;
    let a = app.create_project("A").await;
    let b = app.create_project("B").await;
    let key_a = app.create_api_key(&a, &["read", "admin", "ingest", "billing"]).await;
    let key_b = app.create_api_key(&b, &["read"]).await;
    let b_key_id = {
        let r = gql(
            &app,
            &app.admin_token,
            "query($id: ID) { project(id: $id) { apiKeys { nodes { id } } } }",
            json!({ "id": b }),
        )
        .await;
        r.data()["project"]["apiKeys"]["nodes"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let keys_of_b = count_keys(&app, &b).await;

    // Another project's id answers exactly like an id that does not exist.
    let other = gql(
        &app,
        &key_a,
        "query($id: ID) { project(id: $id) { name } }",
        json!({ "id": b }),
    )
    .await;
    let absent = gql(
        &app,
        &key_a,
        "query($id: ID) { project(id: $id) { name } }",
        json!({ "id": "prj_01AAAAAAAAAAAAAAAAAAAAAAAA" }),
    )
    .await;
    // Another project's and an absent one read the same: null, no error.
    assert_eq!(other.body, json!({ "data": { "project": null } }));
    assert_eq!(absent.body, other.body);

    let r = gql(
        &app,
        &key_a,
        "mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { id } } }",
        json!({ "id": b_key_id }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    let r = gql(
        &app,
        &key_a,
        CREATE_KEY,
        json!({ "p": b, "n": "sneaky", "s": ["ADMIN"] }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    let r = gql(&app, &key_a, "{ projects { edges { node { id } } } }", json!({})).await;
    assert_eq!(r.error_code(), "FORBIDDEN");
    let r = gql(
        &app,
        &key_a,
        "mutation { createProject(input: { name: \"x\" }) { project { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN");

    // Project B is untouched and its key still works.
    assert_eq!(count_keys(&app, &b).await, keys_of_b);
    let r = gql(&app, &key_b, "{ project { name } }", json!({})).await;
    assert_eq!(r.data()["project"]["name"], "B");
    assert_eq!(count_projects(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_limit_what_a_key_may_do() {
    let app = TestApp::spawn().await;
    let p = app.create_project("Scoped").await;
    let ingest = app.create_api_key(&p, &["ingest"]).await;
    let read = app.create_api_key(&p, &["read"]).await;
    // A key grants only the scopes it holds (see security.rs for the refusal).
    let admin = app.create_api_key(&p, &["admin", "read", "ingest"]).await;

    // viewer needs no scope; project needs READ.
    assert_eq!(
        gql(&app, &ingest, "{ viewer { scopes } }", json!({})).await.data()["viewer"]["scopes"],
        json!(["INGEST"])
    );
    assert_eq!(
        gql(&app, &ingest, "{ project { id } }", json!({})).await.error_code(),
        "FORBIDDEN"
    );
    assert_eq!(
        gql(&app, &read, "{ project { id } }", json!({})).await.data()["project"]["id"],
        p
    );

    // Listing and creating keys needs ADMIN.
    assert_eq!(
        gql(&app, &read, "{ project { apiKeys { nodes { id } } } }", json!({}))
            .await
            .error_code(),
        "FORBIDDEN"
    );
    let before = count_keys(&app, &p).await;
    assert_eq!(
        gql(&app, &read, CREATE_KEY, json!({ "n": "x", "s": ["READ"] }))
            .await
            .error_code(),
        "FORBIDDEN"
    );
    assert_eq!(count_keys(&app, &p).await, before);
    let r = gql(&app, &admin, "{ project { apiKeys { nodes { id } } } }", json!({})).await;
    assert_eq!(
        r.data()["project"]["apiKeys"]["nodes"].as_array().unwrap().len(),
        before
    );
    let r = gql(&app, &admin, CREATE_KEY, json!({ "n": "new", "s": ["READ", "INGEST"] })).await;
    assert_eq!(r.data()["createApiKey"]["apiKey"]["scopes"], json!(["INGEST", "READ"]));

    // The operator is not a project key.
    let r = gql(&app, &app.admin_token, "{ project { id } }", json!({})).await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "id");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_typed_error_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token.clone();
    let p = app.create_project("Acme").await;
    let before = count_keys(&app, &p).await;

    let r = gql(
        &app,
        &admin,
        "mutation { createProject(input: { name: \"   \" }) { project { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "name");
    let long = "x".repeat(201);
    let r = gql(
        &app,
        &admin,
        "mutation($n: String!) { createProject(input: { name: $n }) { project { id } } }",
        json!({ "n": long }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");
    assert_eq!(count_projects(&app).await, 1);

    let r = gql(&app, &admin, CREATE_KEY, json!({ "p": p, "n": "k", "s": [] })).await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "scopes");
    let r = gql(&app, &admin, CREATE_KEY, json!({ "p": p, "n": "k", "s": ["ROOT"] })).await;
    assert!(
        r.body["errors"][0]["message"].as_str().unwrap().contains("ROOT"),
        "{}",
        r.body
    );
    let r = gql(
        &app,
        &admin,
        CREATE_KEY,
        json!({ "p": "prj_nope", "n": "k", "s": ["READ"] }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    let r = gql(&app, &admin, CREATE_KEY, json!({ "n": "k", "s": ["READ"] })).await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "projectId");
    let r = gql(
        &app,
        &admin,
        "mutation { revokeApiKey(input: { id: \"key_garbage\" }) { apiKey { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    assert_eq!(count_keys(&app, &p).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_is_stored_only_as_its_sha256() {
    use diesel::{QueryableByName, sql_types::Text};
    use diesel_async::RunQueryDsl;

    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        stored: String,
    }

    let app = TestApp::spawn().await;
    let project = app.create_project("Hashes").await;
    let secret = app.create_api_key(&project, &["read"]).await;
    let mut conn = neruba::db::get(&app.pool).await.unwrap();
    // Every column of the row, as text: the secret appears in none of them.
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT CONCAT_WS('|', id, project_id, name, prefix, LOWER(HEX(secret_hash)), scopes, created_by) AS stored FROM api_keys",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let stored = &rows[0].stored;
    assert!(!stored.contains(&secret), "{stored}");
    assert!(
        stored.contains(&hex::encode(neruba::auth::keys::hash_secret(&secret))),
        "{stored}"
    );
    assert!(stored.contains(&secret[..12]), "the display prefix is kept: {stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_pages_through_projects_with_cursors() {
    let app = TestApp::spawn().await;
    for name in ["one", "two", "three"] {
        app.create_project(name).await;
    }
    let page = "query($after: String) { projects(first: 2, after: $after) {
        edges { cursor node { name } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
    let first = gql(&app, &app.admin_token, page, json!({})).await;
    let projects = &first.data()["projects"];
    let names: Vec<&str> = projects["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(projects["pageInfo"]["hasNextPage"], true);
    assert_eq!(projects["pageInfo"]["hasPreviousPage"], false);

    let after = projects["pageInfo"]["endCursor"].clone();
    let second = gql(&app, &app.admin_token, page, json!({ "after": after })).await;
    let projects = &second.data()["projects"];
    assert_eq!(projects["edges"].as_array().unwrap().len(), 1);
    assert_eq!(projects["edges"][0]["node"]["name"], "three");
    assert_eq!(projects["pageInfo"]["hasNextPage"], false);
    assert_eq!(projects["pageInfo"]["hasPreviousPage"], true);

    for bad in [0, 101] {
        let r = gql(
            &app,
            &app.admin_token,
            "query($n: Int) { projects(first: $n) { edges { cursor } } }",
            json!({ "n": bad }),
        )
        .await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT");
        assert_eq!(r.body["errors"][0]["extensions"]["field"], "first");
    }
}
