-- Credit units a project declares (issue 12): a wallet's unit is an ISO 4217 currency or one of
-- these, so the number of decimal places an amount may carry is known for every unit. A code never
-- shadows an ISO 4217 code (checked by the server: the ISO table lives in the code, not here).
-- Rows are never updated or deleted: wallets and ledger accounts name units by code.
CREATE TABLE credit_units (
    id              VARCHAR(40)     NOT NULL,
    project_id      VARCHAR(40)     NOT NULL,
    code            VARCHAR(16)     NOT NULL,
    name            VARCHAR(200)    NOT NULL,
    decimals        TINYINT UNSIGNED NOT NULL,
    rate_to_money   DECIMAL(28, 12) NULL,
    money_currency  CHAR(3)         NULL,
    created_at      DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_credit_units_code (project_id, code),
    CONSTRAINT ck_credit_units_decimals CHECK (decimals <= 12),
    CONSTRAINT ck_credit_units_rate CHECK ((rate_to_money IS NULL) = (money_currency IS NULL)),
    CONSTRAINT fk_credit_units_project FOREIGN KEY (project_id) REFERENCES projects (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Wallets made before units were declared keep working: every unit a wallet already uses that is
-- not an ISO 4217 code (as listed by the iso_currency crate 0.7.1) is declared with 12 decimals,
-- the ledger's full precision, so no stored amount becomes invalid. No rate: each such wallet
-- keeps its own. The id is derived from (project, code), so it is stable and unique.
INSERT INTO credit_units (id, project_id, code, name, decimals, created_at)
SELECT CONCAT('cru_', UPPER(LEFT(SHA2(CONCAT(w.project_id, ':', w.currency), 256), 26))),
       w.project_id, w.currency, w.currency, 12, MIN(w.created_at)
FROM wallets w
WHERE w.currency NOT IN (
    'AED', 'AFN', 'ALL', 'AMD', 'AOA', 'ARS', 'AUD', 'AWG', 'AZN', 'BAM', 'BBD', 'BDT', 'BGN',
    'BHD', 'BIF', 'BMD', 'BND', 'BOB', 'BOV', 'BRL', 'BSD', 'BTN', 'BWP', 'BYN', 'BZD', 'CAD',
    'CDF', 'CHE', 'CHF', 'CHW', 'CLF', 'CLP', 'CNY', 'COP', 'COU', 'CRC', 'CUC', 'CUP', 'CVE',
    'CZK', 'DJF', 'DKK', 'DOP', 'DZD', 'EGP', 'ERN', 'ETB', 'EUR', 'FJD', 'FKP', 'GBP', 'GEL',
    'GHS', 'GIP', 'GMD', 'GNF', 'GTQ', 'GYD', 'HKD', 'HNL', 'HRK', 'HTG', 'HUF', 'IDR', 'ILS',
    'INR', 'IQD', 'IRR', 'ISK', 'JMD', 'JOD', 'JPY', 'KES', 'KGS', 'KHR', 'KMF', 'KPW', 'KRW',
    'KWD', 'KYD', 'KZT', 'LAK', 'LBP', 'LKR', 'LRD', 'LSL', 'LYD', 'MAD', 'MDL', 'MGA', 'MKD',
    'MMK', 'MNT', 'MOP', 'MRU', 'MUR', 'MVR', 'MWK', 'MXN', 'MXV', 'MYR', 'MZN', 'NAD', 'NGN',
    'NIO', 'NOK', 'NPR', 'NZD', 'OMR', 'PAB', 'PEN', 'PGK', 'PHP', 'PKR', 'PLN', 'PYG', 'QAR',
    'RON', 'RSD', 'RUB', 'RWF', 'SAR', 'SBD', 'SCR', 'SDG', 'SEK', 'SGD', 'SHP', 'SLE', 'SLL',
    'SOS', 'SRD', 'SSP', 'STN', 'SVC', 'SYP', 'SZL', 'THB', 'TJS', 'TMT', 'TND', 'TOP', 'TRY',
    'TTD', 'TWD', 'TZS', 'UAH', 'UGX', 'USD', 'USN', 'UYI', 'UYU', 'UYW', 'UZS', 'VED', 'VES',
    'VND', 'VUV', 'WST', 'XAD', 'XAF', 'XAG', 'XAU', 'XBA', 'XBB', 'XBC', 'XBD', 'XCD', 'XCG',
    'XDR', 'XOF', 'XPD', 'XPF', 'XPT', 'XSU', 'XTS', 'XUA', 'XXX', 'YER', 'ZAR', 'ZMW', 'ZWG', 'ZWL'
)
GROUP BY w.project_id, w.currency;
