-- dashboard.current_state: one snapshot row per organization, each figure
-- counted from its own table.
SELECT o.id,
       now(),
       COALESCE(j.active_installations, 0),
       COALESCE(wc.open_warranty_claims, 0),
       COALESCE(op.current_pipeline, 0),
       COALESCE(c.active_customers, 0),
       now()
FROM organizations o
LEFT JOIN (
    SELECT organization_id, count(*) AS active_installations
    FROM jobs WHERE status IN ('scheduled', 'in_progress')
    GROUP BY organization_id
) j ON j.organization_id = o.id
LEFT JOIN (
    SELECT organization_id, count(*) AS open_warranty_claims
    FROM warranty_claims WHERE status = 'pending'
    GROUP BY organization_id
) wc ON wc.organization_id = o.id
LEFT JOIN (
    SELECT organization_id, sum(value * probability / 100) AS current_pipeline
    FROM opportunities WHERE stage NOT IN ('won', 'lost')
    GROUP BY organization_id
) op ON op.organization_id = o.id
LEFT JOIN (
    SELECT organization_id, count(*) AS active_customers
    FROM customers WHERE status = 'active'
    GROUP BY organization_id
) c ON c.organization_id = o.id
