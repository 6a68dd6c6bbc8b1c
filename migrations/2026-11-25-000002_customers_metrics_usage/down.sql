DROP TABLE usage_events;
DROP TABLE billable_metrics;
DROP TABLE customers;
