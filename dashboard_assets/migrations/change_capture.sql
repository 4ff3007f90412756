-- Change capture by logical decoding: the source tables the rollups read are
-- in one publication, with their whole old rows in the WAL (REPLICA IDENTITY
-- FULL), and a logical replication slot keeps their changes in commit order
-- until the change sensor has consumed them. Nothing runs inside the
-- application's own writes. The slot is created by `dashboard-assets migrate`
-- (dashboard_assets/automation/capture.py). Idempotent.

-- Objects of the earlier trigger-based capture, removed on upgrade.
DO $$
DECLARE
    source_table text;
BEGIN
    FOREACH source_table IN ARRAY ARRAY['orders', 'order_items', 'jobs', 'job_time_entries',
                                        'opportunities', 'warranty_claims'] LOOP
        IF to_regclass(source_table) IS NOT NULL THEN
            EXECUTE format('DROP TRIGGER IF EXISTS capture_inserts ON %I', source_table);
            EXECUTE format('DROP TRIGGER IF EXISTS capture_updates ON %I', source_table);
            EXECUTE format('DROP TRIGGER IF EXISTS capture_deletes ON %I', source_table);
        END IF;
    END LOOP;
END
$$;
DROP FUNCTION IF EXISTS dashboard.capture_changes();
DROP FUNCTION IF EXISTS dashboard.affected_days(text, jsonb[], jsonb[]);
DROP FUNCTION IF EXISTS dashboard.prune_change_log(xid8, interval);
DROP TABLE IF EXISTS dashboard.change_log;

-- Publish `captured` (tables of the current schema) in `publication` with
-- their whole old rows. Alters a table only when its replica identity is not
-- FULL yet (ALTER TABLE takes a short exclusive lock), and the publication
-- only when its tables differ.
CREATE OR REPLACE FUNCTION dashboard.publish_source_changes(publication text, captured text[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    source_table text;
    table_list text := (SELECT string_agg(quote_ident(t), ', ') FROM unnest(captured) AS t);
BEGIN
    FOREACH source_table IN ARRAY captured LOOP
        IF (SELECT relreplident FROM pg_class WHERE oid = source_table::regclass) <> 'f' THEN
            EXECUTE format('ALTER TABLE %I REPLICA IDENTITY FULL', source_table);
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = publication) THEN
        EXECUTE 'CREATE PUBLICATION ' || quote_ident(publication) || ' FOR TABLE ' || table_list;
    ELSIF (SELECT array_agg(tablename::text ORDER BY tablename::text COLLATE "C")
           FROM pg_publication_tables WHERE pubname = publication)
          IS DISTINCT FROM (SELECT array_agg(t ORDER BY t COLLATE "C") FROM unnest(captured) AS t) THEN
        EXECUTE 'ALTER PUBLICATION ' || quote_ident(publication) || ' SET TABLE ' || table_list;
    END IF;
END
$$;

-- The newest source changes of each organization (the activity feed), written
-- by the change sensor from the decoded changes: at most a few pages each.
-- Keyed by the organization, the commit's WAL position and the change's place
-- in it: changes decoded twice (a tick whose position was never stored) are
-- kept once, and an organization's newest are one index range. UNLOGGED: the
-- feed's writes cost no WAL (nor decoding); after a crash it starts again from
-- the changes that follow.
CREATE UNLOGGED TABLE IF NOT EXISTS dashboard.recent_changes (
    organization_id  uuid NOT NULL,
    commit_lsn       pg_lsn NOT NULL,
    ordinal          integer NOT NULL,
    source_table     text NOT NULL,
    operation        text NOT NULL,
    row_id           uuid,
    committed_at     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, commit_lsn, ordinal)
);

-- Each time capture restarted from the current state (a slot missing, lost
-- or moved, or capture broken): the rollups were then refreshed in full.
CREATE TABLE IF NOT EXISTS dashboard.capture_restarts (
    id            bigserial PRIMARY KEY,
    restarted_at  timestamptz NOT NULL DEFAULT now(),
    reason        text NOT NULL,
    resumed_at    pg_lsn NOT NULL
);

-- The refresh work captured changes have left to do, until the change refresh
-- has done it: the (rollup, organization, local day) whose rows may have
-- changed, and the organizations whose undated assets (the snapshot, the
-- warmed cache, the analytics that read the changed tables) must be refreshed.
-- A change to a row already pending gives it a new version and WAL position,
-- so that a refresh that read it before the change leaves it pending. The
-- sensor's tick writes them in the transaction in which it decodes the
-- changes, and a refresh deletes a row (at the version it read) only once
-- what it wrote is committed: no change is dropped by a run that fails or
-- is killed, or by a tick that dies.
CREATE SEQUENCE IF NOT EXISTS dashboard.pending_refresh_version;
CREATE TABLE IF NOT EXISTS dashboard.pending_days (
    rollup           text NOT NULL,
    organization_id  uuid NOT NULL,
    day              date NOT NULL,
    source_lsn       pg_lsn NOT NULL,
    version          bigint NOT NULL DEFAULT nextval('dashboard.pending_refresh_version'),
    captured_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rollup, organization_id, day)
);
CREATE TABLE IF NOT EXISTS dashboard.pending_organizations (
    asset            text NOT NULL,
    organization_id  uuid NOT NULL,
    source_lsn       pg_lsn NOT NULL,
    version          bigint NOT NULL DEFAULT nextval('dashboard.pending_refresh_version'),
    captured_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset, organization_id)
);

-- The WAL position through which decoded changes have been marked pending,
-- written in the transaction that marks them: whichever reads the changes
-- next (the change sensor, or a change refresh run that reads them itself
-- while it works) may advance the slot to it and reads only what came after.
CREATE TABLE IF NOT EXISTS dashboard.capture_progress (
    slot_name         text PRIMARY KEY,
    recorded_through  pg_lsn NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
-- How long after its commit the newest change of the last read was recorded:
-- change capture's lag in seconds, for monitoring.
ALTER TABLE dashboard.capture_progress ADD COLUMN IF NOT EXISTS lag_seconds double precision;
