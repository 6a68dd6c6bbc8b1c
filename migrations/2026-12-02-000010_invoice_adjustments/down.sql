DROP TABLE invoice_adjustments;
