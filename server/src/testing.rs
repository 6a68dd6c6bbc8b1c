//! Test support (used by `server/tests` and `e2e/`): each [`TestApp`] gets its own database on
//! the MariaDB server named by `NERUBA_TEST_DATABASE_URL` (or `DATABASE_URL`), migrated, and a
//! real server on a random loopback port. The database is dropped when the `TestApp` is.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use rand::RngCore;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    app::AppState,
    auth::Scope,
    config::Config,
    db::{self, Pool},
    projects, server,
};

/// The MariaDB server tests run against.
pub fn server_url() -> String {
    std::env::var("NERUBA_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .expect("set NERUBA_TEST_DATABASE_URL to a MariaDB server URL (scripts/test.sh starts a private one)")
}

/// The repository root (for `web/dist`, `schema.graphql`, `migrations/`).
///
/// Taken from `CARGO_MANIFEST_DIR` at run time (cargo sets it for every test process; any member
/// crate's parent is the root), so a test binary reused from a build in another checkout still
/// looks at this checkout. The compile-time value is the fallback.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("a member crate has a parent")
        .to_path_buf()
}

/// A fresh, migrated database that is dropped on drop.
pub struct TestDb {
    pub server_url: String,
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        TestDb::create_on(&server_url()).await
    }

    /// A fresh database with no tables: for testing migrations themselves.
    pub async fn create_unmigrated() -> TestDb {
        TestDb::make(&server_url(), false).await
    }

    pub async fn create_on(server_url: &str) -> TestDb {
        TestDb::make(server_url, true).await
    }

    async fn make(server_url: &str, migrate: bool) -> TestDb {
        let mut random = [0u8; 6];
        rand::rng().fill_bytes(&mut random);
        let name = format!("neruba_test_{}", hex::encode(random));
        let server_url = db::url::with_database(server_url, "");
        let server_url = server_url.trim_end_matches('/').to_string();
        db::create_database(&server_url, &name)
            .await
            .expect("create test database");
        let url = db::url::with_database(&server_url, &name);
        if migrate {
            db::run_migrations(&url).await.expect("migrate test database");
        }
        TestDb { server_url, name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        // Drop runs outside async context guarantees: use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(db::drop_database(&server_url, &name));
            }
        })
        .join();
    }
}

/// A database user with only the serving privileges ([`db::privileges::grant_statements`]) on a
/// [`TestDb`], as operators create it (docs/operations.md); dropped on drop.
pub struct TestAppUser {
    server_url: String,
    pub user: String,
    /// The test database, as this user.
    pub url: String,
}

impl TestDb {
    pub async fn app_user(&self) -> TestAppUser {
        use diesel_async::SimpleAsyncConnection;
        let mut random = [0u8; 6];
        rand::rng().fill_bytes(&mut random);
        let user = format!("neruba_app_{}", hex::encode(random));
        let password = hex::encode(random).repeat(2);
        let mut statements = vec![format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';")];
        statements.extend(db::privileges::grant_statements(&self.name, &user, "%").expect("valid names"));
        let mut conn = db::connect(&self.url).await.expect("connect as the administrator");
        for statement in &statements {
            conn.batch_execute(statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        TestAppUser {
            server_url: self.server_url.clone(),
            url: db::url::with_credentials(&self.url, &user, &password),
            user,
        }
    }
}

impl Drop for TestAppUser {
    fn drop(&mut self) {
        let (server_url, user) = (self.server_url.clone(), self.user.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(async {
                    use diesel_async::RunQueryDsl;
                    let mut conn = db::connect(&server_url).await?;
                    diesel::sql_query(format!("DROP USER IF EXISTS '{user}'@'%'"))
                        .execute(&mut conn)
                        .await?;
                    Ok::<_, db::DbError>(())
                });
            }
        })
        .join();
    }
}

/// A running server on its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub admin_token: String,
    pub pool: Pool,
    pub state: AppState,
    pub db: Option<TestDb>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// Spawns with configuration changes (applied after the test defaults).
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::create().await;
        let url = db.url.clone();
        let mut app = TestApp::spawn_on(&url, adjust).await;
        app.db = Some(db);
        app
    }

    /// Spawns against an existing, migrated database.
    pub async fn spawn_on(database_url: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let listener = server::bind("127.0.0.1:0".parse().expect("loopback"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let mut config = test_config(database_url);
        // Links the server makes (the sandbox checkout's page) point at this server.
        config.public_url = format!("http://{addr}");
        adjust(&mut config);
        let admin_token = config.admin_token.clone();
        let pool = db::pool(database_url, config.db_pool_size);
        let state = AppState::new(config, pool.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                let _ = server::serve(listener, state, async {
                    let _ = rx.await;
                })
                .await;
            }
        });
        TestApp {
            addr,
            base_url: format!("http://{addr}"),
            admin_token,
            pool,
            state,
            db: None,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn create_project(&self, name: &str) -> String {
        let mut conn = db::get(&self.pool).await.expect("db");
        projects::create_project(&mut conn, name)
            .await
            .expect("create project")
            .id
    }

    /// A key with the given scopes (`"read"`, `"ingest"`, `"billing"`, `"admin"`); returns the secret.
    pub async fn create_api_key(&self, project_id: &str, scopes: &[&str]) -> String {
        let scopes: Vec<Scope> = scopes.iter().map(|s| s.parse().expect("scope")).collect();
        let mut conn = db::get(&self.pool).await.expect("db");
        projects::create_api_key(&mut conn, project_id, "test key", &scopes, "operator")
            .await
            .expect("create key")
            .secret
    }

    pub async fn revoke_api_key_by_secret(&self, secret: &str) {
        let mut conn = db::get(&self.pool).await.expect("db");
        let key = crate::store::api_keys::find_by_hash(&mut conn, &crate::auth::keys::hash_secret(secret))
            .await
            .expect("query")
            .expect("key exists");
        projects::revoke_api_key(&mut conn, None, &key.id)
            .await
            .expect("revoke");
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Background work (outbox tailer, expiry sweeper) ends with the server.
        self.state.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn test_config(database_url: &str) -> Config {
    let mut random = [0u8; 16];
    rand::rng().fill_bytes(&mut random);
    let vars: HashMap<String, String> = [
        ("DATABASE_URL", database_url.to_string()),
        ("NERUBA_ADMIN_TOKEN", format!("test-admin-{}", hex::encode(random))),
        ("NERUBA_DB_POOL_SIZE", "8".to_string()),
        // Tests bill through `runBilling` with their own clock; the scheduler test turns it on.
        ("NERUBA_BILLING_INTERVAL_SECS", "0".to_string()),
        (
            "NERUBA_PORTAL_DIR",
            workspace_root().join("web/dist").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Config::from_vars(&vars).expect("test config is valid")
}
