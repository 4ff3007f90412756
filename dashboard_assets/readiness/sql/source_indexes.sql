-- The source indexes the pipeline's queries need, by name: whether each
-- exists and is valid (a failed CREATE INDEX CONCURRENTLY leaves it invalid).
SELECT i.name, x.indisvalid
FROM unnest(%(indexes)s::text[]) AS i(name)
LEFT JOIN pg_index x ON x.indexrelid = to_regclass(i.name)
ORDER BY i.name
