-- Brotr PostgreSQL schema "full": statistics materialized views (spec §12.4, §12.5) and their
-- refresh functions.
--
-- Every view has a UNIQUE index on plain columns covering all rows, which REFRESH ... CONCURRENTLY
-- requires (readers keep seeing the old contents during a refresh). CONCURRENTLY also refuses a
-- view that was never populated, so the views are created WITH DATA (instant on the empty tables a
-- migration runs against), and each <view>_refresh() falls back to a plain REFRESH if the view has
-- been reset with REFRESH ... WITH NO DATA.
--
-- Views name relays by `relay_url` (joined from `relay`) like the spec, not by our internal id.
-- Metadata documents are read either flat ({"rtt_open": …}, what this project stores) or in the
-- spec's wrapped form ({"data": {…}, "logs": {…}}).

-- Latest document per relay and check type.
CREATE MATERIALIZED VIEW relay_metadata_latest AS
SELECT DISTINCT ON (rm.relay_id, rm.metadata_type)
       r.url AS relay_url,
       rm.metadata_type,
       rm.generated_at,
       rm.metadata_id,
       m.data
FROM relay_metadata rm
JOIN relay r ON r.id = rm.relay_id
JOIN metadata m ON m.id = rm.metadata_id AND m.type = rm.metadata_type
-- Ordering by relay_id (not url) lets relay_metadata_relay_type_idx deliver rows pre-sorted.
ORDER BY rm.relay_id, rm.metadata_type, rm.generated_at DESC
WITH DATA;
CREATE UNIQUE INDEX relay_metadata_latest_key_idx ON relay_metadata_latest (relay_url, metadata_type);
CREATE INDEX relay_metadata_latest_type_idx ON relay_metadata_latest (metadata_type);

-- One row (singleton_key = 1) of whole-archive counts. Kind classes follow NIP-01; kinds outside
-- every class (45-999, 40000+) count only in event_count. "Last N" windows are relative to the
-- refresh time.
CREATE MATERIALIZED VIEW event_stats AS
SELECT 1 AS singleton_key,
       count(*) AS event_count,
       count(DISTINCT e.pubkey) AS unique_pubkeys,
       count(DISTINCT e.kind) AS unique_kinds,
       min(e.created_at) AS earliest_created_at,
       max(e.created_at) AS latest_created_at,
       count(*) FILTER (WHERE e.kind IN (1, 2) OR e.kind BETWEEN 4 AND 44
                           OR e.kind BETWEEN 1000 AND 9999) AS regular_event_count,
       count(*) FILTER (WHERE e.kind IN (0, 3) OR e.kind BETWEEN 10000 AND 19999)
           AS replaceable_event_count,
       count(*) FILTER (WHERE e.kind BETWEEN 20000 AND 29999) AS ephemeral_event_count,
       count(*) FILTER (WHERE e.kind BETWEEN 30000 AND 39999) AS addressable_event_count,
       count(*) FILTER (WHERE e.created_at >= t.now_s - 3600)
           AS event_count_last_1h,
       count(*) FILTER (WHERE e.created_at >= t.now_s - 86400)
           AS event_count_last_24h,
       count(*) FILTER (WHERE e.created_at >= t.now_s - 7 * 86400)
           AS event_count_last_7d,
       count(*) FILTER (WHERE e.created_at >= t.now_s - 30 * 86400)
           AS event_count_last_30d,
       -- Span in days, at least 1 (also when empty: greatest() ignores the NULL).
       round(count(*) / greatest((max(e.created_at) - min(e.created_at)) / 86400.0, 1), 2)
           AS events_per_day
-- The clock is read once per refresh. No GROUP BY: always exactly one row, even when empty.
FROM event e
CROSS JOIN (SELECT extract(epoch FROM now())::BIGINT AS now_s) t
WITH DATA;
CREATE UNIQUE INDEX event_stats_key_idx ON event_stats (singleton_key);

