-- Indexes a failed REINDEX CONCURRENTLY left behind in the schema: the new
-- copy (`<index>_ccnew`) or the old one (`<index>_ccold`), marked invalid.
SELECT c.relname AS index_name
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$'
ORDER BY c.relname
