//! Resolving a bearer credential to a [`Principal`], and the scope checks resolvers call.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header::AUTHORIZATION, request::Parts},
};
use chrono::Duration;

use super::{Scope, keys};
use crate::{
    app::AppState,
    db,
    error::Error,
    store::{
        api_keys::{self, ApiKeyRow},
        portal::PortalSessionRow,
    },
};

/// How often `last_used_at` is written at most, per key: keeps authentication read-mostly.
const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

#[derive(Debug, Clone)]
pub enum Principal {
    /// Holder of the admin token: manages projects, sees all of them.
    Operator,
    /// A project's API key.
    ApiKey { key: Box<ApiKeyRow>, scopes: Vec<Scope> },
    /// A customer's portal session (`crate::portal`): no scope at all. It passes none of the
    /// project checks below ([`Principal::require_scope`], [`Principal::project_for`]), so every
    /// resolver refuses it unless it was written for customers and confines it with
    /// [`Principal::customer_scope`].
    Customer(Box<PortalSessionRow>),
}

/// What a customer credential may reach: one customer of one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerScope<'a> {
    pub project_id: &'a str,
    pub customer_id: &'a str,
}

pub type AuthError = Error;

impl Principal {
    /// The project a key belongs to; `None` for the operator.
    pub fn project_id(&self) -> Option<&str> {
        match self {
            Principal::Operator => None,
            Principal::ApiKey { key, .. } => Some(&key.project_id),
            Principal::Customer(session) => Some(&session.project_id),
        }
    }

    /// The customer a portal credential acts for; `None` for project keys and the operator.
    pub fn customer_scope(&self) -> Option<CustomerScope<'_>> {
        match self {
            Principal::Customer(session) => Some(CustomerScope {
                project_id: &session.project_id,
                customer_id: &session.customer_id,
            }),
            _ => None,
        }
    }

    /// Whether a customer credential may see an object of `customer_id` in `project_id`: always
    /// for project keys and the operator (their checks are the scope checks), for a customer only
    /// its own.
    pub fn may_see_customer(&self, project_id: &str, customer_id: &str) -> bool {
        self.customer_scope()
            .is_none_or(|own| own.project_id == project_id && own.customer_id == customer_id)
    }

    pub fn scopes(&self) -> Vec<Scope> {
        match self {
            Principal::Operator => Scope::ALL.to_vec(),
            Principal::ApiKey { scopes, .. } => scopes.clone(),
            Principal::Customer(_) => Vec::new(),
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator)
    }

    /// Who did it, for audit columns.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator => "operator".to_string(),
            Principal::ApiKey { key, .. } => format!("api_key:{}", key.id),
            Principal::Customer(session) => format!("portal_session:{}", session.id),
        }
    }

    pub fn require_operator(&self) -> Result<(), Error> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "this operation needs the operator (admin token)".into(),
            ))
        }
    }

    /// The caller's project when the key has `scope`. The operator has no project of its own.
    pub fn require_scope(&self, scope: Scope) -> Result<&str, Error> {
        match self {
            Principal::ApiKey { key, scopes } if scopes.contains(&scope) => Ok(&key.project_id),
            Principal::ApiKey { .. } => Err(Error::Forbidden(format!("this API key lacks the `{scope}` scope"))),
            Principal::Operator => Err(Error::Forbidden("this operation needs a project API key".into())),
            Principal::Customer(_) => Err(customer_refused()),
        }
    }

    /// Whether this caller may create a key with `scopes`: a key only with a subset of its own (an
    /// `ADMIN` key cannot mint a key that reads or spends what it cannot), the operator any.
    pub fn may_grant(&self, scopes: &[Scope]) -> Result<(), Error> {
        let own = match self {
            Principal::Operator => return Ok(()),
            Principal::ApiKey { scopes, .. } => scopes,
            Principal::Customer(_) => return Err(customer_refused()),
        };
        let beyond: Vec<String> = scopes
            .iter()
            .filter(|s| !own.contains(s))
            .map(|s| format!("`{s}`"))
            .collect();
        if beyond.is_empty() {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "a key can only create keys with scopes it holds itself; this key lacks {}",
                beyond.join(", ")
            )))
        }
    }

    /// Resolves which project a request acts on. The operator names one; a key acts on its own
    /// project and, when it names another, gets `NOT_FOUND`, exactly as for a project that
    /// does not exist, so ids reveal nothing across tenants.
    /// `field` names the argument that carries the project id, for the operator's error.
    pub fn project_for(&self, requested: Option<&str>, field: &str, scope: Scope) -> Result<String, Error> {
        match self {
            Principal::Operator => requested
                .map(str::to_string)
                .ok_or_else(|| Error::invalid(field, "required for the operator")),
            Principal::ApiKey { key, .. } => {
                let own = self.require_scope(scope)?;
                match requested {
                    Some(other) if other != key.project_id => Err(Error::NotFound("project")),
                    _ => Ok(own.to_string()),
                }
            }
            Principal::Customer(_) => Err(customer_refused()),
        }
    }

    /// Like [`Principal::project_for`], for operations that any one of `scopes` allows (a charge
    /// may come from an ingest key or a billing key). `scopes` must not be empty.
    pub fn project_for_any(&self, requested: Option<&str>, field: &str, scopes: &[Scope]) -> Result<String, Error> {
        if let Principal::Customer(_) = self {
            return Err(customer_refused());
        }
        let mut refused = None;
        for scope in scopes {
            match self.project_for(requested, field, *scope) {
                Err(e @ Error::Forbidden(_)) => refused = Some(e),
                other => return other,
            }
        }
        let names: Vec<String> = scopes.iter().map(|s| format!("`{s}`")).collect();
        Err(refused
            .map(|_| Error::Forbidden(format!("this API key lacks the {} scope", names.join(" or "))))
            .unwrap_or_else(|| Error::Internal("no scope given".into())))
    }
}

