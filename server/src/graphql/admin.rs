//! Projects, API keys and the caller's identity.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Subscription, connection::Connection};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::{
    ApiKey, Project, ProjectEvent, ProjectEventKind, ServerInfo, Viewer, opt_id,
    pagination::{self, CursorKind},
    principal, state,
};
use crate::{
    auth::{Principal, Scope},
    db,
    error::GraphqlResult as Result,
    events::DomainEvent,
    projects,
    store::{api_keys, projects as project_store},
};

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Who is calling: the operator, or which project's key with which scopes.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<Viewer> {
        let principal = principal(ctx)?.clone();
        let project = match principal.project_id() {
            Some(id) => {
                let mut conn = db::get(&state(ctx).pool).await?;
                project_store::find(&mut conn, id).await?
            }
            None => None,
        };
        Ok(Viewer { principal, project })
    }

    /// A project: a key reads its own (scope `READ`; `id` may be omitted); the operator names one.
    /// `null` when it does not exist or is another project's.
    async fn project(&self, ctx: &Context<'_>, id: Option<ID>) -> Result<Option<Project>> {
        super::absent_is_null(async {
            let id = principal(ctx)?.project_for(opt_id(&id), "id", Scope::Read)?;
            let mut conn = db::get(&state(ctx).pool).await?;
            Ok(Project(projects::find_project(&mut conn, &id).await?))
        })
        .await
    }

    /// All projects, oldest first (operator only), a page at a time.
    #[graphql(complexity = "super::pagination::cost(first, child_complexity)")]
    async fn projects(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Project>> {
        principal(ctx)?.require_operator()?;
        let size = pagination::page_size(first)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let after_key = pagination::after_key(CursorKind::Project, after.as_deref())?;
        let rows = project_store::list(&mut conn, after_key.as_deref(), size + 1).await?;
        Ok(pagination::connection(
            CursorKind::Project,
            rows,
            size,
            after.as_deref(),
            |p| p.id.clone(),
            Project,
        ))
    }

    /// Version and environment of the server.
    async fn server_info(&self, ctx: &Context<'_>) -> Result<ServerInfo> {
        principal(ctx)?;
        Ok(ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            environment: state(ctx).config.env.into(),
        })
    }
}

