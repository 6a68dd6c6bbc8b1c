-- Corrections of finalized invoices (issue 13): a finalized invoice is never edited. Recomputing
-- one for real (a late event, a fixed metric) makes an adjustment: a credit note when the
-- invoice billed too much, an adjustment invoice when it billed too little, numbered from the
-- project's invoice sequence and posted to the ledger (the customer's receivable against revenue
-- and tax). `manifest` is the recomputed invoice, so the next recomputation compares against the
-- latest document; the same recomputation twice is one adjustment (unique manifest hash).
CREATE TABLE invoice_adjustments (
    id              VARCHAR(40)     NOT NULL,
    project_id      VARCHAR(40)     NOT NULL,
    invoice_id      VARCHAR(40)     NOT NULL,
    number          BIGINT UNSIGNED NOT NULL,
    -- CREDIT_NOTE (negative total) or ADJUSTMENT_INVOICE (positive).
    kind            VARCHAR(20)     NOT NULL,
    currency        VARCHAR(16)     NOT NULL,
    -- Differences, recomputed minus what the previous document said.
    subtotal        DECIMAL(28, 12) NOT NULL,
    discount        DECIMAL(28, 12) NOT NULL,
    tax             DECIMAL(28, 12) NOT NULL,
    total           DECIMAL(28, 12) NOT NULL,
    cutoff          DATETIME(6)     NOT NULL,
    manifest        MEDIUMTEXT      NOT NULL,
    manifest_hash   CHAR(64)        NOT NULL,
    transaction_id  VARCHAR(40)     NULL,
    created_at      DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_invoice_adjustments_manifest (invoice_id, manifest_hash),
    UNIQUE KEY uq_invoice_adjustments_number (project_id, number),
    KEY ix_invoice_adjustments_project (project_id, id),
    CONSTRAINT ck_invoice_adjustments_kind CHECK (kind IN ('CREDIT_NOTE', 'ADJUSTMENT_INVOICE')),
    CONSTRAINT fk_invoice_adjustments_invoice FOREIGN KEY (invoice_id) REFERENCES invoices (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
