-- Invoices (issue 13). An invoice bills one subscription at one period boundary: the fixed fee in
-- advance of the period that starts there and the usage (and the fee in arrears) of the period
-- that ends there. The unique key (subscription, boundary) makes "a period billed twice" one
-- invoice whoever bills it (a retry, a crash's recovery, two replicas). Its id is derived from the
-- same pair, so the same inputs give the same invoice, id included.
--
-- Amounts are DECIMAL(28, 12) in the invoice's unit, each line already rounded to the unit's
-- minor units (docs/billing.md). A finalized invoice is never edited: only its status moves on
-- (PAID, VOID), and a correction is a new document.
CREATE TABLE invoices (
    id                      VARCHAR(40)     NOT NULL,
    project_id              VARCHAR(40)     NOT NULL,
    customer_id             VARCHAR(40)     NOT NULL,
    subscription_id         VARCHAR(40)     NOT NULL,
    plan_version_id         VARCHAR(40)     NOT NULL,
    boundary                DATETIME(6)     NOT NULL,
    -- The usage period it bills, [from, to); NULL on a subscription's first invoice.
    usage_from              DATETIME(6)     NULL,
    usage_to                DATETIME(6)     NULL,
    -- DRAFT, FINALIZED, PAID or VOID.
    status                  VARCHAR(12)     NOT NULL,
    -- Gapless per project, given at finalization.
    number                  BIGINT UNSIGNED NULL,
    currency                VARCHAR(16)     NOT NULL,
    subtotal                DECIMAL(28, 12) NOT NULL,
    discount                DECIMAL(28, 12) NOT NULL,
    tax                     DECIMAL(28, 12) NOT NULL,
    total                   DECIMAL(28, 12) NOT NULL,
    credits                 DECIMAL(28, 12) NOT NULL,
    amount_due              DECIMAL(28, 12) NOT NULL,
    -- The inputs: the run's clock and the usage cutoff (events received later are not in it).
    computed_at             DATETIME(6)     NOT NULL,
    cutoff                  DATETIME(6)     NOT NULL,
    conventions_version     INT UNSIGNED    NOT NULL,
    -- The canonical JSON of what it was computed from, and its SHA-256.
    manifest                MEDIUMTEXT      NOT NULL,
    manifest_hash           CHAR(64)        NOT NULL,
    invoice_transaction_id  VARCHAR(40)     NULL,
    credits_transaction_id  VARCHAR(40)     NULL,
    finalized_at            DATETIME(6)     NULL,
    -- Voiding reverses both transactions (a finalized invoice is never edited or deleted).
    voided_at               DATETIME(6)     NULL,
    void_reason             VARCHAR(1000)   NULL,
    void_invoice_transaction_id  VARCHAR(40) NULL,
    void_credits_transaction_id  VARCHAR(40) NULL,
    created_at              DATETIME(6)     NOT NULL,
    updated_at              DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_invoices_period (subscription_id, boundary),
    UNIQUE KEY uq_invoices_number (project_id, number),
    KEY ix_invoices_project (project_id, id),
    KEY ix_invoices_customer (project_id, customer_id, id),
    CONSTRAINT ck_invoices_status CHECK (status IN ('DRAFT', 'FINALIZED', 'PAID', 'VOID')),
    -- Drafts have no number, finalized and paid invoices have one; a voided draft never got one.
    CONSTRAINT ck_invoices_number CHECK ((status = 'DRAFT' AND number IS NULL)
        OR (status IN ('FINALIZED', 'PAID') AND number IS NOT NULL) OR status = 'VOID'),
    CONSTRAINT fk_invoices_subscription FOREIGN KEY (subscription_id) REFERENCES subscriptions (id),
    CONSTRAINT fk_invoices_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- An invoice's lines in order. `exact` is the amount before rounding as text (it can have more
-- than 12 decimal places); `rating` the JSON of the steps that explain a usage line; `events_hash`
-- a fingerprint of the usage events behind it (count, and the sum and XOR of their sequence
-- numbers, hashed: events are append-only, so a late event changes it).
CREATE TABLE invoice_lines (
    invoice_id      VARCHAR(40)     NOT NULL,
    position        SMALLINT UNSIGNED NOT NULL,
    project_id      VARCHAR(40)     NOT NULL,
    -- FIXED_FEE, USAGE, CHARGE_MINIMUM, MINIMUM_COMMITMENT, COUPON, TAX or CREDITS.
    kind            VARCHAR(24)     NOT NULL,
    charge_id       VARCHAR(40)     NULL,
    description     VARCHAR(300)    NOT NULL,
    quantity        DECIMAL(28, 12) NULL,
    amount          DECIMAL(28, 12) NOT NULL,
    exact           VARCHAR(80)     NOT NULL,
    period_from     DATETIME(6)     NULL,
    period_to       DATETIME(6)     NULL,
    event_count     BIGINT UNSIGNED NULL,
    events_hash     CHAR(64)        NULL,
    rating          MEDIUMTEXT      NULL,
    PRIMARY KEY (invoice_id, position),
    CONSTRAINT fk_invoice_lines_invoice FOREIGN KEY (invoice_id) REFERENCES invoices (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The last invoice number given per project. Finalization locks the project's row last (it is
-- the hottest row of a run), so numbers have no gaps: a rolled-back finalization gives its number
-- back with everything else.
CREATE TABLE invoice_sequences (
    project_id      VARCHAR(40)     NOT NULL,
    last_number     BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (project_id),
    CONSTRAINT fk_invoice_sequences_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Leases: work one replica does at a time (the billing scheduler). A replica holds a lease until
-- `expires_at` and renews it while it works; another takes it over only once it expired. Rows,
-- not GET_LOCK: named locks are not replicated on a Galera cluster.
CREATE TABLE leases (
    name            VARCHAR(100)    NOT NULL,
    holder          VARCHAR(100)    NOT NULL,
    expires_at      DATETIME(6)     NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
