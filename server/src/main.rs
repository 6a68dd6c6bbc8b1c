//! The `neruba` command line: serve, migrate, doctor, reconcile, schema, grants, embedded-db.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use neruba::{
    app::AppState,
    auth::Scope,
    config::{Config, Environment},
    db::{
        self,
        embedded::{EmbeddedMariaDb, EmbeddedOptions},
    },
    demo, graphql, http, ledger, projects, server, telemetry,
};

#[derive(Parser)]
#[command(
    name = "neruba",
    version,
    about = "Usage billing with a double-entry ledger behind every balance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (GraphQL, HTTP ingest, portal). Without DATABASE_URL, starts a private MariaDB.
    Serve {
        /// Ensure a demo project exists and print a fresh API key for it.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Check configuration, database, migrations and portal assets; print what to fix.
    Doctor,
    /// Verify every ledger invariant (balanced transactions, wallet and lot balances equal to their
    /// postings, no over-consumed lot); print each break and exit 1 when there is one.
    Reconcile {
        /// Only this project (default: all).
        #[arg(long)]
        project: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a period's billing and reconciliation export: per customer and currency, invoiced,
    /// credits applied, paid, outstanding, and whether it ties out with the ledger (exit 1 when a
    /// row does not).
    Export {
        /// `YYYY-MM` (a calendar month, UTC) or `YYYY-MM-DD..YYYY-MM-DD` (the end exclusive).
        #[arg(long)]
        period: String,
        /// Only this project (default: all).
        #[arg(long)]
        project: Option<String>,
        /// `csv` (default) or `json`.
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
    },
    /// Print the GraphQL schema (SDL), or write it to / compare it with a file.
    Schema {
        /// Write the schema to this file.
        #[arg(long, conflicts_with = "check")]
        out: Option<PathBuf>,
        /// Exit non-zero when this file differs from the schema of this binary.
        #[arg(long)]
        check: Option<PathBuf>,
    },
    /// Print the GRANT statements for the database user `neruba serve` runs as: SELECT and INSERT
    /// on the ledger (never UPDATE or DELETE), and on the other tables what serving needs.
    Grants {
        #[arg(long, default_value = db::embedded::DATABASE)]
        database: String,
        #[arg(long, default_value = "neruba_app")]
        user: String,
        /// The account's host part (`%`: any host).
        #[arg(long, default_value = "%")]
        host: String,
    },
    /// Run only the private MariaDB server (scripts use it for tests) until SIGINT/SIGTERM.
    EmbeddedDb {
        /// Where its files live.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        port: Option<u16>,
        /// No fsync per commit: faster, for throwaway test databases only.
        #[arg(long)]
        fast_unsafe: bool,
        /// Write the server URL (without a database) to this file once it accepts connections.
        #[arg(long)]
        url_file: Option<PathBuf>,
    },
}

#[global_allocator]
static ALLOCATOR: neruba::Allocator = neruba::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Schema { out, check } = &cli.command {
        return schema(out.as_ref(), check.as_ref());
    }
    if let Command::Grants { database, user, host } = &cli.command {
        print!("{}", db::privileges::grant_script(database, user, host)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::EmbeddedDb {
        data_dir,
        port,
        fast_unsafe,
        url_file,
    } = cli.command
    {
        return embedded_db(data_dir, port, fast_unsafe, url_file).await;
    }
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    match cli.command {
        Command::Serve { demo } => serve(config, demo).await,
        Command::Migrate => migrate(config).await,
        Command::Doctor => Ok(doctor(config).await),
        Command::Reconcile { project, json } => reconcile(config, project.as_deref(), json).await,
        Command::Export {
            period,
            project,
            format,
        } => export(config, &period, project.as_deref(), &format).await,
        Command::Schema { .. } | Command::Grants { .. } | Command::EmbeddedDb { .. } => {
            unreachable!("handled above")
        }
    }
}

/// The configured database, or the embedded one started for the lifetime of the command.
async fn open_database(config: &Config) -> anyhow::Result<(String, Option<EmbeddedMariaDb>)> {
    match &config.database_url {
        Some(url) => {
            db::wait_for(url, Duration::from_secs(10))
                .await
                .with_context(|| db::url::redacted(url))?;
            Ok((url.clone(), None))
        }
        None => {
            let dir = config.data_dir.join("mariadb");
            tracing::info!(dir = %dir.display(), "no DATABASE_URL: starting the embedded MariaDB");
            let embedded = EmbeddedMariaDb::start(&dir, EmbeddedOptions::default()).await?;
            tracing::info!(url = %embedded.database_url(), "embedded MariaDB ready");
            Ok((embedded.database_url(), Some(embedded)))
        }
    }
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<ExitCode> {
    let (url, embedded) = open_database(&config).await?;
    let Some(mut embedded) = embedded else {
        return serve_with(config, &url, demo).await;
    };
    // The embedded MariaDB is this process's own: if it dies, serving on would only answer 503s
    // until someone noticed. Exit non-zero instead, so a supervisor restarts both.
    let result = tokio::select! {
        result = serve_with(config, &url, demo) => result,
        status = embedded.exited() => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            tracing::error!(%status, log = %embedded.log_tail(), "the embedded MariaDB exited unexpectedly; stopping");
            eprintln!(
                "error: the embedded MariaDB exited unexpectedly ({status}); see {}",
                embedded.dir().join("error.log").display()
            );
            Ok(ExitCode::FAILURE)
        }
    };
    tracing::info!("stopping the embedded MariaDB");
    embedded.stop().await;
    result
}

async fn serve_with(config: Config, url: &str, demo: bool) -> anyhow::Result<ExitCode> {
    let pool = db::pool(url, config.db_pool_size);
    // Only when some are pending: applying needs DDL privileges, which a serving user without
    // them (docs/operations.md) lacks even when there is nothing to apply.
    if config.migrate_on_start && !db::pending_migrations(&pool).await?.is_empty() {
        let applied = db::run_migrations(url)
            .await
            .context("applying migrations (as a user with all privileges on the database; see docs/operations.md)")?;
        tracing::info!(?applied, "migrations applied");
    }
    let listener = server::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let addr = listener.local_addr()?;
    let state = AppState::new(config.clone(), pool.clone());
    let base = format!("http://{addr}");
    tracing::info!(%addr, env = config.env.as_str(), graphiql = config.graphiql, "listening");
    if config.admin_token_generated {
        println!(
            "Admin token (generated for this run; set NERUBA_ADMIN_TOKEN to keep one): {}",
            config.admin_token
        );
    }
    if demo {
        print_demo(&state, &base).await?;
    }
    server::serve(listener, state, server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn print_demo(state: &AppState, base: &str) -> anyhow::Result<()> {
    let (project, seeded) = demo::seed(&state.pool, &state.known_customers, &state.config.ingest)
        .await
        .context("seeding the demo project")?;
    tracing::info!(?seeded, project = %project.id, "demo project seeded");
    let mut conn = db::get(&state.pool).await?;
    let name = format!("demo key {}", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"));
    let key = projects::create_api_key(&mut conn, &project.id, &name, &Scope::ALL, "operator").await?;
    let secret = key.secret;
    let portal = neruba::portal::create_session(
        &mut conn,
        &state.config.public_url,
        &project.id,
        "operator",
        &neruba::portal::SessionRequest {
            customer_external_id: "acme".into(),
            return_url: None,
            ttl_seconds: Some(neruba::portal::MAX_TTL_SECONDS),
            idempotency_key: None,
        },
    )
    .await?;
    println!(
        r#"
Neruba is running.
  GraphQL     {base}/graphql{graphiql}
  Portal      {portal}
              (acme's portal session: the link works once, for 24 hours; mint another with
              createPortalSession)
  Health      {base}/health/ready

Demo project {id} — API key (all scopes, shown once):
  {secret}
  Customers acme, globex, initech; metrics api_calls (COUNT), compute_seconds (SUM),
  storage_gb (MAX) with October 2026's usage; wallets with top-ups, grants and charges;
  acme on the plan "pro" with two invoices (one paid from credits, one with 128.25 due).

Try:
  curl -s {base}/graphql -H 'Authorization: Bearer {secret}' \
    -H 'Content-Type: application/json' \
    -d '{{"query":"{{ viewer {{ kind scopes project {{ id name }} }} }}"}}'
"#,
        graphiql = if state.config.graphiql {
            "  (GraphiQL in a browser)"
        } else {
            ""
        },
        id = project.id,
        portal = portal.url,
    );
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let (url, embedded) = open_database(&config).await?;
    let result = db::run_migrations(&url).await;
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    let applied = result?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for version in applied {
            println!("applied {version}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(config: Config, period: &str, project: Option<&str>, format: &str) -> anyhow::Result<ExitCode> {
    let (from, to) = neruba::billing::export::parse_period(period).map_err(|e| anyhow::anyhow!("--{e}"))?;
    let (url, embedded) = open_database(&config).await?;
    let result = async {
        let mut conn = db::connect(&url).await?;
        anyhow::Ok(neruba::billing::export::export(&mut conn, project, from, to).await?)
    }
    .await;
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    let rows = result?;
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", neruba::billing::export::to_csv(&rows));
    }
    Ok(if rows.iter().all(|r| r.ties_out()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn reconcile(config: Config, project: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let (url, embedded) = open_database(&config).await?;
    let result = async {
        let mut conn = db::connect(&url).await?;
        anyhow::Ok(ledger::reconcile::reconcile(&mut conn, project).await?)
    }
    .await;
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    let report = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "checked {} transactions, {} wallets, {} lots",
            report.transactions, report.wallets, report.lots
        );
        for b in &report.breaks {
            println!(
                "BREAK {} {} (project {}): expected {}, found {}; accounts {}",
                b.check,
                b.subject,
                b.project_id,
                b.expected,
                b.actual,
                b.account_ids.join(", ")
            );
        }
        if report.is_clean() {
            println!("ledger is consistent");
        } else {
            println!("{} break(s)", report.breaks.len());
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn schema(out: Option<&PathBuf>, check: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let sdl = graphql::sdl();
    if let Some(path) = check {
        let on_disk = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        if on_disk != sdl {
            eprintln!(
                "{} differs from the schema in the code; run `neruba schema --out {}`",
                path.display(),
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        println!("{} is up to date", path.display());
    } else if let Some(path) = out {
        std::fs::write(path, &sdl).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    } else {
        print!("{sdl}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn embedded_db(
    data_dir: PathBuf,
    port: Option<u16>,
    fast_unsafe: bool,
    url_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut embedded = EmbeddedMariaDb::start(&data_dir, EmbeddedOptions { port, fast_unsafe }).await?;
    let url = embedded.server_url();
    if let Some(path) = url_file {
        std::fs::write(&path, &url).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("MariaDB ready at {url} (data in {})", embedded.dir().display());
    // Whoever runs this (scripts, CI) watches this process: when mariadbd dies, so does it,
    // with a non-zero status, rather than leaving a live process in front of no database.
    let died = tokio::select! {
        _ = server::shutdown_signal() => None,
        status = embedded.exited() => Some(status),
    };
    match died {
        None => {
            embedded.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        Some(status) => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            eprintln!(
                "error: the embedded MariaDB exited unexpectedly ({status}); see {}: {}",
                embedded.dir().join("error.log").display(),
                embedded.log_tail()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What the database enforces by itself, as warnings (the embedded default runs as root): the
/// CHECK constraints, and whether the configured user can change posted ledger rows.
async fn database_guarantees(url: &str) {
    let mut conn = match db::connect(url).await {
        Ok(conn) => conn,
        Err(e) => {
            println!("warn  database guarantees: not checked ({e})");
            return;
        }
    };
    let all = db::privileges::LEDGER_CHECKS.len();
    match db::privileges::missing_checks(&mut conn).await {
        Ok(missing) if missing.is_empty() => println!("ok    check constraints: {all} of {all} present"),
        Ok(missing) => println!(
            "warn  check constraints: {} of {all} missing ({}); they come with `neruba migrate`",
            missing.len(),
            missing.join(", ")
        ),
        Err(e) => println!("warn  check constraints: not checked ({e})"),
    }
    match db::privileges::append_only(&mut conn).await {
        Ok(a) if a.holds() => println!("ok    ledger append-only: {}", a.describe()),
        Ok(a) => println!("warn  ledger append-only: {}", a.describe()),
        Err(e) => println!("warn  ledger append-only: not checked ({e})"),
    }
}

/// Each check prints a line; a failing one says what to do.
async fn doctor(config: Config) -> ExitCode {
    let mut failures = 0;
    let mut report = |ok: bool, what: &str, detail: String| {
        if ok {
            println!("ok    {what}: {detail}");
        } else {
            failures += 1;
            println!("FAIL  {what}: {detail}");
        }
    };
    report(
        true,
        "configuration",
        format!("environment {}, bind {}", config.env.as_str(), config.bind),
    );
    if config.env == Environment::Production && config.graphiql {
        println!("warn  graphiql: enabled in production (NERUBA_GRAPHIQL=true)");
    }

    let url = match &config.database_url {
        Some(url) => Some(url.clone()),
        None => {
            let dir = config.data_dir.join("mariadb");
            let port = db::embedded::last_port(&dir);
            let binaries = db::embedded::find_binary(&["mariadbd", "mysqld"]).is_some();
            report(
                binaries,
                "embedded MariaDB",
                if binaries {
                    format!("server binaries found; data in {}", dir.display())
                } else {
                    "mariadbd not found: install Debian's mariadb-server (scripts/setup.sh) or set DATABASE_URL".into()
                },
            );
            port.map(|p| format!("mysql://root@127.0.0.1:{p}/{}", db::embedded::DATABASE))
        }
    };
    match url {
        Some(url) => {
            let pool = db::pool(&url, 2);
            let state = AppState::new(config.clone(), pool);
            let readiness = http::health::readiness(&state).await;
            match &readiness.database {
                Ok(()) => report(true, "database", db::url::redacted(&url)),
                Err(e) => report(
                    false,
                    "database",
                    format!(
                        "{} unreachable ({e}); {}",
                        db::url::redacted(&url),
                        if config.database_url.is_some() {
                            "check DATABASE_URL and that the server runs"
                        } else {
                            "the embedded MariaDB runs only while `neruba serve` does"
                        }
                    ),
                ),
            }
            if readiness.database.is_ok() {
                match &readiness.migrations {
                    Ok(()) => report(true, "migrations", "all applied".into()),
                    Err(e) => report(false, "migrations", format!("{e}; run `neruba migrate`")),
                }
                if readiness.migrations.is_ok() {
                    database_guarantees(&url).await;
                }
            }
        }
        None => println!("skip  database: the embedded MariaDB has not run yet; `neruba serve` starts it"),
    }

    let index = config.portal_dir.join("index.html");
    report(
        index.is_file(),
        "portal",
        if index.is_file() {
            format!("built at {}", config.portal_dir.display())
        } else {
            format!(
                "{} missing: run `trunk build --release --offline` at the repository root",
                index.display()
            )
        },
    );
    if failures == 0 {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("{failures} check(s) failed");
        ExitCode::FAILURE
    }
}
