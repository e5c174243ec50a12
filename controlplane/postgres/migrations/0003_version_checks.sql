-- What the data node holding a version found when it last read the file (a `datanode verify`
-- scan or a download that failed its checksum). One row per version: a later check replaces
-- the earlier one, so a repaired file clears its problem. The row goes with its version.
CREATE TABLE version_checks (
    version_id    uuid PRIMARY KEY REFERENCES versions (id) ON DELETE CASCADE,
    node_name     text        NOT NULL,
    checked_at    timestamptz NOT NULL,
    ok            boolean     NOT NULL,
    -- '' when ok; 'damaged': read whole, but its size or sha256 differs from the version row;
    -- 'unreadable': the node could not read it whole or a block failed its checksum;
    -- 'missing': a complete scan of the node did not find it.
    kind          text        NOT NULL CHECK (kind IN ('', 'damaged', 'unreadable', 'missing')),
    found_size    bigint,
    found_sha256  text,
    detail        text        NOT NULL DEFAULT '',
    -- The `datanode verify` scan that checked it last (NULL for a download's report): a
    -- complete scan finds what it did not check by its id, not by comparing clocks.
    scan_id       uuid,
    CHECK (ok = (kind = ''))
);

-- A complete scan looks for the node's versions that it did not check.
CREATE INDEX versions_node_idx ON versions (node_name, created_at);
