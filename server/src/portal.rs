//! Customer access to the portal (issue 15): a project mints a short-lived **portal session** for
//! one of its customers; the session's one-time **link token** travels in a URL, and the portal
//! exchanges it for a **customer credential** that reads and does only what belongs to that
//! customer (see [`crate::auth::Principal::Customer`]).
//!
//! Secrets: the credential is random (256 bits) and stored as a SHA-256 hash, like an API key.
//! The link token is an HMAC of the session id under a secret every replica shares (kept in
//! `payment_secrets`), so a retried `createPortalSession` with the same idempotency key can answer
//! the same link without the link being stored; only its hash is, for the lookup. A link works
//! once, before the session expires; the credential works until the session expires or is revoked.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{Duration, NaiveDateTime};
use diesel::result::Error as DieselError;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::{
    auth::keys,
    customers,
    db::{self, TxFailure},
    error::{Error, ErrorCode, Result},
    ids,
    ledger::{outbox, request_hash},
    store::{
        Conn, ledger as ledger_store, payments as payment_store,
        portal::{self as store, PortalSessionRow, PortalSettingsRow},
    },
};

pub const SESSION_ID_PREFIX: &str = "ps";
/// Prefix of a portal link's one-time token.
pub const LINK_PREFIX: &str = "npl_";
/// Prefix of a customer credential (what the portal sends as `Authorization: Bearer`).
pub const CREDENTIAL_PREFIX: &str = "ncs_";
/// Session lifetimes a project may ask for, in seconds, and the default.
pub const MIN_TTL_SECONDS: i64 = 60;
pub const MAX_TTL_SECONDS: i64 = 24 * 3600;
pub const DEFAULT_TTL_SECONDS: i64 = 3600;
/// Longer tokens are refused before any lookup (ours are 47 characters).
const MAX_TOKEN_LEN: usize = 200;

type HmacSha256 = Hmac<Sha256>;

/// What a project asks for.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub customer_external_id: String,
    pub return_url: Option<String>,
    pub ttl_seconds: Option<i64>,
    pub idempotency_key: Option<String>,
}

/// A session as minted (or replayed): its row, its link token and the portal URL carrying it.
#[derive(Debug, Clone)]
pub struct MintedSession {
    pub session: PortalSessionRow,
    pub token: String,
    pub url: String,
    pub replayed: bool,
}

/// A link exchanged for a credential.
#[derive(Debug, Clone)]
pub struct Exchanged {
    pub session: PortalSessionRow,
    pub credential: String,
}

/// The state of a session, from its timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum PortalSessionStatus {
    /// Minted; its link was not used yet.
    Pending,
    /// Its link was exchanged; the credential works until `expiresAt`.
    Active,
    Expired,
    Revoked,
}

pub fn status(row: &PortalSessionRow, now: NaiveDateTime) -> PortalSessionStatus {
    if row.revoked_at.is_some() {
        PortalSessionStatus::Revoked
    } else if row.expires_at <= now {
        PortalSessionStatus::Expired
    } else if row.exchanged_at.is_some() {
        PortalSessionStatus::Active
    } else {
        PortalSessionStatus::Pending
    }
}

