ALTER TABLE ledger_postings DROP KEY ix_ledger_postings_wallet_time;
ALTER TABLE ledger_transactions
    DROP KEY uq_ledger_transactions_wallet_seq,
    DROP COLUMN wallet_seq;
ALTER TABLE ledger_outbox
    DROP KEY uq_ledger_outbox_customer_seq,
    DROP KEY uq_ledger_outbox_wallet_seq,
    DROP COLUMN customer_seq,
    DROP COLUMN wallet_seq,
    DROP COLUMN customer_id;
DROP TABLE customer_event_seqs;
ALTER TABLE wallets DROP COLUMN event_seq;
