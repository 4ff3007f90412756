-- One JSON value per organization: its rows of
-- dashboard.weekly_customer_acquisition for the 12 weeks ending with the week
-- that contains its local today, oldest first.
WITH windows AS (
    SELECT organization_id, (date_trunc('week', today) - interval '11 weeks')::date AS first_week,
           date_trunc('week', today)::date AS last_week
    FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[])
)
SELECT w.organization_id,
       jsonb_build_object(
           'organization_id', w.organization_id,
           'weeks', COALESCE(
               (SELECT jsonb_agg(jsonb_build_object('week_start', a.week_start, 'spend', a.spend,
                                                    'new_customers', a.new_customers, 'cac', a.cac)
                                 ORDER BY a.week_start)
                FROM dashboard.weekly_customer_acquisition a
                WHERE a.organization_id = w.organization_id
                  AND a.week_start BETWEEN w.first_week AND w.last_week),
               '[]'::jsonb),
           'computed_at', dashboard.utc_iso(now())),
       now()
FROM windows w
