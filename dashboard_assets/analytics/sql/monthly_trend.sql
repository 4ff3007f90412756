-- One JSON value per organization: the 12 calendar months ending with its
-- local today's month (the current one up to today), summed from
-- dashboard.daily_metrics. {metric}, {label} and {scale} are filled in with
-- an identifier and two literals from the asset's spec.
WITH today AS (
    SELECT * FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[])
),
months AS (
    SELECT t.organization_id, t.today, m::date AS month
    FROM today t
    CROSS JOIN generate_series(date_trunc('month', t.today) - interval '11 months',
                               date_trunc('month', t.today), interval '1 month') AS m
),
monthly AS (
    SELECT mo.organization_id, mo.month, COALESCE(sum(d.{metric}), 0) AS value
    FROM months mo
    LEFT JOIN dashboard.daily_metrics d
           ON d.organization_id = mo.organization_id
          AND d.metric_date >= mo.month
          AND d.metric_date < (mo.month + interval '1 month')::date
          AND d.metric_date <= mo.today
    GROUP BY mo.organization_id, mo.month
)
SELECT organization_id,
       jsonb_build_object(
           'organization_id', organization_id,
           'points', jsonb_agg(jsonb_build_object('month', to_char(month, 'YYYY-MM'), {label}, round(value, {scale}))
                               ORDER BY month),
           'computed_at', dashboard.utc_iso(now())),
       now()
FROM monthly
GROUP BY organization_id
