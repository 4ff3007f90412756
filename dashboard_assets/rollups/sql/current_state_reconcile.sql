-- Totals of dashboard.current_state straight from the source, over the
-- refreshed organizations (every one when none are given).
WITH refreshed AS (
    SELECT id AS organization_id FROM organizations
    WHERE %(organization_ids)s::uuid[] IS NULL OR id = ANY(%(organization_ids)s::uuid[])
)
SELECT
    (SELECT count(*) FROM refreshed) AS rows,
    (SELECT count(*) FROM jobs WHERE status IN ('scheduled', 'in_progress')
        AND organization_id IN (SELECT organization_id FROM refreshed)) AS active_installations,
    (SELECT count(*) FROM warranty_claims WHERE status = 'pending'
        AND organization_id IN (SELECT organization_id FROM refreshed)) AS open_warranty_claims,
    (SELECT COALESCE(sum(value * probability / 100), 0) FROM opportunities WHERE stage NOT IN ('won', 'lost')
        AND organization_id IN (SELECT organization_id FROM refreshed)) AS current_pipeline,
    (SELECT count(*) FROM customers WHERE status = 'active'
        AND organization_id IN (SELECT organization_id FROM refreshed)) AS active_customers
