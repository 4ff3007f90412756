-- Mark as pending, at the WAL position the decoded changes were read up to,
-- the (rollup, organization, local day) whose rows they may have changed; a
-- row already pending gets a new version, so that a refresh that read it
-- before leaves it pending.
--
-- Those days come from the changed rows' old and new versions (decoded_versions)
-- and the current source rows they point at: an item counts on its
-- order's day, a time entry on its job's day, and kWh on the day of the
-- order's first completed job, so every order a change touches (through its
-- items, jobs or products) contributes that day. A change to an organization
-- (its timezone, or the organization itself) affects all of its days.
-- Lookups read the current rows: a later change to a looked-up row is itself
-- decoded with its old and new values, so no day is missed.
INSERT INTO dashboard.pending_days AS pending (rollup, organization_id, day, source_lsn)
SELECT rollup, organization_id, day, %(position)s::pg_lsn
FROM (
    WITH zones AS (
        SELECT id, COALESCE(timezone, 'Australia/Sydney') AS tz FROM organizations
    ),
    changed_orders AS (
        SELECT organization_id, id, created_at FROM decoded_versions WHERE source_table = 'orders'
    ),
    changed_items AS (
        SELECT DISTINCT organization_id, order_id FROM decoded_versions WHERE source_table = 'order_items'
    ),
    -- Items of orders not changed themselves: the others' days come with their orders.
    items_of_unchanged_orders AS (
        SELECT organization_id, order_id FROM changed_items
        EXCEPT SELECT organization_id, id FROM changed_orders
    ),
    changed_jobs AS (
        SELECT organization_id, order_id, created_at, completed_at FROM decoded_versions WHERE source_table = 'jobs'
    ),
    changed_entries AS (
        SELECT DISTINCT organization_id, job_id FROM decoded_versions WHERE source_table = 'job_time_entries'
    ),
    changed_products AS (
        SELECT organization_id, id FROM decoded_versions WHERE source_table = 'products'
    ),
    kwh_orders AS (
        SELECT organization_id, id AS order_id FROM changed_orders
        UNION SELECT organization_id, order_id FROM changed_items
        UNION SELECT organization_id, order_id FROM changed_jobs WHERE order_id IS NOT NULL
        UNION SELECT oi.organization_id, oi.order_id
              FROM changed_products p
              JOIN order_items oi ON oi.organization_id = p.organization_id AND oi.product_id = p.id
    ),
    stamps AS (
        SELECT 'daily_metrics' AS rollup, organization_id, created_at AS ts FROM changed_orders
        UNION ALL
        SELECT 'daily_metrics', i.organization_id, o.created_at
        FROM items_of_unchanged_orders i JOIN orders o ON o.organization_id = i.organization_id AND o.id = i.order_id
        UNION ALL
        SELECT 'daily_metrics', organization_id, completed_at FROM changed_jobs
        UNION ALL
        SELECT 'daily_metrics', k.organization_id, f.completed_at
        FROM kwh_orders k
        CROSS JOIN LATERAL (
            SELECT min(j.completed_at) AS completed_at FROM jobs j
            WHERE j.organization_id = k.organization_id AND j.order_id = k.order_id AND j.status = 'completed'
        ) f
        UNION ALL
        SELECT 'daily_jobs', organization_id, created_at FROM changed_jobs
        UNION ALL
        SELECT 'daily_jobs', e.organization_id, j.created_at
        FROM changed_entries e JOIN jobs j ON j.organization_id = e.organization_id AND j.id = e.job_id
        UNION ALL
        SELECT 'daily_pipeline', organization_id, created_at FROM decoded_versions WHERE source_table = 'opportunities'
        UNION ALL
        SELECT 'daily_warranty', organization_id, created_at FROM decoded_versions WHERE source_table = 'warranty_claims'
    )
    SELECT DISTINCT s.rollup, s.organization_id, (s.ts AT TIME ZONE COALESCE(z.tz, 'Australia/Sydney'))::date
    FROM stamps s
    LEFT JOIN zones z ON z.id = s.organization_id
    WHERE s.ts IS NOT NULL
      AND (s.ts AT TIME ZONE COALESCE(z.tz, 'Australia/Sydney'))::date BETWEEN %(first_day)s AND %(last_day)s
    UNION
    SELECT r.rollup, g.id, d::date
    FROM (SELECT DISTINCT id FROM decoded_versions WHERE source_table = 'organizations') AS g
    CROSS JOIN unnest(%(rollups)s::text[]) AS r(rollup)
    CROSS JOIN generate_series(%(first_day)s::date, %(last_day)s::date, interval '1 day') AS d
) AS affected (rollup, organization_id, day)
ON CONFLICT (rollup, organization_id, day) DO UPDATE
SET source_lsn = excluded.source_lsn, version = excluded.version
