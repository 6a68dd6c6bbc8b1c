DROP TABLE credit_holds;
ALTER TABLE wallets DROP COLUMN held;
