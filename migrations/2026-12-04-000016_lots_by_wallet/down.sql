ALTER TABLE credit_lots DROP KEY ix_credit_lots_wallet_open;
