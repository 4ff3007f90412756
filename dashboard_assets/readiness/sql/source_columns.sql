-- The columns of the source tables, as the search path resolves them, with
-- their types without modifiers (numeric(14, 2) is numeric).
SELECT t.name, a.attname::text, format_type(a.atttypid, NULL)
FROM unnest(%(tables)s::text[]) AS t(name)
JOIN pg_attribute a ON a.attrelid = to_regclass(t.name) AND a.attnum > 0 AND NOT a.attisdropped
