-- Totals of dashboard.current_state straight from the source.
SELECT
    (SELECT count(*) FROM organizations) AS rows,
    (SELECT count(*) FROM jobs WHERE status IN ('scheduled', 'in_progress')) AS active_installations,
    (SELECT count(*) FROM warranty_claims WHERE status = 'pending') AS open_warranty_claims,
    (SELECT COALESCE(sum(value * probability / 100), 0) FROM opportunities
      WHERE stage NOT IN ('won', 'lost')) AS current_pipeline,
    (SELECT count(*) FROM customers WHERE status = 'active') AS active_customers
