-- Threshold (progressive) billing (issue 13). A plan version may invoice early: once a customer's
-- usage in the current period, rated and net of what earlier threshold invoices of the period
-- billed, reaches `usage_threshold`, a billing run makes a THRESHOLD invoice at its cutoff. The
-- invoice at the period's end bills the whole period and deducts what they billed.
ALTER TABLE plan_versions
    ADD COLUMN usage_threshold DECIMAL(28, 12) NULL AFTER included_credits_currency,
    ADD CONSTRAINT ck_plan_versions_threshold CHECK (usage_threshold IS NULL OR usage_threshold > 0);

-- PERIOD: the invoice at a boundary of the subscription's schedule (its start, a period's end,
-- its end). THRESHOLD: an early invoice inside a period. A subscription has one invoice per
-- boundary and reason: a threshold invoice at an instant that later becomes the subscription's
-- end (a cancellation at that very second) does not take the end invoice's place. The reason
-- comes before the boundary in the key: "the latest boundary of the schedule" (reason PERIOD)
-- and "the period's threshold invoices" are ranges of it.
ALTER TABLE invoices
    ADD COLUMN reason VARCHAR(16) NOT NULL DEFAULT 'PERIOD' AFTER plan_version_id,
    ADD CONSTRAINT ck_invoices_reason CHECK (reason IN ('PERIOD', 'THRESHOLD')),
    DROP INDEX uq_invoices_period,
    ADD UNIQUE KEY uq_invoices_period (subscription_id, reason, boundary);
