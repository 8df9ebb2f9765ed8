-- Monitor identity: several monitors (one per region, each with its own key) can share one
-- database. Every result carries the public key of the monitor that measured it (32 bytes; empty
-- for a monitor without a key), so their series neither collide nor mix.
-- "compat" in the file name: binaries that predate this migration keep working against it (their
-- rows get the empty monitor).
ALTER TABLE relay_metadata ADD COLUMN monitor BYTEA NOT NULL DEFAULT '\x'::bytea;
ALTER TABLE relay_metadata DROP CONSTRAINT relay_metadata_pkey;
ALTER TABLE relay_metadata ADD PRIMARY KEY (relay_id, generated_at, metadata_type, monitor);
DROP INDEX relay_metadata_relay_type_idx;
CREATE INDEX relay_metadata_relay_type_idx
    ON relay_metadata (relay_id, metadata_type, monitor, generated_at DESC);

-- Latest result per relay, check type and monitor (relay_metadata_latest is across monitors).
CREATE MATERIALIZED VIEW relay_metadata_latest_by_monitor AS
SELECT DISTINCT ON (rm.relay_id, rm.metadata_type, rm.monitor)
       r.url AS relay_url,
       rm.metadata_type,
       encode(rm.monitor, 'hex') AS monitor,
       rm.generated_at,
       rm.metadata_id,
       rm.success,
       rm.reason,
       m.data
FROM relay_metadata rm
JOIN relay r ON r.id = rm.relay_id
JOIN metadata m ON m.id = rm.metadata_id AND m.type = rm.metadata_type
ORDER BY rm.relay_id, rm.metadata_type, rm.monitor, rm.generated_at DESC
WITH DATA;
CREATE UNIQUE INDEX relay_metadata_latest_by_monitor_key_idx
    ON relay_metadata_latest_by_monitor (relay_url, metadata_type, monitor);

CREATE FUNCTION relay_metadata_latest_by_monitor_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    IF (SELECT c.relispopulated FROM pg_class c
        WHERE c.oid = 'relay_metadata_latest_by_monitor'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY relay_metadata_latest_by_monitor;
    ELSE
        REFRESH MATERIALIZED VIEW relay_metadata_latest_by_monitor;
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION all_statistics_refresh()
RETURNS VOID
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    PERFORM relay_metadata_latest_refresh();
    PERFORM relay_metadata_latest_by_monitor_refresh();
    PERFORM event_stats_refresh();
    PERFORM relay_stats_refresh();
    PERFORM kind_counts_refresh();
    PERFORM kind_counts_by_relay_refresh();
    PERFORM pubkey_counts_refresh();
    PERFORM pubkey_counts_by_relay_refresh();
END;
$$;
