//! `Node`: every object with an id implements it, and `node(id:)` / `nodes(ids:)` find any of
//! them by its prefixed id (`wal_…`, `txn_…`). An id the caller may not see (another project's,
//! or a kind its key's scopes do not read) answers `null`, exactly like an unknown one, so ids
//! reveal nothing across tenants.

use async_graphql::{Context, ID, Interface, Object};

use super::{
    ApiKey, Project,
    billing::{Plan, PlanSubscription, PlanVersion, UsageCharge},
    credit_units::CreditUnit,
    discounts::{Coupon, CouponRedemption, TaxRate},
    holds::CreditHold,
    invoices::Invoice,
    ledger::{CreditLot, LedgerAccount, LedgerEntry, LedgerTransaction, POSTING_ID_PREFIX, Wallet},
    payments::{CheckoutSession, Payment},
    principal, state,
    usage::{BillableMetric, Customer, UsageEvent},
};
use crate::{
    auth::{Principal, Scope},
    billing::plans,
    credit_units, db,
    error::{Error, GraphqlResult as Result},
    store::{
        self, IdTable, api_keys, billable_metrics, customers as customer_store, discounts as discount_store,
        invoices as invoice_store, ledger as ledger_store, payments as payment_store, plans as plan_store,
        projects as project_store, subscriptions as subscription_store, usage_events,
    },
    usage::event::EVENT_ID_PREFIX,
};

/// The most ids one `nodes` call takes.
pub const MAX_NODES: usize = 100;

/// An object with a global id.
// A ledger entry carries its posting, transaction and account; a node lives for one response,
// so its size does not matter, and async-graphql wants the object types themselves as variants.
#[allow(clippy::large_enum_variant)]
#[derive(Interface)]
#[graphql(field(
    name = "id",
    ty = "ID",
    desc = "Unique across Neruba, prefixed by its kind (`prj_`, `key_`, `cus_`, `bm_`, `evt_`, `cru_`, `wal_`, `lot_`, `acc_`, `txn_`, `pst_`, `pln_`, `plv_`, `chg_`, `sub_`, `inv_`, `cpn_`, `cpr_`, `txr_`, `hld_`, `chk_`, `pay_`); `node(id:)` finds it."
))]
pub enum Node {
    Project(Project),
    ApiKey(ApiKey),
    Customer(Customer),
    BillableMetric(BillableMetric),
    UsageEvent(UsageEvent),
    CreditUnit(CreditUnit),
    Wallet(Wallet),
    CreditLot(CreditLot),
    LedgerAccount(LedgerAccount),
    LedgerTransaction(LedgerTransaction),
    LedgerEntry(LedgerEntry),
    Plan(Plan),
    PlanVersion(PlanVersion),
    UsageCharge(UsageCharge),
    PlanSubscription(PlanSubscription),
    Invoice(Invoice),
    Coupon(Coupon),
    CouponRedemption(CouponRedemption),
    TaxRate(TaxRate),
    CreditHold(CreditHold),
    CheckoutSession(CheckoutSession),
    Payment(Payment),
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Any object by its id; `null` when it does not exist or the caller may not see it.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        find(ctx, &id).await
    }

    /// Several objects by id, in the order asked (at most 100); `null` for each one the caller
    /// may not see.
    #[graphql(complexity = "ids.len() * child_complexity")]
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Option<Node>>> {
        if ids.len() > MAX_NODES {
            return Err(Error::invalid("ids", format!("at most {MAX_NODES} ids")).into());
        }
        let mut found = Vec::with_capacity(ids.len());
        for id in &ids {
            found.push(find(ctx, id).await?);
        }
        Ok(found)
    }
}

/// Whether the caller reads `project_id`'s objects that need `scope`. A customer credential
/// passes for its own project here; [`find`] then keeps only its customer's objects.
fn sees(principal: &Principal, project_id: &str, scope: Scope) -> bool {
    match principal.customer_scope() {
        Some(own) => own.project_id == project_id,
        None => principal.project_for(Some(project_id), "id", scope).is_ok(),
    }
}

