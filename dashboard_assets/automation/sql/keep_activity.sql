-- Keep the decoded changes for the activity feed (changes decoded twice are
-- kept once).
INSERT INTO dashboard.recent_changes
SELECT * FROM decoded_activity
ON CONFLICT DO NOTHING
