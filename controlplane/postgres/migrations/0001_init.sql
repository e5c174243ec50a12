-- The system of record. Sizes are bytes (bigint); durations are seconds (bigint).

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL CHECK (name <> ''),
    slug        text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    quota       bigint      NOT NULL DEFAULT 0 CHECK (quota >= 0),
    suspended   boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    email          text        NOT NULL,
    password_hash  text        NOT NULL,
    tenant_id      uuid        REFERENCES tenants (id),
    roles          text[]      NOT NULL DEFAULT '{}',
    active         boolean     NOT NULL DEFAULT true,
    expires_at     timestamptz,
    allowed_ips    cidr[]      NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_tenant_idx ON users (tenant_id, id);

-- Every issued token; the token string itself is never stored.
CREATE TABLE tokens (
    id            uuid PRIMARY KEY, -- the JWT's jti
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id     uuid        REFERENCES tenants (id),
    description   text        NOT NULL DEFAULT '',
    scope         jsonb,
    once          boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    last_used_ip  text,
    last_used_at  timestamptz
);
CREATE INDEX tokens_user_idx ON tokens (user_id, created_at DESC);

-- Mirror of the gossip view; drained is the operator's wish and survives restarts.
CREATE TABLE data_nodes (
    name              text PRIMARY KEY,
    public_url        text        NOT NULL,
    zone              text        NOT NULL DEFAULT '',
    disks             jsonb       NOT NULL DEFAULT '[]',
    state             text        NOT NULL,
    drained           boolean     NOT NULL DEFAULT false,
    last_seen         timestamptz NOT NULL DEFAULT now(),
    software_version  text        NOT NULL DEFAULT ''
);

CREATE TABLE collections (
    id                        text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9-]{1,64}$'),
    tenant_id                 uuid        NOT NULL REFERENCES tenants (id),
    description               text        NOT NULL DEFAULT '',
    tags                      text[]      NOT NULL DEFAULT '{}',
    filename_template         text        NOT NULL DEFAULT 'backup-${version}',
    max_backups_count         integer     NOT NULL CHECK (max_backups_count > 0),
    max_one_version_size      bigint      NOT NULL CHECK (max_one_version_size >= 0),
    max_collection_size       bigint      NOT NULL CHECK (max_collection_size >= 0),
    strategy                  text        NOT NULL CHECK (strategy IN ('FIFO', 'FIFO_PLUS_OLDER', 'REJECT_WHEN_FULL')),
    max_older_copies          integer     NOT NULL DEFAULT 0 CHECK (max_older_copies >= 0),
    keep_older_not_more_than  bigint      NOT NULL DEFAULT 0 CHECK (keep_older_not_more_than >= 0),
    windows                   jsonb       NOT NULL DEFAULT '[]',
    require_encryption        boolean     NOT NULL DEFAULT false,
    health_code_hash          text        NOT NULL DEFAULT '',
    node_name                 text        REFERENCES data_nodes (name),
    next_version              bigint      NOT NULL DEFAULT 1,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX collections_tenant_idx ON collections (tenant_id, id);
CREATE INDEX collections_tags_idx ON collections USING gin (tags);
CREATE INDEX collections_node_idx ON collections (node_name);

CREATE TABLE collection_grants (
    collection_id  text   NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    user_id        uuid   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    roles          text[] NOT NULL,
    PRIMARY KEY (collection_id, user_id)
);
CREATE INDEX collection_grants_user_idx ON collection_grants (user_id);

CREATE TABLE versions (
    id             uuid PRIMARY KEY,
    collection_id  text        NOT NULL REFERENCES collections (id),
    number         bigint      NOT NULL CHECK (number > 0),
    filename       text        NOT NULL,
    size           bigint      NOT NULL CHECK (size >= 0),
    sha256         text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    uploaded_by    uuid,
    token_id       uuid,
    node_name      text        NOT NULL,
    upload_id      uuid        UNIQUE, -- the reservation it committed; makes commit idempotent
    UNIQUE (collection_id, number)
);

-- Bytes promised to uploads in flight; rows past expires_at count for nothing.
CREATE TABLE upload_reservations (
    id             uuid PRIMARY KEY,
    collection_id  text        NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    tenant_id      uuid        NOT NULL REFERENCES tenants (id),
    node_name      text        NOT NULL,
    bytes          bigint      NOT NULL CHECK (bytes >= 0),
    user_id        uuid,
    token_id       uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX upload_reservations_collection_idx ON upload_reservations (collection_id);
CREATE INDEX upload_reservations_node_idx ON upload_reservations (node_name);

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor_id     uuid,
    tenant_id    uuid,
    action       text NOT NULL,
    object_type  text NOT NULL,
    object_id    text NOT NULL DEFAULT '',
    ip           text NOT NULL DEFAULT '',
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, id DESC);
