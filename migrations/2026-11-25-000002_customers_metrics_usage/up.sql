-- Customers of a project, named by the project's own external id. Created explicitly
-- (createCustomer) or implicitly by the first event naming an unknown external id, so an event is
-- never refused because a customer record lagged behind.
CREATE TABLE customers (
    id           VARCHAR(40)  NOT NULL,
    project_id   VARCHAR(40)  NOT NULL,
    external_id  VARCHAR(255) NOT NULL,
    name         VARCHAR(200) NULL,
    email        VARCHAR(320) NULL,
    currency     CHAR(3)      NULL,
    metadata     TEXT         NULL,
    implicit     BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at   DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at   DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_customers_external (project_id, external_id),
    CONSTRAINT fk_customers_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- What a project bills on: an aggregation over events with one metric code, optionally filtered
-- on event properties and grouped by one. `filters` is a JSON object {property: [values]}.
CREATE TABLE billable_metrics (
    id           VARCHAR(40)  NOT NULL,
    project_id   VARCHAR(40)  NOT NULL,
    code         VARCHAR(100) NOT NULL,
    name         VARCHAR(200) NOT NULL,
    aggregation  VARCHAR(20)  NOT NULL,
    property     VARCHAR(64)  NULL,
    filters      TEXT         NULL,
    group_by     VARCHAR(64)  NULL,
    created_at   DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_billable_metrics_code (project_id, code),
    CONSTRAINT fk_billable_metrics_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Raw usage events, kept whether or not a metric names them yet. Append-only: `seq` is the
-- clustered key so inserts go to the end of the table. `(project_id, idempotency_key)` is unique
-- forever; `request_hash` (SHA-256 of the canonical payload) tells a replay from a conflict.
-- `id` is the public id (`evt_…`), made by the server before the insert so that a batch learns
-- its ids without reading them back; nothing looks events up by it yet, so it has no index.
-- No foreign keys: ingest checks the project through the key and creates customers itself, and
-- per-row FK checks would cost every insert.
CREATE TABLE usage_events (
    seq                   BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    id                    VARCHAR(40)     NOT NULL,
    project_id            VARCHAR(40)     NOT NULL,
    idempotency_key       VARCHAR(255)    NOT NULL,
    request_hash          BINARY(32)      NOT NULL,
    customer_external_id  VARCHAR(255)    NOT NULL,
    metric                VARCHAR(100)    NOT NULL,
    quantity              DECIMAL(28, 12) NOT NULL,
    occurred_at           DATETIME(6)     NOT NULL,
    received_at           DATETIME(6)     NOT NULL,
    properties            TEXT            NULL,
    PRIMARY KEY (seq),
    UNIQUE KEY uq_usage_events_idempotency (project_id, idempotency_key),
    KEY ix_usage_events_customer_metric (project_id, customer_external_id, metric, occurred_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
