//! Portal sessions (issue 15): a project mints one for a customer, who then uses the portal with a
//! customer credential (`crate::portal`).

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{Project, opt_id, principal, require_read_of, resolve_project, state, utc};
use crate::{
    auth::Scope,
    db,
    error::GraphqlResult as Result,
    portal::{self, PortalSessionStatus, SessionRequest},
    projects,
    store::portal::PortalSessionRow,
};

/// A customer's access to the portal: a one-time link, exchanged for a credential that works
/// until `expiresAt` or until revoked.
pub struct PortalSession(pub(crate) PortalSessionRow);

#[Object]
impl PortalSession {
    pub async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn customer_id(&self) -> ID {
        ID(self.0.customer_id.clone())
    }
    /// The customer it is for (scope `READ`).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<super::usage::Customer>> {
        require_read_of(ctx, &self.0.project_id, &self.0.customer_id)?;
        let mut conn = db::get(&state(ctx).pool).await?;
        let row = crate::customers::find_customer_by_id(&mut conn, &self.0.project_id, &self.0.customer_id).await?;
        Ok(Some(super::usage::Customer(row)))
    }
    async fn status(&self) -> PortalSessionStatus {
        portal::status(&self.0, crate::store::now())
    }
    /// Where the portal sends the customer back to (the project's own site).
    async fn return_url(&self) -> Option<&str> {
        self.0.return_url.as_deref()
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        utc(self.0.expires_at)
    }
    /// When its link was exchanged for a credential.
    async fn exchanged_at(&self) -> Option<DateTime<Utc>> {
        self.0.exchanged_at.map(utc)
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at.map(utc)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
}

#[derive(InputObject)]
pub struct CreatePortalSessionInput {
    /// The operator names the project; a key acts on its own.
    pub project_id: Option<ID>,
    /// The customer the session is for.
    pub customer_external_id: String,
    /// Where the portal links back to (the project's own site): an `http(s)` URL.
    pub return_url: Option<String>,
    /// How long the session lasts, 60 to 86400 seconds (default 3600). Its link works once,
    /// within that time; the credential it is exchanged for, until then.
    pub ttl_seconds: Option<i32>,
    /// Optional: a retry with the same key and request answers the same session and link.
    pub idempotency_key: Option<String>,
}

/// A session as minted: the only time its link is shown (a replay shows it again).
#[derive(SimpleObject)]
pub struct CreatePortalSessionPayload {
    pub portal_session: PortalSession,
    /// The portal URL to send the customer to; it carries `token` in its fragment
    /// (`/portal/#session=…`), which browsers never send to a server.
    pub url: String,
    /// The one-time link token, for a portal hosted elsewhere: `POST /portal-session/exchange`
    /// with `{"token": …}` turns it into a customer credential.
    pub token: String,
    /// True when this repeated an earlier request with the same idempotency key.
    pub replayed: bool,
}

#[derive(InputObject)]
pub struct RevokePortalSessionInput {
    pub project_id: Option<ID>,
    pub id: ID,
}

#[derive(SimpleObject)]
pub struct RevokePortalSessionPayload {
    pub portal_session: PortalSession,
}

#[derive(InputObject)]
pub struct SetPortalSettingsInput {
    pub project_id: Option<ID>,
    /// The logo the portal shows: an `http(s)` URL of at most 2048 characters; null removes it.
    pub logo_url: Option<String>,
}

#[derive(SimpleObject)]
pub struct SetPortalSettingsPayload {
    pub project: Project,
}

#[derive(Default)]
pub struct PortalMutation;

#[Object]
impl PortalMutation {
    /// Mints a portal session for one customer (scope `BILLING`): send the customer to `url`. A
    /// customer that does not exist is `NOT_FOUND`.
    async fn create_portal_session(
        &self,
        ctx: &Context<'_>,
        input: CreatePortalSessionInput,
    ) -> Result<CreatePortalSessionPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let actor = principal(ctx)?.actor();
        let app = state(ctx);
        let mut conn = db::get(&app.pool).await?;
        let minted = portal::create_session(
            &mut conn,
            &app.config.public_url,
            &project_id,
            &actor,
            &SessionRequest {
                customer_external_id: input.customer_external_id,
                return_url: input.return_url,
                ttl_seconds: input.ttl_seconds.map(i64::from),
                idempotency_key: input.idempotency_key,
            },
        )
        .await?;
        Ok(CreatePortalSessionPayload {
            portal_session: PortalSession(minted.session),
            url: minted.url,
            token: minted.token,
            replayed: minted.replayed,
        })
    }

    /// Ends a portal session at once (scope `BILLING`): its link and credential stop working and
    /// its open websockets close. Revoking it again returns it unchanged.
    async fn revoke_portal_session(
        &self,
        ctx: &Context<'_>,
        input: RevokePortalSessionInput,
    ) -> Result<RevokePortalSessionPayload> {
        let project_id = resolve_project(ctx, &input.project_id, Scope::Billing).await?;
        let app = state(ctx);
        let mut conn = db::get(&app.pool).await?;
        let row = portal::revoke(&mut conn, &project_id, &input.id).await?;
        // This server's sockets close now; the others' through the outbox.
        app.events.publish(crate::events::DomainEvent::KeyRevoked {
            project_id: project_id.clone(),
            key_id: row.id.clone(),
        });
        Ok(RevokePortalSessionPayload {
            portal_session: PortalSession(row),
        })
    }

    /// How the portal presents the project (scope `BILLING` or `ADMIN`).
    async fn set_portal_settings(
        &self,
        ctx: &Context<'_>,
        input: SetPortalSettingsInput,
    ) -> Result<SetPortalSettingsPayload> {
        let project_id =
            principal(ctx)?.project_for_any(opt_id(&input.project_id), "projectId", &[Scope::Billing, Scope::Admin])?;
        let app = state(ctx);
        let mut conn = db::get(&app.pool).await?;
        let project = projects::find_project(&mut conn, &project_id).await?;
        portal::set_logo(&mut conn, &project_id, input.logo_url.as_deref()).await?;
        Ok(SetPortalSettingsPayload {
            project: Project(project),
        })
    }
}
