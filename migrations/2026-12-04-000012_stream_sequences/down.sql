ALTER TABLE ledger_outbox
    DROP KEY uq_ledger_outbox_customer_seq,
    DROP KEY uq_ledger_outbox_wallet_seq,
    DROP COLUMN customer_seq,
    DROP COLUMN wallet_seq,
    DROP COLUMN customer_id;
DROP TABLE customer_event_seqs;
ALTER TABLE wallets DROP COLUMN event_seq;
