//! Typed configuration: parsed once at start from the environment (and an optional TOML file),
//! validated, then passed around read-only. Every failure is one line naming the setting.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, str::FromStr};

use serde::Deserialize;

/// Where Neruba runs. Production turns off conveniences that leak information or weaken auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "production" | "prod" => Ok(Environment::Production),
            other => Err(format!("expected `development` or `production`, got `{other}`")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "pretty" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected `text` or `json`, got `{other}`")),
        }
    }
}

/// A configuration problem, reported as one line at start-up.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    fn new(setting: &str, message: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.to_string(),
            message: message.into(),
        }
    }
}

/// Everything the server needs to know, valid by construction.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None` means: start the embedded MariaDB under `data_dir`.
    pub database_url: Option<String>,
    pub bind: SocketAddr,
    pub env: Environment,
    /// Operator credential. Required in production; generated per start in development when unset.
    pub admin_token: String,
    /// Whether `admin_token` was generated (so `serve` can print it).
    pub admin_token_generated: bool,
    pub graphiql: bool,
    pub log_format: LogFormat,
    /// Project-local state: the embedded MariaDB lives in `<data_dir>/mariadb`.
    pub data_dir: PathBuf,
    pub migrate_on_start: bool,
    /// Built portal (Trunk's `web/dist`).
    pub portal_dir: PathBuf,
    pub db_pool_size: u32,
    /// Largest request body accepted anywhere, in bytes.
    pub max_body_bytes: usize,
    pub graphql_max_depth: usize,
    pub graphql_max_complexity: usize,
    /// How long a websocket may stay open without a `connection_init` (then it closes with 4408).
    /// Not a setting: tests shorten it.
    pub ws_init_timeout: std::time::Duration,
    /// Usage ingest limits.
    pub ingest: IngestLimits,
    /// Browser origins allowed to call `/graphql` and the ingest routes (CORS); empty: none, and
    /// no CORS headers at all.
    pub cors_origins: Vec<String>,
    pub billing: BillingSchedule,
    /// Live events a subscriber may fall behind by before its stream ends with
    /// `SUBSCRIBER_LAGGED` (`NERUBA_EVENT_BUS_CAPACITY`, default 1024).
    pub event_bus_capacity: usize,
    /// Whether concurrent charges share one transaction (`NERUBA_CHARGE_GROUPS`, default true;
    /// `ledger::hot`). Off: every charge is its own transaction, as before.
    pub charge_groups: bool,
    /// Most groups of charges running at once, each on a connection of the pool
    /// (`NERUBA_CHARGE_GROUP_WRITERS`, default 2).
    pub charge_group_writers: usize,
    /// Where browsers reach this server (`NERUBA_PUBLIC_URL`, default `http://<bind>`): the
    /// sandbox checkout's pages are linked under it.
    pub public_url: String,
    pub payments: PaymentsConfig,
}

/// A secret setting: kept out of `Debug` output (logs, panics).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Which payment provider checkouts go to (docs/payments.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentsConfig {
    /// Stripe, when `NERUBA_STRIPE_SECRET_KEY` is set.
    pub stripe: Option<StripeConfig>,
    /// Secrets `POST /webhooks/stripe` accepts signatures of (`NERUBA_STRIPE_WEBHOOK_SECRETS`,
    /// comma-separated: several while one is rotated out). The sandbox's own secret is added at
    /// run time when the sandbox is the provider.
    pub webhook_secrets: Vec<Secret>,
    /// How far a signature's timestamp may be from the server's clock, either way
    /// (`NERUBA_STRIPE_WEBHOOK_TOLERANCE_SECS`, default 300).
    pub webhook_tolerance_secs: u32,
    /// Whether the embedded sandbox provider serves checkouts when Stripe is not configured
    /// (`NERUBA_PAYMENTS_SANDBOX`; default on in development, off in production: whoever holds a
    /// sandbox link can complete the payment).
    pub sandbox: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeConfig {
    pub secret_key: Secret,
    /// The Stripe API's base URL (`NERUBA_STRIPE_API_BASE`, default `https://api.stripe.com/`):
    /// tests point it at a local stand-in.
    pub api_base: String,
}

