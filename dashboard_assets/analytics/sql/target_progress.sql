-- One JSON value per organization: each target whose period contains its
-- local today, with the metric's actual value from the period start to today
-- (from the rollups) and the percent reached.
WITH current_targets AS (
    SELECT t.organization_id, t.today, tg.metric, tg.period_start, tg.period_end, tg.target_value
    FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[]) t
    JOIN targets tg ON tg.organization_id = t.organization_id
                   AND tg.period_start <= t.today AND tg.period_end >= t.today
),
actuals AS (
    SELECT ct.*,
           CASE ct.metric
               WHEN 'revenue' THEN r.revenue
               WHEN 'kwh_deployed' THEN r.kwh_deployed
               WHEN 'delivered_orders' THEN r.delivered_orders
               WHEN 'warranty_claims' THEN r.warranty_claims
               WHEN 'active_customers' THEN r.customers
               WHEN 'quote_win_rate' THEN r.won_count::numeric / NULLIF(r.closed_opportunities, 0)
           END AS actual,
           CASE ct.metric WHEN 'revenue' THEN 2 WHEN 'kwh_deployed' THEN 3 WHEN 'quote_win_rate' THEN 4 ELSE 0 END
               AS scale
    FROM current_targets ct
    CROSS JOIN LATERAL dashboard.range_totals(ct.organization_id, ct.period_start, ct.today) r
)
SELECT t.organization_id,
       jsonb_build_object(
           'organization_id', t.organization_id,
           'targets', COALESCE(
               (SELECT jsonb_agg(jsonb_build_object(
                           'metric', a.metric,
                           'period_start', a.period_start,
                           'period_end', a.period_end,
                           'target', a.target_value,
                           'actual', round(a.actual, a.scale),
                           'percent', round(a.actual / NULLIF(a.target_value, 0) * 100, 2))
                       ORDER BY a.metric, a.period_start)
                FROM actuals a WHERE a.organization_id = t.organization_id),
               '[]'::jsonb),
           'computed_at', dashboard.utc_iso(now())),
       now()
FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[]) t
