//! The `neruba` binary itself: configuration errors, migrate, serve with graceful shutdown, schema.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use neruba::testing::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_neruba");

#[test]
fn invalid_configuration_is_one_clear_line_and_exit_2() {
    let out = Command::new(BIN)
        .arg("serve")
        .env("NERUBA_BIND", "not-an-address")
        .env_remove("NERUBA_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("NERUBA_BIND"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn schema_check_passes_for_the_checked_in_file() {
    let root = neruba::testing::workspace_root();
    let out = Command::new(BIN)
        .arg("schema")
        .arg("--check")
        .arg(root.join("schema.graphql"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tmp = std::env::temp_dir().join(format!("neruba-schema-{}.graphql", std::process::id()));
    std::fs::write(&tmp, "type Query { stale: Int }\n").unwrap();
    let out = Command::new(BIN)
        .arg("schema")
        .arg("--check")
        .arg(&tmp)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_file(tmp);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(port: u16, within: Duration) {
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            started.elapsed() < within,
            "server did not become ready within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `neruba serve` on `port`, against `database_url` or (None) the embedded default.
fn serve(
    port: u16,
    database_url: Option<&str>,
    adjust: impl FnOnce(&mut Command) -> &mut Command,
) -> std::process::Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_remove("NERUBA_CONFIG")
        .env("NERUBA_BIND", format!("127.0.0.1:{port}"))
        .env("NERUBA_ADMIN_TOKEN", "cli-test-admin-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match database_url {
        Some(url) => cmd.env("DATABASE_URL", url),
        None => cmd.env_remove("DATABASE_URL"),
    };
    adjust(&mut cmd).spawn().unwrap()
}

fn terminate_and_wait(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < within, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_each_check_and_fails_on_a_missing_portal() {
    let db = TestDb::create().await;
    let missing = std::env::temp_dir().join("neruba-no-portal-here");
    let out = Command::new(BIN)
        .arg("doctor")
        .env("DATABASE_URL", &db.url)
        .env("NERUBA_PORTAL_DIR", &missing)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok    database"), "{stdout}");
    assert!(stdout.contains("ok    migrations"), "{stdout}");
    assert!(
        stdout.contains("FAIL  portal") && stdout.contains("trunk build"),
        "{stdout}"
    );
    // As root (like the embedded default) the ledger is not append-only: a warning, not a failure.
    assert!(stdout.contains("ok    check constraints: 15 of 15 present"), "{stdout}");
    assert!(
        stdout.contains("warn  ledger append-only: no: the user root@")
            && stdout.contains("can UPDATE ledger_postings (granted at global level)")
            && stdout.contains("docs/operations.md"),
        "{stdout}"
    );

    let portal = std::env::temp_dir().join(format!("neruba-portal-{}", std::process::id()));
    std::fs::create_dir_all(&portal).unwrap();
    std::fs::write(portal.join("index.html"), "<html></html>").unwrap();
    let out = Command::new(BIN)
        .arg("doctor")
        .env("DATABASE_URL", &db.url)
        .env("NERUBA_PORTAL_DIR", &portal)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let _ = std::fs::remove_dir_all(portal);
}

/// As the application user of `neruba grants`, doctor finds the ledger append-only, and `serve`
/// starts (with start-up migration on: there is nothing to apply, so it needs no DDL).
#[tokio::test(flavor = "multi_thread")]
async fn doctor_and_serve_as_the_application_user() {
    let db = TestDb::create().await;
    let user = db.app_user().await;
    let portal = std::env::temp_dir().join(format!("neruba-portal-app-user-{}", std::process::id()));
    std::fs::create_dir_all(&portal).unwrap();
    std::fs::write(portal.join("index.html"), "<html></html>").unwrap();
    let out = Command::new(BIN)
        .arg("doctor")
        .env("DATABASE_URL", &user.url)
        .env("NERUBA_PORTAL_DIR", &portal)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ok    check constraints: 15 of 15 present"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "ok    ledger append-only: yes (no UPDATE/DELETE on ledger_postings, ledger_transactions; user {}@",
            user.user
        )),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(portal);

    let port = free_port();
    let mut child = serve(port, Some(&user.url), |cmd| cmd);
    wait_ready(port, Duration::from_secs(30)).await;
    assert!(terminate_and_wait(&mut child, Duration::from_secs(15)).success());
}

/// `neruba grants` prints the checked-in script by default, and refuses names it cannot quote.
#[test]
fn grants_prints_the_checked_in_script() {
    let out = Command::new(BIN).arg("grants").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script = std::fs::read_to_string(neruba::testing::workspace_root().join("scripts/grant-app-user.sql")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), script);
    let out = Command::new(BIN)
        .args(["grants", "--user", "x'; DROP TABLE y; --"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The embedded default: no DATABASE_URL, so `serve` runs its own MariaDB and stops it on exit.
#[tokio::test(flavor = "multi_thread")]
async fn serve_without_a_database_url_runs_and_stops_its_own_mariadb() {
    let data = std::env::temp_dir().join(format!("neruba-embedded-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    let mut child = serve(port, None, |cmd| cmd.env("NERUBA_DATA_DIR", &data));
    wait_ready(port, Duration::from_secs(90)).await;
    let pid: i32 = std::fs::read_to_string(data.join("mariadb/mysqld.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signal 0 only checks that the process exists.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "mariadbd runs while Neruba does");

    let status = terminate_and_wait(&mut child, Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
    assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "mariadbd stopped with Neruba");
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_then_serve_then_stop_gracefully_on_sigterm() {
    let db = TestDb::create_unmigrated().await;
    let migrate = || {
        Command::new(BIN)
            .arg("migrate")
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap()
    };
    let first = migrate();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied 20261125000001"));
    let second = migrate();
    assert!(String::from_utf8_lossy(&second.stdout).contains("up to date"));

    let port = free_port();
    // Start-up migration is off: this proves `migrate` did the work.
    let mut child = serve(port, Some(&db.url), |cmd| cmd.env("NERUBA_MIGRATE_ON_START", "false"));
    wait_ready(port, Duration::from_secs(30)).await;
    let status = terminate_and_wait(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

/// The front door: `serve --demo` prints a key that works, and running it again reuses the project.
#[tokio::test(flavor = "multi_thread")]
async fn serve_demo_prints_a_working_key_for_one_demo_project() {
    use std::io::{BufRead, BufReader};

    let db = TestDb::create().await;
    let mut project_ids = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let mut child = serve(port, Some(&db.url), |cmd| cmd.arg("--demo").stdout(Stdio::piped()));
        let stdout = child.stdout.take().unwrap();
        // Read every line (so the server never writes into a closed pipe); hand over the key.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.trim().strip_prefix("nrb_") {
                    let _ = tx.send(format!("nrb_{rest}"));
                }
            }
        });
        let key = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve --demo prints an API key on a line of its own");
        wait_ready(port, Duration::from_secs(30)).await;

        let body: serde_json::Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/graphql"))
            .bearer_auth(&key)
            .json(&serde_json::json!({ "query": "{ viewer { scopes project { id name } } }" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["data"]["viewer"]["project"]["name"], "Demo project", "{body}");
        assert_eq!(body["data"]["viewer"]["scopes"].as_array().unwrap().len(), 4);
        project_ids.push(body["data"]["viewer"]["project"]["id"].as_str().unwrap().to_string());
        assert!(terminate_and_wait(&mut child, Duration::from_secs(15)).success());
    }
    assert_eq!(project_ids[0], project_ids[1], "a second run reuses the demo project");
}

#[test]
fn embedded_db_exits_non_zero_when_its_mariadb_dies() {
    let data = std::env::temp_dir().join(format!("neruba-embedded-dies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let url_file = data.join("url");
    let mut child = Command::new(BIN)
        .args(["embedded-db", "--fast-unsafe", "--data-dir"])
        .arg(data.join("db"))
        .arg("--url-file")
        .arg(&url_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !url_file.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "embedded-db exited before it was ready"
        );
        assert!(started.elapsed() < Duration::from_secs(90), "embedded-db not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid: i32 = std::fs::read_to_string(data.join("db/mysqld.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: killing the mariadbd this test's child started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("embedded-db kept running after its mariadbd died");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("exited unexpectedly"), "{stderr}");
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_exits_non_zero_when_its_embedded_mariadb_dies() {
    let data = std::env::temp_dir().join(format!("neruba-embedded-serve-dies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    let mut child = serve(port, None, |cmd| cmd.env("NERUBA_DATA_DIR", &data));
    wait_ready(port, Duration::from_secs(90)).await;
    let pid: i32 = std::fs::read_to_string(data.join("mariadb/mysqld.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: killing the mariadbd this test's child started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("serve kept running after its embedded mariadbd died");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&data);
}