/// What a customer credential finds by id: its own customer record, wallets, subscriptions,
/// invoices, checkouts and payments, and its project; nothing else (another customer's objects,
/// keys, ledger internals, pricing objects are `null`, as if they did not exist).
fn customer_owns(node: &Node, customer_id: &str) -> bool {
    match node {
        Node::Customer(c) => c.0.id == customer_id,
        Node::Wallet(w) => w.0.customer_id == customer_id,
        Node::PlanSubscription(s) => s.0.customer_id == customer_id,
        Node::Invoice(i) => i.0.customer_id == customer_id,
        Node::CheckoutSession(c) => c.0.customer_id == customer_id,
        Node::Payment(p) => p.0.customer_id == customer_id,
        Node::Project(_) => true,
        _ => false,
    }
}

async fn find(ctx: &Context<'_>, id: &str) -> Result<Option<Node>> {
    let principal = principal(ctx)?;
    let found = find_any(ctx, principal, id).await?;
    Ok(match principal.customer_scope() {
        Some(own) => found.filter(|node| customer_owns(node, own.customer_id)),
        None => found,
    })
}

async fn find_any(ctx: &Context<'_>, principal: &Principal, id: &str) -> Result<Option<Node>> {
    let Some((prefix, _)) = id.split_once('_') else {
        return Ok(None);
    };
    if prefix == POSTING_ID_PREFIX {
        return find_entry(ctx, principal, id).await;
    }
    if prefix == EVENT_ID_PREFIX {
        return find_event(ctx, principal, id).await;
    }
    let table = match prefix {
        "prj" | "key" => None,
        "cus" => Some(IdTable::Customers),
        "bm" => Some(IdTable::BillableMetrics),
        "cru" => Some(IdTable::CreditUnits),
        "wal" => Some(IdTable::Wallets),
        "lot" => Some(IdTable::CreditLots),
        "acc" => Some(IdTable::LedgerAccounts),
        "txn" => Some(IdTable::LedgerTransactions),
        "pln" => Some(IdTable::Plans),
        "plv" => Some(IdTable::PlanVersions),
        "chg" => Some(IdTable::PlanCharges),
        "sub" => Some(IdTable::Subscriptions),
        "inv" => Some(IdTable::Invoices),
        "cpn" => Some(IdTable::Coupons),
        "cpr" => Some(IdTable::CouponRedemptions),
        "txr" => Some(IdTable::TaxRates),
        "hld" => Some(IdTable::CreditHolds),
        "chk" => Some(IdTable::CheckoutSessions),
        "pay" => Some(IdTable::Payments),
        _ => return Ok(None),
    };
    let mut conn = db::get(&state(ctx).pool).await?;
    let conn = &mut *conn;
    let Some(table) = table else {
        return Ok(match prefix {
            "prj" => project_store::find(conn, id)
                .await?
                .filter(|p| sees(principal, &p.id, Scope::Read))
                .map(|p| Node::Project(Project(p))),
            _ => api_keys::find(conn, id)
                .await?
                .filter(|k| sees(principal, &k.project_id, Scope::Admin))
                .map(|k| Node::ApiKey(k.into())),
        });
    };
    let Some(project_id) = store::project_of(conn, table, id).await? else {
        return Ok(None);
    };
    if !sees(principal, &project_id, Scope::Read) {
        return Ok(None);
    }
    let p = project_id.as_str();
    Ok(match table {
        IdTable::Customers => customer_store::find_by_id(conn, p, id)
            .await?
            .map(|c| Node::Customer(Customer(c))),
        IdTable::BillableMetrics => billable_metrics::list(conn, p)
            .await?
            .into_iter()
            .find(|m| m.id == id)
            .map(BillableMetric::try_from)
            .transpose()?
            .map(Node::BillableMetric),
        IdTable::CreditUnits => credit_units::list(conn, p)
            .await?
            .into_iter()
            .find(|u| u.id == id)
            .map(|u| Node::CreditUnit(u.into())),
        IdTable::Wallets => ledger_store::find_wallet(conn, p, id)
            .await?
            .map(|w| Node::Wallet(Wallet(w))),
        IdTable::CreditLots => ledger_store::find_lot(conn, p, id)
            .await?
            .map(|(lot, currency)| Node::CreditLot(CreditLot { lot, currency })),
        IdTable::LedgerAccounts => ledger_store::find_account_by_id(conn, p, id)
            .await?
            .map(LedgerAccount::try_from)
            .transpose()?
            .map(Node::LedgerAccount),
        IdTable::LedgerTransactions => ledger_store::find_transaction(conn, p, id)
            .await?
            .map(|t| Node::LedgerTransaction(LedgerTransaction(t))),
        IdTable::Plans => plan_store::find_plan(conn, p, id)
            .await?
            .map(|row| Node::Plan(Plan(row))),
        IdTable::PlanVersions => Some(Node::PlanVersion(PlanVersion(plans::load_version(conn, p, id).await?))),
        IdTable::PlanCharges => match plan_store::find_charge(conn, p, id).await? {
            Some(row) => {
                let version = plans::load_version(conn, p, &row.plan_version_id).await?;
                let charge = version.charges.iter().find(|c| c.id == id).cloned();
                charge.map(|charge| {
                    Node::UsageCharge(UsageCharge {
                        charge,
                        version: version.row.clone(),
                        currency: version.currency.clone(),
                    })
                })
            }
            None => None,
        },
        IdTable::Subscriptions => subscription_store::find(conn, p, id)
            .await?
            .map(|row| Node::PlanSubscription(PlanSubscription(row))),
        IdTable::Invoices => invoice_store::find(conn, p, id)
            .await?
            .map(|row| Node::Invoice(Invoice(row))),
        IdTable::Coupons => discount_store::find_coupon(conn, p, id)
            .await?
            .map(|row| Node::Coupon(Coupon(row))),
        IdTable::CouponRedemptions => discount_store::find_redemption(conn, p, id)
            .await?
            .map(|row| Node::CouponRedemption(CouponRedemption(row))),
        IdTable::TaxRates => discount_store::find_tax_rates(conn, p, &[id])
            .await?
            .into_iter()
            .next()
            .map(|row| Node::TaxRate(TaxRate(row))),
        IdTable::CreditHolds => ledger_store::find_hold(conn, p, id)
            .await?
            .map(|row| Node::CreditHold(CreditHold(row))),
        IdTable::CheckoutSessions => payment_store::find_checkout(conn, p, id)
            .await?
            .map(|row| Node::CheckoutSession(CheckoutSession(row))),
        IdTable::Payments => payment_store::find_payment(conn, p, id)
            .await?
            .map(|row| Node::Payment(Payment(row))),
    })
}

