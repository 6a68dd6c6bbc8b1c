//! Projects (tenants) and their API keys: validation and the operations that create and revoke them.

use diesel_async::AsyncConnection;

use crate::{
    auth::{Scope, keys},
    error::{Error, Result},
    ids,
    ledger::outbox,
    store::{
        Conn,
        api_keys::{self, ApiKeyRow, NewApiKey},
        ledger as ledger_store, now,
        projects::{self, NewProject, ProjectRow},
    },
};

pub const PROJECT_ID_PREFIX: &str = "prj";
pub const API_KEY_ID_PREFIX: &str = "key";
const MAX_NAME_CHARS: usize = 200;

/// A display name: trimmed, 1..=200 characters, no control characters.
pub fn parse_name(field: &str, raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(name.to_string())
}

pub fn parse_scopes(field: &str, scopes: &[Scope]) -> Result<String> {
    if scopes.is_empty() {
        return Err(Error::invalid(field, "at least one scope is required"));
    }
    Ok(Scope::join(scopes))
}

pub async fn create_project(conn: &mut Conn, name: &str) -> Result<ProjectRow> {
    let name = parse_name("name", name)?;
    let id = ids::new_id(PROJECT_ID_PREFIX);
    let created_at = now();
    projects::insert(
        conn,
        &NewProject {
            id: &id,
            name: &name,
            created_at,
        },
    )
    .await?;
    Ok(ProjectRow { id, name, created_at })
}

/// Finds a project; a malformed id is simply not found.
pub async fn find_project(conn: &mut Conn, id: &str) -> Result<ProjectRow> {
    if !ids::looks_like(PROJECT_ID_PREFIX, id) {
        return Err(Error::NotFound("project"));
    }
    projects::find(conn, id).await?.ok_or(Error::NotFound("project"))
}

/// A new key and its secret. The secret exists only in this value: it is never stored.
pub struct CreatedApiKey {
    pub key: ApiKeyRow,
    pub secret: String,
}

pub async fn create_api_key(
    conn: &mut Conn,
    project_id: &str,
    name: &str,
    scopes: &[Scope],
    created_by: &str,
) -> Result<CreatedApiKey> {
    let name = parse_name("name", name)?;
    let scopes = parse_scopes("scopes", scopes)?;
    let project_id = project_id.to_string();
    let created_by = created_by.to_string();
    conn.transaction(async |conn| {
        {
            // The project must exist; the foreign key keeps it so until commit.
            let project = find_project(conn, &project_id).await?;
            let secret = keys::generate_secret();
            let row = ApiKeyRow {
                id: ids::new_id(API_KEY_ID_PREFIX),
                project_id: project.id,
                name,
                prefix: keys::display_prefix(&secret),
                scopes,
                created_by,
                created_at: now(),
                last_used_at: None,
                revoked_at: None,
            };
            let hash = keys::hash_secret(&secret);
            api_keys::insert(
                conn,
                &NewApiKey {
                    id: &row.id,
                    project_id: &row.project_id,
                    name: &row.name,
                    prefix: &row.prefix,
                    secret_hash: &hash,
                    scopes: &row.scopes,
                    created_by: &row.created_by,
                    created_at: row.created_at,
                },
            )
            .await?;
            Ok::<_, Error>(CreatedApiKey { key: row, secret })
        }
    })
    .await
}

/// Revokes a key of `project_id` (`None`: any project, for the operator). Revoking twice is a no-op
/// that returns the key as it is. Returns whether this call revoked it. The revocation and its
/// outbox row commit together, so every server learns of it and closes the key's websockets.
pub async fn revoke_api_key(conn: &mut Conn, project_id: Option<&str>, key_id: &str) -> Result<(ApiKeyRow, bool)> {
    if !ids::looks_like(API_KEY_ID_PREFIX, key_id) {
        return Err(Error::NotFound("API key"));
    }
    conn.transaction(async |conn| {
        let found = match project_id {
            Some(p) => api_keys::find_in_project(conn, p, key_id).await?,
            None => api_keys::find(conn, key_id).await?,
        };
        let mut key = found.ok_or(Error::NotFound("API key"))?;
        if key.revoked_at.is_some() {
            return Ok((key, false));
        }
        let at = now();
        let changed = api_keys::revoke(conn, key_id, at).await?;
        if changed == 0 {
            // Revoked concurrently: report the stored time.
            key = api_keys::find(conn, key_id).await?.ok_or(Error::NotFound("API key"))?;
            return Ok((key, false));
        }
        ledger_store::insert_outbox(conn, &[outbox::key_revoked(&key.project_id, &key.id, at)]).await?;
        key.revoked_at = Some(at);
        Ok::<_, Error>((key, true))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("name", "  Acme  ").unwrap(), "Acme");
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(201)] {
            let err = parse_name("name", bad).unwrap_err();
            assert!(
                matches!(err, Error::Invalid { ref field, .. } if field == "name"),
                "{bad:?}"
            );
        }
        assert!(parse_name("name", &"é".repeat(200)).is_ok());
    }

    #[test]
    fn a_key_needs_a_scope() {
        assert!(parse_scopes("scopes", &[]).is_err());
        assert_eq!(parse_scopes("scopes", &[Scope::Read]).unwrap(), "read");
    }
}