/// How the billing scheduler runs (docs/billing.md, "Billing runs").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingSchedule {
    /// Seconds between the scheduler's runs; 0 turns it off (runs happen through `runBilling`).
    pub interval_secs: u32,
    /// Seconds after a boundary during which late events still go into its invoice: the
    /// scheduler's cutoff is its clock minus this.
    pub grace_secs: u32,
}

/// How much ingest accepts in one request and how far in the future an event may claim to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Most events in one batch (`NERUBA_INGEST_MAX_BATCH`, default 1000).
    pub max_batch: usize,
    /// An event timestamp later than receipt plus this is refused (`NERUBA_INGEST_MAX_FUTURE_SKEW_SECS`, default 300).
    pub max_future_skew_secs: u32,
    /// Largest `properties` object, as JSON bytes (`NERUBA_INGEST_MAX_PROPERTIES_BYTES`, default 8192).
    pub max_properties_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_batch: 1000,
            max_future_skew_secs: 300,
            max_properties_bytes: 8192,
        }
    }
}

/// The optional TOML file: same settings, lower precedence than the environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    bind: Option<String>,
    env: Option<String>,
    admin_token: Option<String>,
    graphiql: Option<bool>,
    log_format: Option<String>,
    data_dir: Option<PathBuf>,
    migrate_on_start: Option<bool>,
    portal_dir: Option<PathBuf>,
    db_pool_size: Option<u32>,
    max_body_bytes: Option<usize>,
    graphql_max_depth: Option<usize>,
    graphql_max_complexity: Option<usize>,
    ingest_max_batch: Option<usize>,
    ingest_max_future_skew_secs: Option<u32>,
    ingest_max_properties_bytes: Option<usize>,
    cors_origins: Option<String>,
    billing_interval_secs: Option<u32>,
    billing_grace_secs: Option<u32>,
    event_bus_capacity: Option<usize>,
    charge_groups: Option<bool>,
    charge_group_writers: Option<usize>,
    public_url: Option<String>,
    stripe_secret_key: Option<String>,
    stripe_webhook_secrets: Option<String>,
    stripe_api_base: Option<String>,
    stripe_webhook_tolerance_secs: Option<u32>,
    payments_sandbox: Option<bool>,
}

pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl Config {
    /// Reads the process environment; `NERUBA_CONFIG` names an optional TOML file.
    pub fn from_env() -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Config::from_vars(&vars)
    }

    /// Parses from an explicit variable map (tests use this; so does `from_env`).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        let file = match get("NERUBA_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::new("NERUBA_CONFIG", format!("cannot read {path}: {e}")))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| ConfigError::new("NERUBA_CONFIG", format!("{path}: {}", e.message())))?
            }
            None => FileConfig::default(),
        };

        let env = match get("NERUBA_ENV").or(file.env) {
            Some(v) => v.parse().map_err(|e| ConfigError::new("NERUBA_ENV", e))?,
            None => Environment::Development,
        };

        let database_url = get("DATABASE_URL").or(file.database_url);
        if let Some(url) = &database_url
            && !(url.starts_with("mysql://") || url.starts_with("mariadb://"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with mysql:// (MariaDB or MySQL)",
            ));
        }
        // mysql_async only knows the mysql:// scheme.
        let database_url = database_url.map(|u| u.replacen("mariadb://", "mysql://", 1));

        let bind_raw = get("NERUBA_BIND")
            .or(file.bind)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let bind = bind_raw.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "NERUBA_BIND",
                format!("expected host:port such as 127.0.0.1:8080, got `{bind_raw}`"),
            )
        })?;

        let (admin_token, admin_token_generated) = match get("NERUBA_ADMIN_TOKEN").or(file.admin_token) {
            Some(t) if t.len() < MIN_ADMIN_TOKEN_LEN => {
                return Err(ConfigError::new(
                    "NERUBA_ADMIN_TOKEN",
                    format!("must be at least {MIN_ADMIN_TOKEN_LEN} characters"),
                ));
            }
            Some(t) => (t, false),
            None if env == Environment::Production => {
                return Err(ConfigError::new(
                    "NERUBA_ADMIN_TOKEN",
                    "is required when NERUBA_ENV=production",
                ));
            }
            None => (crate::auth::keys::random_token("nadm_"), true),
        };

        let graphiql = match get("NERUBA_GRAPHIQL") {
            Some(v) => parse_bool("NERUBA_GRAPHIQL", &v)?,
            None => file.graphiql.unwrap_or(env == Environment::Development),
        };

        let log_format = match get("NERUBA_LOG_FORMAT").or(file.log_format) {
            Some(v) => v.parse().map_err(|e| ConfigError::new("NERUBA_LOG_FORMAT", e))?,
            None => LogFormat::Text,
        };

        let data_dir = get("NERUBA_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| ".neruba".into());
        let migrate_on_start = match get("NERUBA_MIGRATE_ON_START") {
            Some(v) => parse_bool("NERUBA_MIGRATE_ON_START", &v)?,
            None => file.migrate_on_start.unwrap_or(true),
        };
        let portal_dir = get("NERUBA_PORTAL_DIR")
            .map(PathBuf::from)
            .or(file.portal_dir)
            .unwrap_or_else(|| "web/dist".into());

        let db_pool_size = parse_num(
            "NERUBA_DB_POOL_SIZE",
            get("NERUBA_DB_POOL_SIZE"),
            file.db_pool_size,
            16,
            1,
            1000,
        )?;
        let max_body_bytes = parse_num(
            "NERUBA_MAX_BODY_BYTES",
            get("NERUBA_MAX_BODY_BYTES"),
            file.max_body_bytes,
            2 * 1024 * 1024,
            1024,
            256 * 1024 * 1024,
        )?;
        let graphql_max_depth = parse_num(
            "NERUBA_GRAPHQL_MAX_DEPTH",
            get("NERUBA_GRAPHQL_MAX_DEPTH"),
            file.graphql_max_depth,
            12,
            2,
            // Well inside the nesting every document is held to before parsing (graphql::limits).
            32,
        )?;
        let graphql_max_complexity = parse_num(
            "NERUBA_GRAPHQL_MAX_COMPLEXITY",
            get("NERUBA_GRAPHQL_MAX_COMPLEXITY"),
            file.graphql_max_complexity,
            5000,
            10,
            1_000_000,
        )?;

        let defaults = IngestLimits::default();
        let ingest = IngestLimits {
            max_batch: parse_num(
                "NERUBA_INGEST_MAX_BATCH",
                get("NERUBA_INGEST_MAX_BATCH"),
                file.ingest_max_batch,
                defaults.max_batch,
                1,
                10_000,
            )?,
            max_future_skew_secs: parse_num(
                "NERUBA_INGEST_MAX_FUTURE_SKEW_SECS",
                get("NERUBA_INGEST_MAX_FUTURE_SKEW_SECS"),
                file.ingest_max_future_skew_secs,
                defaults.max_future_skew_secs,
                0,
                7 * 24 * 3600,
            )?,
            max_properties_bytes: parse_num(
                "NERUBA_INGEST_MAX_PROPERTIES_BYTES",
                get("NERUBA_INGEST_MAX_PROPERTIES_BYTES"),
                file.ingest_max_properties_bytes,
                defaults.max_properties_bytes,
                64,
                1024 * 1024,
            )?,
        };

        let cors_origins = match get("NERUBA_CORS_ORIGINS").or(file.cors_origins) {
            Some(list) => parse_origins(&list).map_err(|e| ConfigError::new("NERUBA_CORS_ORIGINS", e))?,
            None => Vec::new(),
        };

        let billing = BillingSchedule {
            interval_secs: parse_num(
                "NERUBA_BILLING_INTERVAL_SECS",
                get("NERUBA_BILLING_INTERVAL_SECS"),
                file.billing_interval_secs,
                60,
                0,
                86_400,
            )?,
            grace_secs: parse_num(
                "NERUBA_BILLING_GRACE_SECS",
                get("NERUBA_BILLING_GRACE_SECS"),
                file.billing_grace_secs,
                300,
                0,
                7 * 86_400,
            )?,
        };

        let event_bus_capacity = parse_num(
            "NERUBA_EVENT_BUS_CAPACITY",
            get("NERUBA_EVENT_BUS_CAPACITY"),
            file.event_bus_capacity,
            crate::events::DEFAULT_CAPACITY,
            1,
            1_000_000,
        )?;
        let charge_groups = match get("NERUBA_CHARGE_GROUPS") {
            Some(v) => parse_bool("NERUBA_CHARGE_GROUPS", &v)?,
            None => file.charge_groups.unwrap_or(true),
        };
        let charge_group_writers = parse_num(
            "NERUBA_CHARGE_GROUP_WRITERS",
            get("NERUBA_CHARGE_GROUP_WRITERS"),
            file.charge_group_writers,
            crate::ledger::hot::DEFAULT_WRITERS,
            1,
            256,
        )?;
        let public_url = match get("NERUBA_PUBLIC_URL").or(file.public_url) {
            Some(url) => parse_base_url(&url).map_err(|e| ConfigError::new("NERUBA_PUBLIC_URL", e))?,
            None => format!("http://{bind}"),
        };
        let payments = parse_payments(
            &get,
            FilePayments {
                stripe_secret_key: file.stripe_secret_key,
                stripe_webhook_secrets: file.stripe_webhook_secrets,
                stripe_api_base: file.stripe_api_base,
                stripe_webhook_tolerance_secs: file.stripe_webhook_tolerance_secs,
                payments_sandbox: file.payments_sandbox,
            },
            env,
        )?;

        Ok(Config {
            event_bus_capacity,
            charge_groups,
            charge_group_writers,
            database_url,
            bind,
            env,
            admin_token,
            admin_token_generated,
            graphiql,
            log_format,
            data_dir,
            migrate_on_start,
            portal_dir,
            db_pool_size,
            max_body_bytes,
            graphql_max_depth,
            graphql_max_complexity,
            ws_init_timeout: std::time::Duration::from_secs(10),
            ingest,
            cors_origins,
            billing,
            public_url,
            payments,
        })
    }
}

