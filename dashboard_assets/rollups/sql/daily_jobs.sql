-- dashboard.daily_jobs: installation jobs by their local created_at day, with
-- the labour hours of those jobs summed per job before they meet the jobs.
WITH day_jobs AS (
    SELECT j.organization_id, j.id AS job_id, j.status,
           (j.created_at AT TIME ZONE w.tz)::date AS metric_date
    FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) w
    JOIN jobs j ON j.organization_id = w.organization_id
               AND j.created_at >= w.window_start AND j.created_at < w.window_end
               AND j.created_at >= %(utc_from)s AND j.created_at < %(utc_to)s
),
job_hours AS (
    SELECT dj.organization_id, dj.job_id, sum(te.hours) AS hours
    FROM day_jobs dj
    JOIN job_time_entries te ON te.organization_id = dj.organization_id AND te.job_id = dj.job_id
    GROUP BY dj.organization_id, dj.job_id
),
per_day AS (
    SELECT dj.organization_id, dj.metric_date,
           count(*) AS total_jobs,
           count(*) FILTER (WHERE dj.status = 'scheduled') AS scheduled_jobs,
           count(*) FILTER (WHERE dj.status = 'in_progress') AS in_progress_jobs,
           count(*) FILTER (WHERE dj.status = 'completed') AS completed_jobs,
           count(*) FILTER (WHERE dj.status = 'cancelled') AS cancelled_jobs,
           COALESCE(sum(jh.hours), 0) AS total_labor_hours
    FROM day_jobs dj
    LEFT JOIN job_hours jh ON jh.organization_id = dj.organization_id AND jh.job_id = dj.job_id
    GROUP BY dj.organization_id, dj.metric_date
)
SELECT d.organization_id,
       d.metric_date,
       COALESCE(p.total_jobs, 0) AS total_jobs,
       COALESCE(p.scheduled_jobs, 0) AS scheduled_jobs,
       COALESCE(p.in_progress_jobs, 0) AS in_progress_jobs,
       COALESCE(p.completed_jobs, 0) AS completed_jobs,
       COALESCE(p.cancelled_jobs, 0) AS cancelled_jobs,
       COALESCE(p.total_labor_hours, 0) AS total_labor_hours,
       p.total_labor_hours / NULLIF(p.total_jobs, 0) AS avg_labor_hours_per_job,
       now() AS refreshed_at
FROM dashboard.organization_days(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) d
LEFT JOIN per_day p ON p.organization_id = d.organization_id AND p.metric_date = d.metric_date
