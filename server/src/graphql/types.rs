//! GraphQL object types shared across areas. They wrap store rows so that a change to a stored
//! column never silently changes the API (and the other way round).

use async_graphql::{Enum, ID, Object, SimpleObject};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::{
    auth::{Principal, Scope},
    store::{api_keys::ApiKeyRow, projects::ProjectRow},
};

pub(crate) fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

pub struct Project(pub ProjectRow);

#[Object]
impl Project {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    /// The project's API keys (operator, or a key with the `ADMIN` scope).
    async fn api_keys(&self, ctx: &async_graphql::Context<'_>) -> crate::error::GraphqlResult<Vec<ApiKey>> {
        super::admin::project_api_keys(ctx, &self.0.id).await
    }
}

pub struct ApiKey {
    pub row: ApiKeyRow,
}

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }
    async fn project_id(&self) -> ID {
        ID(self.row.project_id.clone())
    }
    async fn name(&self) -> &str {
        &self.row.name
    }
    /// The first characters of the secret, to tell keys apart. The secret itself is never stored.
    async fn prefix(&self) -> &str {
        &self.row.prefix
    }
    async fn scopes(&self) -> Vec<Scope> {
        Scope::split(&self.row.scopes)
    }
    /// `operator` or `api_key:<id>`.
    async fn created_by(&self) -> &str {
        &self.row.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.row.created_at)
    }
    /// When the key last authenticated a request (recorded at most once a minute).
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.row.last_used_at.map(utc)
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.row.revoked_at.map(utc)
    }
    async fn revoked(&self) -> bool {
        self.row.revoked_at.is_some()
    }
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        ApiKey { row }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ViewerKind {
    Operator,
    ApiKey,
}

/// Who the caller is.
pub struct Viewer {
    pub principal: Principal,
    pub project: Option<ProjectRow>,
}

#[Object]
impl Viewer {
    async fn kind(&self) -> ViewerKind {
        match self.principal {
            Principal::Operator => ViewerKind::Operator,
            Principal::ApiKey { .. } => ViewerKind::ApiKey,
        }
    }
    /// The key's project; null for the operator.
    async fn project(&self) -> Option<Project> {
        self.project.clone().map(Project)
    }
    /// The key in use; null for the operator.
    async fn api_key(&self) -> Option<ApiKey> {
        match &self.principal {
            Principal::ApiKey { key, .. } => Some(ApiKey::from((**key).clone())),
            Principal::Operator => None,
        }
    }
    async fn scopes(&self) -> Vec<Scope> {
        self.principal.scopes()
    }
}

/// A key as created: the only time its secret is shown.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    /// The bearer secret. Store it now: Neruba keeps only its hash.
    pub secret: String,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProjectEventKind {
    ApiKeyCreated,
    ApiKeyRevoked,
}

/// Something that happened in a project, pushed to subscribers after it committed.
#[derive(SimpleObject)]
pub struct ProjectEvent {
    pub kind: ProjectEventKind,
    pub project_id: ID,
    pub api_key: Option<ApiKey>,
}

/// Facts about the running server, for clients and the portal.
#[derive(SimpleObject)]
pub struct ServerInfo {
    pub version: String,
    pub environment: String,
}