/// A usage event by its `evt_` id (not in [`IdTable`]: events are keyed by `seq`).
async fn find_event(ctx: &Context<'_>, principal: &Principal, id: &str) -> Result<Option<Node>> {
    if !crate::ids::looks_like(EVENT_ID_PREFIX, id) {
        return Ok(None);
    }
    let mut conn = db::get(&state(ctx).pool).await?;
    Ok(usage_events::find_by_id(&mut conn, id)
        .await?
        .into_iter()
        .find(|e| sees(principal, &e.project_id, Scope::Read))
        .map(|e| Node::UsageEvent(UsageEvent(e.into()))))
}

/// A ledger entry by its `pst_<number>` id.
async fn find_entry(ctx: &Context<'_>, principal: &Principal, id: &str) -> Result<Option<Node>> {
    let Some(number) = id
        .strip_prefix(POSTING_ID_PREFIX)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return Ok(None);
    };
    let mut conn = db::get(&state(ctx).pool).await?;
    let Some(project_id) = ledger_store::posting_project(&mut conn, number).await? else {
        return Ok(None);
    };
    if !sees(principal, &project_id, Scope::Read) {
        return Ok(None);
    }
    Ok(ledger_store::find_entry(&mut conn, &project_id, number)
        .await?
        .map(|entry| Node::LedgerEntry(LedgerEntry::from(entry))))
}
