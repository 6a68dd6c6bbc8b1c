//! The GraphQL schema: one module per area, merged here. Resolvers find the caller's
//! [`Principal`] in the request data and the [`AppState`] in the schema data.

mod admin;
pub(crate) mod billing;
mod credit_units;
mod discounts;
mod holds;
mod invoices;
mod ledger;
pub mod limits;
pub mod loaders;
pub mod money;
mod node;
pub mod pagination;
mod payments;
mod portal;
mod scalars;
mod types;
mod usage;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema, SchemaBuilder};

use crate::{app::AppState, auth::Principal, error::Error};

pub use money::Money;
pub use scalars::{Decimal, Sequence};
pub use types::*;
pub use usage::UsageLoader;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    admin::AdminQuery,
    usage::UsageQuery,
    ledger::LedgerQuery,
    holds::HoldQuery,
    credit_units::CreditUnitQuery,
    billing::BillingQuery,
    billing::PlanQuery,
    billing::SubscriptionQuery,
    invoices::InvoiceQuery,
    discounts::DiscountQuery,
    invoices::PreviewQuery,
    invoices::BacktestQuery,
    invoices::ExportQuery,
    payments::PaymentQuery,
    node::NodeQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    admin::AdminMutation,
    usage::UsageMutation,
    ledger::LedgerMutation,
    holds::HoldMutation,
    credit_units::CreditUnitMutation,
    billing::PlanMutation,
    billing::SubscriptionMutation,
    invoices::InvoiceMutation,
    discounts::DiscountMutation,
    payments::PaymentMutation,
    portal::PortalMutation,
);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(admin::AdminSubscription, ledger::LedgerSubscription);

pub type NerubaSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
}

/// The executable schema, with limits from the configuration.
pub fn schema(state: AppState) -> NerubaSchema {
    let config = state.config.clone();
    loaders::register(builder(), &state)
        .limit_depth(config.graphql_max_depth)
        .limit_complexity(config.graphql_max_complexity)
        .extension(limits::NestingLimit)
        .data(async_graphql::dataloader::DataLoader::new(
            UsageLoader { state: state.clone() },
            tokio::spawn,
        ))
        .data(async_graphql::dataloader::DataLoader::new(
            money::UnitLoader { state: state.clone() },
            tokio::spawn,
        ))
        .data(state)
        .finish()
}

/// The SDL of the schema, as checked in at `schema.graphql`, with the `@specifiedBy` URLs of
/// custom scalars (async-graphql leaves them out by default; introspection always has them).
pub fn sdl() -> String {
    builder()
        .finish()
        .sdl_with_options(async_graphql::SDLExportOptions::new().include_specified_by())
}

/// The authenticated caller of this request (set by the HTTP and websocket entry points).
pub(crate) fn principal<'a>(ctx: &Context<'a>) -> Result<&'a Principal, Error> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| Error::Unauthenticated("missing credentials".into()))
}

pub(crate) fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// Nested money and usage data needs `READ`, however its parent was reached (a charge's payload
/// reached with an `INGEST` key shows the wallet's balance, not its lots or postings; a
/// `createCustomer` answer to a `BILLING` key, not the customer's usage or events).
///
/// This one also lets a customer's portal credential of the project through, so it is only for
/// fields of objects that a customer reaches solely from its own (a transaction's entries, from
/// its own wallet or invoice; a plan charge's metric, from its own plan version) and for the
/// project's portal-facing settings (logo, top-up limits). Data of a customer uses
/// [`require_read_of`], which checks the customer.
pub(crate) fn require_read_reached(ctx: &Context<'_>, project_id: &str) -> crate::error::GraphqlResult<()> {
    let principal = principal(ctx)?;
    if let Some(own) = principal.customer_scope() {
        return if own.project_id == project_id {
            Ok(())
        } else {
            Err(Error::NotFound("object").into())
        };
    }
    principal.project_for(Some(project_id), "projectId", crate::auth::Scope::Read)?;
    Ok(())
}

/// Refuses a customer's portal credential (`FORBIDDEN`): for fields of shared objects that lead
/// beyond what a customer is billed on (a plan's other versions).
pub(crate) fn not_for_customers(ctx: &Context<'_>) -> crate::error::GraphqlResult<()> {
    match principal(ctx)?.customer_scope() {
        Some(_) => Err(crate::auth::principal::customer_refused().into()),
        None => Ok(()),
    }
}

/// [`require_read_reached`] for data of one customer: a customer credential reads only its own.
pub(crate) fn require_read_of(
    ctx: &Context<'_>,
    project_id: &str,
    customer_id: &str,
) -> crate::error::GraphqlResult<()> {
    require_read_reached(ctx, project_id)?;
    if principal(ctx)?.may_see_customer(project_id, customer_id) {
        Ok(())
    } else {
        Err(Error::NotFound("object").into())
    }
}

/// The project a customer credential acts on: its own; naming another is `NOT_FOUND`, as for a
/// key.
pub(crate) fn customer_project(
    own: crate::auth::principal::CustomerScope<'_>,
    requested: &Option<async_graphql::ID>,
) -> crate::error::GraphqlResult<String> {
    match opt_id(requested) {
        Some(other) if other != own.project_id => Err(Error::NotFound("project").into()),
        _ => Ok(own.project_id.to_string()),
    }
}

/// A single-object lookup: absent and invisible (another project's) objects are `null`, not an
/// error that would wipe the sibling fields of a dashboard query. Other errors (a missing scope,
/// bad input, an unavailable database) stay errors.
pub(crate) async fn absent_is_null<T>(
    lookup: impl std::future::Future<Output = crate::error::GraphqlResult<T>>,
) -> crate::error::GraphqlResult<Option<T>> {
    match lookup.await {
        Ok(found) => Ok(Some(found)),
        Err(crate::error::GraphqlError(Error::NotFound(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An optional `ID` argument as a string slice.
pub(crate) fn opt_id(id: &Option<async_graphql::ID>) -> Option<&str> {
    id.as_ref().map(|id| id.as_str())
}

/// The project a request acts on (see [`Principal::project_for`]), checked to exist when the
/// operator names it: rows keyed by a project that does not exist would otherwise be written (usage
/// events have no foreign key) or fail with a misleading error.
pub(crate) async fn resolve_project(
    ctx: &Context<'_>,
    requested: &Option<async_graphql::ID>,
    scope: crate::auth::Scope,
) -> crate::error::GraphqlResult<String> {
    let principal = principal(ctx)?;
    let project_id = principal.project_for(opt_id(requested), "projectId", scope)?;
    if principal.is_operator() {
        let mut conn = crate::db::get(&state(ctx).pool).await?;
        crate::projects::find_project(&mut conn, &project_id).await?;
    }
    Ok(project_id)
}
