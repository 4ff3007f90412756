-- dashboard.weekly_customer_acquisition for the weeks starting on the Mondays
-- in [start_date, end_date], every organization: marketing spend, customers
-- created that week (local days), and spend per new customer.
WITH weeks AS (
    SELECT o.id AS organization_id, COALESCE(o.timezone, 'Australia/Sydney') AS tz, w::date AS week_start
    FROM organizations o
    CROSS JOIN generate_series(%(start_date)s::date, %(end_date)s::date, interval '7 days') AS w
),
spend AS (
    SELECT wk.organization_id, wk.week_start, sum(ms.amount) AS spend
    FROM weeks wk
    JOIN marketing_spend ms ON ms.organization_id = wk.organization_id
                           AND ms.spend_date BETWEEN wk.week_start AND wk.week_start + 6
    GROUP BY wk.organization_id, wk.week_start
),
new_customers AS (
    SELECT wk.organization_id, wk.week_start, count(*) AS new_customers
    FROM weeks wk
    JOIN customers c ON c.organization_id = wk.organization_id
                    AND c.created_at >= wk.week_start::timestamp AT TIME ZONE wk.tz
                    AND c.created_at < (wk.week_start + 7)::timestamp AT TIME ZONE wk.tz
    GROUP BY wk.organization_id, wk.week_start
)
SELECT wk.organization_id,
       wk.week_start,
       COALESCE(s.spend, 0) AS spend,
       COALESCE(n.new_customers, 0) AS new_customers,
       round(COALESCE(s.spend, 0) / NULLIF(n.new_customers, 0), 2) AS cac,
       now() AS refreshed_at
FROM weeks wk
LEFT JOIN spend s ON s.organization_id = wk.organization_id AND s.week_start = wk.week_start
LEFT JOIN new_customers n ON n.organization_id = wk.organization_id AND n.week_start = wk.week_start
