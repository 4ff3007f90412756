-- Snapshot rows that no source data can produce.
SELECT organization_id, snapshot_at::date
FROM dashboard.current_state
WHERE LEAST(active_installations, open_warranty_claims, active_customers) < 0
  AND (%(organization_ids)s::uuid[] IS NULL OR organization_id = ANY(%(organization_ids)s::uuid[]))

