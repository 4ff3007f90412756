-- dashboard.daily_customers: one row per organization, local day and customer
-- with an order that day, so distinct customers over any range are exact.
SELECT DISTINCT o.organization_id, (o.created_at AT TIME ZONE w.tz)::date AS metric_date, o.customer_id
FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) w
JOIN orders o ON o.organization_id = w.organization_id
             AND o.created_at >= w.window_start AND o.created_at < w.window_end
             AND o.created_at >= %(utc_from)s AND o.created_at < %(utc_to)s
