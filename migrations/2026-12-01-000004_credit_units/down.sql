DROP TABLE credit_units;
