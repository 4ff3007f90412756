-- Range totals of dashboard.daily_jobs straight from the source.
WITH range_jobs AS (
    SELECT j.*
    FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) w
    JOIN jobs j ON j.organization_id = w.organization_id
               AND j.created_at >= w.window_start AND j.created_at < w.window_end
               AND j.created_at >= %(utc_from)s AND j.created_at < %(utc_to)s
)
SELECT
    (SELECT count(*) FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]))
        * (%(end_date)s::date - %(start_date)s::date + 1) AS rows,
    (SELECT count(*) FROM range_jobs) AS total_jobs,
    (SELECT count(*) FROM range_jobs WHERE status = 'scheduled') AS scheduled_jobs,
    (SELECT count(*) FROM range_jobs WHERE status = 'in_progress') AS in_progress_jobs,
    (SELECT count(*) FROM range_jobs WHERE status = 'completed') AS completed_jobs,
    (SELECT count(*) FROM range_jobs WHERE status = 'cancelled') AS cancelled_jobs,
    (SELECT COALESCE(sum(te.hours), 0) FROM job_time_entries te
      WHERE EXISTS (SELECT 1 FROM range_jobs j
                     WHERE j.organization_id = te.organization_id AND j.id = te.job_id)) AS total_labor_hours
