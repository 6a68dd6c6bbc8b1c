//! Helpers for black-box tests: a GraphQL client over real HTTP.
#![allow(dead_code)]

use neruba::testing::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct Gql {
    pub status: StatusCode,
    pub body: Value,
}

impl Gql {
    pub fn data(&self) -> &Value {
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        &self.body["data"]
    }

    /// The `extensions.code` of the first error.
    pub fn error_code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
    }
}

pub async fn gql(app: &TestApp, token: &str, query: &str, variables: Value) -> Gql {
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body = response.json().await.expect("JSON body");
    Gql { status, body }
}

pub async fn count_projects(app: &TestApp) -> usize {
    let r = gql(
        app,
        &app.admin_token,
        "{ projects(first: 100) { edges { node { id } } } }",
        json!({}),
    )
    .await;
    r.data()["projects"]["edges"].as_array().unwrap().len()
}

pub async fn count_keys(app: &TestApp, project_id: &str) -> usize {
    let r = gql(
        app,
        &app.admin_token,
        "query($id: ID) { project(id: $id) { apiKeys { id } } }",
        json!({ "id": project_id }),
    )
    .await;
    r.data()["project"]["apiKeys"].as_array().unwrap().len()
}
