ALTER TABLE usage_events DROP INDEX ix_usage_events_id;
