-- Brotr SQLite schema "lite": events keep id, pubkey, created_at, kind and tag values only.
-- Tag values are a JSON array in TEXT; blobs hold raw ids, pubkeys and signatures.
-- Narrow tables, `event` included in lite, are WITHOUT ROWID (the primary key is the row).

CREATE TABLE brotr_schema (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    schema    TEXT NOT NULL CHECK (schema IN ('full', 'lite'))
);
INSERT INTO brotr_schema (singleton, schema) VALUES (1, 'lite');

CREATE TABLE relay (
    id            INTEGER PRIMARY KEY,
    url           TEXT    NOT NULL UNIQUE,
    network       TEXT    NOT NULL,
    discovered_at INTEGER NOT NULL
);

CREATE TABLE event (
    id         BLOB    NOT NULL PRIMARY KEY,
    pubkey     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    kind       INTEGER NOT NULL,
    tagvalues  TEXT    NOT NULL
) WITHOUT ROWID;

CREATE TABLE event_relay (
    event_id BLOB    NOT NULL REFERENCES event (id) ON DELETE CASCADE,
    relay_id INTEGER NOT NULL REFERENCES relay (id) ON DELETE CASCADE,
    seen_at  INTEGER NOT NULL,
    PRIMARY KEY (event_id, relay_id)
) WITHOUT ROWID;

CREATE TABLE metadata (
    id   BLOB NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (id, type)
) WITHOUT ROWID;

CREATE TABLE relay_metadata (
    relay_id      INTEGER NOT NULL REFERENCES relay (id) ON DELETE CASCADE,
    generated_at  INTEGER NOT NULL,
    metadata_type TEXT    NOT NULL,
    metadata_id   BLOB    NOT NULL,
    PRIMARY KEY (relay_id, generated_at, metadata_type),
    FOREIGN KEY (metadata_id, metadata_type) REFERENCES metadata (id, type) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE service_state (
    service_name TEXT NOT NULL,
    state_type   TEXT NOT NULL,
    state_key    TEXT NOT NULL,
    state_value  TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (service_name, state_type, state_key)
) WITHOUT ROWID;

CREATE INDEX event_created_at_id_idx ON event (created_at, id);
CREATE INDEX event_kind_created_at_idx ON event (kind, created_at);
CREATE INDEX event_pubkey_kind_created_at_idx ON event (pubkey, kind, created_at);
CREATE INDEX event_relay_relay_seen_at_idx ON event_relay (relay_id, seen_at);
CREATE INDEX relay_metadata_generated_at_idx ON relay_metadata (generated_at DESC);
CREATE INDEX relay_metadata_metadata_idx ON relay_metadata (metadata_id, metadata_type);
CREATE INDEX relay_metadata_relay_type_idx ON relay_metadata (relay_id, metadata_type, generated_at DESC);