/// Why a customer credential is refused a project operation.
pub fn customer_refused() -> Error {
    Error::Forbidden(
        "a customer's portal session can only read its own data, buy credits and pay its invoices; \
         this operation needs a project API key"
            .into(),
    )
}

/// Extracts the bearer token from an `Authorization` header value or a websocket init payload.
pub fn bearer(value: &str) -> Option<&str> {
    let value = value.trim();
    let token = match value.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

/// Resolves a token: the admin token, or an unrevoked API key (recording its use).
pub async fn authenticate(state: &AppState, token: Option<&str>) -> Result<Principal, Error> {
    let Some(token) = token else {
        return Err(Error::Unauthenticated(
            "missing credentials: send `Authorization: Bearer <api key>`".into(),
        ));
    };
    if constant_time_eq(token.as_bytes(), state.config.admin_token.as_bytes()) {
        return Ok(Principal::Operator);
    }
    if token.starts_with(crate::portal::CREDENTIAL_PREFIX) {
        let mut conn = db::get(&state.pool).await?;
        return match crate::portal::authenticate(&mut conn, token)
            .await
            .map_err(unavailable)?
        {
            Some(session) => Ok(Principal::Customer(Box::new(session))),
            None => Err(Error::Unauthenticated(
                "the portal session is invalid, expired or revoked: open the portal again from your account".into(),
            )),
        };
    }
    let invalid = || Error::Unauthenticated("invalid or revoked API key".into());
    if !token.starts_with(keys::KEY_PREFIX) || token.len() > 200 {
        return Err(invalid());
    }
    let mut conn = db::get(&state.pool).await?;
    let key = api_keys::find_by_hash(&mut conn, &keys::hash_secret(token))
        .await
        .map_err(unavailable)?
        .ok_or_else(invalid)?;
    if key.revoked_at.is_some() {
        return Err(invalid());
    }
    let now = crate::store::now();
    if key.last_used_at.is_none_or(|t| t < now - LAST_USED_RESOLUTION) {
        api_keys::touch_last_used(&mut conn, &key.id, now, now - LAST_USED_RESOLUTION)
            .await
            .map_err(unavailable)?;
    }
    let scopes = Scope::split(&key.scopes);
    Ok(Principal::ApiKey {
        key: Box::new(key),
        scopes,
    })
}

/// Any database failure while checking a key means "cannot tell now", never "not a key": the
/// client retries a 503, while a 401 would make it drop a valid key.
fn unavailable(e: diesel::result::Error) -> Error {
    tracing::warn!(error = %e, "authentication could not read the key");
    Error::Unavailable("cannot check credentials now: the database is unavailable; retry later".into())
}

pub fn token_from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Axum extractor for plain HTTP handlers: a missing or bad credential is a 401 JSON response.
impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(state, token_from_headers(&parts.headers)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("  bearer  abc "), Some("abc"));
        assert_eq!(bearer("abc"), Some("abc"));
        assert_eq!(bearer("Bearer "), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
