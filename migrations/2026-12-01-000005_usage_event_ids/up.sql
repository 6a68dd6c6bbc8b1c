-- Usage events are Nodes (issue 12): `node(id: "evt_…")` looks an event up by its public id, which
-- had no index (events are written by `seq`, their primary key, and read by customer and time).
-- Not UNIQUE: ids are ULIDs made by the server (48 bits of milliseconds, 80 random bits, monotonic
-- per process), so they do not collide, and a unique key would turn the ingest path's
-- `INSERT IGNORE` into one that could silently drop an event on a collision instead of storing it.
-- The lookup reads every row with the id and keeps the caller's. InnoDB builds it in place
-- without blocking ingest (ALGORITHM=INPLACE, LOCK=NONE), which matters on a large table.
ALTER TABLE usage_events ADD INDEX ix_usage_events_id (id), ALGORITHM = INPLACE, LOCK = NONE;
