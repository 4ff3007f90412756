-- dashboard.daily_warranty: warranty claims by their local created_at day.
WITH day_claims AS (
    SELECT wc.organization_id, (wc.created_at AT TIME ZONE w.tz)::date AS metric_date,
           wc.status, wc.claim_type,
           extract(epoch FROM wc.resolved_at - wc.created_at) / 86400 AS resolution_days
    FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) w
    JOIN warranty_claims wc ON wc.organization_id = w.organization_id
                           AND wc.created_at >= w.window_start AND wc.created_at < w.window_end
                           AND wc.created_at >= %(utc_from)s AND wc.created_at < %(utc_to)s
),
per_day AS (
    SELECT organization_id, metric_date,
           count(*) AS total_claims,
           count(*) FILTER (WHERE status = 'pending') AS pending_claims,
           count(*) FILTER (WHERE status = 'approved') AS approved_claims,
           count(*) FILTER (WHERE status = 'rejected') AS rejected_claims,
           count(*) FILTER (WHERE status = 'resolved') AS resolved_claims,
           count(*) FILTER (WHERE claim_type = 'defect') AS defect_claims,
           count(*) FILTER (WHERE claim_type = 'damage') AS damage_claims,
           count(*) FILTER (WHERE claim_type = 'performance') AS performance_claims,
           count(resolution_days) FILTER (WHERE status = 'resolved') AS resolved_count,
           sum(resolution_days) FILTER (WHERE status = 'resolved') AS resolution_days_sum
    FROM day_claims
    GROUP BY organization_id, metric_date
)
SELECT d.organization_id,
       d.metric_date,
       COALESCE(p.total_claims, 0) AS total_claims,
       COALESCE(p.pending_claims, 0) AS pending_claims,
       COALESCE(p.approved_claims, 0) AS approved_claims,
       COALESCE(p.rejected_claims, 0) AS rejected_claims,
       COALESCE(p.resolved_claims, 0) AS resolved_claims,
       COALESCE(p.defect_claims, 0) AS defect_claims,
       COALESCE(p.damage_claims, 0) AS damage_claims,
       COALESCE(p.performance_claims, 0) AS performance_claims,
       COALESCE(p.resolved_count, 0) AS resolved_count,
       COALESCE(p.resolution_days_sum, 0) AS resolution_days_sum,
       p.resolution_days_sum / NULLIF(p.resolved_count, 0) AS avg_resolution_days,
       now() AS refreshed_at
FROM dashboard.organization_days(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) d
LEFT JOIN per_day p ON p.organization_id = d.organization_id AND p.metric_date = d.metric_date
