-- dashboard.daily_metrics for the local days [start_date, end_date] of every
-- organization. Each fact table is aggregated on its own before the join, so
-- no order, item or job is counted twice.
WITH windows AS (
    SELECT * FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[])
),
window_orders AS (
    SELECT o.organization_id, o.id AS order_id, o.customer_id, o.status, o.total_amount,
           (o.created_at AT TIME ZONE w.tz)::date AS metric_date
    FROM windows w
    JOIN orders o ON o.organization_id = w.organization_id
                 AND o.created_at >= w.window_start AND o.created_at < w.window_end
                 AND o.created_at >= %(utc_from)s AND o.created_at < %(utc_to)s
),
order_counts AS (
    SELECT organization_id, metric_date,
           count(*) FILTER (WHERE status = 'delivered') AS delivered_orders,
           count(*) FILTER (WHERE status IN ('draft', 'confirmed', 'picking', 'picked', 'shipped')) AS pending_orders,
           COALESCE(sum(total_amount), 0) AS total_order_value,
           count(DISTINCT customer_id) AS active_customers
    FROM window_orders
    GROUP BY organization_id, metric_date
),
delivered_revenue AS (
    SELECT wo.organization_id, wo.metric_date, sum(oi.line_total) AS revenue
    FROM window_orders wo
    JOIN order_items oi ON oi.organization_id = wo.organization_id AND oi.order_id = wo.order_id
    WHERE wo.status = 'delivered'
    GROUP BY wo.organization_id, wo.metric_date
),
-- An order's kWh count once, on the local day of its first completed job: the
-- (existing) orders with a completion inside the window, then their first one.
-- Each carries its organization's window, so that nothing joins the windows
-- again (a join the planner misjudges at a row per order and organization).
completed_in_window AS (
    SELECT DISTINCT j.organization_id, j.order_id, w.tz, w.window_start
    FROM windows w
    JOIN jobs j ON j.organization_id = w.organization_id
               AND j.status = 'completed'
               AND j.completed_at >= w.window_start AND j.completed_at < w.window_end
               AND j.completed_at >= %(utc_from)s AND j.completed_at < %(utc_to)s
    WHERE j.order_id IS NOT NULL
),
first_completion AS (
    SELECT c.organization_id, c.order_id, c.tz, c.window_start, min(j.completed_at) AS completed_at
    FROM completed_in_window c
    JOIN orders o ON o.organization_id = c.organization_id AND o.id = c.order_id
    JOIN jobs j ON j.organization_id = c.organization_id AND j.order_id = c.order_id
               AND j.status = 'completed' AND j.completed_at IS NOT NULL
    GROUP BY c.organization_id, c.order_id, c.tz, c.window_start
),
deployed_kwh AS (
    SELECT fc.organization_id, (fc.completed_at AT TIME ZONE fc.tz)::date AS metric_date,
           sum(oi.quantity * dashboard.capacity_kwh(p.specifications)) AS kwh_deployed
    FROM first_completion fc
    JOIN order_items oi ON oi.organization_id = fc.organization_id AND oi.order_id = fc.order_id
    JOIN products p ON p.organization_id = oi.organization_id AND p.id = oi.product_id
    WHERE fc.completed_at >= fc.window_start
      AND p.category = 'battery'
    GROUP BY fc.organization_id, 2
)
SELECT d.organization_id,
       d.metric_date,
       COALESCE(r.revenue, 0) AS revenue,
       COALESCE(k.kwh_deployed, 0) AS kwh_deployed,
       COALESCE(c.delivered_orders, 0) AS delivered_orders,
       COALESCE(c.pending_orders, 0) AS pending_orders,
       COALESCE(c.total_order_value, 0) AS total_order_value,
       COALESCE(c.active_customers, 0) AS active_customers,
       now() AS refreshed_at
FROM dashboard.organization_days(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) d
LEFT JOIN order_counts c ON c.organization_id = d.organization_id AND c.metric_date = d.metric_date
LEFT JOIN delivered_revenue r ON r.organization_id = d.organization_id AND r.metric_date = d.metric_date
LEFT JOIN deployed_kwh k ON k.organization_id = d.organization_id AND k.metric_date = d.metric_date