-- One row per relay: archive coverage, recent round-trip times, NIP-11 identity.
CREATE MATERIALIZED VIEW relay_stats AS
WITH per_relay AS (
    SELECT er.relay_id,
           count(*) AS event_count,
           count(DISTINCT e.pubkey) AS unique_pubkeys,
           count(DISTINCT e.kind) AS unique_kinds,
           min(e.created_at) AS first_event_at,
           max(e.created_at) AS last_event_at
    FROM event_relay er
    JOIN event e ON e.id = er.event_id
    GROUP BY er.relay_id
),
rtt_recent AS (
    -- The 10 most recent RTT checks per relay, as the flat measurement object.
    SELECT x.relay_id, x.body
    FROM (
        SELECT rm.relay_id,
               CASE WHEN m.data ? 'logs' AND jsonb_typeof(m.data -> 'data') = 'object'
                    THEN m.data -> 'data' ELSE m.data END AS body,
               row_number() OVER (PARTITION BY rm.relay_id ORDER BY rm.generated_at DESC) AS rn
        FROM relay_metadata rm
        JOIN metadata m ON m.id = rm.metadata_id AND m.type = rm.metadata_type
        WHERE rm.metadata_type = 'nip66_rtt'
    ) x
    WHERE x.rn <= 10
),
rtt AS (
    -- Non-numeric values (failed phases are simply absent) are ignored by avg().
    SELECT q.relay_id,
           round(avg(CASE WHEN jsonb_typeof(q.body -> 'rtt_open') = 'number'
                          THEN (q.body ->> 'rtt_open')::NUMERIC END), 2) AS avg_rtt_open,
           round(avg(CASE WHEN jsonb_typeof(q.body -> 'rtt_read') = 'number'
                          THEN (q.body ->> 'rtt_read')::NUMERIC END), 2) AS avg_rtt_read,
           round(avg(CASE WHEN jsonb_typeof(q.body -> 'rtt_write') = 'number'
                          THEN (q.body ->> 'rtt_write')::NUMERIC END), 2) AS avg_rtt_write
    FROM rtt_recent q
    GROUP BY q.relay_id
),
nip11 AS (
    SELECT l.relay_url,
           CASE WHEN l.data ? 'logs' AND jsonb_typeof(l.data -> 'data') = 'object'
                THEN l.data -> 'data' ELSE l.data END AS body
    FROM relay_metadata_latest l
    WHERE l.metadata_type = 'nip11_info'
)
SELECT r.url AS relay_url,
       r.network,
       r.discovered_at,
       p.first_event_at,
       p.last_event_at,
       rtt.avg_rtt_open,
       rtt.avg_rtt_read,
       rtt.avg_rtt_write,
       coalesce(p.event_count, 0) AS event_count,
       coalesce(p.unique_pubkeys, 0) AS unique_pubkeys,
       coalesce(p.unique_kinds, 0) AS unique_kinds,
       n.body ->> 'name' AS nip11_name,
       n.body ->> 'software' AS nip11_software,
       n.body ->> 'version' AS nip11_version
FROM relay r
LEFT JOIN per_relay p ON p.relay_id = r.id
LEFT JOIN rtt ON rtt.relay_id = r.id
LEFT JOIN nip11 n ON n.relay_url = r.url
WITH DATA;
CREATE UNIQUE INDEX relay_stats_key_idx ON relay_stats (relay_url);
CREATE INDEX relay_stats_network_idx ON relay_stats (network);

CREATE MATERIALIZED VIEW kind_counts AS
SELECT e.kind,
       count(*) AS event_count,
       count(DISTINCT e.pubkey) AS unique_pubkeys,
       CASE
           WHEN e.kind IN (1, 2) OR e.kind BETWEEN 4 AND 44 OR e.kind BETWEEN 1000 AND 9999
               THEN 'regular'
           WHEN e.kind IN (0, 3) OR e.kind BETWEEN 10000 AND 19999 THEN 'replaceable'
           WHEN e.kind BETWEEN 20000 AND 29999 THEN 'ephemeral'
           WHEN e.kind BETWEEN 30000 AND 39999 THEN 'addressable'
           ELSE 'other'
       END AS category
FROM event e
GROUP BY e.kind
WITH DATA;
CREATE UNIQUE INDEX kind_counts_key_idx ON kind_counts (kind);

-- Aggregate by relay id first, then name the (few) relays: cheaper than grouping by URL text.
CREATE MATERIALIZED VIEW kind_counts_by_relay AS
SELECT k.kind, r.url AS relay_url, k.event_count, k.unique_pubkeys
FROM (
    SELECT e.kind, er.relay_id,
           count(*) AS event_count,
           count(DISTINCT e.pubkey) AS unique_pubkeys
    FROM event_relay er
    JOIN event e ON e.id = er.event_id
    GROUP BY e.kind, er.relay_id
) k
JOIN relay r ON r.id = k.relay_id
WITH DATA;
CREATE UNIQUE INDEX kind_counts_by_relay_key_idx ON kind_counts_by_relay (kind, relay_url);
CREATE INDEX kind_counts_by_relay_relay_idx ON kind_counts_by_relay (relay_url);

