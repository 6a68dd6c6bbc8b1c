-- The two locking reads every money operation makes of a wallet's lots (its open lots, and those
-- whose expiry passed) filter on the wallet and `expired_at IS NULL` and read in id order. With
-- only (wallet_id, remaining) to go by, the optimizer could take the primary key in id order on
-- a small table, and a `FOR UPDATE` scan then locks other wallets' lots too: charges on
-- different wallets deadlocked (seen in the ledger benchmark). This index answers both reads in
-- order, touching the wallet's rows only.
ALTER TABLE credit_lots ADD KEY ix_credit_lots_wallet_open (wallet_id, expired_at, id);
