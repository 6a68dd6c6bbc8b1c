-- Contiguous sequences for the live stream (docs/ledger.md, "Live balances"): every balance
-- event of a wallet is numbered 1, 2, 3, … per wallet and, separately, per customer, so a
-- subscriber sees a missed event as a missing number and resumes after the last one it got.
--
-- A wallet's counter lives on its row (written under the wallet lock every money operation
-- takes). A customer's counter is its own row, bumped as the last write of a transaction, so the
-- lock is held only until commit, and numbers follow commit order. No foreign key: its check
-- would take a shared lock on the customer's row, which billing locks first (a deadlock).
ALTER TABLE wallets
    ADD COLUMN event_seq BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER balance;

CREATE TABLE customer_event_seqs (
    customer_id  VARCHAR(40)     NOT NULL,
    project_id   VARCHAR(40)     NOT NULL,
    seq          BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (customer_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Rows written before this migration have no sequences (they age out within a day).
ALTER TABLE ledger_outbox
    ADD COLUMN customer_id   VARCHAR(40)     NULL AFTER wallet_id,
    ADD COLUMN wallet_seq    BIGINT UNSIGNED NULL AFTER customer_id,
    ADD COLUMN customer_seq  BIGINT UNSIGNED NULL AFTER wallet_seq,
    ADD UNIQUE KEY uq_ledger_outbox_wallet_seq (wallet_id, wallet_seq),
    ADD UNIQUE KEY uq_ledger_outbox_customer_seq (customer_id, customer_seq);

-- A wallet transaction's place in its wallet's sequence (the number of its BALANCE_CHANGED
-- event), so `Wallet.balance(asOf: {sequence})` finds it after the outbox forgot the event; and
-- the indexes `balance(asOf: {at})` and the credit statement read by.
ALTER TABLE ledger_transactions
    ADD COLUMN wallet_seq BIGINT UNSIGNED NULL AFTER wallet_balance_after,
    ADD UNIQUE KEY uq_ledger_transactions_wallet_seq (wallet_id, wallet_seq);
ALTER TABLE ledger_postings
    ADD KEY ix_ledger_postings_wallet_time (wallet_id, created_at);
