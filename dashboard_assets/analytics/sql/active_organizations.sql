-- Organizations with orders or opportunities in their last 30 local days
-- (from the rollups): those whose dashboards are worth warming.
SELECT t.organization_id
FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[]) t
WHERE EXISTS (
    SELECT 1 FROM dashboard.daily_metrics m
    WHERE m.organization_id = t.organization_id AND m.metric_date BETWEEN t.today - 29 AND t.today
      AND m.delivered_orders + m.pending_orders > 0
) OR EXISTS (
    SELECT 1 FROM dashboard.daily_pipeline p
    WHERE p.organization_id = t.organization_id AND p.metric_date BETWEEN t.today - 29 AND t.today
      AND p.closed_opportunities + p.new_opportunities + p.qualified_opportunities
          + p.proposal_opportunities + p.negotiation_opportunities > 0
)
ORDER BY t.organization_id
