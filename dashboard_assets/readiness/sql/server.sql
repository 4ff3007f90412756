-- The server and the connecting role, as change capture and the pipeline need
-- them: version, WAL and slot settings, the slots and WAL senders in use, the
-- role's attributes and its rights on the database (the capture slot's own
-- state is capture.slot_health's).
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_setting('wal_level') AS wal_level,
       current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_replication_slots)::int AS slots_used,
       current_setting('max_wal_senders')::int AS max_wal_senders,
       (SELECT count(*) FROM pg_stat_replication)::int AS wal_senders_used,
       current_setting('max_slot_wal_keep_size') AS max_slot_wal_keep_size,
       r.rolname AS role, r.rolsuper AS superuser, r.rolreplication AS replication,
       has_database_privilege(current_database(), 'CREATE') AS create_on_database,
       to_regnamespace('dashboard') IS NOT NULL AS migrated,
       CASE WHEN to_regnamespace('dashboard') IS NOT NULL
            THEN has_schema_privilege('dashboard', 'USAGE') END AS dashboard_usage,
       EXISTS (SELECT FROM pg_publication WHERE pubname = %(publication)s) AS published
FROM pg_roles r
WHERE r.rolname = current_user
