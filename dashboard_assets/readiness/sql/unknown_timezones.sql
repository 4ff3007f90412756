-- Organizations whose timezone PostgreSQL does not know: every day boundary of
-- theirs, and with it every refresh that includes them, would fail.
SELECT o.id::text, o.timezone
FROM organizations o
WHERE o.timezone IS NOT NULL
  AND NOT EXISTS (SELECT FROM pg_timezone_names z WHERE z.name = o.timezone)
ORDER BY o.id
