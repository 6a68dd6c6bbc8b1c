//! Customers: a project's own external id, plus optional details. Created explicitly
//! ([`create_customer`]) or implicitly by the first event or charge that names them
//! ([`ensure_exist`]); an explicit create later fills in an implicit customer's details.

use std::{collections::HashSet, sync::Mutex};

use diesel_async::AsyncConnection;

use crate::{
    currency::Currency,
    error::{Error, ErrorCode, Result},
    ids,
    projects::parse_name,
    store::{
        Conn,
        customers::{self, CustomerRow, NewCustomer},
        now,
    },
};

pub const CUSTOMER_ID_PREFIX: &str = "cus";
pub const MAX_EXTERNAL_ID_CHARS: usize = 255;
const MAX_METADATA_BYTES: usize = 4096;

/// A project's name for its customer: 1..=255 characters, no control characters, no leading or
/// trailing whitespace, kept exactly as sent.
pub fn parse_external_id(field: &str, raw: &str) -> Result<String> {
    if raw.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if raw.chars().count() > MAX_EXTERNAL_ID_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_EXTERNAL_ID_CHARS} characters"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    // utf8mb4_bin pads with spaces when comparing: "acme " would be "acme" to the unique index.
    if raw.trim() != raw {
        return Err(Error::invalid(field, "must not start or end with whitespace"));
    }
    Ok(raw.to_string())
}

/// A customer's currency: a known ISO 4217 code with a minor unit ([`Currency::parse_iso`]).
pub fn parse_currency(field: &str, raw: &str) -> Result<String> {
    Ok(Currency::parse_iso(field, raw)?.code().to_string())
}

fn parse_email(field: &str, raw: &str) -> Result<String> {
    let email = raw.trim();
    let valid = email.len() <= 320
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.contains('@'));
    if !valid {
        return Err(Error::invalid(field, "must be an email address"));
    }
    Ok(email.to_string())
}

/// How deep metadata may nest: every reader (serde_json, MariaDB's JSON functions) has a limit.
const MAX_METADATA_DEPTH: usize = 16;

/// How deep objects and lists nest in `value` (a scalar is 0). The value was parsed under
/// serde_json's own recursion limit, so this recursion is bounded too.
fn json_depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(members) => 1 + members.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Metadata: a JSON object of at most 4 KiB, stored as its canonical text (keys sorted).
pub(crate) fn parse_metadata(field: &str, value: &serde_json::Value) -> Result<String> {
    if !value.is_object() {
        return Err(Error::invalid(field, "must be a JSON object"));
    }
    if json_depth(value) > MAX_METADATA_DEPTH {
        return Err(Error::invalid(
            field,
            format!("must nest at most {MAX_METADATA_DEPTH} levels of objects and lists"),
        ));
    }
    let text = value.to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
        ));
    }
    Ok(text)
}

/// What `createCustomer` takes, before validation.
#[derive(Debug, Clone, Default)]
pub struct CustomerInput {
    pub external_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub currency: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
struct ValidCustomer {
    external_id: String,
    name: Option<String>,
    email: Option<String>,
    currency: Option<String>,
    metadata: Option<String>,
}

impl CustomerInput {
    fn validate(&self) -> Result<ValidCustomer> {
        Ok(ValidCustomer {
            external_id: parse_external_id("externalId", &self.external_id)?,
            name: self.name.as_deref().map(|n| parse_name("name", n)).transpose()?,
            email: self.email.as_deref().map(|e| parse_email("email", e)).transpose()?,
            currency: self
                .currency
                .as_deref()
                .map(|c| parse_currency("currency", c))
                .transpose()?,
            metadata: self
                .metadata
                .as_ref()
                .map(|m| parse_metadata("metadata", m))
                .transpose()?,
        })
    }
}

/// Whether [`create_customer`] made a new record, filled in an implicit one, or found the same
/// customer already there (a replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    FilledImplicit,
    Replayed,
}

/// Creates a customer. The external id is the idempotency key: creating the same customer again
/// returns it; creating it with different details is a `CUSTOMER_EXISTS` conflict; an implicit
/// customer (made by an event) gets the details and becomes explicit.
pub async fn create_customer(
    conn: &mut Conn,
    project_id: &str,
    input: &CustomerInput,
) -> Result<(CustomerRow, Created)> {
    let valid = input.validate()?;
    let project_id = project_id.to_string();
    conn.transaction(async |conn| {
        let at = now();
        let id = ids::new_id(CUSTOMER_ID_PREFIX);
        let row = NewCustomer {
            id: &id,
            project_id: &project_id,
            external_id: &valid.external_id,
            name: valid.name.as_deref(),
            email: valid.email.as_deref(),
            currency: valid.currency.as_deref(),
            metadata: valid.metadata.as_deref(),
            implicit: false,
            created_at: at,
            updated_at: at,
        };
        // INSERT IGNORE then lock: concurrent creates of one external id settle on the unique index.
        let inserted = customers::insert_missing(conn, std::slice::from_ref(&row)).await? == 1;
        let existing = customers::lock_by_external_id(conn, &project_id, &valid.external_id)
            .await?
            .ok_or_else(|| Error::Internal("customer vanished after insert".into()))?;
        if inserted {
            return Ok((existing, Created::New));
        }
        if existing.implicit {
            customers::fill_implicit(conn, &existing.id, &row).await?;
            let filled = customers::find_by_external_id(conn, &project_id, &valid.external_id)
                .await?
                .ok_or_else(|| Error::Internal("customer vanished after update".into()))?;
            return Ok((filled, Created::FilledImplicit));
        }
        let same = existing.name == valid.name
            && existing.email == valid.email
            && existing.currency == valid.currency
            && existing.metadata == valid.metadata;
        if same {
            Ok((existing, Created::Replayed))
        } else {
            Err(Error::conflict(
                ErrorCode::CustomerExists,
                format!("customer '{}' already exists with different details", valid.external_id),
            ))
        }
    })
    .await
}

