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
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    /// The project's API keys, revoked ones included, oldest first (by id, which is
    /// time-ordered), a page at a time (operator, or a key with the `ADMIN` scope).
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn api_keys(
        &self,
        ctx: &async_graphql::Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> crate::error::GraphqlResult<async_graphql::connection::Connection<String, ApiKey>> {
        super::admin::project_api_keys(ctx, &self.0.id, first, after).await
    }
    /// The logo the customer portal shows, if set (`setPortalSettings`).
    async fn logo_url(&self, ctx: &async_graphql::Context<'_>) -> crate::error::GraphqlResult<Option<String>> {
        super::require_read_reached(ctx, &self.0.id)?;
        let mut conn = crate::db::get(&super::state(ctx).pool).await?;
        Ok(crate::portal::settings(&mut conn, &self.0.id).await?.logo_url)
    }
    /// Its limits on top-ups through checkout (scope `READ`; `setTopUpLimits` changes them).
    async fn top_up_limits(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> crate::error::GraphqlResult<super::payments::TopUpLimits> {
        super::payments::project_top_up_limits(ctx, &self.0.id).await
    }
}

pub struct ApiKey {
    pub row: ApiKeyRow,
}

#[Object]
impl ApiKey {
    pub async fn id(&self) -> ID {
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
    /// Who created it: the operator, or a key of the project.
    async fn created_by(&self) -> Actor {
        Actor::parse(&self.row.created_by, &self.row.project_id)
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
    /// A customer's portal session (`createPortalSession`).
    Customer,
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
            Principal::Customer(_) => ViewerKind::Customer,
        }
    }
    /// The key's (or portal session's) project; null for the operator.
    async fn project(&self) -> Option<Project> {
        self.project.clone().map(Project)
    }
    /// The key in use; null for the operator.
    async fn api_key(&self) -> Option<ApiKey> {
        match &self.principal {
            Principal::ApiKey { key, .. } => Some(ApiKey::from((**key).clone())),
            Principal::Operator | Principal::Customer(_) => None,
        }
    }
    /// Empty for a portal session: it has no scope, only its customer.
    async fn scopes(&self) -> Vec<Scope> {
        self.principal.scopes()
    }
    /// The portal session's customer; null for keys and the operator.
    async fn customer(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> crate::error::GraphqlResult<Option<super::usage::Customer>> {
        let Principal::Customer(session) = &self.principal else {
            return Ok(None);
        };
        let mut conn = crate::db::get(&super::state(ctx).pool).await?;
        let row = crate::customers::find_customer_by_id(&mut conn, &session.project_id, &session.customer_id).await?;
        Ok(Some(super::usage::Customer(row)))
    }
    /// The portal session in use; null for keys and the operator.
    async fn portal_session(&self) -> Option<super::portal::PortalSession> {
        match &self.principal {
            Principal::Customer(session) => Some(super::portal::PortalSession((**session).clone())),
            _ => None,
        }
    }
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
    pub environment: Environment,
}

/// Where the server runs (`NERUBA_ENV`).
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Environment {
    Development,
    Production,
}

impl From<crate::config::Environment> for Environment {
    fn from(e: crate::config::Environment) -> Self {
        match e {
            crate::config::Environment::Development => Environment::Development,
            crate::config::Environment::Production => Environment::Production,
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ActorKind {
    /// The holder of the admin token.
    Operator,
    /// A project's API key.
    ApiKey,
    /// Neruba itself (the expiry sweep).
    System,
    /// A customer, through its portal session.
    Customer,
}

/// Who did something: recorded with keys and ledger transactions.
pub struct Actor {
    kind: ActorKind,
    api_key_id: Option<String>,
    portal_session_id: Option<String>,
    project_id: String,
}

impl Actor {
    /// From the stored text: `operator`, `system`, `api_key:<id>` or `portal_session:<id>` (see
    /// `Principal::actor`).
    pub fn parse(text: &str, project_id: &str) -> Actor {
        let (kind, api_key_id) = match text.strip_prefix("api_key:") {
            Some(id) => (ActorKind::ApiKey, Some(id.to_string())),
            None if text == "operator" => (ActorKind::Operator, None),
            None if text.starts_with("portal_session:") => (ActorKind::Customer, None),
            None => (ActorKind::System, None),
        };
        Actor {
            kind,
            api_key_id,
            portal_session_id: text.strip_prefix("portal_session:").map(str::to_string),
            project_id: project_id.to_string(),
        }
    }
}

#[Object]
impl Actor {
    async fn kind(&self) -> ActorKind {
        self.kind
    }
    /// The key's id, for `API_KEY` (not shown to a customer's portal session).
    async fn api_key_id(&self, ctx: &async_graphql::Context<'_>) -> crate::error::GraphqlResult<Option<ID>> {
        if super::principal(ctx)?.customer_scope().is_some() {
            return Ok(None);
        }
        Ok(self.api_key_id.clone().map(ID))
    }
    /// The portal session, for `CUSTOMER`.
    async fn portal_session_id(&self) -> Option<ID> {
        self.portal_session_id.clone().map(ID)
    }
    /// The key itself, for `API_KEY`: shown to the operator and keys with `ADMIN` (as
    /// `Project.apiKeys` is), `null` to others.
    async fn api_key(&self, ctx: &async_graphql::Context<'_>) -> crate::error::GraphqlResult<Option<ApiKey>> {
        let Some(id) = &self.api_key_id else {
            return Ok(None);
        };
        let principal = super::principal(ctx)?;
        if principal
            .project_for(Some(&self.project_id), "projectId", Scope::Admin)
            .is_err()
        {
            return Ok(None);
        }
        let mut conn = crate::db::get(&super::state(ctx).pool).await?;
        let row = crate::store::api_keys::find_in_project(&mut conn, &self.project_id, id).await?;
        Ok(row.map(ApiKey::from))
    }
}
