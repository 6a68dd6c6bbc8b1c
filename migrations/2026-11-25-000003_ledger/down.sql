DROP TABLE ledger_outbox;
DROP TABLE credit_lots;
DROP TABLE ledger_postings;
DROP TABLE ledger_transactions;
DROP TABLE ledger_accounts;
DROP TABLE wallets;