/// `Project.apiKeys`: the operator, or a key of that project with `ADMIN`.
pub(super) async fn project_api_keys(
    ctx: &Context<'_>,
    project_id: &str,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Connection<String, ApiKey>> {
    let principal = principal(ctx)?;
    if !principal.is_operator() {
        principal.project_for(Some(project_id), "projectId", Scope::Admin)?;
    }
    let size = pagination::page_size(first)?;
    let after_key = pagination::after_key(CursorKind::ApiKey, after.as_deref())?;
    let mut conn = db::get(&state(ctx).pool).await?;
    let rows = api_keys::list_for_project(&mut conn, project_id, after_key.as_deref(), size + 1).await?;
    Ok(pagination::connection(
        CursorKind::ApiKey,
        rows,
        size,
        after.as_deref(),
        |k| k.id.clone(),
        ApiKey::from,
    ))
}

#[derive(InputObject)]
pub struct CreateProjectInput {
    /// 1 to 200 characters.
    pub name: String,
}

#[derive(SimpleObject)]
pub struct CreateProjectPayload {
    pub project: Project,
}

/// A key as created: the only time its secret is shown.
#[derive(SimpleObject)]
pub struct CreateApiKeyPayload {
    pub api_key: ApiKey,
    /// The bearer secret. Store it now: Neruba keeps only its hash.
    pub secret: String,
}

#[derive(InputObject)]
pub struct RevokeApiKeyInput {
    /// The key's id (`key_…`).
    pub id: ID,
}

#[derive(SimpleObject)]
pub struct RevokeApiKeyPayload {
    /// The key, revoked (now or earlier).
    pub api_key: ApiKey,
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// Required for the operator; a project key may only name its own project.
    pub project_id: Option<ID>,
    /// What the key is for, e.g. "production ingest".
    pub name: String,
    /// At least one.
    pub scopes: Vec<Scope>,
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Creates a project (operator only).
    async fn create_project(&self, ctx: &Context<'_>, input: CreateProjectInput) -> Result<CreateProjectPayload> {
        principal(ctx)?.require_operator()?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let row = projects::create_project(&mut conn, &input.name).await?;
        tracing::info!(project_id = %row.id, "project created");
        Ok(CreateProjectPayload { project: Project(row) })
    }

    /// Creates an API key. The response carries the secret; it is never shown again. A key
    /// (with `ADMIN`) may create keys with a subset of its own scopes; the operator, any.
    async fn create_api_key(&self, ctx: &Context<'_>, input: CreateApiKeyInput) -> Result<CreateApiKeyPayload> {
        let principal = principal(ctx)?;
        let project_id = principal.project_for(opt_id(&input.project_id), "projectId", Scope::Admin)?;
        principal.may_grant(&input.scopes)?;
        let state = state(ctx);
        let mut conn = db::get(&state.pool).await?;
        let created =
            projects::create_api_key(&mut conn, &project_id, &input.name, &input.scopes, &principal.actor()).await?;
        tracing::info!(project_id = %project_id, key_id = %created.key.id, "API key created");
        state.events.publish(DomainEvent::ApiKeyCreated(created.key.clone()));
        Ok(CreateApiKeyPayload {
            api_key: created.key.into(),
            secret: created.secret,
        })
    }

    /// Revokes an API key at once. Revoking a revoked key returns it unchanged.
    async fn revoke_api_key(&self, ctx: &Context<'_>, input: RevokeApiKeyInput) -> Result<RevokeApiKeyPayload> {
        let id = input.id;
        let principal = principal(ctx)?;
        let scope_project = match principal {
            Principal::Operator => None,
            Principal::ApiKey { .. } | Principal::Customer(_) => {
                Some(principal.require_scope(Scope::Admin)?.to_string())
            }
        };
        let state = state(ctx);
        let mut conn = db::get(&state.pool).await?;
        let (row, changed) = projects::revoke_api_key(&mut conn, scope_project.as_deref(), &id).await?;
        if changed {
            tracing::info!(project_id = %row.project_id, key_id = %row.id, "API key revoked");
            state.events.publish(DomainEvent::ApiKeyRevoked(row.clone()));
        }
        Ok(RevokeApiKeyPayload { api_key: row.into() })
    }
}

#[derive(Default)]
pub struct AdminSubscription;

#[Subscription]
impl AdminSubscription {
    /// Changes to a project's API keys, pushed after they commit. A key needs `READ` and watches
    /// its own project; the operator names the project. The key itself (`apiKey`) is shown to
    /// holders of `ADMIN` only, as `Project.apiKeys` is. A subscription ends when its own key is
    /// revoked (the socket then closes).
    async fn project_events(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
    ) -> Result<impl Stream<Item = ProjectEvent> + use<>> {
        let principal = principal(ctx)?;
        let project_id = principal.project_for(opt_id(&project_id), "projectId", Scope::Read)?;
        let shows_keys = principal.scopes().contains(&Scope::Admin);
        let own_key = match principal {
            Principal::ApiKey { key, .. } => Some(key.id.clone()),
            Principal::Operator | Principal::Customer(_) => None,
        };
        let state = state(ctx);
        {
            // The operator may name a project that does not exist: say so rather than wait forever.
            let mut conn = db::get(&state.pool).await?;
            projects::find_project(&mut conn, &project_id).await?;
        }
        let stream = BroadcastStream::new(state.events.subscribe())
            .take_while(move |event| {
                let own_revoked = matches!(event, Ok(e) if matches!(&**e,
                    DomainEvent::ApiKeyRevoked(k) if Some(&k.id) == own_key.as_ref()));
                futures_util::future::ready(!own_revoked)
            })
            .filter_map(move |event| {
                let event = match event {
                    Ok(e) if e.project_id() == project_id => to_project_event(&e, shows_keys),
                    // A lagging subscriber skips what it missed rather than ending the stream.
                    _ => None,
                };
                async move { event }
            });
        Ok(stream)
    }
}

/// API key events only; wallet events have their own subscription (`balanceChanged`).
fn to_project_event(event: &DomainEvent, shows_keys: bool) -> Option<ProjectEvent> {
    let (kind, key) = match event {
        DomainEvent::ApiKeyCreated(k) => (ProjectEventKind::ApiKeyCreated, k),
        DomainEvent::ApiKeyRevoked(k) => (ProjectEventKind::ApiKeyRevoked, k),
        DomainEvent::BalanceChanged(_) | DomainEvent::ThresholdCrossed(_) | DomainEvent::KeyRevoked { .. } => {
            return None;
        }
    };
    Some(ProjectEvent {
        kind,
        project_id: ID(key.project_id.clone()),
        api_key: shows_keys.then(|| key.clone().into()),
    })
}
