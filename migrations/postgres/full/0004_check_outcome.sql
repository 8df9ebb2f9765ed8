-- Monitor check outcomes live on the time-series row, not in the content-addressed document:
-- a changing failure reason must not mint a new metadata row (spec weakness 11).
-- NULL for rows written before this migration or by writers that do not record outcomes.
ALTER TABLE relay_metadata ADD COLUMN success BOOLEAN;
ALTER TABLE relay_metadata ADD COLUMN reason TEXT;
