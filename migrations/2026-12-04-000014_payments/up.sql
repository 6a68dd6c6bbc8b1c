-- Payments (issue 15): checkout sessions that send a customer to a payment provider (Stripe, or
-- the embedded sandbox), the payments they make, every webhook event received, the Stripe
-- customer of each project customer, the projects' top-up limits and the sandbox's webhook secret.
-- Money moves only through the ledger (docs/payments.md); these rows say why and how far along.

-- A project's top-up limits, in the unit of the wallet topped up (defaults when absent:
-- docs/payments.md). `presets` is a JSON array of decimal strings.
CREATE TABLE payment_settings (
    project_id      VARCHAR(40)     NOT NULL,
    top_up_minimum  DECIMAL(28, 12) NOT NULL,
    top_up_maximum  DECIMAL(28, 12) NOT NULL,
    top_up_presets  TEXT            NOT NULL,
    updated_at      DATETIME(6)     NOT NULL,
    PRIMARY KEY (project_id),
    CONSTRAINT fk_payment_settings_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Secrets Neruba makes for itself and every replica must share (the sandbox's webhook signing
-- secret): made once by whichever replica needs it first (INSERT IGNORE), then read.
CREATE TABLE payment_secrets (
    name            VARCHAR(64)     NOT NULL,
    secret          VARCHAR(128)    NOT NULL,
    created_at      DATETIME(6)     NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A checkout: what is paid for (a wallet top-up, or an invoice), the provider's session and the
-- URL the customer is sent to. One per (project, idempotency key).
CREATE TABLE checkout_sessions (
    id                   VARCHAR(40)     NOT NULL,
    project_id           VARCHAR(40)     NOT NULL,
    customer_id          VARCHAR(40)     NOT NULL,
    -- TOP_UP (wallet_id) or INVOICE (invoice_id).
    purpose              VARCHAR(16)     NOT NULL,
    wallet_id            VARCHAR(40)     NULL,
    invoice_id           VARCHAR(40)     NULL,
    currency             VARCHAR(16)     NOT NULL,
    amount               DECIMAL(28, 12) NOT NULL,
    -- SANDBOX or STRIPE.
    provider             VARCHAR(16)     NOT NULL,
    -- The provider's session id (`cs_…`), once the provider made it.
    provider_session_id  VARCHAR(255)    NULL,
    url                  VARCHAR(2048)   NULL,
    success_url          VARCHAR(2048)   NOT NULL,
    cancel_url           VARCHAR(2048)   NOT NULL,
    -- OPEN, COMPLETED, FAILED.
    status               VARCHAR(16)     NOT NULL,
    idempotency_key      VARCHAR(255)    NOT NULL,
    request_hash         BINARY(32)      NOT NULL,
    actor                VARCHAR(80)     NOT NULL,
    created_at           DATETIME(6)     NOT NULL,
    updated_at           DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_checkout_sessions_idempotency (project_id, idempotency_key),
    UNIQUE KEY uq_checkout_sessions_provider (provider, provider_session_id),
    KEY ix_checkout_sessions_invoice (invoice_id),
    CONSTRAINT ck_checkout_sessions_purpose CHECK (purpose IN ('TOP_UP', 'INVOICE')),
    CONSTRAINT ck_checkout_sessions_target CHECK ((purpose = 'TOP_UP') = (wallet_id IS NOT NULL)
                                                  AND (purpose = 'INVOICE') = (invoice_id IS NOT NULL)),
    CONSTRAINT ck_checkout_sessions_amount CHECK (amount > 0),
    CONSTRAINT fk_checkout_sessions_project FOREIGN KEY (project_id) REFERENCES projects (id),
    CONSTRAINT fk_checkout_sessions_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A payment: one per checkout, PENDING until the provider's webhook says it SUCCEEDED or
-- FAILED; a SUCCEEDED one may be REFUNDED. The ledger transactions it posted are named.
CREATE TABLE payments (
    id                     VARCHAR(40)     NOT NULL,
    project_id             VARCHAR(40)     NOT NULL,
    customer_id            VARCHAR(40)     NOT NULL,
    checkout_session_id    VARCHAR(40)     NOT NULL,
    purpose                VARCHAR(16)     NOT NULL,
    wallet_id              VARCHAR(40)     NULL,
    invoice_id             VARCHAR(40)     NULL,
    currency               VARCHAR(16)     NOT NULL,
    amount                 DECIMAL(28, 12) NOT NULL,
    -- PENDING, SUCCEEDED, FAILED, REFUNDED.
    status                 VARCHAR(16)     NOT NULL,
    provider               VARCHAR(16)     NOT NULL,
    -- The provider's payment (a Stripe PaymentIntent `pi_…`), once known.
    provider_payment_id    VARCHAR(255)    NULL,
    transaction_id         VARCHAR(40)     NULL,
    refund_transaction_id  VARCHAR(40)     NULL,
    failure_reason         VARCHAR(500)    NULL,
    created_at             DATETIME(6)     NOT NULL,
    updated_at             DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_payments_checkout (checkout_session_id),
    KEY ix_payments_project (project_id, id),
    KEY ix_payments_customer (customer_id, id),
    KEY ix_payments_invoice (invoice_id, id),
    KEY ix_payments_provider (provider, provider_payment_id),
    CONSTRAINT ck_payments_status CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'REFUNDED')),
    CONSTRAINT fk_payments_checkout FOREIGN KEY (checkout_session_id) REFERENCES checkout_sessions (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every webhook event whose signature verified, once per provider event id (the unique index is
-- what makes processing exactly-once, whatever the retries). `outcome` says what it did:
-- APPLIED, IGNORED (nothing to do: a repeat in other words, or a type Neruba does not act on),
-- DEFERRED (a refund that arrived before its payment; applied when the payment is).
CREATE TABLE webhook_events (
    seq                  BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    provider             VARCHAR(16)     NOT NULL,
    event_id             VARCHAR(255)    NOT NULL,
    event_type           VARCHAR(100)    NOT NULL,
    -- The provider object it is about: a checkout session `cs_…` or a payment `pi_…`.
    object_ref           VARCHAR(255)    NULL,
    checkout_session_id  VARCHAR(40)     NULL,
    project_id           VARCHAR(40)     NULL,
    -- SHA-256 of the first delivery's `Stripe-Signature` header: the same header again is a replay.
    signature_hash       BINARY(32)      NOT NULL,
    payload              MEDIUMTEXT      NOT NULL,
    outcome              VARCHAR(16)     NOT NULL,
    received_at          DATETIME(6)     NOT NULL,
    processed_at         DATETIME(6)     NULL,
    PRIMARY KEY (seq),
    UNIQUE KEY uq_webhook_events_event (provider, event_id),
    KEY ix_webhook_events_deferred (object_ref, outcome)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The Stripe customer made for a project's customer on its first checkout, reused after.
CREATE TABLE stripe_customers (
    customer_id          VARCHAR(40)     NOT NULL,
    project_id           VARCHAR(40)     NOT NULL,
    stripe_customer_id   VARCHAR(255)    NOT NULL,
    created_at           DATETIME(6)     NOT NULL,
    PRIMARY KEY (customer_id),
    CONSTRAINT fk_stripe_customers_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
