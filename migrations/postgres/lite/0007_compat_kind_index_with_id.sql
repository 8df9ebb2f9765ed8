-- The kind index carries the id too, in NIP-01's tie order: a NIP-77 window or a REQ over one
-- kind is then read from the index alone, in order (an index-only scan), instead of a scan of
-- the whole table and a sort when the kind is a large share of the archive (kind 1 usually is).
-- Found by the api's plan test (probe/tests/api_plans.rs).
-- "compat" in the file name: binaries that predate it keep working against it.
CREATE INDEX event_kind_created_at_id_idx ON event (kind, created_at, id);
DROP INDEX event_kind_created_at_idx;
