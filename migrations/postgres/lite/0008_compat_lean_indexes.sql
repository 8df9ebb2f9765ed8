-- Leaner event indexes (as in the full schema; measured there by the archive benchmark, BENCHMARKS.md).
--
-- 1. The time index carries the kind as a payload column (INCLUDE): a NIP-77 window or a count
--    over a common kind (kind 1 is about half of an archive) is an index-only scan of it. The
--    kind fits in what was alignment padding after the id, so the index is no larger.
-- 2. The kind index goes back to (kind, created_at). With the id in it (0007) its entries were too
--    wide for the B-tree's "localized ascending insertions" split rule: pages split 50/50 and
--    stayed half empty, 133 bytes per event against 36.
-- 3. The tag index keys become bytes: a 64-character hex value (ids and pubkeys: most of the keys,
--    and most of them unique) is stored as its 32 bytes, "<letter>\x00<32 bytes>"; any other value
--    as the UTF-8 of "<letter>:<value>" (text holds no NUL, so the two forms never meet). Same
--    encoding as `tag_key` in probe/src/store/query.rs, which builds the query side.
--
-- "compat" in the file name: binaries that predate it keep working against it (their tag filters
-- match exactly as before, without the new tag index).

CREATE FUNCTION tagvalues_to_tagkeys(tagvalues TEXT[])
RETURNS BYTEA[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT coalesce(array_agg(
               CASE WHEN substr(t.tv, 3) ~ '^[0-9a-f]{64}$'
                    THEN convert_to(left(t.tv, 1), 'UTF8') || '\x00'::bytea
                         || decode(substr(t.tv, 3), 'hex')
                    ELSE convert_to(t.tv, 'UTF8') END
               ORDER BY t.ord), '{}')
    FROM unnest(tagvalues_to_tagkeys.tagvalues) WITH ORDINALITY AS t (tv, ord)
$$;

CREATE INDEX event_created_at_id_kind_idx ON event (created_at, id) INCLUDE (kind);
DROP INDEX event_created_at_id_idx;
CREATE INDEX event_kind_created_at_idx ON event (kind, created_at);
DROP INDEX event_kind_created_at_id_idx;
CREATE INDEX event_tagkeys_idx ON event USING GIN (tagvalues_to_tagkeys(tagvalues));
DROP INDEX event_tagvalues_idx;
