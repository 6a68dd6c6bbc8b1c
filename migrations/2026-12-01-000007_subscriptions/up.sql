-- Subscriptions (issue 13): a customer on a plan version, billed in periods from `starts_at`
-- (calendar-aligned or on the start day's anniversary). Status is derived from the times and the
-- clock of the question (scheduled, trialing, active, canceling, ended), never stored, so nothing
-- has to flip it. `live` is 1 until the subscription is canceled and NULL after: the unique key
-- (customer, plan, live) refuses a second live subscription to one plan, and lets ended ones be.
CREATE TABLE subscriptions (
    id                  VARCHAR(40)     NOT NULL,
    project_id          VARCHAR(40)     NOT NULL,
    customer_id         VARCHAR(40)     NOT NULL,
    plan_id             VARCHAR(40)     NOT NULL,
    plan_version_id     VARCHAR(40)     NOT NULL,
    -- CALENDAR or ANNIVERSARY.
    billing_anchor      VARCHAR(12)     NOT NULL,
    starts_at           DATETIME(6)     NOT NULL,
    trial_ends_at       DATETIME(6)     NULL,
    -- When it ends: set by a cancellation (now, or at the end of the period).
    ends_at             DATETIME(6)     NULL,
    canceled_at         DATETIME(6)     NULL,
    live                TINYINT         NULL,
    idempotency_key     VARCHAR(255)    NOT NULL,
    request_hash        BINARY(32)      NOT NULL,
    created_at          DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_subscriptions_idempotency (project_id, idempotency_key),
    UNIQUE KEY uq_subscriptions_live (customer_id, plan_id, live),
    KEY ix_subscriptions_project (project_id, id),
    CONSTRAINT ck_subscriptions_live CHECK (live IS NULL OR live = 1),
    CONSTRAINT fk_subscriptions_customer FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT fk_subscriptions_plan_version FOREIGN KEY (plan_version_id) REFERENCES plan_versions (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- What happened to a subscription, in order: the history a customer can read.
CREATE TABLE subscription_changes (
    seq                 BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    subscription_id     VARCHAR(40)     NOT NULL,
    project_id          VARCHAR(40)     NOT NULL,
    -- CREATED, CANCELED (effective at once) or CANCEL_SCHEDULED (at the period's end).
    kind                VARCHAR(20)     NOT NULL,
    plan_version_id     VARCHAR(40)     NOT NULL,
    effective_at        DATETIME(6)     NOT NULL,
    actor               VARCHAR(64)     NOT NULL,
    created_at          DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (seq),
    KEY ix_subscription_changes_subscription (subscription_id, seq),
    CONSTRAINT fk_subscription_changes_subscription FOREIGN KEY (subscription_id) REFERENCES subscriptions (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
