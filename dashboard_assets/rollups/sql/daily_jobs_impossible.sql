-- Rows of the refreshed range (and organizations) that no source data can produce.
SELECT organization_id, metric_date
FROM dashboard.daily_jobs
WHERE metric_date BETWEEN %(start_date)s AND %(end_date)s
  AND (%(organization_ids)s::uuid[] IS NULL OR organization_id = ANY(%(organization_ids)s::uuid[]))
  AND (LEAST(total_jobs, scheduled_jobs, in_progress_jobs, completed_jobs, cancelled_jobs) < 0
       OR scheduled_jobs + in_progress_jobs + completed_jobs + cancelled_jobs > total_jobs)
