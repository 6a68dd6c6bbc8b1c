//! The embedded default: a private MariaDB server under a project-local directory, started when no
//! `DATABASE_URL` is configured, initialised on first use, listening on loopback only, and stopped
//! with the process that started it.
//!
//! Layout of `<dir>`: `data/` (the datadir), `error.log`, `mysqld.pid`, `mysqld.sock`, `port`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

/// Name of the database Neruba uses inside its embedded server.
pub const DATABASE: &str = "neruba";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "MariaDB server binaries not found ({0}); install Debian's `mariadb-server` (scripts/setup.sh does) or set DATABASE_URL"
    )]
    NotInstalled(&'static str),
    #[error("cannot prepare {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("initialising the MariaDB data directory failed; see {log}: {tail}")]
    Init { log: PathBuf, tail: String },
    #[error("MariaDB did not start; see {log}: {tail}")]
    Start { log: PathBuf, tail: String },
    #[error("the embedded MariaDB in {dir} is already running (process {pid}): is another `neruba serve` using it?")]
    AlreadyRunning { dir: PathBuf, pid: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A running private MariaDB. Dropping it asks the server to shut down; prefer [`stop`](Self::stop).
#[derive(Debug)]
pub struct EmbeddedMariaDb {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

/// Options for [`EmbeddedMariaDb::start`].
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// Fixed port; `None` picks a free one (and reuses the last one when it is still free).
    pub port: Option<u16>,
    /// Trade durability for speed (tests): no fsync per commit.
    pub fast_unsafe: bool,
}

impl EmbeddedMariaDb {
    /// Starts (initialising on first run) the server whose files live in `dir`.
    pub async fn start(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedMariaDb, EmbeddedError> {
        let server = find_binary(&["mariadbd", "mysqld"]).ok_or(EmbeddedError::NotInstalled("mariadbd"))?;
        let install = find_binary(&["mariadb-install-db", "mysql_install_db"])
            .ok_or(EmbeddedError::NotInstalled("mariadb-install-db"))?;

        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
        // Another server on this datadir would wait ~100 s for InnoDB's file lock before failing:
        // say so at once instead.
        if let Some(pid) = running_server(&dir) {
            return Err(EmbeddedError::AlreadyRunning { dir, pid });
        }
        let as_root = running_as_root();
        let data = dir.join("data");
        if !data.join("mysql").is_dir() {
            initialise(&install, &dir, &data, as_root).await?;
        }

        // A port picked here is only free until mariadbd binds it: when something else took it
        // in between (tests bind ports all the time), start again on a fresh one.
        let mut attempt = 1;
        loop {
            let port = match options.port {
                Some(p) => p,
                None if attempt == 1 => match last_port(&dir).filter(|p| port_is_free(*p)) {
                    Some(p) => p,
                    None => free_port().map_err(io(&dir))?,
                },
                None => free_port().map_err(io(&dir))?,
            };
            match Self::start_on(&server, &dir, &data, port, &options, as_root).await {
                Err(EmbeddedError::Start { tail, .. })
                    if options.port.is_none() && attempt < 3 && tail.contains("Address already in use") =>
                {
                    tracing::warn!(
                        port,
                        "the embedded MariaDB's port was taken before it bound it; trying another"
                    );
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_on(
        server: &Path,
        dir: &Path,
        data: &Path,
        port: u16,
        options: &EmbeddedOptions,
        as_root: bool,
    ) -> Result<EmbeddedMariaDb, EmbeddedError> {
        std::fs::write(dir.join("port"), port.to_string()).map_err(io(dir))?;

        let log = dir.join("error.log");
        let tmp = private_tmp(dir)?;
        let mut cmd = Command::new(server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", socket_path(dir).display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg("--skip-name-resolve")
            .arg("--max-connections=1000")
            .arg("--character-set-server=utf8mb4")
            .arg("--collation-server=utf8mb4_bin")
            .arg("--innodb-buffer-pool-size=256M");
        if options.fast_unsafe {
            cmd.arg("--innodb-flush-log-at-trx-commit=0")
                .arg("--sync-binlog=0")
                .arg("--innodb-doublewrite=0");
        }
        if as_root {
            cmd.arg("--user=root");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(false);
        let child = cmd.spawn().map_err(io(server))?;

        let mut db = EmbeddedMariaDb {
            child: Some(child),
            dir: dir.to_path_buf(),
            port,
        };
        db.wait_until_accepting(&log).await?;
        crate::db::create_database(&db.server_url(), DATABASE)
            .await
            .map_err(|e| EmbeddedError::Start {
                log: log.clone(),
                tail: e.to_string(),
            })?;
        Ok(db)
    }

    async fn wait_until_accepting(&mut self, log: &Path) -> Result<(), EmbeddedError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(EmbeddedError::Start {
                    log: log.to_path_buf(),
                    tail: format!("mariadbd exited with {status}; {}", tail(log)),
                });
            }
            if crate::db::connect(&self.server_url()).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EmbeddedError::Start {
                    log: log.to_path_buf(),
                    tail: format!("not ready after 90s; {}", tail(log)),
                });
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The mariadbd process id (for signals: tests freeze it with SIGSTOP); `None` once it exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Waits until mariadbd exits by itself (killed, crashed, out of disk); never resolves for
    /// a server already stopped. Cancel-safe.
    pub async fn exited(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            return std::future::pending().await;
        };
        let status = child.wait().await;
        self.child = None;
        status
    }

    /// The last lines of mariadbd's error log, for messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("error.log"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// URL of the server without a database (root over loopback TCP).
    pub fn server_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// URL of Neruba's database inside it.
    pub fn database_url(&self) -> String {
        format!("{}/{DATABASE}", self.server_url())
    }

    /// Clean shutdown: SIGTERM, then wait (MariaDB flushes and exits).
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            if tokio::time::timeout(Duration::from_secs(60), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

impl Drop for EmbeddedMariaDb {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(&child);
        }
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: sending a signal to a child process we spawned and have not reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}

async fn initialise(install: &Path, dir: &Path, data: &Path, as_root: bool) -> Result<(), EmbeddedError> {
    // Initialise into a scratch directory and rename, so an interrupted first run leaves no
    // half-made datadir behind.
    let scratch = dir.join("data.init");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    }
    let log = dir.join("install.log");
    let log_file = std::fs::File::create(&log).map_err(io(&log))?;
    let log_err = log_file.try_clone().map_err(io(&log))?;
    let tmp = private_tmp(dir)?;
    let mut cmd = Command::new(install);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", scratch.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        // No hostname look-up (`--force` skips the resolveip check): a machine without a
        // resolvable hostname (containers, chroots, minimal images) still initialises; Neruba
        // only connects over loopback.
        .arg("--force")
        .arg("--skip-name-resolve")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    if as_root {
        cmd.arg("--user=root");
    }
    let status = cmd.status().await.map_err(io(install))?;
    if !status.success() {
        return Err(EmbeddedError::Init {
            log: log.clone(),
            tail: tail(&log),
        });
    }
    std::fs::rename(&scratch, data).map_err(io(data))?;
    Ok(())
}

/// Unix sockets have a ~107-byte path limit; fall back to a short path in the temp dir.
fn socket_path(dir: &Path) -> PathBuf {
    let preferred = dir.join("mysqld.sock");
    if preferred.as_os_str().len() < 100 {
        return preferred;
    }
    let mut hash = 0u64;
    for b in dir.as_os_str().as_encoded_bytes() {
        hash = hash.wrapping_mul(31).wrapping_add(*b as u64);
    }
    std::env::temp_dir().join(format!("neruba-{hash:x}.sock"))
}

/// The loopback port the server in `dir` used last (recorded in `<dir>/port`).
pub fn last_port(dir: &Path) -> Option<u16> {
    std::fs::read_to_string(dir.join("port")).ok()?.trim().parse().ok()
}

/// The first of `names` found in `PATH` or the usual system folders.
pub fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(
        [
            "/usr/sbin",
            "/usr/bin",
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/local/mysql/bin",
        ]
        .map(PathBuf::from),
    );
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// The live MariaDB process recorded in `<dir>/mysqld.pid`, if any (a stale file is ignored).
fn running_server(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("mysqld.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    matches!(comm.trim(), "mariadbd" | "mysqld").then_some(pid)
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// The last lines of a log, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(8)..].join(" | ")
}

/// A temporary directory of this server's own. With the default (`/tmp`, shared by every
/// MariaDB on the machine), a bootstrap can meet a stale `#sql-temptable-<pid>-…` file left by
/// an earlier server that had the same pid, and fail with "Unknown table 'mysql.tmp_user_sys'".
fn private_tmp(dir: &Path) -> Result<std::path::PathBuf, EmbeddedError> {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    Ok(tmp)
}
