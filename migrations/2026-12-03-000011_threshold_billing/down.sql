-- Best effort: threshold invoices go, with their lines and adjustments; their ledger
-- transactions stay (the ledger is append-only), and so do BILLED_EARLIER lines of period
-- invoices that deducted them.
DELETE a FROM invoice_adjustments a JOIN invoices i ON i.id = a.invoice_id WHERE i.reason = 'THRESHOLD';
DELETE l FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.reason = 'THRESHOLD';
DELETE FROM invoices WHERE reason = 'THRESHOLD';
ALTER TABLE invoices
    DROP INDEX uq_invoices_period,
    ADD UNIQUE KEY uq_invoices_period (subscription_id, boundary),
    DROP CONSTRAINT ck_invoices_reason,
    DROP COLUMN reason;
ALTER TABLE plan_versions
    DROP CONSTRAINT ck_plan_versions_threshold,
    DROP COLUMN usage_threshold;
