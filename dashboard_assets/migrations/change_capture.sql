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

-- The local days whose rollups each changed row affects, for a whole
-- statement's rows at once (set-based, so bulk statements stay fast): the
-- row's own day timestamps, the creation day of the order or job it belongs
-- to, and the day of its order's first completed job (where kWh are counted).
-- `old_rows` / `new_rows` are the transition tables as jsonb; rows pair by id.
DROP FUNCTION IF EXISTS dashboard.affected_days(text, jsonb, jsonb);
DROP FUNCTION IF EXISTS dashboard.organization_timezone(uuid);
CREATE OR REPLACE FUNCTION dashboard.affected_days(source_table text, old_rows jsonb[], new_rows jsonb[])
RETURNS TABLE (organization_id uuid, row_id uuid, affected_days date[])
LANGUAGE sql STABLE
AS $$
    WITH versions AS (
        SELECT (r ->> 'organization_id')::uuid AS org, (r ->> 'id')::uuid AS row_id, r
        FROM unnest(old_rows || new_rows) AS r
    ),
    order_refs AS (
        SELECT DISTINCT org, row_id,
               (CASE WHEN source_table = 'orders' THEN r ->> 'id' ELSE r ->> 'order_id' END)::uuid AS order_id
        FROM versions
        WHERE source_table IN ('orders', 'order_items', 'jobs')
    ),
    first_completions AS (
        SELECT j.organization_id, j.order_id, min(j.completed_at) AS completed_at
        FROM jobs j
        JOIN (SELECT DISTINCT org, order_id FROM order_refs) o
          ON j.organization_id = o.org AND j.order_id = o.order_id
        WHERE j.status = 'completed'
        GROUP BY j.organization_id, j.order_id
    ),
    stamps AS (
        SELECT org, row_id, (r ->> 'created_at')::timestamptz AS ts FROM versions
        WHERE source_table IN ('orders', 'jobs', 'opportunities', 'warranty_claims')
        UNION ALL
        SELECT org, row_id, (r ->> 'completed_at')::timestamptz FROM versions WHERE source_table = 'jobs'
        UNION ALL
        SELECT v.org, v.row_id, o.created_at FROM versions v
        JOIN orders o ON o.organization_id = v.org AND o.id = (v.r ->> 'order_id')::uuid
        WHERE source_table = 'order_items'
        UNION ALL
        SELECT v.org, v.row_id, j.created_at FROM versions v
        JOIN jobs j ON j.organization_id = v.org AND j.id = (v.r ->> 'job_id')::uuid
        WHERE source_table = 'job_time_entries'
        UNION ALL
        SELECT r.org, r.row_id, f.completed_at FROM order_refs r
        JOIN first_completions f ON f.organization_id = r.org AND f.order_id = r.order_id
    )
    SELECT v.org, v.row_id,
           COALESCE(array_agg(DISTINCT (s.ts AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date)
                        FILTER (WHERE s.ts IS NOT NULL), '{}')
    FROM (SELECT DISTINCT org, row_id FROM versions) v
    LEFT JOIN stamps s ON s.org = v.org AND s.row_id = v.row_id
    LEFT JOIN organizations g ON g.id = v.org
    GROUP BY v.org, v.row_id
$$;

CREATE OR REPLACE FUNCTION dashboard.capture_changes()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    old_versions jsonb[] := '{}';
    new_versions jsonb[] := '{}';
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_versions := ARRAY(SELECT to_jsonb(o) FROM old_rows o);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        new_versions := ARRAY(SELECT to_jsonb(n) FROM new_rows n);
    END IF;
    INSERT INTO dashboard.change_log (source_table, operation, organization_id, row_id, affected_days)
    SELECT TG_TABLE_NAME, TG_OP, a.organization_id, a.row_id, a.affected_days
    FROM dashboard.affected_days(TG_TABLE_NAME, old_versions, new_versions) a;
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
