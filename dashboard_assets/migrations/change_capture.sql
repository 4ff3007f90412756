-- Change capture on the source tables the rollups read: statement-level
-- triggers with transition tables append one row per changed source row to
-- dashboard.change_log, with the organization and every local day whose
-- rollups the change affects (old and new values). Idempotent.

CREATE TABLE IF NOT EXISTS dashboard.change_log (
    id               bigserial PRIMARY KEY,
    xact_id          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    changed_at       timestamptz NOT NULL DEFAULT now(),
    source_table     text NOT NULL,
    operation        text NOT NULL,
    organization_id  uuid NOT NULL,
    row_id           uuid,
    affected_days    date[] NOT NULL
);
-- The sensor reads by transaction id: every transaction older than the
-- oldest one still running has committed (or aborted), so rows below that
-- horizon are final, whatever order their ids were drawn in.
CREATE INDEX IF NOT EXISTS change_log_xact_id_idx ON dashboard.change_log (xact_id);
CREATE INDEX IF NOT EXISTS change_log_organization_idx ON dashboard.change_log (organization_id, id DESC);

CREATE OR REPLACE FUNCTION dashboard.organization_timezone(organization uuid)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT COALESCE((SELECT timezone FROM organizations WHERE id = organization), 'Australia/Sydney') $$;

-- The local days whose rollups a change of one row affects: its own day
-- timestamps, the creation day of the order or job it belongs to, and the
-- day of its order's first completed job (where kWh are counted).
CREATE OR REPLACE FUNCTION dashboard.affected_days(source_table text, old_row jsonb, new_row jsonb)
RETURNS date[]
LANGUAGE sql STABLE
AS $$
    WITH versions AS (
        SELECT (r ->> 'organization_id')::uuid AS org, r
        FROM unnest(ARRAY[old_row, new_row]) AS r
        WHERE r IS NOT NULL
    ),
    stamps AS (
        SELECT org, (r ->> 'created_at')::timestamptz AS ts FROM versions
        WHERE source_table IN ('orders', 'jobs', 'opportunities', 'warranty_claims')
        UNION ALL
        SELECT org, (r ->> 'completed_at')::timestamptz FROM versions WHERE source_table = 'jobs'
        UNION ALL
        SELECT o.organization_id, o.created_at FROM versions v
        JOIN orders o ON o.organization_id = v.org AND o.id = (v.r ->> 'order_id')::uuid
        WHERE source_table = 'order_items'
        UNION ALL
        SELECT j.organization_id, j.created_at FROM versions v
        JOIN jobs j ON j.organization_id = v.org AND j.id = (v.r ->> 'job_id')::uuid
        WHERE source_table = 'job_time_entries'
        UNION ALL
        SELECT v.org, (SELECT min(j.completed_at) FROM jobs j
                       WHERE j.organization_id = v.org AND j.status = 'completed'
                         AND j.order_id = (CASE WHEN source_table = 'orders' THEN v.r ->> 'id'
                                                ELSE v.r ->> 'order_id' END)::uuid)
        FROM versions v
        WHERE source_table IN ('orders', 'order_items', 'jobs')
    )
    SELECT COALESCE(array_agg(DISTINCT (ts AT TIME ZONE dashboard.organization_timezone(org))::date), '{}')
    FROM stamps
    WHERE ts IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION dashboard.capture_changes()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO dashboard.change_log (source_table, operation, organization_id, row_id, affected_days)
        SELECT TG_TABLE_NAME, TG_OP, n.organization_id, n.id,
               dashboard.affected_days(TG_TABLE_NAME, NULL, to_jsonb(n))
        FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO dashboard.change_log (source_table, operation, organization_id, row_id, affected_days)
        SELECT TG_TABLE_NAME, TG_OP, o.organization_id, o.id,
               dashboard.affected_days(TG_TABLE_NAME, to_jsonb(o), NULL)
        FROM old_rows o;
    ELSE
        INSERT INTO dashboard.change_log (source_table, operation, organization_id, row_id, affected_days)
        SELECT TG_TABLE_NAME, TG_OP, COALESCE(n.organization_id, o.organization_id), COALESCE(n.id, o.id),
               dashboard.affected_days(TG_TABLE_NAME, to_jsonb(o), to_jsonb(n))
        FROM new_rows n
        FULL JOIN old_rows o ON o.id = n.id;
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    source_table text;
BEGIN
    FOREACH source_table IN ARRAY ARRAY['orders', 'order_items', 'jobs', 'job_time_entries',
                                        'opportunities', 'warranty_claims'] LOOP
        IF to_regclass(source_table) IS NULL THEN
            CONTINUE;
        END IF;
        EXECUTE format('DROP TRIGGER IF EXISTS capture_inserts ON %I', source_table);
        EXECUTE format('DROP TRIGGER IF EXISTS capture_updates ON %I', source_table);
        EXECUTE format('DROP TRIGGER IF EXISTS capture_deletes ON %I', source_table);
        EXECUTE format('CREATE TRIGGER capture_inserts AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION dashboard.capture_changes()', source_table);
        EXECUTE format('CREATE TRIGGER capture_updates AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows '
                       'NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dashboard.capture_changes()',
                       source_table);
        EXECUTE format('CREATE TRIGGER capture_deletes AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION dashboard.capture_changes()', source_table);
    END LOOP;
END
$$;

-- Delete consumed change-log rows older than `keep` (the activity feed reads
-- the newest ones); returns how many were deleted.
CREATE OR REPLACE FUNCTION dashboard.prune_change_log(consumed_below xid8, keep interval)
RETURNS bigint
LANGUAGE sql
AS $$
    WITH deleted AS (
        DELETE FROM dashboard.change_log
        WHERE xact_id < consumed_below AND changed_at < now() - keep
        RETURNING 1
    )
    SELECT count(*) FROM deleted
$$;