/// Mints a session for a customer of `project_id` (the caller checked the scope). With an
/// idempotency key, the same request answers the first session and its link (`replayed`); another
/// request under the key is `IDEMPOTENCY_CONFLICT`.
pub async fn create_session(
    conn: &mut Conn,
    public_url: &str,
    project_id: &str,
    actor: &str,
    request: &SessionRequest,
) -> Result<MintedSession> {
    let key = request
        .idempotency_key
        .as_deref()
        .map(|k| ids::parse_idempotency_key("idempotencyKey", k))
        .transpose()?;
    let return_url = request
        .return_url
        .as_deref()
        .map(|u| crate::payments::parse_return_url("returnUrl", u))
        .transpose()?;
    let ttl = request.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(Error::invalid(
            "ttlSeconds",
            format!("must be {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} seconds"),
        ));
    }
    if request.customer_external_id.is_empty() || request.customer_external_id.len() > 255 {
        return Err(Error::NotFound("customer"));
    }
    let hash = request_hash(&[
        &request.customer_external_id,
        return_url.as_deref().unwrap_or(""),
        &ttl.to_string(),
    ]);
    let secret = link_secret(conn).await?;
    if let Some(key) = &key
        && let Some(existing) = replay(conn, project_id, key, &hash).await?
    {
        return minted(public_url, &secret, existing, true);
    }
    let customer = customers::find_customer(conn, project_id, &request.customer_external_id).await?;
    let now = crate::store::now();
    let id = ids::new_id(SESSION_ID_PREFIX);
    let token = link_token(&secret, &id)?;
    let row = PortalSessionRow {
        id,
        project_id: project_id.to_string(),
        customer_id: customer.id,
        link_hash: keys::hash_secret(&token),
        credential_hash: None,
        return_url,
        request_hash: key.as_ref().map(|_| hash.clone()),
        idempotency_key: key.clone(),
        actor: actor.to_string(),
        created_at: now,
        expires_at: now + Duration::seconds(ttl),
        exchanged_at: None,
        revoked_at: None,
    };
    match store::insert(conn, &row).await {
        Ok(()) => minted(public_url, &secret, row, false),
        // The same key stored concurrently: answer as its replay.
        Err(e) => match &key {
            Some(key) if is_duplicate(&e) => match replay(conn, project_id, key, &hash).await? {
                Some(existing) => minted(public_url, &secret, existing, true),
                None => Err(e.into()),
            },
            _ => Err(e.into()),
        },
    }
}

async fn replay(conn: &mut Conn, project_id: &str, key: &str, hash: &[u8]) -> Result<Option<PortalSessionRow>> {
    match store::find_by_key(conn, project_id, key).await? {
        Some(existing) if existing.request_hash.as_deref() == Some(hash) => Ok(Some(existing)),
        Some(_) => Err(Error::conflict(
            ErrorCode::IdempotencyConflict,
            format!("idempotency key '{key}' was already used for a different portal session"),
        )),
        None => Ok(None),
    }
}

fn minted(public_url: &str, secret: &str, session: PortalSessionRow, replayed: bool) -> Result<MintedSession> {
    let token = link_token(secret, &session.id)?;
    Ok(MintedSession {
        url: format!("{public_url}/portal/#session={token}"),
        token,
        session,
        replayed,
    })
}

