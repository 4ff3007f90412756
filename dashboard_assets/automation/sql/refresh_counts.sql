-- Committed refreshes (transactions, batches included) of each rollup.
SELECT rollup, count(*) FROM dashboard.refresh_log GROUP BY rollup ORDER BY rollup
