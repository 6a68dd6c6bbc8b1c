//! Owns the API key the portal signs in with: where it comes from (a `#key=` link or the
//! sign-in form) and where it is kept between visits (`localStorage`).

use std::fmt;

use wasm_bindgen::JsValue;
use web_sys::{Storage, UrlSearchParams};

const STORAGE_KEY: &str = "neruba.apiKey";

/// A non-empty API key secret. `Debug` is redacted so a key never ends up in a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Accepts what a person pasted, ignoring surrounding whitespace; `None` if nothing is left.
    pub fn parse(input: &str) -> Option<Self> {
        let trimmed = input.trim();
        (!trimmed.is_empty()).then(|| Self(trimmed.to_owned()))
    }

    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The key to start with: one handed over in the URL fragment wins over a remembered one.
pub fn initial() -> Option<ApiKey> {
    take_from_fragment().or_else(stored)
}

/// Reads `#key=<secret>` and removes the fragment from the address bar, so the secret does not
/// linger in the visible URL or get copied along with it. The fragment never reaches a server.
fn take_from_fragment() -> Option<ApiKey> {
    let window = web_sys::window()?;
    let location = window.location();
    let hash = location.hash().ok()?;
    let params = UrlSearchParams::new_with_str(hash.strip_prefix('#')?).ok()?;
    let key = ApiKey::parse(&params.get("key")?)?;

    let without_fragment = format!(
        "{}{}",
        location.pathname().unwrap_or_default(),
        location.search().unwrap_or_default()
    );
    if let Ok(history) = window.history() {
        // If the browser refuses, the key still works; it merely stays visible.
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&without_fragment));
    }
    Some(key)
}

fn stored() -> Option<ApiKey> {
    ApiKey::parse(&storage()?.get_item(STORAGE_KEY).ok()??)
}

/// Remembers the key for the next visit. Storage can be unavailable (private windows, disabled
/// site data); the portal then still works for this visit only.
pub fn remember(key: &ApiKey) {
    if let Some(storage) = storage() {
        let _ = storage.set_item(STORAGE_KEY, key.secret());
    }
}

pub fn forget() {
    if let Some(storage) = storage() {
        let _ = storage.remove_item(STORAGE_KEY);
    }
}

fn storage() -> Option<Storage> {
    web_sys::window()?.local_storage().ok()?
}

#[cfg(test)]
mod tests {
    use super::ApiKey;

    #[test]
    fn pasted_key_is_trimmed() {
        assert_eq!(ApiKey::parse("  nrb_abc \n").unwrap().secret(), "nrb_abc");
    }

    #[test]
    fn blank_input_is_not_a_key() {
        assert_eq!(ApiKey::parse(" \t"), None);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = ApiKey::parse("nrb_secret").unwrap();
        assert!(!format!("{key:?}").contains("nrb_secret"));
    }
}
