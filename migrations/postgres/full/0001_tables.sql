-- Brotr PostgreSQL schema "full": whole events.
-- Differences from the system we replace (see README "Storage"):
--   * relays get a small integer id; the event<->relay junction and the metadata time series
--     reference it instead of repeating the URL text (~40 bytes less per junction row);
--   * columns ordered widest-fixed-first so rows carry no alignment padding;
--   * no hash partitioning: no query prunes on hash(id), and a single table keeps planning cheap;
--   * no stored `tagvalues` column: the tags are already stored, so the tag index is a GIN
--     index on the expression `tags_to_tagvalues(tags)` (created in 0002 with the function);
--     query it with `WHERE tags_to_tagvalues(tags) @> ARRAY['p:<hex>']`. Saves ~180 B/event.

CREATE TABLE brotr_schema (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    schema    TEXT NOT NULL CHECK (schema IN ('full', 'lite'))
);
INSERT INTO brotr_schema (schema) VALUES ('full');

CREATE TABLE relay (
    id            INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    discovered_at BIGINT  NOT NULL,
    url           TEXT    NOT NULL UNIQUE,
    network       TEXT    NOT NULL
);

CREATE TABLE event (
    created_at BIGINT  NOT NULL,
    kind       INTEGER NOT NULL,
    id         BYTEA   NOT NULL PRIMARY KEY,
    pubkey     BYTEA   NOT NULL,
    sig        BYTEA   NOT NULL,
    tags       JSONB   NOT NULL,
    content    TEXT    NOT NULL
);
ALTER TABLE event ALTER COLUMN content SET COMPRESSION lz4;
ALTER TABLE event ALTER COLUMN tags SET COMPRESSION lz4;
-- Compress content/tags of rows above 512 bytes (the default waits until ~2 kB, so most
-- events were stored uncompressed).
ALTER TABLE event SET (toast_tuple_target = 512);

CREATE TABLE event_relay (
    seen_at  BIGINT  NOT NULL,
    relay_id INTEGER NOT NULL REFERENCES relay (id) ON DELETE CASCADE,
    event_id BYTEA   NOT NULL REFERENCES event (id) ON DELETE CASCADE,
    PRIMARY KEY (event_id, relay_id)
);

CREATE TABLE metadata (
    id   BYTEA NOT NULL,
    type TEXT  NOT NULL,
    data JSONB NOT NULL,
    PRIMARY KEY (id, type)
);
ALTER TABLE metadata ALTER COLUMN data SET COMPRESSION lz4;

CREATE TABLE relay_metadata (
    generated_at  BIGINT  NOT NULL,
    relay_id      INTEGER NOT NULL REFERENCES relay (id) ON DELETE CASCADE,
    metadata_type TEXT    NOT NULL,
    metadata_id   BYTEA   NOT NULL,
    PRIMARY KEY (relay_id, generated_at, metadata_type),
    FOREIGN KEY (metadata_id, metadata_type) REFERENCES metadata (id, type) ON DELETE CASCADE
);

CREATE TABLE service_state (
    service_name TEXT  NOT NULL,
    state_type   TEXT  NOT NULL,
    state_key    TEXT  NOT NULL,
    state_value  JSONB NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (service_name, state_type, state_key)
);

-- Indexes a later query needs (reads by time, kind, author, tag; per-relay scans).
-- Ascending on purpose: events mostly arrive in created_at order, and ascending keys fill
-- btree pages densely (rightmost splits) where DESC keys leave them half empty; backward
-- index scans serve ORDER BY … DESC just as well. The junction index stops at seen_at: a
-- batch shares (relay_id, seen_at), so btree deduplication stores it in a few bytes per row.
CREATE INDEX event_created_at_id_idx ON event (created_at, id);
CREATE INDEX event_kind_created_at_idx ON event (kind, created_at);
CREATE INDEX event_pubkey_kind_created_at_idx ON event (pubkey, kind, created_at);
CREATE INDEX event_relay_relay_seen_at_idx ON event_relay (relay_id, seen_at);
CREATE INDEX relay_metadata_generated_at_idx ON relay_metadata (generated_at DESC);
CREATE INDEX relay_metadata_metadata_idx ON relay_metadata (metadata_id, metadata_type);
CREATE INDEX relay_metadata_relay_type_idx ON relay_metadata (relay_id, metadata_type, generated_at DESC);
CREATE INDEX service_state_candidate_network_idx ON service_state ((state_value ->> 'network'))
    WHERE service_name = 'validator' AND state_type = 'checkpoint';