/// A base URL (`https://billing.example.com`, `http://127.0.0.1:8080/neruba`): http or https, a
/// host, no query or fragment; answered without a trailing `/`.
fn parse_base_url(raw: &str) -> Result<String, String> {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(format!("`{raw}` is not a URL such as https://billing.example.com"));
    };
    if scheme != "http" && scheme != "https" {
        return Err("the scheme must be http or https".into());
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || rest.contains(['?', '#', '@']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{raw}` needs a host and no user, query, fragment or spaces"));
    }
    // What the Stripe client parses it with (it would panic on a URL it cannot parse).
    url::Url::parse(&format!("{}/", raw.trim_end_matches('/'))).map_err(|e| format!("`{raw}`: {e}"))?;
    Ok(raw.trim_end_matches('/').to_string())
}

/// The payment settings of the TOML file.
struct FilePayments {
    stripe_secret_key: Option<String>,
    stripe_webhook_secrets: Option<String>,
    stripe_api_base: Option<String>,
    stripe_webhook_tolerance_secs: Option<u32>,
    payments_sandbox: Option<bool>,
}

fn parse_payments(
    get: &dyn Fn(&str) -> Option<String>,
    file: FilePayments,
    env: Environment,
) -> Result<PaymentsConfig, ConfigError> {
    let webhook_secrets: Vec<Secret> = match get("NERUBA_STRIPE_WEBHOOK_SECRETS").or(file.stripe_webhook_secrets) {
        Some(list) => {
            let mut secrets = Vec::new();
            for secret in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if secret.len() < 8 || secret.len() > 256 || secret.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(ConfigError::new(
                        "NERUBA_STRIPE_WEBHOOK_SECRETS",
                        "each secret must be 8 to 256 characters without spaces (Stripe's start with whsec_)",
                    ));
                }
                secrets.push(Secret(secret.to_string()));
            }
            if secrets.is_empty() {
                return Err(ConfigError::new(
                    "NERUBA_STRIPE_WEBHOOK_SECRETS",
                    "names no secret; leave it unset instead",
                ));
            }
            secrets
        }
        None => Vec::new(),
    };
    let stripe = match get("NERUBA_STRIPE_SECRET_KEY").or(file.stripe_secret_key) {
        Some(key) => {
            if !(key.starts_with("sk_") || key.starts_with("rk_"))
                || key.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::new(
                    "NERUBA_STRIPE_SECRET_KEY",
                    "must be a Stripe secret or restricted key (sk_… or rk_…)",
                ));
            }
            if webhook_secrets.is_empty() {
                return Err(ConfigError::new(
                    "NERUBA_STRIPE_WEBHOOK_SECRETS",
                    "is required with NERUBA_STRIPE_SECRET_KEY: without it no payment would ever be confirmed",
                ));
            }
            let api_base = match get("NERUBA_STRIPE_API_BASE").or(file.stripe_api_base) {
                Some(url) => parse_base_url(&url).map_err(|e| ConfigError::new("NERUBA_STRIPE_API_BASE", e))?,
                None => "https://api.stripe.com".to_string(),
            };
            Some(StripeConfig {
                secret_key: Secret(key),
                api_base,
            })
        }
        None => None,
    };
    let sandbox = match get("NERUBA_PAYMENTS_SANDBOX") {
        Some(v) => parse_bool("NERUBA_PAYMENTS_SANDBOX", &v)?,
        None => file.payments_sandbox.unwrap_or(env == Environment::Development),
    };
    let webhook_tolerance_secs = parse_num(
        "NERUBA_STRIPE_WEBHOOK_TOLERANCE_SECS",
        get("NERUBA_STRIPE_WEBHOOK_TOLERANCE_SECS"),
        file.stripe_webhook_tolerance_secs,
        300,
        1,
        3600,
    )?;
    Ok(PaymentsConfig {
        stripe,
        webhook_secrets,
        webhook_tolerance_secs,
        sandbox,
    })
}

/// A comma-separated list of exact origins (`https://app.example.com`, `http://localhost:5173`):
/// scheme, host and optional port, nothing else. A wildcard is refused: with bearer keys in the
/// browser, which sites may send them is a decision to write down one by one.
fn parse_origins(list: &str) -> Result<Vec<String>, String> {
    let mut origins = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let bad = |why: &str| format!("`{raw}` is not an origin such as https://app.example.com: {why}");
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err(bad("no scheme"));
        };
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        if rest.contains(['/', '?', '#', '@', '*']) || rest.is_empty() {
            return Err(bad("only scheme, host and port, no path, user or wildcard"));
        }
        // An IPv6 host is bracketed: `http://[::1]:8000`.
        let (host, port) = match rest.find(']') {
            Some(end) if rest.starts_with('[') => match &rest[end + 1..] {
                "" => (&rest[..=end], None),
                tail => (&rest[..=end], Some(tail.strip_prefix(':').unwrap_or("x"))),
            },
            _ => match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        if let Some(port) = port
            && port.parse::<u16>().is_err()
        {
            return Err(bad("the port must be a number up to 65535"));
        }
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        {
            return Err(bad("the host has characters a host cannot have"));
        }
        // Browsers send the origin lower-cased; compare in that form.
        let origin = raw.to_ascii_lowercase();
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    if origins.is_empty() {
        return Err("names no origin; leave it unset to allow none".into());
    }
    Ok(origins)
}

fn parse_bool(setting: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(setting, format!("expected true or false, got `{v}`"))),
    }
}

