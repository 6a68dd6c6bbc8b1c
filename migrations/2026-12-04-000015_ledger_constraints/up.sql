-- The database enforces what it can (issue 14): CHECK constraints on the money tables, each an
-- invariant every code path that writes the table already keeps (docs/ledger.md, "Invariants").
-- A row that breaks one is a bug: the statement fails with error 4025, its transaction rolls
-- back, and the server answers INTERNAL (never retried). Adding a constraint checks the rows
-- already stored: if this migration fails on one, `neruba reconcile` names what is wrong.
-- Each ALTER copies its table (MariaDB adds a CHECK with ALGORITHM=COPY): writes to it wait.

-- A posting moves money (ledger::check_balanced refuses a zero line); a wallet-side posting, and
-- only one, carries the wallet's running balance; a lot's posting is wallet-side.
ALTER TABLE ledger_postings
    ADD CONSTRAINT ck_ledger_postings_amount CHECK (amount <> 0),
    ADD CONSTRAINT ck_ledger_postings_wallet CHECK ((wallet_id IS NULL) = (wallet_balance_after IS NULL)),
    ADD CONSTRAINT ck_ledger_postings_lot CHECK (lot_id IS NULL OR wallet_id IS NOT NULL);

-- A transaction's amount is what was asked (signed for adjustments, invoices and their
-- reversals), never zero: zero requests are refused, and an invoice of zero posts nothing. A
-- transaction on a wallet records the balance after it; one without (an invoice's receivable)
-- does not. A client's write stores its idempotency key with the request's hash; system
-- transactions (expiry, invoices) have neither.
ALTER TABLE ledger_transactions
    ADD CONSTRAINT ck_ledger_transactions_amount CHECK (amount <> 0),
    ADD CONSTRAINT ck_ledger_transactions_wallet CHECK ((wallet_id IS NULL) = (wallet_balance_after IS NULL)),
    ADD CONSTRAINT ck_ledger_transactions_idempotency CHECK ((idempotency_key IS NULL) = (request_hash IS NULL));

-- A lot is made by a positive credit, and is drawn down to zero at most, never refilled.
ALTER TABLE credit_lots
    ADD CONSTRAINT ck_credit_lots_original CHECK (original_amount > 0),
    ADD CONSTRAINT ck_credit_lots_remaining CHECK (remaining >= 0 AND remaining <= original_amount);

-- Only ALLOW_UNTIL_LIMIT has a credit limit, never negative, and the balance stays above minus it.
ALTER TABLE wallets
    ADD CONSTRAINT ck_wallets_policy CHECK (policy IN ('REJECT', 'ALLOW_UNTIL_LIMIT')),
    ADD CONSTRAINT ck_wallets_credit_limit CHECK (credit_limit >= 0 AND (policy = 'ALLOW_UNTIL_LIMIT' OR credit_limit = 0)),
    ADD CONSTRAINT ck_wallets_balance CHECK (balance >= -credit_limit);

-- What neruba_pricing::invoice::compute answers: coupons take off (zero or negative), prepaid
-- credits are drawn (zero or negative) only against a positive total and never past it, and
-- what is due is the total less the credits.
ALTER TABLE invoices
    ADD CONSTRAINT ck_invoices_discount CHECK (discount <= 0),
    ADD CONSTRAINT ck_invoices_credits CHECK (credits <= 0 AND (credits = 0 OR total + credits >= 0)),
    ADD CONSTRAINT ck_invoices_amount_due CHECK (amount_due = total + credits);

-- A correction of zero makes no document; a credit note gives back, an adjustment invoice bills.
ALTER TABLE invoice_adjustments
    ADD CONSTRAINT ck_invoice_adjustments_total CHECK (
        (kind = 'CREDIT_NOTE' AND total < 0) OR (kind = 'ADJUSTMENT_INVOICE' AND total > 0));
