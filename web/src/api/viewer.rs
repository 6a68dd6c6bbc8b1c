//! `query Viewer`: who the current credential is and which project it belongs to.

use serde::Deserialize;

use super::{ApiError, NoVariables, Operation, execute};
use crate::credentials::ApiKey;

pub struct ViewerQuery;

impl Operation for ViewerQuery {
    const DOCUMENT: &'static str = "query Viewer { viewer { kind scopes project { id name } } }";
    type Variables = NoVariables;
    type Data = ViewerData;
}

#[derive(Deserialize)]
pub struct ViewerData {
    pub viewer: Viewer,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Viewer {
    pub kind: CredentialKind,
    /// Scope names exactly as the schema spells them (`READ`, `INGEST`, …).
    pub scopes: Vec<String>,
    /// Absent for credentials that are not tied to one project (operator tokens).
    pub project: Option<Project>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialKind {
    ApiKey,
    /// A kind this build of the portal does not know yet; shown generically rather than failing.
    #[serde(other)]
    Other,
}

impl CredentialKind {
    pub fn label(&self) -> &'static str {
        match self {
            Self::ApiKey => "API key",
            Self::Other => "Other credential",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectId(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
}

pub async fn fetch(key: &ApiKey) -> Result<Viewer, ApiError> {
    execute::<ViewerQuery>(key, &NoVariables {})
        .await
        .map(|data| data.viewer)
}

#[cfg(test)]
mod tests {
    use super::{CredentialKind, ViewerData};

    #[test]
    fn decodes_the_server_answer() {
        let json = r#"{"viewer":{"kind":"API_KEY","scopes":["READ","INGEST"],"project":{"id":"prj_1","name":"Acme"}}}"#;
        let viewer = serde_json::from_str::<ViewerData>(json).unwrap().viewer;
        assert_eq!(viewer.kind, CredentialKind::ApiKey);
        assert_eq!(viewer.scopes, ["READ", "INGEST"]);
        assert_eq!(viewer.project.unwrap().name, "Acme");
    }

    #[test]
    fn unknown_kind_and_missing_project_are_tolerated() {
        let json = r#"{"viewer":{"kind":"OPERATOR","scopes":[],"project":null}}"#;
        let viewer = serde_json::from_str::<ViewerData>(json).unwrap().viewer;
        assert_eq!(viewer.kind, CredentialKind::Other);
        assert!(viewer.project.is_none());
    }
}
