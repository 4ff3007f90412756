-- Every table of the schema: its size with and without its indexes, and the
-- share of its row versions that are dead (from the statistics collector).
SELECT c.relname AS table_name,
       pg_total_relation_size(c.oid) AS total_bytes,
       pg_relation_size(c.oid) AS table_bytes,
       COALESCE(s.n_live_tup, 0) AS live_rows,
       COALESCE(s.n_dead_tup, 0) AS dead_rows,
       COALESCE(s.n_dead_tup::float8 / NULLIF(s.n_live_tup + s.n_dead_tup, 0), 0) AS dead_share
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = %(schema)s AND c.relkind = 'r'
ORDER BY c.relname
