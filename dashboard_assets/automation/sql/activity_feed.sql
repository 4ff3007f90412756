-- The newest source changes of the given organizations, newest first, at most
-- `per_organization` each (one index range per organization): what changed,
-- which row, when it was committed.
SELECT o.organization_id, c.source_table, c.operation, c.row_id, c.committed_at
FROM unnest(%(organizations)s::uuid[]) AS o(organization_id)
CROSS JOIN LATERAL (
    SELECT r.source_table, r.operation, r.row_id, r.committed_at FROM dashboard.recent_changes r
    WHERE r.organization_id = o.organization_id
    ORDER BY r.commit_lsn DESC, r.ordinal DESC
    LIMIT %(per_organization)s
) c
