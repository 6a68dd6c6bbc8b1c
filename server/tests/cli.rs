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

#[tokio::test(flavor = "multi_thread")]
async fn migrate_then_serve_then_stop_gracefully_on_sigterm() {
    let db = TestDb::create().await;
    let migrate = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("up to date"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("NERUBA_BIND", format!("127.0.0.1:{port}"))
        .env("NERUBA_ADMIN_TOKEN", "cli-test-admin-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "server did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}
