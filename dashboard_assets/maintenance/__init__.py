"""Weekly upkeep of the `dashboard` schema's tables: their size, dead rows and
index bloat measured, and vacuumed or reindexed where past a threshold."""
