-- One query per sensor tick: the transaction horizon (every transaction below
-- it has finished, so change-log rows below it are final) and the distinct
-- (table, organization, day) changed between the cursor and that horizon.
-- With no changes it returns the horizon alone.
WITH horizon AS (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xact_id
),
changes AS (
    SELECT c.source_table, c.organization_id, day
    FROM horizon h
    JOIN dashboard.change_log c ON c.xact_id >= %(after)s::xid8 AND c.xact_id < h.xact_id
    CROSS JOIN LATERAL unnest(c.affected_days) AS day
    GROUP BY c.source_table, c.organization_id, day
)
SELECT h.xact_id::text AS horizon, c.source_table, c.organization_id, c.day
FROM horizon h
LEFT JOIN changes c ON true
