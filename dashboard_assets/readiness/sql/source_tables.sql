-- Each source table the pipeline reads, as the search path resolves it: whether
-- it exists, whether the connecting role may read it, may write it (a runtime
-- role should not), owns it (`migrate` sets its replica identity and publishes
-- it), and its replica identity ('f': full, what capture needs).
SELECT t.name,
       to_regclass(t.name) IS NOT NULL AS present,
       COALESCE(has_table_privilege(to_regclass(t.name), 'SELECT'), false) AS can_read,
       COALESCE(has_table_privilege(to_regclass(t.name), 'INSERT, UPDATE, DELETE, TRUNCATE'), false) AS can_write,
       COALESCE(pg_has_role(c.relowner, 'USAGE'), false) AS owns,
       c.relreplident AS replica_identity
FROM unnest(%(tables)s::text[]) AS t(name)
LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)
ORDER BY t.name
