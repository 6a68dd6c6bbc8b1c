//! Data loaders for the links between objects (`Wallet.customer`, `CreditLot.wallet`,
//! `LedgerEntry.wallet`, `PlanSubscription.customer`, `UsageCharge.metric`): a page of rows asking for their link costs one query per project and
//! kind, not one per row. (`LedgerEntry.transaction` needs none: it comes with the entry's own
//! query.)
//!
//! The loaders belong to the schema, so one batch may hold keys of several requests and
//! projects. Every key carries its project and every query filters by it: a key is answered
//! with its own project's row or nothing, never another project's. Callers check `READ` first.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use async_graphql::{Context, dataloader::DataLoader, dataloader::Loader};

use crate::{
    app::AppState,
    db,
    error::Error,
    store::{
        billable_metrics::{self as metric_store, MetricRow},
        customers as customer_store,
        customers::CustomerRow,
        ledger as ledger_store,
        ledger::WalletRow,
    },
};

/// (project id, object id): what a link names.
pub type ProjectKey = (String, String);

/// How many queries the link loaders have run in this process: a test counts them.
pub static LINK_QUERIES: AtomicU64 = AtomicU64::new(0);

/// The keys by project, each project's ids once.
fn by_project(keys: &[ProjectKey]) -> BTreeMap<&str, Vec<&str>> {
    let mut grouped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (project_id, id) in keys {
        grouped.entry(project_id).or_default().push(id);
    }
    for ids in grouped.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    grouped
}

/// Wallets by (project, wallet id).
pub struct WalletLoader {
    pub state: AppState,
}

impl Loader<ProjectKey> for WalletLoader {
    type Value = WalletRow;
    type Error = Arc<Error>;

    async fn load(&self, keys: &[ProjectKey]) -> Result<HashMap<ProjectKey, WalletRow>, Arc<Error>> {
        let mut conn = db::get(&self.state.pool).await.map_err(|e| Arc::new(e.into()))?;
        let mut found = HashMap::new();
        for (project_id, ids) in by_project(keys) {
            LINK_QUERIES.fetch_add(1, Ordering::Relaxed);
            let rows = ledger_store::find_wallets(&mut conn, project_id, &ids)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            found.extend(rows.into_iter().map(|w| ((w.project_id.clone(), w.id.clone()), w)));
        }
        Ok(found)
    }
}

/// Customers by (project, customer id).
pub struct CustomerLoader {
    pub state: AppState,
}

impl Loader<ProjectKey> for CustomerLoader {
    type Value = CustomerRow;
    type Error = Arc<Error>;

    async fn load(&self, keys: &[ProjectKey]) -> Result<HashMap<ProjectKey, CustomerRow>, Arc<Error>> {
        let mut conn = db::get(&self.state.pool).await.map_err(|e| Arc::new(e.into()))?;
        let mut found = HashMap::new();
        for (project_id, ids) in by_project(keys) {
            LINK_QUERIES.fetch_add(1, Ordering::Relaxed);
            let rows = customer_store::find_by_ids(&mut conn, project_id, &ids)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            found.extend(rows.into_iter().map(|c| ((c.project_id.clone(), c.id.clone()), c)));
        }
        Ok(found)
    }
}

/// Billable metrics by (project, metric id).
pub struct MetricLoader {
    pub state: AppState,
}

impl Loader<ProjectKey> for MetricLoader {
    type Value = MetricRow;
    type Error = Arc<Error>;

    async fn load(&self, keys: &[ProjectKey]) -> Result<HashMap<ProjectKey, MetricRow>, Arc<Error>> {
        let mut conn = db::get(&self.state.pool).await.map_err(|e| Arc::new(e.into()))?;
        let mut found = HashMap::new();
        for (project_id, ids) in by_project(keys) {
            LINK_QUERIES.fetch_add(1, Ordering::Relaxed);
            let rows = metric_store::find_by_ids(&mut conn, project_id, &ids)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            found.extend(rows.into_iter().map(|m| ((m.project_id.clone(), m.id.clone()), m)));
        }
        Ok(found)
    }
}

/// Loads the linked row of `project_id` named `id`, or `NOT_FOUND` (`what`) when there is none.
pub(crate) async fn load_link<L>(
    ctx: &Context<'_>,
    project_id: &str,
    id: &str,
    what: &'static str,
) -> Result<L::Value, Error>
where
    L: Loader<ProjectKey, Error = Arc<Error>>,
{
    let loader = ctx.data_unchecked::<DataLoader<L>>();
    loader
        .load_one((project_id.to_string(), id.to_string()))
        .await
        .map_err(|e| (*e).clone())?
        .ok_or(Error::NotFound(what))
}

/// The loaders, for the schema's data.
pub(crate) fn register<Q, M, S>(
    builder: async_graphql::SchemaBuilder<Q, M, S>,
    state: &AppState,
) -> async_graphql::SchemaBuilder<Q, M, S> {
    builder
        .data(DataLoader::new(WalletLoader { state: state.clone() }, tokio::spawn))
        .data(DataLoader::new(CustomerLoader { state: state.clone() }, tokio::spawn))
        .data(DataLoader::new(MetricLoader { state: state.clone() }, tokio::spawn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_project_and_each_id_asked_once() {
        let key = |p: &str, id: &str| (p.to_string(), id.to_string());
        let keys = [
            key("prj_b", "wal_2"),
            key("prj_a", "wal_1"),
            key("prj_b", "wal_2"),
            key("prj_b", "wal_1"),
        ];
        let grouped = by_project(&keys);
        assert_eq!(
            grouped.into_iter().collect::<Vec<_>>(),
            [("prj_a", vec!["wal_1"]), ("prj_b", vec!["wal_1", "wal_2"])]
        );
    }
}
