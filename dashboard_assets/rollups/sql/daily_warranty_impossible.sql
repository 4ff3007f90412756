-- Rows of the refreshed range (and organizations) that no source data can produce.
SELECT organization_id, metric_date
FROM dashboard.daily_warranty
WHERE metric_date BETWEEN %(start_date)s AND %(end_date)s
  AND (%(organization_ids)s::uuid[] IS NULL OR organization_id = ANY(%(organization_ids)s::uuid[]))
  AND (LEAST(total_claims, pending_claims, approved_claims, rejected_claims, resolved_claims,
             defect_claims, damage_claims, performance_claims, resolved_count) < 0
       OR pending_claims + approved_claims + rejected_claims + resolved_claims > total_claims
       OR defect_claims + damage_claims + performance_claims > total_claims
       OR resolved_count > resolved_claims)
