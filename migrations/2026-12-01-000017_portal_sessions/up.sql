-- Customer access to the portal (issue 15): a project mints a short-lived portal session for one
-- customer; its one-time link token is exchanged for a customer-scoped credential. Only SHA-256
-- hashes of both secrets are kept. A session ends at `expires_at` or when revoked, whichever
-- comes first; the link works once (`exchanged_at`).
CREATE TABLE portal_sessions (
    id               VARCHAR(40)     NOT NULL,
    project_id       VARCHAR(40)     NOT NULL,
    customer_id      VARCHAR(40)     NOT NULL,
    link_hash        BINARY(32)      NOT NULL,
    -- Set when the link is exchanged, with `exchanged_at`.
    credential_hash  BINARY(32)      NULL,
    return_url       VARCHAR(2048)   NULL,
    -- A retried `createPortalSession` with the same key returns this session (and its link).
    idempotency_key  VARCHAR(255)    NULL,
    request_hash     BINARY(32)      NULL,
    actor            VARCHAR(80)     NOT NULL,
    created_at       DATETIME(6)     NOT NULL,
    expires_at       DATETIME(6)     NOT NULL,
    exchanged_at     DATETIME(6)     NULL,
    revoked_at       DATETIME(6)     NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_portal_sessions_link (link_hash),
    UNIQUE KEY uq_portal_sessions_credential (credential_hash),
    UNIQUE KEY uq_portal_sessions_idempotency (project_id, idempotency_key),
    KEY ix_portal_sessions_customer (customer_id, created_at),
    CONSTRAINT ck_portal_sessions_expiry CHECK (expires_at > created_at),
    CONSTRAINT ck_portal_sessions_exchange CHECK ((credential_hash IS NULL) = (exchanged_at IS NULL)),
    CONSTRAINT ck_portal_sessions_idempotency CHECK ((idempotency_key IS NULL) = (request_hash IS NULL)),
    CONSTRAINT fk_portal_sessions_project FOREIGN KEY (project_id) REFERENCES projects (id),
    CONSTRAINT fk_portal_sessions_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- How the portal presents a project to its customers.
CREATE TABLE portal_settings (
    project_id  VARCHAR(40)    NOT NULL,
    logo_url    VARCHAR(2048)  NULL,
    updated_at  DATETIME(6)    NOT NULL,
    PRIMARY KEY (project_id),
    CONSTRAINT fk_portal_settings_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
