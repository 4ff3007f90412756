-- Forget all but the newest changes of the organizations that just changed
-- (as many as the activity feed shows): per organization, everything at or
-- before its first change beyond the newest %(keep)s, one index range each.
DELETE FROM dashboard.recent_changes c
USING (SELECT DISTINCT organization_id FROM decoded_activity) changed
CROSS JOIN LATERAL (
    SELECT commit_lsn, ordinal FROM dashboard.recent_changes r
    WHERE r.organization_id = changed.organization_id
    ORDER BY commit_lsn DESC, ordinal DESC
    OFFSET %(keep)s LIMIT 1
) cutoff
WHERE c.organization_id = changed.organization_id
  AND (c.commit_lsn, c.ordinal) <= (cutoff.commit_lsn, cutoff.ordinal)
