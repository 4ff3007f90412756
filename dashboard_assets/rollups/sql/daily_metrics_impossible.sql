-- Rows of the refreshed range (and organizations) that no source data can produce.
SELECT organization_id, metric_date
FROM dashboard.daily_metrics
WHERE metric_date BETWEEN %(start_date)s AND %(end_date)s
  AND (%(organization_ids)s::uuid[] IS NULL OR organization_id = ANY(%(organization_ids)s::uuid[]))
  AND (delivered_orders < 0 OR pending_orders < 0 OR active_customers < 0
       OR kwh_deployed < 0
       OR (active_customers = 0 AND delivered_orders + pending_orders > 0))
