DROP TABLE leases;
DROP TABLE invoice_sequences;
DROP TABLE invoice_lines;
DROP TABLE invoices;
