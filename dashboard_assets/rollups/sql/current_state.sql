-- dashboard.current_state: one snapshot row per organization (every one, or
-- only those given), each figure counted from its own table.
WITH refreshed AS (
    SELECT id AS organization_id FROM organizations
    WHERE %(organization_ids)s::uuid[] IS NULL OR id = ANY(%(organization_ids)s::uuid[])
)
SELECT r.organization_id,
       now(),
       COALESCE(j.active_installations, 0),
       COALESCE(wc.open_warranty_claims, 0),
       COALESCE(op.current_pipeline, 0),
       COALESCE(c.active_customers, 0),
       now()
FROM refreshed r
LEFT JOIN LATERAL (
    SELECT count(*) AS active_installations
    FROM jobs WHERE organization_id = r.organization_id AND status IN ('scheduled', 'in_progress')
) j ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS open_warranty_claims
    FROM warranty_claims WHERE organization_id = r.organization_id AND status = 'pending'
) wc ON true
LEFT JOIN LATERAL (
    SELECT sum(value * probability / 100) AS current_pipeline
    FROM opportunities WHERE organization_id = r.organization_id AND stage NOT IN ('won', 'lost')
) op ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS active_customers
    FROM customers WHERE organization_id = r.organization_id AND status = 'active'
) c ON true
