-- Every valid B-tree index of the schema's tables: its size, and an estimate
-- of its size freshly built from the table's live rows. A fresh B-tree fills
-- its leaf pages to its fillfactor (90 percent by default) with one entry per row:
-- an 8-byte tuple header and the key, padded to 8 bytes, plus a 4-byte line
-- pointer; each page keeps 24 bytes of header and 16 of B-tree data, and one
-- metapage comes first. Key widths are the columns' fixed lengths, else their
-- average width from pg_stats, else 32 bytes. The live rows are the larger of
-- the catalog's count (kept by VACUUM and ANALYZE) and the statistics
-- collector's, so that neither missing statistics nor a stale catalog makes
-- an index look bloated. The estimate leaves out the upper levels (about 1 percent)
-- and the deduplication of repeated keys in non-unique indexes, so it errs
-- towards a healthy index. The bloat share is the part of the index beyond
-- the estimate.
WITH keys AS (
    SELECT i.indexrelid,
           sum(COALESCE(NULLIF(a.attlen, -1), st.avg_width, 32)) AS key_bytes
    FROM pg_index i
    JOIN pg_class tc ON tc.oid = i.indrelid
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) AS k(attnum)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    LEFT JOIN pg_stats st ON st.schemaname = %(schema)s AND st.tablename = tc.relname
                         AND st.attname = a.attname AND NOT st.inherited
    GROUP BY i.indexrelid
),
sized AS (
    SELECT ic.relname AS index_name,
           tc.relname AS table_name,
           pg_relation_size(i.indexrelid) AS index_bytes,
           GREATEST(tc.reltuples, COALESCE(s.n_live_tup, 0), 0) AS live_rows,
           (ceil((8 + k.key_bytes) / 8.0) * 8 + 4) AS entry_bytes,
           floor((current_setting('block_size')::int - 24 - 16)
                 * COALESCE((SELECT option_value::int FROM pg_options_to_table(ic.reloptions)
                             WHERE option_name = 'fillfactor'), 90) / 100.0) AS leaf_bytes
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class tc ON tc.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = tc.relnamespace
    JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
    JOIN keys k ON k.indexrelid = i.indexrelid
    LEFT JOIN pg_stat_user_tables s ON s.relid = i.indrelid
    WHERE n.nspname = %(schema)s AND i.indisvalid
),
estimated AS (
    SELECT index_name, table_name, index_bytes, live_rows::bigint AS live_rows,
           ((ceil(live_rows * entry_bytes / leaf_bytes) + 1) * current_setting('block_size')::int)::bigint
               AS estimated_bytes
    FROM sized
)
SELECT *, GREATEST(1 - estimated_bytes::float8 / NULLIF(index_bytes, 0), 0) AS bloat_share
FROM estimated
ORDER BY table_name, index_name
