-- Credit holds (docs/ledger.md, "Holds"): credits reserved on a wallet until they are settled
-- (charged, up to the held amount; the rest returned), released, or expire. Each step is a ledger
-- transaction between the wallet's lots/overdraft and its HOLD account (`wallet:<id>:holds`,
-- wallet-side, made on first use), whose cause id is the hold's id.

-- What a wallet holds for its active holds: Σ postings on its HOLD account = Σ `remaining` of its
-- ACTIVE holds, kept under the wallet lock like `balance` (reconcile checks both). `balance`
-- includes it; what a charge or a new hold can use is `balance − held`.
ALTER TABLE wallets ADD COLUMN held DECIMAL(28, 12) NOT NULL DEFAULT 0 AFTER balance;

CREATE TABLE credit_holds (
    id                      VARCHAR(40)     NOT NULL,
    project_id              VARCHAR(40)     NOT NULL,
    wallet_id               VARCHAR(40)     NOT NULL,
    -- The wallet's HOLD account.
    account_id              VARCHAR(40)     NOT NULL,
    currency                VARCHAR(16)     NOT NULL,
    -- What was reserved, and what is still held (0 once settled, released or expired).
    amount                  DECIMAL(28, 12) NOT NULL,
    remaining               DECIMAL(28, 12) NOT NULL,
    -- What the settlement charged (may exceed `amount` when the wallet's policy allows overage).
    settled_amount          DECIMAL(28, 12) NULL,
    -- ACTIVE, SETTLED, RELEASED or EXPIRED.
    status                  VARCHAR(20)     NOT NULL,
    -- Where the reserve drew from, in draw order (JSON: [{"lot": "lot_…", "amount": "1.5"}, …,
    -- {"lot": null, "amount": …} for the overdraft]); returns go back in reverse order.
    draws                   TEXT            NOT NULL,
    -- The client's JSON object, at most 4 KiB.
    metadata                TEXT            NULL,
    expires_at              DATETIME(6)     NOT NULL,
    -- The reserve's transaction, and the one that ended the hold.
    transaction_id          VARCHAR(40)     NOT NULL,
    closing_transaction_id  VARCHAR(40)     NULL,
    created_at              DATETIME(6)     NOT NULL,
    closed_at               DATETIME(6)     NULL,
    PRIMARY KEY (id),
    KEY ix_credit_holds_wallet (wallet_id, id),
    KEY ix_credit_holds_wallet_status (wallet_id, status, id),
    KEY ix_credit_holds_expiry (status, expires_at),
    CONSTRAINT fk_credit_holds_wallet FOREIGN KEY (wallet_id) REFERENCES wallets (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
