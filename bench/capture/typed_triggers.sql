-- The alternative to logical decoding that the capture benchmark measures:
-- statement-level triggers with static, typed SQL over the transition tables
-- that record each statement's distinct (table, organization, local day)
-- instead of one row per changed row. Installed on the tables the benchmark's
-- workloads write (orders, order_items, jobs); removed by typed_triggers_drop.sql.
CREATE TABLE IF NOT EXISTS bench_changed_days (
    xact_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    source_table text NOT NULL,
    organization_id uuid NOT NULL,
    metric_date date NOT NULL
);
CREATE INDEX IF NOT EXISTS bench_changed_days_xact_idx ON bench_changed_days (xact_id);

CREATE OR REPLACE FUNCTION bench_capture_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO bench_changed_days (source_table, organization_id, metric_date)
    SELECT DISTINCT 'orders', r.organization_id, (r.created_at AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date
    FROM new_rows r JOIN organizations g ON g.id = r.organization_id;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO bench_changed_days (source_table, organization_id, metric_date)
    SELECT DISTINCT 'orders', r.organization_id, (r.ts AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date
    FROM (SELECT organization_id, id, created_at AS ts FROM old_rows UNION ALL SELECT organization_id, id, created_at FROM new_rows
          UNION ALL SELECT j.organization_id, j.order_id, min(j.completed_at) FROM jobs j
             JOIN (SELECT organization_id, id FROM old_rows UNION SELECT organization_id, id FROM new_rows) o
               ON j.organization_id = o.organization_id AND j.order_id = o.id AND j.status = 'completed'
             GROUP BY 1, 2) r
    JOIN organizations g ON g.id = r.organization_id WHERE r.ts IS NOT NULL;
  ELSE
    INSERT INTO bench_changed_days (source_table, organization_id, metric_date)
    SELECT DISTINCT 'orders', r.organization_id, (r.ts AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date
    FROM (SELECT organization_id, id, created_at AS ts FROM old_rows
          UNION ALL SELECT j.organization_id, j.order_id, min(j.completed_at) FROM jobs j
             JOIN old_rows o ON j.organization_id = o.organization_id AND j.order_id = o.id AND j.status = 'completed'
             GROUP BY 1, 2) r
    JOIN organizations g ON g.id = r.organization_id WHERE r.ts IS NOT NULL;
  END IF;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION bench_capture_order_items() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO bench_changed_days (source_table, organization_id, metric_date)
    SELECT DISTINCT 'order_items', o.organization_id, (o.created_at AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date
    FROM (SELECT DISTINCT organization_id, order_id FROM new_rows) r
    JOIN orders o ON o.organization_id = r.organization_id AND o.id = r.order_id
    JOIN organizations g ON g.id = r.organization_id;
  ELSE
    INSERT INTO bench_changed_days (source_table, organization_id, metric_date)
    SELECT DISTINCT 'order_items', o.organization_id, (o.created_at AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date
    FROM (SELECT DISTINCT organization_id, order_id FROM old_rows) r
    JOIN orders o ON o.organization_id = r.organization_id AND o.id = r.order_id
    JOIN organizations g ON g.id = r.organization_id;
  END IF;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION bench_capture_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO bench_changed_days (source_table, organization_id, metric_date)
    SELECT DISTINCT 'jobs', r.organization_id, (r.ts AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date
    FROM (SELECT organization_id, created_at AS ts FROM new_rows UNION ALL SELECT organization_id, completed_at FROM new_rows) r
    JOIN organizations g ON g.id = r.organization_id WHERE r.ts IS NOT NULL;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO bench_changed_days (source_table, organization_id, metric_date)
    SELECT DISTINCT 'jobs', r.organization_id, (r.ts AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date
    FROM (SELECT organization_id, created_at AS ts FROM new_rows UNION ALL SELECT organization_id, completed_at FROM new_rows
          UNION ALL SELECT organization_id, created_at AS ts FROM old_rows UNION ALL SELECT organization_id, completed_at FROM old_rows) r
    JOIN organizations g ON g.id = r.organization_id WHERE r.ts IS NOT NULL;
  ELSE
    INSERT INTO bench_changed_days (source_table, organization_id, metric_date)
    SELECT DISTINCT 'jobs', r.organization_id, (r.ts AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date
    FROM (SELECT organization_id, created_at AS ts FROM old_rows UNION ALL SELECT organization_id, completed_at FROM old_rows) r
    JOIN organizations g ON g.id = r.organization_id WHERE r.ts IS NOT NULL;
  END IF;
  RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['orders','order_items','jobs'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS bench_capture_inserts ON %I', t);
    EXECUTE format('DROP TRIGGER IF EXISTS bench_capture_updates ON %I', t);
    EXECUTE format('DROP TRIGGER IF EXISTS bench_capture_deletes ON %I', t);
    EXECUTE format('CREATE TRIGGER bench_capture_inserts AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_capture_%s()', t, t);
    EXECUTE format('CREATE TRIGGER bench_capture_updates AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_capture_%s()', t, t);
    EXECUTE format('CREATE TRIGGER bench_capture_deletes AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_capture_%s()', t, t);
  END LOOP;
END $$;
