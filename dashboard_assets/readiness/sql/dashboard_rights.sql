-- What the connecting role lacks on the dashboard schema's objects: the
-- pipeline reads and replaces its tables, takes its sequence's numbers, calls
-- its functions, and table maintenance (VACUUM, REINDEX) needs the tables'
-- owner.
SELECT 'table' AS kind, c.relname::text AS name,
       NOT has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE') AS lacks_use,
       NOT pg_has_role(c.relowner, 'USAGE') AS lacks_ownership
FROM pg_class c
WHERE c.relnamespace = 'dashboard'::regnamespace AND c.relkind IN ('r', 'p')
UNION ALL
SELECT 'sequence', c.relname::text, NOT has_sequence_privilege(c.oid, 'USAGE'), false
FROM pg_class c
WHERE c.relnamespace = 'dashboard'::regnamespace AND c.relkind = 'S'
UNION ALL
SELECT 'function', p.proname::text, NOT has_function_privilege(p.oid, 'EXECUTE'), false
FROM pg_proc p
WHERE p.pronamespace = 'dashboard'::regnamespace
ORDER BY 1, 2