-- Pubkeys as lowercase hex, the form every client and the API use.
CREATE MATERIALIZED VIEW pubkey_counts AS
SELECT encode(e.pubkey, 'hex') AS pubkey,
       count(*) AS event_count,
       count(DISTINCT e.kind) AS unique_kinds,
       min(e.created_at) AS first_event_at,
       max(e.created_at) AS last_event_at
FROM event e
GROUP BY e.pubkey
WITH DATA;
CREATE UNIQUE INDEX pubkey_counts_key_idx ON pubkey_counts (pubkey);

-- Only (pubkey, relay) pairs with at least 2 events: the one-off pairs would multiply the row
-- count by the relay count for little insight.
CREATE MATERIALIZED VIEW pubkey_counts_by_relay AS
SELECT encode(c.pubkey, 'hex') AS pubkey, r.url AS relay_url,
       c.event_count, c.unique_kinds, c.first_event_at, c.last_event_at
FROM (
    SELECT e.pubkey, er.relay_id,
           count(*) AS event_count,
           count(DISTINCT e.kind) AS unique_kinds,
           min(e.created_at) AS first_event_at,
           max(e.created_at) AS last_event_at
    FROM event_relay er
    JOIN event e ON e.id = er.event_id
    GROUP BY e.pubkey, er.relay_id
    HAVING count(*) >= 2
) c
JOIN relay r ON r.id = c.relay_id
WITH DATA;
CREATE UNIQUE INDEX pubkey_counts_by_relay_key_idx ON pubkey_counts_by_relay (pubkey, relay_url);
CREATE INDEX pubkey_counts_by_relay_relay_idx ON pubkey_counts_by_relay (relay_url);

-- Refresh functions. REFRESH needs ownership of the view, so the caller must be (or be a member
-- of) the owner; SECURITY INVOKER keeps it that way.
CREATE FUNCTION relay_metadata_latest_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    IF (SELECT c.relispopulated FROM pg_class c WHERE c.oid = 'relay_metadata_latest'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY relay_metadata_latest;
    ELSE
        REFRESH MATERIALIZED VIEW relay_metadata_latest;
    END IF;
END;
$$;

CREATE FUNCTION event_stats_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    IF (SELECT c.relispopulated FROM pg_class c WHERE c.oid = 'event_stats'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY event_stats;
    ELSE
        REFRESH MATERIALIZED VIEW event_stats;
    END IF;
END;
$$;

CREATE FUNCTION relay_stats_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    IF (SELECT c.relispopulated FROM pg_class c WHERE c.oid = 'relay_stats'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY relay_stats;
    ELSE
        REFRESH MATERIALIZED VIEW relay_stats;
    END IF;
END;
$$;

CREATE FUNCTION kind_counts_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    IF (SELECT c.relispopulated FROM pg_class c WHERE c.oid = 'kind_counts'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY kind_counts;
    ELSE
        REFRESH MATERIALIZED VIEW kind_counts;
    END IF;
END;
$$;

CREATE FUNCTION kind_counts_by_relay_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    IF (SELECT c.relispopulated FROM pg_class c WHERE c.oid = 'kind_counts_by_relay'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY kind_counts_by_relay;
    ELSE
        REFRESH MATERIALIZED VIEW kind_counts_by_relay;
    END IF;
END;
$$;

CREATE FUNCTION pubkey_counts_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    IF (SELECT c.relispopulated FROM pg_class c WHERE c.oid = 'pubkey_counts'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY pubkey_counts;
    ELSE
        REFRESH MATERIALIZED VIEW pubkey_counts;
    END IF;
END;
$$;

CREATE FUNCTION pubkey_counts_by_relay_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    IF (SELECT c.relispopulated FROM pg_class c WHERE c.oid = 'pubkey_counts_by_relay'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY pubkey_counts_by_relay;
    ELSE
        REFRESH MATERIALIZED VIEW pubkey_counts_by_relay;
    END IF;
END;
$$;

-- All views, dependencies first: relay_stats reads relay_metadata_latest.
CREATE FUNCTION all_statistics_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    PERFORM relay_metadata_latest_refresh();
    PERFORM event_stats_refresh();
    PERFORM relay_stats_refresh();
    PERFORM kind_counts_refresh();
    PERFORM kind_counts_by_relay_refresh();
    PERFORM pubkey_counts_refresh();
    PERFORM pubkey_counts_by_relay_refresh();
END;
$$;
