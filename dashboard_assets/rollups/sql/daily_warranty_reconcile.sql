-- Range totals of dashboard.daily_warranty straight from the source.
WITH range_claims AS (
    SELECT wc.*
    FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) w
    JOIN warranty_claims wc ON wc.organization_id = w.organization_id
                           AND wc.created_at >= w.window_start AND wc.created_at < w.window_end
                           AND wc.created_at >= %(utc_from)s AND wc.created_at < %(utc_to)s
)
SELECT
    (SELECT count(*) FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]))
        * (%(end_date)s::date - %(start_date)s::date + 1) AS rows,
    (SELECT count(*) FROM range_claims) AS total_claims,
    (SELECT count(*) FROM range_claims WHERE status = 'pending') AS pending_claims,
    (SELECT count(*) FROM range_claims WHERE status = 'approved') AS approved_claims,
    (SELECT count(*) FROM range_claims WHERE status = 'rejected') AS rejected_claims,
    (SELECT count(*) FROM range_claims WHERE status = 'resolved') AS resolved_claims,
    (SELECT count(*) FROM range_claims WHERE claim_type = 'defect') AS defect_claims,
    (SELECT count(*) FROM range_claims WHERE claim_type = 'damage') AS damage_claims,
    (SELECT count(*) FROM range_claims WHERE claim_type = 'performance') AS performance_claims,
    (SELECT count(*) FROM range_claims
      WHERE status = 'resolved' AND resolved_at IS NOT NULL) AS resolved_count,
    (SELECT COALESCE(sum(extract(epoch FROM resolved_at - created_at) / 86400), 0) FROM range_claims
      WHERE status = 'resolved' AND resolved_at IS NOT NULL) AS resolution_days_sum
