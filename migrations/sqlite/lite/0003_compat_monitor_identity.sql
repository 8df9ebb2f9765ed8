-- Monitor identity: several monitors (one per region, each with its own key) can share one
-- database. Every result carries the public key of the monitor that measured it (32 bytes; empty
-- for a monitor without a key), so their series neither collide nor mix. SQLite cannot change a
-- primary key in place, so the table is rebuilt.
-- "compat" in the file name: binaries that predate this migration keep working against it.
CREATE TABLE relay_metadata_new (
    relay_id      INTEGER NOT NULL REFERENCES relay (id) ON DELETE CASCADE,
    generated_at  INTEGER NOT NULL,
    metadata_type TEXT    NOT NULL,
    monitor       BLOB    NOT NULL DEFAULT x'',
    metadata_id   BLOB    NOT NULL,
    success       INTEGER,
    reason        TEXT,
    PRIMARY KEY (relay_id, generated_at, metadata_type, monitor),
    FOREIGN KEY (metadata_id, metadata_type) REFERENCES metadata (id, type) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO relay_metadata_new
    (relay_id, generated_at, metadata_type, monitor, metadata_id, success, reason)
SELECT relay_id, generated_at, metadata_type, x'', metadata_id, success, reason
FROM relay_metadata;
DROP TABLE relay_metadata;
ALTER TABLE relay_metadata_new RENAME TO relay_metadata;
CREATE INDEX relay_metadata_generated_at_idx ON relay_metadata (generated_at DESC);
CREATE INDEX relay_metadata_metadata_idx ON relay_metadata (metadata_id, metadata_type);
CREATE INDEX relay_metadata_relay_type_idx
    ON relay_metadata (relay_id, metadata_type, monitor, generated_at DESC);

-- Latest result per relay and check type, across monitors and per monitor (plain views: SQLite
-- has no materialized ones, and these read the indexes above).
CREATE VIEW relay_metadata_latest AS
SELECT r.url AS relay_url, rm.metadata_type, rm.generated_at, rm.metadata_id, m.data
FROM relay_metadata rm
JOIN relay r ON r.id = rm.relay_id
JOIN metadata m ON m.id = rm.metadata_id AND m.type = rm.metadata_type
WHERE rm.generated_at = (
    SELECT max(x.generated_at) FROM relay_metadata x
    WHERE x.relay_id = rm.relay_id AND x.metadata_type = rm.metadata_type
)
GROUP BY rm.relay_id, rm.metadata_type;

CREATE VIEW relay_metadata_latest_by_monitor AS
SELECT r.url AS relay_url, rm.metadata_type, lower(hex(rm.monitor)) AS monitor,
       rm.generated_at, rm.metadata_id, rm.success, rm.reason, m.data
FROM relay_metadata rm
JOIN relay r ON r.id = rm.relay_id
JOIN metadata m ON m.id = rm.metadata_id AND m.type = rm.metadata_type
WHERE rm.generated_at = (
    SELECT max(x.generated_at) FROM relay_metadata x
    WHERE x.relay_id = rm.relay_id AND x.metadata_type = rm.metadata_type
      AND x.monitor = rm.monitor
);
