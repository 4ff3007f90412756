-- The newest source changes of the given organizations, newest first, at most
-- `per_organization` each: what changed, which row, when it was committed.
SELECT organization_id, source_table, operation, row_id, committed_at
FROM (
    SELECT c.*, row_number() OVER (PARTITION BY c.organization_id
                                   ORDER BY c.commit_lsn DESC, c.ordinal DESC) AS position
    FROM dashboard.recent_changes c
    WHERE c.organization_id = ANY(%(organizations)s::uuid[])
) newest
WHERE position <= %(per_organization)s
ORDER BY organization_id, position
