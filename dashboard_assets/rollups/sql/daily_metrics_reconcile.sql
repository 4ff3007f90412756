-- Range totals of dashboard.daily_metrics computed straight from the source by
-- another route than the rollup (whole-range sums, NOT EXISTS instead of
-- min()), to reconcile each refresh. Column names are the rollup's columns.
WITH windows AS (
    SELECT * FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[])
),
range_orders AS (
    SELECT o.organization_id, o.id, o.customer_id, o.status, o.total_amount,
           (o.created_at AT TIME ZONE w.tz)::date AS local_day
    FROM windows w
    JOIN orders o ON o.organization_id = w.organization_id
                 AND o.created_at >= w.window_start AND o.created_at < w.window_end
                 AND o.created_at >= %(utc_from)s AND o.created_at < %(utc_to)s
),
first_completions AS (
    SELECT j.organization_id, j.order_id
    FROM windows w
    JOIN jobs j ON j.organization_id = w.organization_id
               AND j.status = 'completed'
               AND j.completed_at >= w.window_start AND j.completed_at < w.window_end
               AND j.completed_at >= %(utc_from)s AND j.completed_at < %(utc_to)s
    WHERE EXISTS (SELECT 1 FROM orders o WHERE o.organization_id = j.organization_id AND o.id = j.order_id)
      AND NOT EXISTS (
          SELECT 1 FROM jobs earlier
          WHERE earlier.organization_id = j.organization_id AND earlier.order_id = j.order_id
            AND earlier.status = 'completed' AND earlier.completed_at < w.window_start
      )
    GROUP BY j.organization_id, j.order_id
)
SELECT
    (SELECT count(*) FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]))
        * (%(end_date)s::date - %(start_date)s::date + 1) AS rows,
    (SELECT COALESCE(sum(oi.line_total), 0)
       FROM range_orders o
       JOIN order_items oi ON oi.organization_id = o.organization_id AND oi.order_id = o.id
      WHERE o.status = 'delivered') AS revenue,
    (SELECT COALESCE(sum(oi.quantity * dashboard.capacity_kwh(p.specifications)), 0)
       FROM first_completions f
       JOIN order_items oi ON oi.organization_id = f.organization_id AND oi.order_id = f.order_id
       JOIN products p ON p.organization_id = oi.organization_id AND p.id = oi.product_id
      WHERE p.category = 'battery') AS kwh_deployed,
    (SELECT count(*) FROM range_orders WHERE status = 'delivered') AS delivered_orders,
    (SELECT count(*) FROM range_orders
      WHERE status IN ('draft', 'confirmed', 'picking', 'picked', 'shipped')) AS pending_orders,
    (SELECT COALESCE(sum(total_amount), 0) FROM range_orders) AS total_order_value,
    (SELECT count(*) FROM (SELECT DISTINCT organization_id, local_day, customer_id FROM range_orders) t)
        AS active_customers