fn parse_num<T>(
    setting: &str,
    env: Option<String>,
    file: Option<T>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Copy + std::fmt::Display,
{
    let value = match env {
        Some(v) => v
            .parse::<T>()
            .map_err(|_| ConfigError::new(setting, format!("expected a whole number, got `{v}`")))?,
        None => file.unwrap_or(default),
    };
    if value < min || value > max {
        return Err(ConfigError::new(
            setting,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn development_defaults_generate_an_admin_token_and_enable_graphiql() {
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.env, Environment::Development);
        assert!(c.graphiql);
        assert!(c.admin_token_generated);
        assert!(c.admin_token.len() >= MIN_ADMIN_TOKEN_LEN);
        assert!(c.database_url.is_none());
    }

    #[test]
    fn production_requires_an_admin_token_and_hides_graphiql() {
        let err = Config::from_vars(&vars(&[("NERUBA_ENV", "production")])).unwrap_err();
        assert_eq!(err.setting, "NERUBA_ADMIN_TOKEN");
        let c = Config::from_vars(&vars(&[
            ("NERUBA_ENV", "production"),
            ("NERUBA_ADMIN_TOKEN", "0123456789abcdef"),
        ]))
        .unwrap();
        assert!(!c.graphiql);
        let c = Config::from_vars(&vars(&[
            ("NERUBA_ENV", "production"),
            ("NERUBA_ADMIN_TOKEN", "0123456789abcdef"),
            ("NERUBA_GRAPHIQL", "true"),
        ]))
        .unwrap();
        assert!(c.graphiql);
    }

    #[test]
    fn each_bad_setting_is_named() {
        for (name, value) in [
            ("NERUBA_ENV", "staging"),
            ("NERUBA_BIND", "localhost"),
            ("DATABASE_URL", "postgres://x"),
            ("NERUBA_ADMIN_TOKEN", "short"),
            ("NERUBA_GRAPHIQL", "maybe"),
            ("NERUBA_LOG_FORMAT", "xml"),
            ("NERUBA_DB_POOL_SIZE", "0"),
            ("NERUBA_MAX_BODY_BYTES", "lots"),
            ("NERUBA_CORS_ORIGINS", "*"),
            ("NERUBA_CORS_ORIGINS", "https://app.example.com/"),
            ("NERUBA_CORS_ORIGINS", "app.example.com"),
            ("NERUBA_CORS_ORIGINS", "ftp://app.example.com"),
            ("NERUBA_CORS_ORIGINS", "https://app.example.com:99999"),
            ("NERUBA_CORS_ORIGINS", "https://*.example.com"),
            ("NERUBA_CORS_ORIGINS", " , "),
            ("NERUBA_PUBLIC_URL", "ftp://x"),
            ("NERUBA_PUBLIC_URL", "http://[::1"),
            ("NERUBA_STRIPE_SECRET_KEY", "pk_live_x"),
            ("NERUBA_STRIPE_WEBHOOK_SECRETS", "short"),
            ("NERUBA_STRIPE_WEBHOOK_TOLERANCE_SECS", "0"),
            ("NERUBA_PAYMENTS_SANDBOX", "perhaps"),
        ] {
            let err = Config::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.setting, name, "{err}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn stripe_needs_webhook_secrets_and_the_sandbox_is_for_development() {
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert!(c.payments.stripe.is_none() && c.payments.sandbox);
        let c = Config::from_vars(&vars(&[
            ("NERUBA_ENV", "production"),
            ("NERUBA_ADMIN_TOKEN", "0123456789abcdef"),
        ]))
        .unwrap();
        assert!(!c.payments.sandbox);
        let err = Config::from_vars(&vars(&[("NERUBA_STRIPE_SECRET_KEY", "sk_test_1")])).unwrap_err();
        assert_eq!(err.setting, "NERUBA_STRIPE_WEBHOOK_SECRETS");
        let c = Config::from_vars(&vars(&[
            ("NERUBA_STRIPE_SECRET_KEY", "sk_test_1"),
            ("NERUBA_STRIPE_WEBHOOK_SECRETS", "whsec_old_secret, whsec_new_secret"),
            ("NERUBA_STRIPE_API_BASE", "http://127.0.0.1:9999/"),
        ]))
        .unwrap();
        let stripe = c.payments.stripe.clone().unwrap();
        assert_eq!(stripe.api_base, "http://127.0.0.1:9999");
        assert_eq!(c.payments.webhook_secrets.len(), 2);
        assert!(
            !format!("{c:?}").contains("sk_test_1"),
            "the key is not in Debug output"
        );
    }

    #[test]
    fn cors_origins_are_exact_origins_and_off_by_default() {
        assert!(Config::from_vars(&vars(&[])).unwrap().cors_origins.is_empty());
        let c = Config::from_vars(&vars(&[(
            "NERUBA_CORS_ORIGINS",
            "https://App.example.com, http://localhost:5173,https://app.example.com, http://[::1]:8000, http://[::1]",
        )]))
        .unwrap();
        assert_eq!(
            c.cors_origins,
            [
                "https://app.example.com",
                "http://localhost:5173",
                "http://[::1]:8000",
                "http://[::1]"
            ]
        );
    }

    #[test]
    fn environment_overrides_the_file_and_unknown_file_keys_are_rejected() {
        let dir = std::env::temp_dir().join(format!("neruba-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("neruba.toml");
        std::fs::write(&file, "bind = \"127.0.0.1:9000\"\ndb_pool_size = 4\n").unwrap();
        let path = file.to_string_lossy().to_string();
        let c = Config::from_vars(&vars(&[("NERUBA_CONFIG", &path), ("NERUBA_DB_POOL_SIZE", "7")])).unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.db_pool_size, 7);

        std::fs::write(&file, "bnd = \"x\"\n").unwrap();
        let err = Config::from_vars(&vars(&[("NERUBA_CONFIG", &path)])).unwrap_err();
        assert_eq!(err.setting, "NERUBA_CONFIG");
        assert!(err.message.contains("bnd"), "{err}");
    }
}