fn is_duplicate(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// The portal's link-signing secret, made by whichever replica needs it first.
async fn link_secret(conn: &mut Conn) -> Result<String> {
    let candidate = keys::random_token("pls_");
    Ok(payment_store::shared_secret(conn, "portal_link", &candidate, crate::store::now()).await?)
}

fn link_token(secret: &str, session_id: &str) -> Result<String> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .map_err(|_| Error::Internal("the portal link secret cannot key an HMAC".into()))?;
    mac.update(b"neruba-portal-link\x1f");
    mac.update(session_id.as_bytes());
    Ok(format!(
        "{LINK_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    ))
}

fn refused() -> Error {
    Error::Unauthenticated("this portal link was already used, has expired, was revoked or is not a link".into())
}

/// Exchanges a link's token for a customer credential, once. A used, expired, revoked, unknown or
/// altered token is `UNAUTHENTICATED`, all alike.
pub async fn exchange(conn: &mut Conn, token: &str) -> Result<Exchanged> {
    if !token.starts_with(LINK_PREFIX) || token.len() > MAX_TOKEN_LEN {
        return Err(refused());
    }
    let mut session = store::find_by_link(conn, &keys::hash_secret(token))
        .await?
        .ok_or_else(refused)?;
    let credential = keys::random_token(CREDENTIAL_PREFIX);
    let credential_hash = keys::hash_secret(&credential);
    let now = crate::store::now();
    if !store::exchange(conn, &session.id, &credential_hash, now).await? {
        return Err(refused());
    }
    // The row as the update left it (only the update's own columns changed).
    session.credential_hash = Some(credential_hash);
    session.exchanged_at = Some(now);
    Ok(Exchanged { session, credential })
}

/// The live session behind a customer credential; `None` for anything else (unknown, expired,
/// revoked).
pub async fn authenticate(
    conn: &mut Conn,
    credential: &str,
) -> std::result::Result<Option<PortalSessionRow>, DieselError> {
    if !credential.starts_with(CREDENTIAL_PREFIX) || credential.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let Some(session) = store::find_by_credential(conn, &keys::hash_secret(credential)).await? else {
        return Ok(None);
    };
    Ok((status(&session, crate::store::now()) == PortalSessionStatus::Active).then_some(session))
}

/// A session of the project, `NOT_FOUND` when there is none (or it is another project's).
pub async fn find_session(conn: &mut Conn, project_id: &str, id: &str) -> Result<PortalSessionRow> {
    if !ids::looks_like(SESSION_ID_PREFIX, id) {
        return Err(Error::NotFound("portal session"));
    }
    store::find(conn, project_id, id)
        .await?
        .ok_or(Error::NotFound("portal session"))
}

/// Revokes a session at once: its link and credential stop working, and its open websockets
/// close on every server (through the outbox, as a revoked API key's do). Revoking it again
/// changes nothing.
pub async fn revoke(conn: &mut Conn, project_id: &str, id: &str) -> Result<PortalSessionRow> {
    find_session(conn, project_id, id).await?;
    let revoked: Result<()> = db::transaction_with_retry!(conn, |_: &DieselError| false, |c| {
        let now = crate::store::now();
        if store::revoke(c, id, now).await? {
            ledger_store::insert_outbox(c, &[outbox::key_revoked(project_id, id, now)]).await?;
        }
        Ok::<_, TxFailure>(())
    });
    revoked?;
    find_session(conn, project_id, id).await
}

/// The project's portal settings (defaults when never set).
pub async fn settings(conn: &mut Conn, project_id: &str) -> Result<PortalSettingsRow> {
    Ok(store::settings(conn, project_id).await?.unwrap_or(PortalSettingsRow {
        project_id: project_id.to_string(),
        logo_url: None,
        updated_at: crate::store::now(),
    }))
}

/// Sets the logo the portal shows (`None` removes it): an `http(s)` URL of at most 2048 characters.
pub async fn set_logo(conn: &mut Conn, project_id: &str, logo_url: Option<&str>) -> Result<PortalSettingsRow> {
    let logo_url = logo_url
        .map(|u| crate::payments::parse_return_url("logoUrl", u))
        .transpose()?;
    let row = PortalSettingsRow {
        project_id: project_id.to_string(),
        logo_url,
        updated_at: crate::store::now(),
    };
    store::upsert_settings(conn, &row).await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_are_keyed_by_the_secret_and_the_session() {
        let a = link_token("secret-a", "ps_1").unwrap();
        assert!(a.starts_with(LINK_PREFIX));
        assert_eq!(a.len(), LINK_PREFIX.len() + 43);
        assert_eq!(
            a,
            link_token("secret-a", "ps_1").unwrap(),
            "derivable again for a replay"
        );
        assert_ne!(a, link_token("secret-b", "ps_1").unwrap());
        assert_ne!(a, link_token("secret-a", "ps_2").unwrap());
    }

    #[test]
    fn status_follows_revocation_then_expiry_then_exchange() {
        let now = crate::store::now();
        let mut row = PortalSessionRow {
            id: "ps_1".into(),
            project_id: "prj_1".into(),
            customer_id: "cus_1".into(),
            link_hash: vec![0; 32],
            credential_hash: None,
            return_url: None,
            idempotency_key: None,
            request_hash: None,
            actor: "operator".into(),
            created_at: now,
            expires_at: now + Duration::seconds(60),
            exchanged_at: None,
            revoked_at: None,
        };
        assert_eq!(status(&row, now), PortalSessionStatus::Pending);
        row.exchanged_at = Some(now);
        assert_eq!(status(&row, now), PortalSessionStatus::Active);
        assert_eq!(status(&row, now + Duration::seconds(60)), PortalSessionStatus::Expired);
        row.revoked_at = Some(now);
        assert_eq!(status(&row, now), PortalSessionStatus::Revoked);
    }
}
