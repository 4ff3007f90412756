-- The state of change capture and of the work it left, for monitoring (the
-- slot's own is capture.slot_health's): seconds since capture last recorded
-- changes (NULL before the first), how long after its commit the newest change
-- of that read was recorded, restarts so far, and the pending (rollup,
-- organization, day) and (asset, organization).
SELECT (SELECT extract(epoch FROM now() - max(recorded_at)) FROM dashboard.capture_progress)::float8 AS read_age,
       (SELECT lag_seconds FROM dashboard.capture_progress WHERE slot_name = %(slot)s) AS lag_seconds,
       (SELECT count(*) FROM dashboard.capture_restarts)::bigint AS restarts,
       (SELECT count(*) FROM dashboard.pending_days)::bigint AS pending_days,
       (SELECT count(*) FROM dashboard.pending_organizations)::bigint AS pending_organizations
