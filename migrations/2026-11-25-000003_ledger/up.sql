-- The money state: a double-entry ledger (accounts, transactions, postings), the wallets and credit
-- lots it is projected into, and the outbox that carries committed balance changes to every server.
-- Amounts are DECIMAL(28, 12), signed: a posting's amount is the change of its account's balance,
-- and the postings of one transaction sum to zero (all postings of a transaction share its unit).
-- See docs/ledger.md.

-- A customer's wallet in one currency or credit unit. `balance` is a projection of the postings
-- on the wallet's accounts, written in the same transaction; `neruba reconcile` proves it equal.
CREATE TABLE wallets (
    id                     VARCHAR(40)     NOT NULL,
    project_id             VARCHAR(40)     NOT NULL,
    customer_id            VARCHAR(40)     NOT NULL,
    customer_external_id   VARCHAR(255)    NOT NULL,
    currency               VARCHAR(16)     NOT NULL,
    rate_to_money          DECIMAL(28, 12) NULL,
    money_currency         CHAR(3)         NULL,
    policy                 VARCHAR(20)     NOT NULL,
    credit_limit           DECIMAL(28, 12) NOT NULL DEFAULT 0,
    low_balance_threshold  DECIMAL(28, 12) NULL,
    below_threshold        BOOLEAN         NOT NULL DEFAULT FALSE,
    balance                DECIMAL(28, 12) NOT NULL DEFAULT 0,
    overdraft_account_id   VARCHAR(40)     NOT NULL,
    created_at             DATETIME(6)     NOT NULL,
    updated_at             DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_wallets_customer_currency (project_id, customer_external_id, currency),
    CONSTRAINT fk_wallets_project FOREIGN KEY (project_id) REFERENCES projects (id),
    CONSTRAINT fk_wallets_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Ledger accounts. System accounts (REVENUE, PROMOTIONAL, PAYMENTS_CLEARING, WRITE_OFF, EXPIRED,
-- ADJUSTMENTS) exist once per project and unit; wallet-side accounts are one per credit lot and one
-- overdraft account per wallet. `code` names the account uniquely within its project and unit.
-- No balance column: system accounts would be a hot row for every charge; balances are sums.
CREATE TABLE ledger_accounts (
    id          VARCHAR(40)  NOT NULL,
    project_id  VARCHAR(40)  NOT NULL,
    currency    VARCHAR(16)  NOT NULL,
    kind        VARCHAR(24)  NOT NULL,
    code        VARCHAR(120) NOT NULL,
    wallet_id   VARCHAR(40)  NULL,
    created_at  DATETIME(6)  NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_ledger_accounts_code (project_id, currency, code),
    KEY ix_ledger_accounts_wallet (wallet_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A ledger transaction: one money operation and its cause. Every write a client makes carries an
-- idempotency key, unique per project; `request_hash` (SHA-256 of the canonical request) tells a
-- replay from a conflict. System transactions (expiry sweeps) have no key. Never updated: a
-- correction is a new transaction linked through `corrects_transaction_id`.
CREATE TABLE ledger_transactions (
    id                       VARCHAR(40)     NOT NULL,
    project_id               VARCHAR(40)     NOT NULL,
    wallet_id                VARCHAR(40)     NULL,
    cause                    VARCHAR(20)     NOT NULL,
    cause_id                 VARCHAR(40)     NULL,
    currency                 VARCHAR(16)     NOT NULL,
    amount                   DECIMAL(28, 12) NOT NULL,
    idempotency_key          VARCHAR(255)    NULL,
    request_hash             BINARY(32)      NULL,
    description              VARCHAR(1000)   NULL,
    actor                    VARCHAR(80)     NOT NULL,
    corrects_transaction_id  VARCHAR(40)     NULL,
    wallet_balance_after     DECIMAL(28, 12) NULL,
    created_at               DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_ledger_transactions_idempotency (project_id, idempotency_key),
    KEY ix_ledger_transactions_wallet (wallet_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Postings: append-only, never updated or deleted. `wallet_id`, `cause` and `created_at` are
-- copied from the transaction so the entry list filters without a join. `wallet_balance_after` is
-- the wallet's running balance after this posting (wallet-side postings only).
CREATE TABLE ledger_postings (
    id                    BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    transaction_id        VARCHAR(40)     NOT NULL,
    project_id            VARCHAR(40)     NOT NULL,
    account_id            VARCHAR(40)     NOT NULL,
    wallet_id             VARCHAR(40)     NULL,
    lot_id                VARCHAR(40)     NULL,
    currency              VARCHAR(16)     NOT NULL,
    amount                DECIMAL(28, 12) NOT NULL,
    wallet_balance_after  DECIMAL(28, 12) NULL,
    cause                 VARCHAR(20)     NOT NULL,
    created_at            DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    KEY ix_ledger_postings_transaction (transaction_id),
    KEY ix_ledger_postings_account (account_id, id),
    KEY ix_ledger_postings_wallet (wallet_id, id),
    KEY ix_ledger_postings_project (project_id, id),
    CONSTRAINT fk_ledger_postings_transaction FOREIGN KEY (transaction_id) REFERENCES ledger_transactions (id),
    CONSTRAINT fk_ledger_postings_account FOREIGN KEY (account_id) REFERENCES ledger_accounts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Credit lots: each paid top-up, free grant or positive adjustment is a lot with its own ledger
-- account, drawn in the documented order (docs/ledger.md). `remaining` projects the lot account's
-- balance; `expired_at` is set by the sweep that posted the lot's expiry.
CREATE TABLE credit_lots (
    id              VARCHAR(40)     NOT NULL,
    project_id      VARCHAR(40)     NOT NULL,
    wallet_id       VARCHAR(40)     NOT NULL,
    account_id      VARCHAR(40)     NOT NULL,
    source          VARCHAR(20)     NOT NULL,
    original_amount DECIMAL(28, 12) NOT NULL,
    remaining       DECIMAL(28, 12) NOT NULL,
    priority        INT             NOT NULL DEFAULT 0,
    expires_at      DATETIME(6)     NULL,
    expired_at      DATETIME(6)     NULL,
    transaction_id  VARCHAR(40)     NOT NULL,
    created_at      DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_credit_lots_account (account_id),
    KEY ix_credit_lots_wallet (wallet_id, remaining),
    KEY ix_credit_lots_expiry (expired_at, expires_at),
    CONSTRAINT fk_credit_lots_wallet FOREIGN KEY (wallet_id) REFERENCES wallets (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Transactional outbox: written in the same transaction as the postings, tailed by every server
-- (`id > last seen`), which publishes each row to its in-process event bus after it committed.
-- Kept for a day: a subscriber that reconnects catches up from its project's rows.
CREATE TABLE ledger_outbox (
    id                    BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    project_id            VARCHAR(40)     NOT NULL,
    wallet_id             VARCHAR(40)     NOT NULL,
    kind                  VARCHAR(20)     NOT NULL,
    payload               TEXT            NOT NULL,
    created_at            DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    KEY ix_ledger_outbox_project (project_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
