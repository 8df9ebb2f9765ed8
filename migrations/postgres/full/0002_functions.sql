-- Brotr PostgreSQL schema "full": stored functions (spec §12.3, §12.7).
-- Bulk writers take parallel arrays (one element per row) and return how many rows they changed.
-- All are SECURITY INVOKER: they run with the caller's privileges, so grants on the tables decide.
-- Counts are BIGINT (what ROW_COUNT is, and what the Rust store decodes into i64).
-- Column references are always table-qualified because several parameters share a column's name.
-- The <view>_refresh() functions live in 0003_views.sql, next to the views they refresh.

-- Index keys for an event's tags: "<name>:<value>" for every tag that is a JSON array whose first
-- element is a one-character string and whose second element is a string, in tag order.
-- Values over 1024 bytes are left out (the event is kept): they are useless as index keys and GIN
-- rejects entries above ~2.7 kB. Same rule as `tagvalues` in probe/src/model/event.rs.
-- Unlike the system we replace, 1-element tags yield nothing rather than a NULL element.
CREATE FUNCTION tags_to_tagvalues(tags JSONB)
RETURNS TEXT[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT coalesce(array_agg((t.tag ->> 0) || ':' || (t.tag ->> 1) ORDER BY t.ord), '{}')
    FROM jsonb_array_elements(
             CASE WHEN jsonb_typeof(tags_to_tagvalues.tags) = 'array'
                  THEN tags_to_tagvalues.tags ELSE '[]' END)
         WITH ORDINALITY AS t (tag, ord)
    WHERE jsonb_typeof(t.tag) = 'array'
      AND jsonb_typeof(t.tag -> 0) = 'string'
      AND length(t.tag ->> 0) = 1
      AND jsonb_typeof(t.tag -> 1) = 'string'
      AND octet_length(t.tag ->> 1) <= 1024
$$;

-- The tag index of the full schema: an expression index, so tag values are not stored twice.
CREATE INDEX event_tagvalues_idx ON event USING GIN (tags_to_tagvalues(tags));

CREATE FUNCTION relay_insert(urls TEXT[], networks TEXT[], discovered_ats BIGINT[])
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
BEGIN
    INSERT INTO relay (url, network, discovered_at)
    SELECT u.url, u.network, u.discovered_at
    FROM unnest(urls, networks, discovered_ats) AS u (url, network, discovered_at)
    ON CONFLICT (url) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

CREATE FUNCTION event_insert(
    ids BYTEA[], pubkeys BYTEA[], created_ats BIGINT[], kinds INTEGER[],
    tags JSONB[], contents TEXT[], sigs BYTEA[]
)
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
BEGIN
    INSERT INTO event (created_at, kind, id, pubkey, sig, tags, content)
    SELECT u.created_at, u.kind, u.id, u.pubkey, u.sig, u.tags, u.content
    FROM unnest(ids, pubkeys, created_ats, kinds, event_insert.tags, contents, sigs)
         AS u (id, pubkey, created_at, kind, tags, content, sig)
    ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

CREATE FUNCTION metadata_insert(ids BYTEA[], types TEXT[], data JSONB[])
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
BEGIN
    INSERT INTO metadata (id, type, data)
    SELECT u.id, u.type, u.data
    FROM unnest(ids, types, metadata_insert.data) AS u (id, type, data)
    ON CONFLICT (id, type) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- Junction rows reference relays by id; an unknown URL is a foreign-key violation, as it would be
-- with the spec's relay_url column (a silent drop would lose data unnoticed).
CREATE FUNCTION event_relay_insert(event_ids BYTEA[], relay_urls TEXT[], seen_ats BIGINT[])
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
    missing TEXT;
BEGIN
    SELECT u.url INTO missing
    FROM unnest(relay_urls) AS u (url)
    WHERE NOT EXISTS (SELECT 1 FROM relay r WHERE r.url = u.url)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'event_relay_insert: relay % does not exist', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;

    INSERT INTO event_relay (seen_at, relay_id, event_id)
    SELECT u.seen_at, r.id, u.event_id
    FROM unnest(event_ids, relay_urls, seen_ats) AS u (event_id, relay_url, seen_at)
    JOIN relay r ON r.url = u.relay_url
    ON CONFLICT (event_id, relay_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

CREATE FUNCTION relay_metadata_insert(
    relay_urls TEXT[], metadata_ids BYTEA[], types TEXT[], generated_ats BIGINT[]
)
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
    missing TEXT;
BEGIN
    SELECT u.url INTO missing
    FROM unnest(relay_urls) AS u (url)
    WHERE NOT EXISTS (SELECT 1 FROM relay r WHERE r.url = u.url)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'relay_metadata_insert: relay % does not exist', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;

    INSERT INTO relay_metadata (generated_at, relay_id, metadata_type, metadata_id)
    SELECT u.generated_at, r.id, u.metadata_type, u.metadata_id
    FROM unnest(relay_urls, metadata_ids, types, generated_ats)
         AS u (relay_url, metadata_id, metadata_type, generated_at)
    JOIN relay r ON r.url = u.relay_url
    ON CONFLICT (relay_id, generated_at, metadata_type) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- One call per synced batch: relays, events and the junction (relay arrays are per event row).
-- Returns new (event, relay) pairs, not new events (the "events synced" metric).
CREATE FUNCTION event_relay_insert_cascade(
    ids BYTEA[], pubkeys BYTEA[], created_ats BIGINT[], kinds INTEGER[],
    tags JSONB[], contents TEXT[], sigs BYTEA[],
    relay_urls TEXT[], relay_networks TEXT[], relay_discovered_ats BIGINT[], seen_ats BIGINT[]
)
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
BEGIN
    PERFORM relay_insert(relay_urls, relay_networks, relay_discovered_ats);
    PERFORM event_insert(ids, pubkeys, created_ats, kinds, tags, contents, sigs);

    -- DISTINCT ON keeps one row per pair; the earliest seen_at wins so the result is deterministic.
    INSERT INTO event_relay (seen_at, relay_id, event_id)
    SELECT DISTINCT ON (u.event_id, r.id) u.seen_at, r.id, u.event_id
    FROM unnest(ids, relay_urls, seen_ats) AS u (event_id, relay_url, seen_at)
    JOIN relay r ON r.url = u.relay_url
    ORDER BY u.event_id, r.id, u.seen_at
    ON CONFLICT (event_id, relay_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- One call per monitor chunk: relays, content-addressed documents, then the time series.
-- Returns relay_metadata rows inserted.
CREATE FUNCTION relay_metadata_insert_cascade(
    relay_urls TEXT[], relay_networks TEXT[], relay_discovered_ats BIGINT[],
    metadata_ids BYTEA[], metadata_types TEXT[], metadata_data JSONB[], generated_ats BIGINT[]
)
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    PERFORM relay_insert(relay_urls, relay_networks, relay_discovered_ats);
    PERFORM metadata_insert(metadata_ids, metadata_types, metadata_data);
    RETURN relay_metadata_insert(relay_urls, metadata_ids, metadata_types, generated_ats);
END;
$$;

-- Insert or replace; when a key repeats within the batch the last occurrence wins (an INSERT
-- cannot update the same row twice, so duplicates are collapsed first). Returns rows written.
CREATE FUNCTION service_state_upsert(names TEXT[], types TEXT[], keys TEXT[], vals JSONB[])
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
BEGIN
    INSERT INTO service_state (service_name, state_type, state_key, state_value)
    SELECT DISTINCT ON (u.service_name, u.state_type, u.state_key)
           u.service_name, u.state_type, u.state_key, u.state_value
    FROM unnest(names, types, keys, vals) WITH ORDINALITY
         AS u (service_name, state_type, state_key, state_value, ord)
    ORDER BY u.service_name, u.state_type, u.state_key, u.ord DESC
    ON CONFLICT (service_name, state_type, state_key)
        DO UPDATE SET state_value = EXCLUDED.state_value;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- All keys of (name, type) ordered by key, or the one key when given.
CREATE FUNCTION service_state_get(name TEXT, type TEXT, key TEXT DEFAULT NULL)
RETURNS TABLE (state_key TEXT, state_value JSONB)
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    -- Two statements rather than `key IS NULL OR …` so each gets a plain primary-key scan.
    IF service_state_get.key IS NULL THEN
        RETURN QUERY
        SELECT s.state_key, s.state_value
        FROM service_state s
        WHERE s.service_name = service_state_get.name AND s.state_type = service_state_get.type
        ORDER BY s.state_key;
    ELSE
        RETURN QUERY
        SELECT s.state_key, s.state_value
        FROM service_state s
        WHERE s.service_name = service_state_get.name AND s.state_type = service_state_get.type
          AND s.state_key = service_state_get.key;
    END IF;
END;
$$;

CREATE FUNCTION service_state_delete(names TEXT[], types TEXT[], keys TEXT[])
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
BEGIN
    DELETE FROM service_state s
    USING unnest(names, types, keys) AS u (service_name, state_type, state_key)
    WHERE s.service_name = u.service_name
      AND s.state_type = u.state_type
      AND s.state_key = u.state_key;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- Cleanup (spec §12.7). Each deletes in batches so one statement never materialises millions of
-- keys; the loop stops at the first short batch. The whole call is still one transaction.

-- Events seen at no relay (e.g. after a relay was deleted and its junction rows cascaded).
CREATE FUNCTION orphan_event_delete(batch INTEGER DEFAULT 10000)
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
    total BIGINT := 0;
BEGIN
    -- A batch of 0 would never come up short and loop forever.
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'orphan_event_delete: batch must be at least 1, got %', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        DELETE FROM event e
        WHERE e.id IN (
            SELECT o.id FROM event o
            WHERE NOT EXISTS (SELECT 1 FROM event_relay er WHERE er.event_id = o.id)
            LIMIT batch
        );
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        EXIT WHEN n < batch;
    END LOOP;
    RETURN total;
END;
$$;

-- Documents no relay_metadata row points at any more.
CREATE FUNCTION orphan_metadata_delete(batch INTEGER DEFAULT 10000)
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
    total BIGINT := 0;
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'orphan_metadata_delete: batch must be at least 1, got %', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        DELETE FROM metadata m
        WHERE (m.id, m.type) IN (
            SELECT o.id, o.type FROM metadata o
            WHERE NOT EXISTS (
                SELECT 1 FROM relay_metadata rm
                WHERE rm.metadata_id = o.id AND rm.metadata_type = o.type
            )
            LIMIT batch
        );
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        EXIT WHEN n < batch;
    END LOOP;
    RETURN total;
END;
$$;

-- Time-based retention the system we replace lacks: drops relay_metadata rows generated more than
-- max_age_seconds before now. Documents left unreferenced go with orphan_metadata_delete().
CREATE FUNCTION relay_metadata_delete_expired(max_age_seconds BIGINT, batch INTEGER DEFAULT 10000)
RETURNS BIGINT
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    n BIGINT;
    total BIGINT := 0;
    cutoff BIGINT;
BEGIN
    IF max_age_seconds IS NULL OR max_age_seconds < 0 THEN
        RAISE EXCEPTION 'relay_metadata_delete_expired: max_age_seconds must be >= 0, got %',
            max_age_seconds USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'relay_metadata_delete_expired: batch must be at least 1, got %', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cutoff := extract(epoch FROM now())::BIGINT - max_age_seconds;
    LOOP
        DELETE FROM relay_metadata rm
        WHERE (rm.relay_id, rm.generated_at, rm.metadata_type) IN (
            SELECT o.relay_id, o.generated_at, o.metadata_type FROM relay_metadata o
            WHERE o.generated_at < cutoff
            LIMIT batch
        );
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        EXIT WHEN n < batch;
    END LOOP;
    RETURN total;
END;
$$;
