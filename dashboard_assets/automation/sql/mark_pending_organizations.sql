-- Mark the undated assets of the changed organizations as pending, at the WAL
-- position the changes were read up to (a new version when already pending).
INSERT INTO dashboard.pending_organizations AS pending (asset, organization_id, source_lsn)
SELECT asset, organization_id, %(position)s::pg_lsn
FROM unnest(%(assets)s::text[]) AS asset
CROSS JOIN unnest(%(organizations)s::uuid[]) AS organization_id
ON CONFLICT (asset, organization_id) DO UPDATE
SET source_lsn = excluded.source_lsn, version = excluded.version
