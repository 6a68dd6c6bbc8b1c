//! Liveness and readiness probes.

use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use crate::{app::AppState, db};

/// The process is up and serving HTTP.
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to serve traffic: the database answers and every embedded migration is applied.
/// 503 names the failing check; it turns 200 again by itself once the cause is gone. While the
/// database is known to be down (the pool's circuit breaker is open) it answers at once.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let report = readiness(&state).await;
    let status = if report.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report.to_json()))
}

pub struct Readiness {
    pub database: Result<(), String>,
    pub migrations: Result<(), String>,
    /// The pool's circuit breaker after the check (`open`: requests fail at once).
    pub circuit: db::BreakerState,
}

impl Readiness {
    pub fn ok(&self) -> bool {
        self.database.is_ok() && self.migrations.is_ok()
    }

    pub fn to_json(&self) -> Value {
        let check = |r: &Result<(), String>| match r {
            Ok(()) => json!({ "ok": true }),
            Err(e) => json!({ "ok": false, "error": e }),
        };
        let failing: Vec<&str> = [("database", &self.database), ("migrations", &self.migrations)]
            .into_iter()
            .filter(|(_, r)| r.is_err())
            .map(|(n, _)| n)
            .collect();
        let mut database = check(&self.database);
        database["circuit"] = json!(self.circuit.as_str());
        json!({
            "status": if self.ok() { "ready" } else { "unavailable" },
            "failing": failing,
            "checks": { "database": database, "migrations": check(&self.migrations) },
        })
    }
}

pub async fn readiness(state: &AppState) -> Readiness {
    let database = db::ping(&state.pool).await.map_err(|e| e.to_string());
    let migrations = match &database {
        Err(_) => Err("not checked: database unavailable".to_string()),
        Ok(()) => match db::pending_migrations(&state.pool).await {
            Ok(pending) if pending.is_empty() => Ok(()),
            Ok(pending) => Err(format!("pending: {}", pending.join(", "))),
            Err(e) => Err(e.to_string()),
        },
    };
    Readiness {
        database,
        migrations,
        circuit: state.pool.breaker().state(),
    }
}
