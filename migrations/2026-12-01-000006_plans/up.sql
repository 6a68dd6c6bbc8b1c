-- Plans (issue 13). A plan is a code and a name; what it bills lives in immutable versions: a
-- change makes a new version, and subscriptions keep the version they were made on until they are
-- migrated. Charges are a version's usage charges, each a billable metric and a price whose
-- definition is the JSON of neruba-pricing's `ChargeSpec` (checked by the server when written
-- and again when read). Rows are never updated or deleted, except `plans.latest_version`.
CREATE TABLE plans (
    id              VARCHAR(40)     NOT NULL,
    project_id      VARCHAR(40)     NOT NULL,
    code            VARCHAR(64)     NOT NULL,
    latest_version  INT UNSIGNED    NOT NULL,
    created_at      DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_plans_code (project_id, code),
    CONSTRAINT fk_plans_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE plan_versions (
    id                          VARCHAR(40)     NOT NULL,
    plan_id                     VARCHAR(40)     NOT NULL,
    project_id                  VARCHAR(40)     NOT NULL,
    version                     INT UNSIGNED    NOT NULL,
    name                        VARCHAR(200)    NOT NULL,
    -- An ISO 4217 code or a credit unit the project declared.
    currency                    VARCHAR(16)     NOT NULL,
    -- MONTH, YEAR or DAY, times interval_count.
    interval_unit               VARCHAR(8)      NOT NULL,
    interval_count              SMALLINT UNSIGNED NOT NULL,
    fixed_fee                   DECIMAL(28, 12) NOT NULL,
    -- ADVANCE (billed at the start of the period) or ARREARS (at its end).
    fixed_fee_timing            VARCHAR(8)      NOT NULL,
    minimum_commitment          DECIMAL(28, 12) NULL,
    -- Credits granted through the ledger each period, expiring at the period's end.
    included_credits            DECIMAL(28, 12) NULL,
    included_credits_currency   VARCHAR(16)     NULL,
    trial_days                  SMALLINT UNSIGNED NOT NULL,
    -- SHA-256 of the canonical definition: a replayed version is recognised by it.
    definition_hash             CHAR(64)        NOT NULL,
    created_at                  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_plan_versions_version (plan_id, version),
    KEY ix_plan_versions_project (project_id),
    CONSTRAINT ck_plan_versions_interval CHECK (interval_count >= 1),
    CONSTRAINT ck_plan_versions_credits CHECK ((included_credits IS NULL) = (included_credits_currency IS NULL)),
    CONSTRAINT fk_plan_versions_plan FOREIGN KEY (plan_id) REFERENCES plans (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE plan_charges (
    id                  VARCHAR(40)     NOT NULL,
    plan_version_id     VARCHAR(40)     NOT NULL,
    project_id          VARCHAR(40)     NOT NULL,
    position            SMALLINT UNSIGNED NOT NULL,
    metric_id           VARCHAR(40)     NOT NULL,
    charge              TEXT            NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_plan_charges_position (plan_version_id, position),
    CONSTRAINT fk_plan_charges_version FOREIGN KEY (plan_version_id) REFERENCES plan_versions (id),
    CONSTRAINT fk_plan_charges_metric FOREIGN KEY (metric_id) REFERENCES billable_metrics (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
