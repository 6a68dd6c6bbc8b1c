-- Tenants and their credentials. Every later table carries project_id and is read through it.
CREATE TABLE projects (
    id          VARCHAR(40)  NOT NULL,
    name        VARCHAR(200) NOT NULL,
    created_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- An API key is stored only as the SHA-256 of its secret; `prefix` is the first characters of the
-- secret, kept so that operators can tell keys apart. The unique hash index is the lookup path.
CREATE TABLE api_keys (
    id            VARCHAR(40)  NOT NULL,
    project_id    VARCHAR(40)  NOT NULL,
    name          VARCHAR(200) NOT NULL,
    prefix        VARCHAR(16)  NOT NULL,
    secret_hash   BINARY(32)   NOT NULL,
    scopes        VARCHAR(255) NOT NULL,
    created_by    VARCHAR(100) NOT NULL,
    created_at    DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    last_used_at  DATETIME(6)  NULL,
    revoked_at    DATETIME(6)  NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_api_keys_secret_hash (secret_hash),
    KEY ix_api_keys_project (project_id, created_at),
    CONSTRAINT fk_api_keys_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