/// Makes sure each external id has a customer record, creating implicit ones for those that do
/// not. Existing ones are found by a plain read first (an `INSERT IGNORE` of an existing key would
/// take shared locks that concurrent batches deadlock on); new ones are inserted in sorted order
/// so concurrent callers lock index entries in one order.
pub async fn ensure_exist(conn: &mut Conn, project_id: &str, external_ids: &[&str]) -> diesel::QueryResult<usize> {
    let mut sorted: Vec<&str> = external_ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let known: HashSet<String> = customers::existing_external_ids(conn, project_id, &sorted)
        .await?
        .into_iter()
        .collect();
    sorted.retain(|id| !known.contains(*id));
    if sorted.is_empty() {
        return Ok(0);
    }
    let at = now();
    let ids: Vec<String> = sorted.iter().map(|_| ids::new_id(CUSTOMER_ID_PREFIX)).collect();
    let rows: Vec<NewCustomer<'_>> = sorted
        .iter()
        .zip(&ids)
        .map(|(external_id, id)| NewCustomer {
            id,
            project_id,
            external_id,
            name: None,
            email: None,
            currency: None,
            metadata: None,
            implicit: true,
            created_at: at,
            updated_at: at,
        })
        .collect();
    customers::insert_missing(conn, &rows).await
}

/// The customers this process has seen committed, so that ingest does not ask the database about
/// the same customer for every event. Customers are never deleted, so an entry cannot go stale;
/// entries are added only after the write that made them committed. Bounded: when full it starts
/// over (the database stays the truth).
#[derive(Debug, Default)]
pub struct KnownCustomers {
    set: Mutex<HashSet<(String, String)>>,
}

impl KnownCustomers {
    const MAX_ENTRIES: usize = 200_000;

    /// The ids of `external_ids` not known to exist in the project.
    pub fn unknown<'a>(&self, project_id: &str, external_ids: &[&'a str]) -> Vec<&'a str> {
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = (project_id.to_string(), String::new());
        external_ids
            .iter()
            .copied()
            .filter(|id| {
                key.1.clear();
                key.1.push_str(id);
                !set.contains(&key)
            })
            .collect()
    }

    /// Records customers that are committed.
    pub fn remember(&self, project_id: &str, external_ids: &[&str]) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() + external_ids.len() > Self::MAX_ENTRIES {
            set.clear();
        }
        for id in external_ids {
            set.insert((project_id.to_string(), id.to_string()));
        }
    }
}

pub async fn find_customer(conn: &mut Conn, project_id: &str, external_id: &str) -> Result<CustomerRow> {
    customers::find_by_external_id(conn, project_id, external_id)
        .await?
        .ok_or(Error::NotFound("customer"))
}

/// A customer by Neruba's id, in `project_id` only.
pub async fn find_customer_by_id(conn: &mut Conn, project_id: &str, id: &str) -> Result<CustomerRow> {
    if !ids::looks_like(CUSTOMER_ID_PREFIX, id) {
        return Err(Error::NotFound("customer"));
    }
    customers::find_by_id(conn, project_id, id)
        .await?
        .ok_or(Error::NotFound("customer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_input_is_checked_field_by_field() {
        let ok = CustomerInput {
            external_id: "acme-42".into(),
            name: Some(" Acme ".into()),
            email: Some("billing@acme.test".into()),
            currency: Some("usd".into()),
            metadata: Some(serde_json::json!({"b": 1, "a": "x"})),
        };
        let valid = ok.validate().unwrap();
        assert_eq!(valid.name.as_deref(), Some("Acme"));
        assert_eq!(valid.currency.as_deref(), Some("USD"));
        assert_eq!(valid.metadata.as_deref(), Some(r#"{"a":"x","b":1}"#));

        let cases: Vec<(CustomerInput, &str)> = vec![
            (
                CustomerInput {
                    external_id: "".into(),
                    ..ok.clone()
                },
                "externalId",
            ),
            (
                CustomerInput {
                    external_id: "x".repeat(256),
                    ..ok.clone()
                },
                "externalId",
            ),
            (
                CustomerInput {
                    external_id: "a\u{0}b".into(),
                    ..ok.clone()
                },
                "externalId",
            ),
            (
                CustomerInput {
                    email: Some("nope".into()),
                    ..ok.clone()
                },
                "email",
            ),
            (
                CustomerInput {
                    currency: Some("US".into()),
                    ..ok.clone()
                },
                "currency",
            ),
            (
                CustomerInput {
                    currency: Some("U$D".into()),
                    ..ok.clone()
                },
                "currency",
            ),
            (
                CustomerInput {
                    metadata: Some(serde_json::json!([1])),
                    ..ok.clone()
                },
                "metadata",
            ),
            (
                CustomerInput {
                    metadata: Some(serde_json::json!({"k": "x".repeat(5000)})),
                    ..ok.clone()
                },
                "metadata",
            ),
            (
                CustomerInput {
                    metadata: Some(
                        serde_json::from_str(&format!("{}1{}", "{\"a\":".repeat(17), "}".repeat(17))).unwrap(),
                    ),
                    ..ok.clone()
                },
                "metadata",
            ),
            (
                CustomerInput {
                    name: Some("  ".into()),
                    ..ok.clone()
                },
                "name",
            ),
        ];
        for (input, field) in cases {
            match input.validate() {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
