-- Forget all but the newest changes of the organizations that just changed
-- (as many as the activity feed shows).
DELETE FROM dashboard.recent_changes c
USING (
    SELECT commit_lsn, ordinal, organization_id,
           row_number() OVER (PARTITION BY organization_id ORDER BY commit_lsn DESC, ordinal DESC) AS position
    FROM dashboard.recent_changes
    WHERE organization_id IN (SELECT organization_id FROM decoded_activity)
) older
WHERE older.position > %(keep)s
  AND c.commit_lsn = older.commit_lsn AND c.ordinal = older.ordinal AND c.organization_id = older.organization_id
