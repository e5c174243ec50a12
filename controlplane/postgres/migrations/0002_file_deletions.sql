-- Files the data nodes still have to delete. Every deleted version row (rotation, deleteVersion,
-- a forced collection delete) leaves a tombstone here through the trigger, in the same
-- transaction, so no path that deletes a version can forget its file. A node removes the files
-- of its tombstones and acknowledges them. A node only ever deletes what is listed here, never
-- what merely looks unknown, so a node pointed at the wrong database deletes nothing.
CREATE TABLE file_deletions (
    version_id     uuid PRIMARY KEY,
    collection_id  text        NOT NULL,
    node_name      text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX file_deletions_node_idx ON file_deletions (node_name, created_at);

CREATE FUNCTION versions_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO file_deletions (version_id, collection_id, node_name)
    VALUES (OLD.id, OLD.collection_id, OLD.node_name)
    ON CONFLICT (version_id) DO NOTHING;
    RETURN OLD;
END;
$$;

CREATE TRIGGER versions_tombstone AFTER DELETE ON versions
    FOR EACH ROW EXECUTE FUNCTION versions_tombstone();
