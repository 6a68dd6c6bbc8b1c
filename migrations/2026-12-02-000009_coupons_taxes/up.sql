-- Coupons and tax rates (issue 13, item 4). Both are insert-only definitions named by a code that
-- is unique per project: creating the same code again with the same definition is a replay, with
-- another one a conflict (the unique key decides, not a check before the insert). Percentages are
-- DECIMAL(7, 4): 0 to 100 with at most 4 decimal places; amounts DECIMAL(28, 12) like every amount.
--
-- A coupon is a percentage off or a fixed amount off (in `currency`), for ONCE (the next invoice),
-- REPEATING (`periods` invoices) or FOREVER.
CREATE TABLE coupons (
    id                  VARCHAR(40)     NOT NULL,
    project_id          VARCHAR(40)     NOT NULL,
    code                VARCHAR(64)     NOT NULL,
    name                VARCHAR(200)    NOT NULL,
    -- PERCENTAGE (with `percentage`) or AMOUNT (with `amount` and `currency`).
    kind                VARCHAR(12)     NOT NULL,
    percentage          DECIMAL(7, 4)   NULL,
    amount              DECIMAL(28, 12) NULL,
    currency            VARCHAR(16)     NULL,
    -- ONCE, REPEATING (with `periods`) or FOREVER.
    duration            VARCHAR(12)     NOT NULL,
    periods             INT UNSIGNED    NULL,
    -- SHA-256 of the canonical definition: a replay is recognised by it.
    definition_hash     CHAR(64)        NOT NULL,
    created_at          DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_coupons_code (project_id, code),
    CONSTRAINT ck_coupons_kind CHECK (
        (kind = 'PERCENTAGE' AND percentage > 0 AND percentage <= 100 AND amount IS NULL AND currency IS NULL)
        OR (kind = 'AMOUNT' AND amount > 0 AND currency IS NOT NULL AND percentage IS NULL)),
    CONSTRAINT ck_coupons_duration CHECK (
        (duration = 'REPEATING' AND periods >= 1) OR (duration IN ('ONCE', 'FOREVER') AND periods IS NULL)),
    CONSTRAINT fk_coupons_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A coupon applied to a subscription. `periods` is how many invoices it discounts (1 for ONCE, the
-- coupon's periods for REPEATING, NULL for FOREVER), fixed when it is applied. How many it has
-- discounted is never counted here: it is the number of the subscription's invoices (not void) at
-- earlier boundaries whose manifest lists the redemption, so a retried billing run, or a
-- recomputed draft, cannot use a period twice.
-- Replay-safe by idempotency key; a coupon is applied to a subscription at most once (a second
-- application would discount twice).
CREATE TABLE coupon_redemptions (
    id                  VARCHAR(40)     NOT NULL,
    project_id          VARCHAR(40)     NOT NULL,
    subscription_id     VARCHAR(40)     NOT NULL,
    coupon_id           VARCHAR(40)     NOT NULL,
    applied_at          DATETIME(6)     NOT NULL,
    periods             INT UNSIGNED    NULL,
    actor               VARCHAR(64)     NOT NULL,
    idempotency_key     VARCHAR(255)    NOT NULL,
    request_hash        BINARY(32)      NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_coupon_redemptions_idempotency (project_id, idempotency_key),
    UNIQUE KEY uq_coupon_redemptions_coupon (subscription_id, coupon_id),
    KEY ix_coupon_redemptions_order (subscription_id, applied_at, id),
    CONSTRAINT fk_coupon_redemptions_subscription FOREIGN KEY (subscription_id) REFERENCES subscriptions (id),
    CONSTRAINT fk_coupon_redemptions_coupon FOREIGN KEY (coupon_id) REFERENCES coupons (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- An exclusive tax rate. `default_position` places it in the project's default list (NULL: not in
-- it); the list is replaced as a whole by `setDefaultTaxRates`. The definition (code, name,
-- percentage) never changes: an invoice's manifest copies what it applied anyway.
CREATE TABLE tax_rates (
    id                  VARCHAR(40)     NOT NULL,
    project_id          VARCHAR(40)     NOT NULL,
    code                VARCHAR(64)     NOT NULL,
    name                VARCHAR(200)    NOT NULL,
    percentage          DECIMAL(7, 4)   NOT NULL,
    default_position    SMALLINT UNSIGNED NULL,
    created_at          DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_tax_rates_code (project_id, code),
    UNIQUE KEY uq_tax_rates_default (project_id, default_position),
    CONSTRAINT ck_tax_rates_percentage CHECK (percentage >= 0 AND percentage <= 100),
    CONSTRAINT fk_tax_rates_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A customer's own tax rates, in order: when a customer has any, they replace the project's
-- default list (a 0 % rate makes a customer exempt and says so on the invoice).
CREATE TABLE customer_tax_rates (
    customer_id         VARCHAR(40)     NOT NULL,
    position            SMALLINT UNSIGNED NOT NULL,
    project_id          VARCHAR(40)     NOT NULL,
    tax_rate_id         VARCHAR(40)     NOT NULL,
    PRIMARY KEY (customer_id, position),
    UNIQUE KEY uq_customer_tax_rates_rate (customer_id, tax_rate_id),
    CONSTRAINT fk_customer_tax_rates_customer FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT fk_customer_tax_rates_rate FOREIGN KEY (tax_rate_id) REFERENCES tax_rates (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
